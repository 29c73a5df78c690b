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

`ready_to_render` applies this to the readings of one payload, on a `ClockNow` read where the
uplink calls its mapper: in the gateway's process, or in the rendering worker given that view.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from device_drivers.reading import Reading
from gateway.errors import GatewayError
from gateway.fhir import MappingError, needs_trusted_clock
from gateway.store.records import StoredReading

__all__ = [
    "ClockNotTrusted",
    "ClockNow",
    "ReceiveTimeUnknown",
    "boot_id",
    "capture_clock",
    "ready_to_render",
    "resolve",
]

BOOT_ID_PATH: Final = Path("/proc/sys/kernel/random/boot_id")
_HEX32: Final = re.compile(r"[0-9a-f]{32}")


class ClockNotTrusted(GatewayError):
    """A reading whose FHIR time depends on the gateway clock, captured before it was trusted."""


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


@dataclass(frozen=True, slots=True)
class ClockNow:
    """The gateway clock at one mapper call: trusted or not and, when trusted, the boot id,
    wall time and monotonic time read together (what `resolve` dates a reading with)."""

    trusted: bool
    boot: str | None = None
    now: datetime | None = None
    monotonic_ns: int = 0

    @classmethod
    def read(cls, trusted: bool) -> ClockNow:
        if not trusted:
            return cls(False)
        boot, monotonic = capture_clock()
        return cls(True, boot, datetime.now(UTC), monotonic)


def ready_to_render(items: Sequence[StoredReading], clock: ClockNow) -> Sequence[StoredReading]:
    """`items` as they can be rendered now: `ClockNotTrusted` while the clock is untrusted and
    one of them needs it; once trusted, those received on the untrusted clock dated by
    `resolve` (`ReceiveTimeUnknown` for one that cannot be: the uplink holds it back)."""
    if not clock.trusted or clock.now is None:
        for item in items:
            if needs_trusted_clock(item.reading) and not item.reading.clock_trusted:
                raise ClockNotTrusted(f"reading {item.id} waits for a trusted clock")
        return items
    if all(item.reading.clock_trusted for item in items):
        return items
    out = []
    for item in items:
        reading = resolve(
            item.reading, boot=clock.boot, now=clock.now, monotonic_ns=clock.monotonic_ns
        )
        out.append(item if reading is item.reading else dataclasses.replace(item, reading=reading))
    return out
