"""Blood Pressure Service 0x1810: Blood Pressure Measurement 0x2A35, Intermediate Cuff
Pressure 0x2A36 and Blood Pressure Feature 0x2A49 (BLS 1.1.1, GATT Specification Supplement).

Layout of 2A35 and 2A36 (one layout, two meanings), little-endian::

    flags u8 | systolic SFLOAT | diastolic SFLOAT | mean arterial pressure SFLOAT
    | [time stamp 7 octets, flags bit 1] | [pulse rate SFLOAT, bit 2] | [user id u8, bit 3]
    | [measurement status u16, bit 4]

Flags bit 0 is the unit (0 mmHg, 1 kPa). For 2A36 the current cuff pressure rides in the
systolic field.

Our readings of the specification:
- Flags bits 5-7 and measurement-status bits 6-15 are RFU in BLS 1.0 through 1.1.1 and the
  Supplement; they are ignored on decode and never set on encode. The newer blood-pressure
  features (user facing time, epoch-2000 time stamps, E2E-CRC) live in the Enhanced Blood
  Pressure Service's own characteristics (0x2B34 and on), not in new bits here, so a value
  with RFU bits set is an older layout with noise, not a newer layout we misread.
- Feature bits 6-15 are RFU likewise and ignored.
- A time stamp whose year, month or day is 0 ("not known") decodes as `timestamp` None, the
  same as an absent time stamp; re-encoding such a value omits the field.
- Intermediate Cuff Pressure: BLS says diastolic and mean arterial pressure are NaN; some
  cuffs send 0. We decode what the cuff sent and correct nothing: 2A36 is live cuff pressure
  and never becomes a reading (LESSONS.md L5.4).
- `user_id` 255 is "unknown user"; it stays the integer 255.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, Self

from device_drivers.codec import ByteReader, ByteWriter, register
from device_drivers.ieee11073 import Measure, Special

__all__ = [
    "BloodPressureFeature",
    "BloodPressureMeasurement",
    "IntermediateCuffPressure",
    "MeasurementStatus",
    "PressureUnit",
    "PulseRateRange",
]


class PressureUnit(enum.StrEnum):
    MMHG = "mmHg"
    KPA = "kPa"


class PulseRateRange(enum.StrEnum):
    """Measurement status bits 3-4: the pulse rate against the device's limits."""

    WITHIN = "within"  # 0
    ABOVE = "above"  # 1: exceeds upper limit
    BELOW = "below"  # 2: less than lower limit
    RESERVED = "reserved"  # 3: RFU, kept so the bits round-trip


_RANGE_CODES: Final = (
    PulseRateRange.WITHIN,
    PulseRateRange.ABOVE,
    PulseRateRange.BELOW,
    PulseRateRange.RESERVED,
)


class _Flags(enum.IntFlag):
    KPA = 0x01
    TIME_STAMP = 0x02
    PULSE_RATE = 0x04
    USER_ID = 0x08
    MEASUREMENT_STATUS = 0x10


_KPA, _TIME_STAMP, _PULSE_RATE, _USER_ID, _MEASUREMENT_STATUS = (int(f) for f in _Flags)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasurementStatus:
    """The optional Measurement Status field (u16). Bit 0 body movement, 1 cuff too loose,
    2 irregular pulse, 3-4 pulse rate range, 5 improper measurement position."""

    body_movement: bool = False
    cuff_too_loose: bool = False
    irregular_pulse: bool = False
    pulse_rate_range: PulseRateRange = PulseRateRange.WITHIN
    improper_position: bool = False

    @classmethod
    def from_int(cls, raw: int) -> Self:
        return cls(
            body_movement=bool(raw & 0x01),
            cuff_too_loose=bool(raw & 0x02),
            irregular_pulse=bool(raw & 0x04),
            pulse_rate_range=_RANGE_CODES[(raw >> 3) & 0x03],
            improper_position=bool(raw & 0x20),
        )

    def __int__(self) -> int:
        return (
            int(self.body_movement)
            | int(self.cuff_too_loose) << 1
            | int(self.irregular_pulse) << 2
            | _RANGE_CODES.index(self.pulse_rate_range) << 3
            | int(self.improper_position) << 5
        )


