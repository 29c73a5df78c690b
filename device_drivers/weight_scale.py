"""Weight Scale Service 0x181D: Weight Measurement 0x2A9D and Weight Scale Feature 0x2A9E
(WSS 1.0, GATT Specification Supplement). The mass and length resolutions and the feature's
resolution codes are shared with Body Composition (body_composition.py).

Layout of 2A9D, little-endian::

    flags u8 | weight u16 | [time stamp 7 octets, bit 1] | [user id u8, bit 2]
    | [BMI u16 then height u16, bit 3]

Our readings of the specification:
- The field resolutions are fixed by the unit flag (bit 0): weight 0.005 kg or 0.01 lb,
  height 0.001 m or 0.1 in, BMI 0.1 kg/m². Values decode to exact decimals
  (raw 14500 -> ``Decimal('72.500')``). The Weight Scale Feature's resolution codes state the
  *precision* of the scale, not the encoding: `WeightScaleFeature.weight_precision` answers
  it, and the FHIR mapping rounds with it; the decoder never does.
- Weight raw 0xFFFF is "measurement unsuccessful", not 327.675 kg: it decodes to
  `Special.NAN` (JSON "NaN"), the type every other "no number" takes here. The other fields
  are decoded as the flags announce.
- `user_id` 255 is "unknown user" and stays the integer 255.
- Flags bits 4-7 and feature bits 10-31 are RFU: ignored. Resolution codes outside the
  tables (weight 8-15, height 4-7) are kept as ``RESERVED_n`` members so they round-trip,
  with no precision.
- A time stamp with year, month or day 0 reads as `timestamp` None (as for blood pressure).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Final, Self

from device_drivers.codec import ByteReader, ByteWriter, register, scaled, unscaled
from device_drivers.errors import UnencodableValue
from device_drivers.ieee11073 import Measure, Special

__all__ = [
    "HEIGHT_RESOLUTION",
    "MASS_RESOLUTION",
    "MEASUREMENT_UNSUCCESSFUL",
    "HeightResolution",
    "WeightMeasurement",
    "WeightResolution",
    "WeightScaleFeature",
    "WeightUnit",
]


class WeightUnit(enum.StrEnum):
    SI = "SI"  # kg and m
    IMPERIAL = "imperial"  # lb and in


MASS_RESOLUTION: Final = {WeightUnit.SI: "0.005", WeightUnit.IMPERIAL: "0.01"}
HEIGHT_RESOLUTION: Final = {WeightUnit.SI: "0.001", WeightUnit.IMPERIAL: "0.1"}
BMI_RESOLUTION: Final = "0.1"
MEASUREMENT_UNSUCCESSFUL: Final = 0xFFFF


class _KeepsUnknownCodes(enum.IntEnum):
    """An IntEnum that turns a code outside its table into a ``RESERVED_n`` pseudo-member
    instead of failing, so a feature value from a newer device still decodes and round-trips."""

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFF:
            member = int.__new__(cls, value)
            member._name_ = f"RESERVED_{value}"
            member._value_ = value
            return member
        return None


class WeightResolution(_KeepsUnknownCodes):
    """Weight (mass) measurement resolution code (WSS feature bits 3-6, BCS bits 11-14)."""

    NOT_SPECIFIED = 0
    KG_0_5_LB_1 = 1
    KG_0_2_LB_0_5 = 2
    KG_0_1_LB_0_2 = 3
    KG_0_05_LB_0_1 = 4
    KG_0_02_LB_0_05 = 5
    KG_0_01_LB_0_02 = 6
    KG_0_005_LB_0_01 = 7

    def precision(self, unit: WeightUnit) -> Decimal | None:
        """The step the scale reports in, in kg or lb; None when not specified or reserved."""
        steps = _MASS_PRECISION.get(int(self))
        return None if steps is None else Decimal(steps[unit is WeightUnit.IMPERIAL])


class HeightResolution(_KeepsUnknownCodes):
    """Height measurement resolution code (WSS feature bits 7-9, BCS bits 15-17)."""

    NOT_SPECIFIED = 0
    M_0_01_IN_1 = 1
    M_0_005_IN_0_5 = 2
    M_0_001_IN_0_1 = 3

    def precision(self, unit: WeightUnit) -> Decimal | None:
        """The step the device reports height in, in m or in; None when not specified."""
        steps = _HEIGHT_PRECISION.get(int(self))
        return None if steps is None else Decimal(steps[unit is WeightUnit.IMPERIAL])


_MASS_PRECISION: Final = {
    1: ("0.5", "1"),
    2: ("0.2", "0.5"),
    3: ("0.1", "0.2"),
    4: ("0.05", "0.1"),
    5: ("0.02", "0.05"),
    6: ("0.01", "0.02"),
    7: ("0.005", "0.01"),
}
_HEIGHT_PRECISION: Final = {1: ("0.01", "1"), 2: ("0.005", "0.5"), 3: ("0.001", "0.1")}


def read_steps(r: ByteReader, resolution: str, what: str) -> Decimal:
    """A u16 field of fixed resolution as an exact decimal."""
    return scaled(r.u16(what), resolution)


def write_steps(w: ByteWriter, value: Decimal, resolution: str, what: str) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise UnencodableValue(f"{what}={value!r} is not a finite decimal")
    w.u16(unscaled(value, resolution, what), what)


def read_steps_or_unsuccessful(r: ByteReader, resolution: str, what: str) -> Measure:
    """A u16 field of fixed resolution where 0xFFFF says "measurement unsuccessful" (NaN)."""
    raw = r.u16(what)
    return Special.NAN if raw == MEASUREMENT_UNSUCCESSFUL else scaled(raw, resolution)


def write_steps_or_unsuccessful(w: ByteWriter, value: Measure, resolution: str, what: str) -> None:
    if value is Special.NAN:
        w.u16(MEASUREMENT_UNSUCCESSFUL, what)
        return
    if isinstance(value, Special):
        raise UnencodableValue(f"{what} can be a number or NaN (unsuccessful), not {value.value}")
    if not value.is_finite():
        raise UnencodableValue(f"{what}={value} is not a finite decimal")
    raw = unscaled(value, resolution, what)
    if raw == MEASUREMENT_UNSUCCESSFUL:
        raise UnencodableValue(f"{what}={value} is the 'measurement unsuccessful' code")
    w.u16(raw, what)


class _Flags(enum.IntFlag):
    IMPERIAL = 0x01
    TIME_STAMP = 0x02
    USER_ID = 0x04
    BMI_AND_HEIGHT = 0x08


@register(0x2A9D)
@dataclass(frozen=True, slots=True, kw_only=True)
class WeightMeasurement:
    """A weight measurement (indicated; a reading). `bmi` and `height` are both present or
    both absent (one flag carries the pair)."""

    UUID: ClassVar[int]
    unit: WeightUnit = WeightUnit.SI
    weight: Measure
    timestamp: datetime | None = None
    user_id: int | None = None
    bmi: Decimal | None = None
    height: Decimal | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = ByteReader(0x2A9D, data)
        flags = _Flags(r.u8("flags") & 0x0F)
        unit = WeightUnit.IMPERIAL if flags & _Flags.IMPERIAL else WeightUnit.SI
        weight = read_steps_or_unsuccessful(r, MASS_RESOLUTION[unit], "weight")
        timestamp = r.date_time("timestamp") if flags & _Flags.TIME_STAMP else None
        user_id = r.u8("user_id") if flags & _Flags.USER_ID else None
        bmi = height = None
        if flags & _Flags.BMI_AND_HEIGHT:
            bmi = read_steps(r, BMI_RESOLUTION, "bmi")
            height = read_steps(r, HEIGHT_RESOLUTION[unit], "height")
        return cls(
            unit=unit, weight=weight, timestamp=timestamp, user_id=user_id, bmi=bmi, height=height
        )

    def __bytes__(self) -> bytes:
        if (self.bmi is None) != (self.height is None):
            raise UnencodableValue("bmi and height are sent together: give both or neither")
        unit = WeightUnit(self.unit)
        flags = _Flags(0)
        if unit is WeightUnit.IMPERIAL:
            flags |= _Flags.IMPERIAL
        if self.timestamp is not None:
            flags |= _Flags.TIME_STAMP
        if self.user_id is not None:
            flags |= _Flags.USER_ID
        if self.bmi is not None:
            flags |= _Flags.BMI_AND_HEIGHT
        w = ByteWriter()
        w.u8(int(flags), "flags")
        write_steps_or_unsuccessful(w, self.weight, MASS_RESOLUTION[unit], "weight")
        if self.timestamp is not None:
            w.date_time(self.timestamp)
        if self.user_id is not None:
            w.u8(self.user_id, "user_id")
        if self.bmi is not None and self.height is not None:
            write_steps(w, self.bmi, BMI_RESOLUTION, "bmi")
            write_steps(w, self.height, HEIGHT_RESOLUTION[unit], "height")
        return bytes(w)

    @property
    def successful(self) -> bool:
        """False when the scale reported "measurement unsuccessful" (weight 0xFFFF)."""
        return self.weight is not Special.NAN


@register(0x2A9E)
@dataclass(frozen=True, slots=True, kw_only=True)
class WeightScaleFeature:
    """Weight Scale Feature (u32): bit 0 time stamp, 1 multiple users, 2 BMI supported,
    bits 3-6 weight resolution, bits 7-9 height resolution, 10-31 RFU."""

    UUID: ClassVar[int]
    time_stamp_supported: bool = False
    multiple_users_supported: bool = False
    bmi_supported: bool = False
    weight_measurement_resolution: WeightResolution = WeightResolution.NOT_SPECIFIED
    height_measurement_resolution: HeightResolution = HeightResolution.NOT_SPECIFIED

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        raw = ByteReader(0x2A9E, data).u32("weight_scale_feature")
        return cls(
            time_stamp_supported=bool(raw & 0x01),
            multiple_users_supported=bool(raw & 0x02),
            bmi_supported=bool(raw & 0x04),
            weight_measurement_resolution=WeightResolution((raw >> 3) & 0x0F),
            height_measurement_resolution=HeightResolution((raw >> 7) & 0x07),
        )

    def __bytes__(self) -> bytes:
        weight_code = int(self.weight_measurement_resolution)
        height_code = int(self.height_measurement_resolution)
        if not 0 <= weight_code <= 0x0F or not 0 <= height_code <= 0x07:
            raise UnencodableValue("resolution code does not fit its bits")
        raw = (
            int(self.time_stamp_supported)
            | int(self.multiple_users_supported) << 1
            | int(self.bmi_supported) << 2
            | weight_code << 3
            | height_code << 7
        )
        w = ByteWriter()
        w.u32(raw, "weight_scale_feature")
        return bytes(w)

    def weight_precision(self, unit: WeightUnit) -> Decimal | None:
        """The scale's stated weight precision in `unit` (kg or lb); None when unspecified."""
        return WeightResolution(self.weight_measurement_resolution).precision(unit)

    def height_precision(self, unit: WeightUnit) -> Decimal | None:
        """The stated height precision in `unit` (m or in); None when unspecified."""
        return HeightResolution(self.height_measurement_resolution).precision(unit)
