"""Receive times of readings taken while the wall clock was not trusted (LESSONS L7.2, L7.3).

Capture never waits for the clock: a reading received while it is untrusted is committed with
the wall time it read (possibly years off), the kernel's boot id and its monotonic clock. Once
the clock is trusted, `resolve` gives such a reading the time it was really received, in the
same boot: now (trusted) minus the monotonic time elapsed since. Its device-clock offset,
measured against the untrusted clock at the same moment, moves by the same amount.

From an earlier boot nothing links the two clocks, so the receive time is unknown: a reading
with its own device time loses only the offset correction (it goes out with the device's time,
as from a device whose clock was never read); one without a device time cannot be dated and is
held back, never sent with a wrong time and never deleted.

What stays as captured: the reading's identity and PHD timestamp part, computed once at capture
(changing them would make a resend look like a new measurement).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from device_drivers.reading import Reading
from gateway.fhir import MappingError, needs_trusted_clock

__all__ = ["ReceiveTimeUnknown", "boot_id", "capture_clock", "resolve"]

BOOT_ID_PATH: Final = Path("/proc/sys/kernel/random/boot_id")
_HEX32: Final = re.compile(r"[0-9a-f]{32}")


class ReceiveTimeUnknown(MappingError):
    """A reading with no device time, received while the clock was untrusted in an earlier
    boot: no time can be given to it."""


@functools.cache
def boot_id() -> str | None:
    """This boot's id (32 hex digits), or None where the kernel does not say (not Linux)."""
    try:
        digits = BOOT_ID_PATH.read_text().strip().replace("-", "").lower()
    except OSError:
        return None
    return digits if _HEX32.fullmatch(digits) else None


def capture_clock() -> tuple[str | None, int]:
    """(boot id, monotonic ns) to keep with a reading received while the clock is untrusted."""
    return boot_id(), time.monotonic_ns()


def resolve(
    reading: Reading,
    *,
    boot: str | None,
    now: datetime,
    monotonic_ns: int,
) -> Reading:
    """`reading` with its receive time and device-clock offset on the trusted clock; `now` and
    `monotonic_ns` are read together while the clock is trusted. Unchanged when it was received
    on a trusted clock or its time does not depend on the gateway's clock; `ReceiveTimeUnknown`
    when that time cannot be known (see the module docstring)."""
    if reading.clock_trusted or not needs_trusted_clock(reading):
        return reading
    if boot is not None and reading.boot_id == boot and reading.monotonic_ns is not None:
        received = now - timedelta(microseconds=(monotonic_ns - reading.monotonic_ns) // 1000)
        shift = (received - reading.received_at).total_seconds()
        offset = reading.device_clock_offset_s
        return dataclasses.replace(
            reading,
            received_at=received.astimezone(UTC),
            clock_trusted=True,
            device_clock_offset_s=None if offset is None else offset - shift,
        )
    if reading.device_timestamp() is not None:
        return dataclasses.replace(reading, device_clock_offset_s=None)
    raise ReceiveTimeUnknown(
        "received while the clock was not synchronized, in an earlier boot: its time is unknown"
    )
