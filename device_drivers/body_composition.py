"""Body Composition Service 0x181B: Body Composition Measurement 0x2A9C and Body Composition
Feature 0x2A9B (BCS 1.0.1, GATT Specification Supplement).

Layout of 2A9C, little-endian, fields in this order, each present when its flag bit is set::

    flags u16 | body fat % u16 (0.1 %) | [time stamp, bit 1] | [user id u8, bit 2]
    | [basal metabolism u16 kJ, bit 3] | [muscle % u16 0.1 %, bit 4]
    | [muscle mass, bit 5] | [fat free mass, bit 6] | [soft lean mass, bit 7]
    | [body water mass, bit 8] | [impedance u16 0.1 Ω, bit 9] | [weight, bit 10]
    | [height, bit 11]

Masses are u16 at 0.005 kg or 0.01 lb, height 0.001 m or 0.1 in (flags bit 0, as in WSS).
Bit 12 "multiple packet measurement" says the record was split over several indications
because it exceeds the ATT MTU; each packet is a complete 2A9C value on its own (flags, body
fat %, and the fields it carries), decoded one by one; joining them is the session's job.

Our readings of the specification (and where published parsers part from it):
- Muscle *percentage* is bit 4 and comes before muscle *mass* (bit 5), in the flags, the
  field order and the feature bits (3 and 4). At least one public Python library swaps them.
- Body fat percentage 0xFFFF is "measurement unsuccessful": it decodes to `Special.NAN`
  (JSON "NaN"). BCS then expects only time stamp and user id; we decode whatever the flags
  announce rather than reject a record for extras.
- Flags bits 13-15 and feature bits 18-31 are RFU: ignored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Final, Self

from device_drivers.codec import ByteReader, ByteWriter, register
from device_drivers.errors import UnencodableValue
from device_drivers.ieee11073 import Measure
from device_drivers.weight_scale import (
    HEIGHT_RESOLUTION,
    MASS_RESOLUTION,
    HeightResolution,
    WeightResolution,
    WeightUnit,
    read_steps,
    read_steps_or_unsuccessful,
    write_steps,
    write_steps_or_unsuccessful,
)

__all__ = ["BodyCompositionFeature", "BodyCompositionMeasurement"]

PERCENT_RESOLUTION: Final = "0.1"
IMPEDANCE_RESOLUTION: Final = "0.1"


class _Flags(enum.IntFlag):
    IMPERIAL = 0x0001
    TIME_STAMP = 0x0002
    USER_ID = 0x0004
    BASAL_METABOLISM = 0x0008
    MUSCLE_PERCENTAGE = 0x0010
    MUSCLE_MASS = 0x0020
    FAT_FREE_MASS = 0x0040
    SOFT_LEAN_MASS = 0x0080
    BODY_WATER_MASS = 0x0100
    IMPEDANCE = 0x0200
    WEIGHT = 0x0400
    HEIGHT = 0x0800
    MULTIPLE_PACKET = 0x1000


@register(0x2A9C)
@dataclass(frozen=True, slots=True, kw_only=True)
class BodyCompositionMeasurement:
    """One body composition record (or one packet of a multi-packet record)."""

    UUID: ClassVar[int]
    unit: WeightUnit = WeightUnit.SI
    body_fat_pct: Measure
    timestamp: datetime | None = None
    user_id: int | None = None
    basal_metabolism_kj: int | None = None
    muscle_pct: Decimal | None = None
    muscle_mass: Decimal | None = None
    fat_free_mass: Decimal | None = None
    soft_lean_mass: Decimal | None = None
    body_water_mass: Decimal | None = None
    impedance_ohm: Decimal | None = None
    weight: Decimal | None = None
    height: Decimal | None = None
    multiple_packet: bool = False

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = ByteReader(0x2A9C, data)
        flags = _Flags(r.u16("flags") & 0x1FFF)
        unit = WeightUnit.IMPERIAL if flags & _Flags.IMPERIAL else WeightUnit.SI
        mass = MASS_RESOLUTION[unit]

        def steps(flag: _Flags, resolution: str, what: str) -> Decimal | None:
            return read_steps(r, resolution, what) if flags & flag else None

        body_fat = read_steps_or_unsuccessful(r, PERCENT_RESOLUTION, "body_fat_pct")
        timestamp = r.date_time("timestamp") if flags & _Flags.TIME_STAMP else None
        user_id = r.u8("user_id") if flags & _Flags.USER_ID else None
        basal = r.u16("basal_metabolism_kj") if flags & _Flags.BASAL_METABOLISM else None
        return cls(
            unit=unit,
            body_fat_pct=body_fat,
            timestamp=timestamp,
            user_id=user_id,
            basal_metabolism_kj=basal,
            muscle_pct=steps(_Flags.MUSCLE_PERCENTAGE, PERCENT_RESOLUTION, "muscle_pct"),
            muscle_mass=steps(_Flags.MUSCLE_MASS, mass, "muscle_mass"),
            fat_free_mass=steps(_Flags.FAT_FREE_MASS, mass, "fat_free_mass"),
            soft_lean_mass=steps(_Flags.SOFT_LEAN_MASS, mass, "soft_lean_mass"),
            body_water_mass=steps(_Flags.BODY_WATER_MASS, mass, "body_water_mass"),
            impedance_ohm=steps(_Flags.IMPEDANCE, IMPEDANCE_RESOLUTION, "impedance_ohm"),
            weight=steps(_Flags.WEIGHT, mass, "weight"),
            height=steps(_Flags.HEIGHT, HEIGHT_RESOLUTION[unit], "height"),
            multiple_packet=bool(flags & _Flags.MULTIPLE_PACKET),
        )

    def __bytes__(self) -> bytes:
        unit = WeightUnit(self.unit)
        mass = MASS_RESOLUTION[unit]
        optional: list[tuple[_Flags, Decimal | None, str, str]] = [
            (_Flags.MUSCLE_PERCENTAGE, self.muscle_pct, PERCENT_RESOLUTION, "muscle_pct"),
            (_Flags.MUSCLE_MASS, self.muscle_mass, mass, "muscle_mass"),
            (_Flags.FAT_FREE_MASS, self.fat_free_mass, mass, "fat_free_mass"),
            (_Flags.SOFT_LEAN_MASS, self.soft_lean_mass, mass, "soft_lean_mass"),
            (_Flags.BODY_WATER_MASS, self.body_water_mass, mass, "body_water_mass"),
            (_Flags.IMPEDANCE, self.impedance_ohm, IMPEDANCE_RESOLUTION, "impedance_ohm"),
            (_Flags.WEIGHT, self.weight, mass, "weight"),
            (_Flags.HEIGHT, self.height, HEIGHT_RESOLUTION[unit], "height"),
        ]
        flags = _Flags(0)
        if unit is WeightUnit.IMPERIAL:
            flags |= _Flags.IMPERIAL
        if self.timestamp is not None:
            flags |= _Flags.TIME_STAMP
        if self.user_id is not None:
            flags |= _Flags.USER_ID
        if self.basal_metabolism_kj is not None:
            flags |= _Flags.BASAL_METABOLISM
        for flag, value, _, _ in optional:
            if value is not None:
                flags |= flag
        if self.multiple_packet:
            flags |= _Flags.MULTIPLE_PACKET
        w = ByteWriter()
        w.u16(int(flags), "flags")
        write_steps_or_unsuccessful(w, self.body_fat_pct, PERCENT_RESOLUTION, "body_fat_pct")
        if self.timestamp is not None:
            w.date_time(self.timestamp)
        if self.user_id is not None:
            w.u8(self.user_id, "user_id")
        if self.basal_metabolism_kj is not None:
            w.u16(self.basal_metabolism_kj, "basal_metabolism_kj")
        for _, value, resolution, what in optional:
            if value is not None:
                write_steps(w, value, resolution, what)
        return bytes(w)


@register(0x2A9B)
@dataclass(frozen=True, slots=True, kw_only=True)
class BodyCompositionFeature:
    """Body Composition Feature (u32): bits 0-10 which optional fields the analyser supports,
    bits 11-14 mass resolution, 15-17 height resolution, 18-31 RFU."""

    UUID: ClassVar[int]
    time_stamp_supported: bool = False
    multiple_users_supported: bool = False
    basal_metabolism_supported: bool = False
    muscle_percentage_supported: bool = False
    muscle_mass_supported: bool = False
    fat_free_mass_supported: bool = False
    soft_lean_mass_supported: bool = False
    body_water_mass_supported: bool = False
    impedance_supported: bool = False
    weight_supported: bool = False
    height_supported: bool = False
    mass_measurement_resolution: WeightResolution = WeightResolution.NOT_SPECIFIED
    height_measurement_resolution: HeightResolution = HeightResolution.NOT_SPECIFIED

    _BITS: ClassVar[tuple[str, ...]] = (
        "time_stamp_supported",
        "multiple_users_supported",
        "basal_metabolism_supported",
        "muscle_percentage_supported",
        "muscle_mass_supported",
        "fat_free_mass_supported",
        "soft_lean_mass_supported",
        "body_water_mass_supported",
        "impedance_supported",
        "weight_supported",
        "height_supported",
    )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        raw = ByteReader(0x2A9B, data).u32("body_composition_feature")
        bits = {name: bool(raw >> i & 1) for i, name in enumerate(cls._BITS)}
        return cls(
            **bits,
            mass_measurement_resolution=WeightResolution((raw >> 11) & 0x0F),
            height_measurement_resolution=HeightResolution((raw >> 15) & 0x07),
        )

    def __bytes__(self) -> bytes:
        mass_code = int(self.mass_measurement_resolution)
        height_code = int(self.height_measurement_resolution)
        if not 0 <= mass_code <= 0x0F or not 0 <= height_code <= 0x07:
            raise UnencodableValue("resolution code does not fit its bits")
        raw = mass_code << 11 | height_code << 15
        for i, name in enumerate(self._BITS):
            raw |= int(bool(getattr(self, name))) << i
        w = ByteWriter()
        w.u32(raw, "body_composition_feature")
        return bytes(w)

    def mass_precision(self, unit: WeightUnit) -> Decimal | None:
        """The analyser's stated mass precision in kg or lb; None when unspecified."""
        return WeightResolution(self.mass_measurement_resolution).precision(unit)

    def height_precision(self, unit: WeightUnit) -> Decimal | None:
        return HeightResolution(self.height_measurement_resolution).precision(unit)
