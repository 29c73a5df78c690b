"""A local mosquitto with mutual TLS in a temporary directory: for `carebox demo`, the tests
and the bench. Never for production (a real deployment points `[upstream] url` at the care
provider's broker).

The broker listens on 127.0.0.1 only, on a free port, requires a client certificate from the
dev CA (`require_certificate true`, the certificate's CN as the user name) and sets
`set_tcp_nodelay true` (PERFORMANCE.md: without it Nagle holds every CONNACK and PUBACK ~40 ms).
A plaintext listener can be added, only so tests can prove the gateway refuses it.

`kill()` is a SIGKILL (a crash, no goodbye to clients); `start()` again reuses the same ports,
so a client configured for the old broker finds the new one.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gateway.uplink.devpki import DevPki, Issued
from gateway.uplink.errors import UplinkError

__all__ = ["BrokerNotFound", "LocalBroker", "find_mosquitto", "free_port"]

READY_TIMEOUT_S: Final = 10.0  # mosquitto binds in milliseconds; 10 s covers a loaded 2-core CI box
STOP_TIMEOUT_S: Final = 5.0  # a SIGTERMed mosquitto exits at once; after this it gets SIGKILL
READY_POLL_S: Final = 0.02


class BrokerNotFound(UplinkError):
    """mosquitto is not installed."""


def find_mosquitto() -> Path:
    """mosquitto on PATH or in /usr/sbin (Debian installs it there, off a user's PATH)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if found is None:
        raise BrokerNotFound(
            "mosquitto not found on PATH or in /usr/sbin: install it (apt-get install mosquitto, "
            "or `make test` / `make demo` do it)"
        )
    return Path(found)


def free_port() -> int:
    """A port free on 127.0.0.1 now (the broker binds it a moment later; `start` retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=READY_POLL_S * 10):
            return True
    except OSError:
        return False


@dataclass
class LocalBroker:
    """One mosquitto process. `tls_port` is fixed at construction so restarts keep it."""

    pki: DevPki
    directory: Path
    plaintext: bool = False
    tls_port: int = field(default_factory=free_port)
    plain_port: int | None = None
    server: Issued | None = None  # another broker certificate (tests: one for the wrong host)
    # Persistent sessions survive a graceful restart (the demo's outage: its witness must not
    # miss what the gateway delivers while the witness itself reconnects).
    persistence: bool = False
    # More mosquitto.conf lines: a broker's own limits (max_packet_size, retain_available,
    # max_inflight_messages, acl_file), as the brokers a box may meet set them.
    options: tuple[str, ...] = ()
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.plaintext and self.plain_port is None:
            self.plain_port = free_port()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"mqtts://localhost:{self.tls_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (the benches read its CPU time)."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    def _config(self) -> str:
        user = pwd.getpwuid(os.getuid()).pw_name  # a root mosquitto would drop to `mosquitto`
        lines = [
            f"user {user}",
            "per_listener_settings false",
            *(
                ["persistence true", f"persistence_location {self.directory}/"]
                if self.persistence
                else ["persistence false"]
            ),
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "allow_anonymous true",
            "set_tcp_nodelay true",
            "max_inflight_messages 0",
            "max_queued_messages 100000",
            f"listener {self.tls_port} 127.0.0.1",
            f"cafile {self.pki.ca.cert_path}",
            f"certfile {(self.server or self.pki.server).cert_path}",
            f"keyfile {(self.server or self.pki.server).key_path}",
            "require_certificate true",
            "use_identity_as_username true",
            "tls_version tlsv1.2",
        ]
        if self.plain_port is not None:
            lines.append(f"listener {self.plain_port} 127.0.0.1")
        lines.extend(self.options)
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        if self.running:
            return
        exe = find_mosquitto()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = self.directory / "mosquitto.conf"
        conf.write_text(self._config())
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own config file
                [str(exe), "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        ports = [self.tls_port] + ([self.plain_port] if self.plain_port else [])
        while not all(_accepts(p) for p in ports):
            if self._proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                self._proc = None
                raise UplinkError(f"mosquitto exited at start; its log ends:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise UplinkError(f"mosquitto did not listen within {READY_TIMEOUT_S} s")
            time.sleep(READY_POLL_S)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes as in a crash; clients see a reset, not a goodbye."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(STOP_TIMEOUT_S)
            self._proc = None

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(STOP_TIMEOUT_S)
        self._proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
