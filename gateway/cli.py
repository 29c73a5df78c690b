"""`carebox`, the one console script. Each subcommand imports what it needs when it runs, so
`carebox run` starts without loading the simulators, rich or provisioning.

Errors a user can cause (bad input, a broken config) end as one line on stderr and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from device_drivers.errors import CareboxError

EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"carebox: {message}", file=sys.stderr)
    return code


def _cmd_decode(args: argparse.Namespace) -> int:
    from device_drivers import MalformedValue, UnknownCharacteristic, decode, to_json

    char = args.char.upper().removeprefix("0X")
    if len(char) != 4 or any(c not in "0123456789ABCDEF" for c in char):
        return _fail(f"CHAR must be 4 hex digits such as 2A35, not {args.char!r}")
    hex_text = "".join(args.hex.split()).removeprefix("0x")
    try:
        data = bytes.fromhex(hex_text)
    except ValueError:
        return _fail(f"HEX is not an even number of hex digits: {args.hex!r}")
    try:
        value = decode(int(char, 16), data)
    except UnknownCharacteristic:
        return _fail(f"no decoder for characteristic {char}; see `carebox decode --help`")
    except MalformedValue as exc:
        return _fail(str(exc))
    print(json.dumps(to_json(value), ensure_ascii=False))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with the contract's one-line usage errors (argparse prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message}; see `{self.prog} --help`\n")


def _build_parser() -> argparse.ArgumentParser:
    from device_drivers import registered

    parser = _Parser(prog="carebox", description="Carebox home health gateway.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    chars = ", ".join(f"{u:04X}" for u in sorted(registered()))
    p = sub.add_parser(
        "decode",
        help="decode one characteristic value to JSON",
        description=f"Decode one characteristic value and print JSON. CHAR is one of: {chars}.",
    )
    p.add_argument("char", metavar="CHAR", help="16-bit characteristic UUID, 4 hex digits")
    p.add_argument("hex", metavar="HEX", help="the value's bytes in hex")
    p.set_defaults(func=_cmd_decode)

    p = sub.add_parser("run", help="run the service (systemd runs this)")
    p.add_argument("--config", type=Path, default=None, metavar="FILE")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("status", help="queue, last sync, devices; no health values")
    p.add_argument("--config", type=Path, default=None, metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("demo", help="run the whole pipeline on this machine")
    p.add_argument("--duration", type=float, default=None, metavar="S")
    p.set_defaults(func=_cmd_demo)
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(duration=args.duration)


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.config import load_config
    from gateway.logs import configure_logging
    from gateway.service import serve

    config = load_config(args.config)
    configure_logging()
    return asyncio.run(serve(config))


def _cmd_status(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.status import gather, render

    doc = gather(load_config(args.config))
    print(json.dumps(doc, indent=None if args.json else 2) if args.json else render(doc))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except CareboxError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130
    return code
