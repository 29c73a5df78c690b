"""Which time an Observation carries (notes/FHIR.md section 9).

A BLE device stamps readings with its local wall clock, no zone. The mapping reads that time in
the gateway's zone and, when the device's clock was read at the connection
(`Reading.device_clock_offset_s`, device minus gateway), moves it onto the gateway's timeline:
``effective = local→UTC − offset``, rounded to the device's 1 s resolution. Such an Observation
points at a coincident-timestamp Observation recording the pair (gateway time, device time), so
the device's own stamp can always be recovered. A reading with no device time carries its
receive time. The dedup identifier never uses any of these: it uses the device's stamp as sent.

Gotchas: a local time that a DST change makes ambiguous or nonexistent is read with
``fold=0`` (the first of the two instants), deterministically; ``isoformat()`` cannot write the
``-00:00`` FHIR uses for an unknown offset, so dateTimes are formatted here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal

from device_drivers.reading import Reading
from gateway.fhir.errors import MappingError

__all__ = [
    "Effective",
    "corrected_time",
    "effective_time",
    "fhir_datetime",
    "needs_trusted_clock",
]


def fhir_datetime(moment: datetime) -> str:
    """A FHIR dateTime with seconds and an explicit offset (``+00:00`` for UTC)."""
    if moment.tzinfo is UTC and not moment.microsecond:
        # Every effectiveDateTime: `isoformat` writes this very text, in C, in a third of the
        # time (seconds always, a 4-digit year, "+00:00").
        return moment.isoformat()
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("a FHIR dateTime with a time needs a zone")
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    total = int(offset.total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    hours, minutes = divmod(abs(total), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


@dataclass(frozen=True, slots=True)
class Effective:
    """The Observation time (UTC) and, when it was corrected, the offset applied."""

    at: datetime
    correction: timedelta | None


def effective_time(
    reading: Reading, tz: tzinfo, local: datetime | Literal[False] | None = False
) -> Effective:
    """The corrected UTC time of `reading` (see the module docstring). `local`: its device
    timestamp when the caller already has it (False: read it from the reading)."""
    if local is False:
        local = reading.device_timestamp()
    return Effective(*corrected_time(reading, tz, local))


def corrected_time(
    reading: Reading, tz: tzinfo, local: datetime | None
) -> tuple[datetime, timedelta | None]:
    """`effective_time` as a plain pair (at, correction): the Bundle renderer's per-reading
    path, where building the `Effective` costs more than reading it."""
    if local is None:
        return reading.received_at.astimezone(UTC), None
    try:
        if local.fold:
            local = local.replace(fold=0)
        # the zone's offset for the naive time, then plain arithmetic: what astimezone does,
        # without building the zoned datetime first (a third of this function's time)
        offset = tz.utcoffset(local)
        if offset is None:
            raise MappingError(f"the gateway's time zone {tz!r} gives no UTC offset")
        at = (local - offset).replace(tzinfo=UTC)
        offset_s = reading.device_clock_offset_s
        if offset_s is None:
            return at, None
        # BLE Date Time has 1 s resolution: a sub-second correction would be noise.
        correction = timedelta(seconds=round(offset_s))
        # the coincident-timestamp Observation will show the device clock in the zone too
        (reading.received_at + correction).astimezone(tz)
        return at - correction, correction
    except OverflowError:
        # A device clock set near year 9999 (or read wildly off): no FHIR dateTime exists for
        # the corrected time. Left out with an event naming the reading, like bad bytes.
        raise MappingError("device time out of range once corrected by its clock offset") from None


def needs_trusted_clock(reading: Reading) -> bool:
    """Whether this reading's FHIR time comes from the gateway's clock: its receive time (no
    device time) or a device time corrected by the offset measured against the gateway clock.

    Such a reading captured while the gateway clock was not trusted (`reading.clock_trusted`
    False) would go out with a wrong time: the uplink holds it back instead. A reading stamped by
    a device whose clock was never read depends on the device alone and may always go.
    """
    return reading.device_timestamp() is None or reading.device_clock_offset_s is not None