_Fields = tuple[
    PressureUnit,
    Measure,
    Measure,
    Measure,
    datetime | None,
    Measure | None,
    int | None,
    MeasurementStatus | None,
]


def _read(uuid: int, data: bytes) -> _Fields:
    r = ByteReader(uuid, data)
    flags = r.u8("flags")  # bits 5-7 RFU, ignored; tested as plain ints (IntFlag ops are slow)
    unit = PressureUnit.KPA if flags & _KPA else PressureUnit.MMHG
    systolic = r.sfloat("systolic")
    diastolic = r.sfloat("diastolic")
    mean = r.sfloat("mean_arterial_pressure")
    timestamp = r.date_time("timestamp") if flags & _TIME_STAMP else None
    pulse_rate = r.sfloat("pulse_rate") if flags & _PULSE_RATE else None
    user_id = r.u8("user_id") if flags & _USER_ID else None
    status = (
        MeasurementStatus.from_int(r.u16("measurement_status"))
        if flags & _MEASUREMENT_STATUS
        else None
    )
    return unit, systolic, diastolic, mean, timestamp, pulse_rate, user_id, status


def _needed(flags: int) -> int:
    """Octets a value with these flags must have: three SFLOATs and what the flags add."""
    size = 7
    if flags & _TIME_STAMP:
        size += 7
    if flags & _PULSE_RATE:
        size += 2
    if flags & _USER_ID:
        size += 1
    if flags & _MEASUREMENT_STATUS:
        size += 2
    return size


_NEEDED: Final = tuple(_needed(flags) for flags in range(256))


def peek_timestamp(data: bytes) -> tuple[bool, datetime | None]:
    """`(True, time stamp or None)` when a Blood Pressure Measurement value certainly decodes,
    read from its flags, length and Date Time alone; `(False, None)` when only a full decode can
    tell (an unknown or impossible date, too few octets). For the store's capture path, which
    needs the time stamp of every reading but none of its values."""
    if not data or len(data) < _NEEDED[data[0]]:
        return False, None
    if not data[0] & _TIME_STAMP:
        return True, None
    year = data[7] | data[8] << 8
    month, day, hour, minute, second = data[9:14]
    if not (1582 <= year <= 9999 and month and day):
        return False, None
    try:
        return True, datetime(year, month, day, hour, minute, second)  # noqa: DTZ001 - local
    except ValueError:
        return False, None


def peek_time_stamp_octets(data: bytes) -> bytes | None:
    """The seven Date Time octets of a Blood Pressure Measurement value whose flags announce a
    time stamp and whose length fits its flags; None otherwise. The date in them is not
    checked (`peek_timestamp` is the checked form): for the store's capture path, which builds
    the stamp's text and seconds from these integers without a datetime."""
    if data and data[0] & _TIME_STAMP and len(data) >= _NEEDED[data[0]]:
        return data[7:14]
    return None


def _write(fields: _Fields) -> bytes:
    unit, systolic, diastolic, mean, timestamp, pulse_rate, user_id, status = fields
    flags = _Flags(0)
    if PressureUnit(unit) is PressureUnit.KPA:
        flags |= _Flags.KPA
    if timestamp is not None:
        flags |= _Flags.TIME_STAMP
    if pulse_rate is not None:
        flags |= _Flags.PULSE_RATE
    if user_id is not None:
        flags |= _Flags.USER_ID
    if status is not None:
        flags |= _Flags.MEASUREMENT_STATUS
    w = ByteWriter()
    w.u8(int(flags), "flags")
    w.sfloat(systolic)
    w.sfloat(diastolic)
    w.sfloat(mean)
    if timestamp is not None:
        w.date_time(timestamp)
    if pulse_rate is not None:
        w.sfloat(pulse_rate)
    if user_id is not None:
        w.u8(user_id, "user_id")
    if status is not None:
        w.u16(int(status), "measurement_status")
    return bytes(w)


