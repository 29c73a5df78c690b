"""The service's logs: one logfmt line per record on stdout, which journald keeps.

    level=info logger=gateway.uplink msg="connected" broker=broker.example.org:8883

Usage: `log.info("connected", extra={"broker": host})`; each `extra` key becomes a field.
`configure_logging()` is called once by `carebox run`.

Invariants (DESIGN.md "Files": no health value in logs at INFO or above)
- At INFO and above, `HealthValueGuard` replaces with `<redacted>`: fields named like a
  measurement (the decoded-JSON field names, `value`, `hex`, `raw`, `payload`, ...), message
  arguments that are bytes or `device_drivers` values (a `Reading`, a decoded characteristic),
  and the hex that `MalformedValue` messages carry. DEBUG keeps everything, and the unit's
  `LogLevelMax=info` keeps DEBUG out of the journal on a patient's box anyway.
- One record is one line: newlines in messages and tracebacks are escaped, so journald never
  splits a record and `journalctl -o cat` stays greppable.
- Under systemd (`$JOURNAL_STREAM` names our stdout), each line starts with `<N>`, the syslog
  priority, so `journalctl -p warning` works.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Final, TextIO

__all__ = [
    "HEALTH_FIELDS",
    "REDACTED",
    "HealthValueGuard",
    "LogfmtFormatter",
    "configure_logging",
]

REDACTED: Final = "<redacted>"


class _Redacted:
    """Stands in for a redacted argument: prints the same under %s and %r."""

    __slots__ = ()

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__


_REDACTED_ARG: Final = _Redacted()

# Field names that carry a measurement (DESIGN.md "Decoded JSON") or the bytes of one.
HEALTH_FIELDS: Final = frozenset(
    {
        "systolic", "diastolic", "mean_arterial_pressure", "pulse_rate", "measurement_status",
        "concentration", "carbohydrate_kg", "meal", "health", "exercise_duration_s",
        "exercise_intensity_pct", "medication", "medication_id", "hba1c_pct",
        "weight", "bmi", "height", "body_fat_pct", "basal_metabolism_kj", "muscle_pct",
        "muscle_mass", "fat_free_mass", "soft_lean_mass", "body_water_mass", "impedance_ohm",
        "value", "values", "reading", "readings", "measurement", "observation", "bundle",
        "hex", "raw", "data", "payload", "plaintext", "patient",
    }
)  # fmt: skip

# MalformedValue's own wording: "(hex 0a1b...)".
_HEX_IN_TEXT = re.compile(r"\bhex [0-9A-Fa-f]+")
_BARE = re.compile(r"[^\s\"=\\]+")
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_HANDLER_NAME: Final = "carebox.stdout"
_PRIORITY: Final = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def _looks_like_health(name: str) -> bool:
    return name.lower() in HEALTH_FIELDS


def _is_device_value(value: object) -> bool:
    module = type(value).__module__
    return isinstance(value, bytes | bytearray | memoryview) or (
        module.startswith("device_drivers") and not isinstance(value, BaseException)
    )


class HealthValueGuard(logging.Filter):
    """Redacts health values from records at INFO and above; counts what it redacted."""

    def __init__(self) -> None:
        super().__init__()
        self.redactions = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return True
        for key in list(vars(record)):
            if key not in _STANDARD_ATTRS and _looks_like_health(key):
                setattr(record, key, REDACTED)
                self.redactions += 1
        if isinstance(record.args, Mapping):
            record.args = {k: self._arg(v, str(k)) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(self._arg(v) for v in record.args)
        if isinstance(record.msg, str):
            record.msg = self._scrub(record.msg)
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # Format the traceback once, here, so the hex in an exception message is scrubbed.
            record.exc_text = self._scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self._scrub(record.exc_text)
        return True

    def _arg(self, value: object, name: str = "") -> object:
        if _is_device_value(value) or (name and _looks_like_health(name)):
            self.redactions += 1
            return _REDACTED_ARG
        if isinstance(value, str):
            return self._scrub(value)
        if isinstance(value, BaseException):
            return self._scrub(str(value))
        return value

    def _scrub(self, text: str) -> str:
        scrubbed, count = _HEX_IN_TEXT.subn("hex " + REDACTED, text)
        self.redactions += count
        return scrubbed


def _quote(value: object) -> str:
    text = str(value)
    if text and _BARE.fullmatch(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    """`level=... logger=... msg="..." key=value ...` on one line, optionally `<N>`-prefixed."""

    def __init__(self, *, syslog_prefix: bool = False) -> None:
        super().__init__()
        self.syslog_prefix = syslog_prefix

    def format(self, record: logging.LogRecord) -> str:
        fields: list[tuple[str, object]] = [
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", record.getMessage()),
        ]
        fields += [
            (key, value)
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        ]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_info and record.exc_info[0] is not None:
            fields.append(("exc_type", record.exc_info[0].__name__))
        if record.exc_text:
            fields.append(("exc", record.exc_text))
        line = " ".join(f"{key}={_quote(value)}" for key, value in fields)
        if self.syslog_prefix:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


def _stream_is_journal(stream: TextIO, env: Mapping[str, str]) -> bool:
    """True when `stream` is the journal stream systemd connected (systemd.exec(5))."""
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def configure_logging(
    level: int = logging.INFO,
    *,
    stream: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> HealthValueGuard:
    """Send every log record to `stream` (stdout) as logfmt through the health guard.

    Replaces the handler a previous call installed, so calling it twice does not double the
    lines (other handlers, such as pytest's, are left alone).
    Returns the guard (its `redactions` count is for tests and `carebox status`).
    """
    out = sys.stdout if stream is None else stream
    environ = os.environ if env is None else env
    handler = logging.StreamHandler(out)
    guard = HealthValueGuard()
    handler.addFilter(guard)
    handler.setFormatter(LogfmtFormatter(syslog_prefix=_stream_is_journal(out, environ)))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in root.handlers[:]:
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    return guard
