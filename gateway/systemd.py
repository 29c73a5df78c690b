"""systemd integration: sd_notify(3) over `$NOTIFY_SOCKET`, and a watchdog that pets only while
the service's loops are alive.

The unit (`hardware/systemd/carebox.service`) is `Type=notify` with `WatchdogSec=`: systemd
waits for READY=1 before calling the service started, shows STATUS= in `systemctl status`, and
kills and restarts the service when WATCHDOG=1 stops arriving for WatchdogSec.

Invariants
- Nothing here raises on a missing or dead socket: outside systemd (`carebox demo`, tests, a
  terminal) every call is a cheap no-op that returns False.
- The watchdog pets only when every registered heartbeat is fresh. A loop that is stuck (a
  wait with no bound, a deadlock, a blocked event loop) stops its own heartbeat, the pets
  stop, and systemd restarts the service: the store makes the restart lose nothing.
- Each loop beats at least once per `max_silence_s` while healthy, including while idle (on
  every wake-up of its bounded wait), so silence means stuck, not quiet.

Gotchas
- An abstract socket is written `@name` in `$NOTIFY_SOCKET`; it becomes a leading NUL.
- `$WATCHDOG_PID`, when set, names the process meant to pet; a child must not.
- The socket is non-blocking: a datagram that cannot be queued at once is dropped rather than
  stalling the event loop (systemd reads its notify socket continuously, so this is rare).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Final

__all__ = [
    "Heartbeat",
    "Notifier",
    "Watchdog",
]

log = logging.getLogger(__name__)

# sd_watchdog_enabled(3) advises petting at half the timeout: one lost wake-up is survivable.
WATCHDOG_PET_FRACTION: Final = 0.5


class Notifier:
    """Sends sd_notify(3) messages to the service manager, if there is one."""

    __slots__ = ("_address", "watchdog_interval_s")

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        environ = os.environ if env is None else env
        path = environ.get("NOTIFY_SOCKET", "")
        self._address: str | None = None
        if path.startswith("@"):
            self._address = "\0" + path[1:]
        elif path.startswith("/"):
            self._address = path
        self.watchdog_interval_s: float | None = _watchdog_interval(environ)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` lines as one datagram; True if it was handed to the manager."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", errors="replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(payload, self._address)
        except OSError as exc:
            log.warning("sd_notify failed", extra={"error": exc.strerror or str(exc)})
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([_status(status)] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(_status(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([_status(status)] if status else []))


def _status(text: str) -> str:
    # One line: a newline would start a new assignment in the datagram.
    return "STATUS=" + " ".join(text.split())


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


class Heartbeat:
    """One loop's proof of life. `beat()` on every iteration; `unregister()` when it ends."""

    __slots__ = ("_last", "_unregister", "max_silence_s", "name")

    def __init__(
        self, name: str, max_silence_s: float, now: float, unregister: Callable[[], None]
    ) -> None:
        self.name = name
        self.max_silence_s = max_silence_s
        self._last = now
        self._unregister = unregister

    def beat(self, now: float | None = None) -> None:
        self._last = time.monotonic() if now is None else now

    def silent_for(self, now: float) -> float:
        return now - self._last

    def unregister(self) -> None:
        self._unregister()

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, *_: object) -> None:
        self.unregister()


class Watchdog:
    """Pets systemd's watchdog while every registered heartbeat is fresh."""

    __slots__ = ("_clock", "_heartbeats", "_notifier")

    def __init__(self, notifier: Notifier, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._notifier = notifier
        self._clock = clock
        self._heartbeats: dict[str, Heartbeat] = {}

    @property
    def enabled(self) -> bool:
        return self._notifier.enabled and self._notifier.watchdog_interval_s is not None

    def register(self, name: str, max_silence_s: float) -> Heartbeat:
        """A heartbeat for loop `name` (a task name such as `carebox.uplink`), fresh from now."""
        if name in self._heartbeats:
            raise ValueError(f"heartbeat {name!r} is already registered")
        if not max_silence_s > 0:
            raise ValueError(f"max_silence_s must be positive, not {max_silence_s!r}")

        def unregister() -> None:
            self._heartbeats.pop(name, None)

        heartbeat = Heartbeat(name, max_silence_s, self._clock(), unregister)
        self._heartbeats[name] = heartbeat
        return heartbeat

    def stale(self) -> list[str]:
        """Names of the loops silent for longer than they promised, oldest promise first."""
        now = self._clock()
        return sorted(
            hb.name for hb in self._heartbeats.values() if hb.silent_for(now) > hb.max_silence_s
        )

    def pet(self) -> bool:
        """Send WATCHDOG=1 if all loops are fresh; True if it was sent."""
        stale = self.stale()
        if stale:
            log.warning("watchdog not petted: loops silent", extra={"loops": ",".join(stale)})
            return False
        return self._notifier.watchdog()

    async def run(self) -> None:
        """Pet at half of WatchdogSec until cancelled; returns at once if there is no watchdog."""
        interval = self._notifier.watchdog_interval_s
        if not self.enabled or interval is None:
            return
        while True:
            self.pet()
            await asyncio.sleep(interval * WATCHDOG_PET_FRACTION)