@register(0x2A35)
@dataclass(frozen=True, slots=True, kw_only=True)
class BloodPressureMeasurement:
    """A finished blood pressure measurement (indicated; a reading)."""

    UUID: ClassVar[int]
    unit: PressureUnit = PressureUnit.MMHG
    systolic: Measure
    diastolic: Measure
    mean_arterial_pressure: Measure
    timestamp: datetime | None = None
    pulse_rate: Measure | None = None
    user_id: int | None = None
    measurement_status: MeasurementStatus | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(**_read_fields(0x2A35, data))

    def __bytes__(self) -> bytes:
        return _write_fields(self)


@register(0x2A36)
@dataclass(frozen=True, slots=True, kw_only=True)
class IntermediateCuffPressure:
    """Live cuff pressure during a measurement (notified; never a reading). The pressure is
    `systolic`; diastolic and mean arterial pressure default to NaN as BLS asks."""

    UUID: ClassVar[int]
    unit: PressureUnit = PressureUnit.MMHG
    systolic: Measure
    diastolic: Measure = Special.NAN
    mean_arterial_pressure: Measure = Special.NAN
    timestamp: datetime | None = None
    pulse_rate: Measure | None = None
    user_id: int | None = None
    measurement_status: MeasurementStatus | None = None

    @property
    def cuff_pressure(self) -> Measure:
        return self.systolic

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(**_read_fields(0x2A36, data))

    def __bytes__(self) -> bytes:
        return _write_fields(self)


@register(0x2A49)
@dataclass(frozen=True, slots=True, kw_only=True)
class BloodPressureFeature:
    """Blood Pressure Feature (u16): which measurement-status bits the monitor can report.
    Bits 0-5 as below; bits 6-15 RFU, ignored."""

    UUID: ClassVar[int]
    body_movement_detection_support: bool = False
    cuff_fit_detection_support: bool = False
    irregular_pulse_detection_support: bool = False
    pulse_rate_range_detection_support: bool = False
    measurement_position_detection_support: bool = False
    multiple_bond_support: bool = False

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        raw = ByteReader(0x2A49, data).u16("blood_pressure_feature")
        return cls(
            body_movement_detection_support=bool(raw & 0x01),
            cuff_fit_detection_support=bool(raw & 0x02),
            irregular_pulse_detection_support=bool(raw & 0x04),
            pulse_rate_range_detection_support=bool(raw & 0x08),
            measurement_position_detection_support=bool(raw & 0x10),
            multiple_bond_support=bool(raw & 0x20),
        )

    def __bytes__(self) -> bytes:
        raw = (
            int(self.body_movement_detection_support)
            | int(self.cuff_fit_detection_support) << 1
            | int(self.irregular_pulse_detection_support) << 2
            | int(self.pulse_rate_range_detection_support) << 3
            | int(self.measurement_position_detection_support) << 4
            | int(self.multiple_bond_support) << 5
        )
        w = ByteWriter()
        w.u16(raw, "blood_pressure_feature")
        return bytes(w)


_FIELDS = (
    "unit",
    "systolic",
    "diastolic",
    "mean_arterial_pressure",
    "timestamp",
    "pulse_rate",
    "user_id",
    "measurement_status",
)


def _read_fields(uuid: int, data: bytes) -> dict[str, Any]:
    """2A35 and 2A36 share one layout: the decoded fields by name."""
    return dict(zip(_FIELDS, _read(uuid, data), strict=True))


def _write_fields(value: BloodPressureMeasurement | IntermediateCuffPressure) -> bytes:
    return _write(tuple(getattr(value, name) for name in _FIELDS))
