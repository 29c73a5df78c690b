"""Whether the gateway's wall clock can be trusted (DESIGN.md "Config" `[clock]`, LESSONS §7).

A Raspberry Pi has no RTC: it boots at the last saved time (fake-hwclock) or 1970 and is right
only once NTP has synchronized it. `[clock] source` says how to know:

- "system": the platform keeps the clock right (an RTC, a VM host): always trusted.
- "auto": trusted once the kernel reports it synchronized, and from then on for the life of
  the process (a synchronized clock does not become wrong; a later NTP outage only lets it
  drift by its frequency error).

How the kernel tells: `adjtimex(2)` with no mode bits reads without changing anything. The
clock counts as synchronized when its maximum error is under 16 s (the kernel's
NTP_PHASE_LIMIT), as systemd's `timedatectl` decides (`ntp_synced()`); STA_UNSYNC alone is not
used, because chrony without `rtcsync` keeps it set on a synchronized clock so the kernel
leaves the RTC alone.

Gotchas
- The unit's seccomp filter must allow `adjtimex` (it is in systemd's @clock group, which
  `ProtectClock=yes` denies). Without CAP_SYS_TIME the call can only read.
- Containers share the host kernel's state: what they report is the host's sync.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from gateway.config import ClockSource

__all__ = [
    "CLOCK_POLL_INTERVAL_S",
    "MAX_ERROR_LIMIT_US",
    "ClockTrust",
    "KernelClock",
    "kernel_clock",
    "kernel_clock_synchronized",
]

# How often an untrusted clock is looked at again. NTP needs tens of seconds after the network
# comes up; checking more often than this would only wake the Pi for nothing (LESSONS L10.2).
CLOCK_POLL_INTERVAL_S: Final = 10.0
# The kernel's NTP_PHASE_LIMIT: maxerror reaches it when nobody has disciplined the clock.
MAX_ERROR_LIMIT_US: Final = 16_000_000
TIME_ERROR: Final = 5
STA_UNSYNC: Final = 0x0040
STA_CLOCKERR: Final = 0x1000


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """`struct timex` as the plain `adjtimex` symbol uses it (native `long` fields)."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        # The kernel's trailing reserved words, with room to spare.
        ("_reserved", ctypes.c_byte * 128),
    )


@dataclass(frozen=True, slots=True)
class KernelClock:
    """What `adjtimex(2)` says about the system clock."""

    state: int  # TIME_OK (0) ... TIME_ERROR (5)
    status: int  # STA_* bits
    maxerror_us: int
    esterror_us: int

    @property
    def synchronized(self) -> bool:
        return self.maxerror_us < MAX_ERROR_LIMIT_US


_adjtimex: Callable[[ctypes._Pointer[_Timex]], int] | None = None


def kernel_clock() -> KernelClock | None:
    """Read the kernel's clock discipline state; None where `adjtimex` is unavailable."""
    global _adjtimex  # noqa: PLW0603  (the libc handle is loaded once, on first use)
    if _adjtimex is None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.adjtimex
        function.argtypes = (ctypes.POINTER(_Timex),)
        function.restype = ctypes.c_int
        _adjtimex = function
    timex = _Timex()  # modes = 0: read only
    state = _adjtimex(ctypes.pointer(timex))
    if state < 0:
        return None
    return KernelClock(
        state=state, status=timex.status, maxerror_us=timex.maxerror, esterror_us=timex.esterror
    )


def kernel_clock_synchronized() -> bool:
    """True when the kernel reports the system clock synchronized (timesyncd, chrony, ntpd)."""
    try:
        clock = kernel_clock()
    except (OSError, AttributeError):
        return False
    return clock is not None and clock.synchronized


class ClockTrust:
    """Whether the wall clock may be used for what needs it (device clock writes, receive-time
    stamps sent upstream). Cheap to ask: one syscall until trusted, then a cached True."""

    __slots__ = ("_poll_interval_s", "_probe", "_trusted", "source")

    def __init__(
        self,
        source: ClockSource,
        *,
        probe: Callable[[], bool] = kernel_clock_synchronized,
        poll_interval_s: float = CLOCK_POLL_INTERVAL_S,
    ) -> None:
        if source not in ("auto", "system"):
            raise ValueError(f"clock source must be 'auto' or 'system', not {source!r}")
        self.source: ClockSource = source
        self._probe = probe
        self._poll_interval_s = poll_interval_s
        self._trusted = source == "system"

    def trusted(self) -> bool:
        if not self._trusted and self._probe():
            self._trusted = True
        return self._trusted

    async def wait_trusted(self) -> None:
        """Return once the clock is trusted, looking again every `poll_interval_s`.

        Unbounded on purpose: a box without network may wait for days, and capture never waits
        on this (LESSONS L7.2); only what needs the clock does. Cancel it to stop waiting.
        """
        # Polled, not awaited on an event: the kernel offers no notification of sync.
        while True:
            if self.trusted():
                return
            await asyncio.sleep(self._poll_interval_s)
