"""Current Time Service 0x1805: Current Time 0x2A2B, and Date Time 0x2A08.

The gateway reads a device's Current Time before retrieving records (to learn its clock's
offset) and writes it only from a trusted gateway clock (DESIGN.md, LESSONS.md L6/L7).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Self

from device_drivers.codec import ByteReader, ByteWriter, register
from device_drivers.errors import UnencodableValue

__all__ = ["NO_ADJUSTMENT", "AdjustReason", "CurrentTime", "DateTime"]


class AdjustReason(enum.IntFlag):
    """Why the clock last changed (CTS Adjust Reason; bits 4-7 are RFU and ignored)."""

    MANUAL_TIME_UPDATE = 0x01
    EXTERNAL_REFERENCE_TIME_UPDATE = 0x02
    CHANGE_OF_TIME_ZONE = 0x04
    CHANGE_OF_DST = 0x08


NO_ADJUSTMENT = AdjustReason(0)


@register(0x2A2B)
@dataclass(frozen=True, slots=True)
class CurrentTime:
    """Exact Time 256 plus the adjust reason. `day_of_week` 0 is "unknown", 1..7 Monday..Sunday;
    `timestamp` None is a date the device does not know (year, month or day sent as 0)."""

    UUID: ClassVar[int]
    timestamp: datetime | None
    day_of_week: int = 0
    fractions256: int = 0
    adjust_reason: AdjustReason = NO_ADJUSTMENT

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = ByteReader(0x2A2B, data)
        timestamp = r.date_time("date_time")
        day_of_week = r.u8("day_of_week")
        if day_of_week > 7:
            raise r.error("day_of_week outside 0..7", r.offset - 1)
        fractions = r.u8("fractions256")
        reason = AdjustReason(r.u8("adjust_reason") & 0x0F)
        return cls(timestamp, day_of_week, fractions, reason)

    def __bytes__(self) -> bytes:
        if not 0 <= self.day_of_week <= 7:
            raise UnencodableValue(f"day_of_week {self.day_of_week} outside 0..7")
        w = ByteWriter()
        w.date_time(self.timestamp)
        w.u8(self.day_of_week, "day_of_week")
        w.u8(self.fractions256, "fractions256")
        w.u8(int(self.adjust_reason), "adjust_reason")
        return bytes(w)

    @classmethod
    def at(cls, moment: datetime, reason: AdjustReason = NO_ADJUSTMENT) -> Self:
        """The value a trusted gateway writes to set a device to local time `moment`."""
        return cls(
            moment.replace(microsecond=0, tzinfo=None),
            moment.isoweekday(),
            moment.microsecond * 256 // 1_000_000,
            reason,
        )


@register(0x2A08)
@dataclass(frozen=True, slots=True)
class DateTime:
    """Date Time 0x2A08; `timestamp` None when the device sends an unknown date."""

    UUID: ClassVar[int]
    timestamp: datetime | None

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(ByteReader(0x2A08, data).date_time("date_time"))

    def __bytes__(self) -> bytes:
        w = ByteWriter()
        w.date_time(self.timestamp)
        return bytes(w)
