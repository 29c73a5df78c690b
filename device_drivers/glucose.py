"""Glucose Service 0x1808: Glucose Measurement 0x2A18, Glucose Measurement Context 0x2A34 and
Glucose Feature 0x2A51 (the Record Access Control Point 0x2A52 is in `racp.py`).

Layouts are GLS 1.0 section 3 and the GATT Specification Supplement's entries for the three
characteristics. Our readings of the points where published parsers disagree:

- **Time Offset** is an sint16 count of minutes added to Base Time ("user facing time" =
  base time + offset). 0xFFFF is -1 minute, never 65535.
- **Concentration** is an SFLOAT in kg/L or mol/L as the units flag says; it stays in that
  unit here (mg/dL = kg/L x 100 000, mmol/L = mol/L x 1 000 is the FHIR mapping's job).
  The units flag qualifies the concentration field only: with no concentration it is ignored.
- **Nibbles.** GATT structures list the parts of an octet least significant first. Type is
  bits 0-3 and Sample Location bits 4-7 of "Type-Sample Location" (every implementation we
  read agrees). "Tester-Health" is listed the same way, Tester then Health, so Tester is
  bits 0-3 and Health bits 4-7. Some published parsers (Wireshark's dissector, one vendor
  stack) put Tester in the high nibble; we follow the field order of the specification.
- **Coded fields** (type, sample location, carbohydrate id, meal, tester, health, medication
  id) keep the codes the specification reserves: a later revision may define them, and the
  raw record is what we keep. They are `IntEnum`s whose unknown values become pseudo-members
  named ``RESERVED_<n>``; their JSON is the integer.
- **Sensor Status Annunciation** keeps all 16 bits as sent, reserved bits 12-15 included:
  an annunciation a later revision defines is still a statement about this measurement.
- **Exercise Duration** 65535 means "overrun" (GLS); it is kept as the number 65535.
- Reserved flag bits are ignored (codec.py); a value shorter than its flags demand is
  `MalformedValue`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import ClassVar, Self

from device_drivers.codec import ByteReader, ByteWriter, register
from device_drivers.errors import UnencodableValue
from device_drivers.ieee11073 import Measure

__all__ = [
    "CarbohydrateId",
    "ConcentrationUnit",
    "GlucoseFeature",
    "GlucoseMeasurement",
    "GlucoseMeasurementContext",
    "GlucoseType",
    "Health",
    "Meal",
    "MedicationId",
    "MedicationUnit",
    "OpenCode",
    "SampleLocation",
    "SensorStatus",
    "Tester",
]


class OpenCode(enum.IntEnum):
    """Base of the coded fields: a value the specification reserves decodes to a pseudo-member
    ``RESERVED_<n>`` instead of failing, so a device speaking a later revision still decodes.
    Subclasses say their width with `_code_bits`."""

    @staticmethod
    def _code_bits() -> int:
        return 8

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        if not 0 <= value < (1 << cls._code_bits()):
            return None
        member = int.__new__(cls, value)
        member._name_ = f"RESERVED_{value}"
        member._value_ = value
        # One pseudo-member per value, so identity and equality agree.
        return cls._value2member_map_.setdefault(value, member)  # type: ignore[return-value]


class _Nibble(OpenCode):
    @staticmethod
    def _code_bits() -> int:
        return 4


class GlucoseType(_Nibble):
    """Type nibble of Type-Sample Location (0 and 11-15 reserved)."""

    CAPILLARY_WHOLE_BLOOD = 1
    CAPILLARY_PLASMA = 2
    VENOUS_WHOLE_BLOOD = 3
    VENOUS_PLASMA = 4
    ARTERIAL_WHOLE_BLOOD = 5
    ARTERIAL_PLASMA = 6
    UNDETERMINED_WHOLE_BLOOD = 7
    UNDETERMINED_PLASMA = 8
    INTERSTITIAL_FLUID = 9
    CONTROL_SOLUTION = 10


class SampleLocation(_Nibble):
    """Sample Location nibble (0 and 5-14 reserved)."""

    FINGER = 1
    ALTERNATE_SITE_TEST = 2
    EARLOBE = 3
    CONTROL_SOLUTION = 4
    NOT_AVAILABLE = 15


class SensorStatus(enum.IntFlag):
    """Sensor Status Annunciation bits (12-15 reserved, kept as sent)."""

    DEVICE_BATTERY_LOW = 1 << 0
    SENSOR_MALFUNCTION = 1 << 1
    SAMPLE_SIZE_INSUFFICIENT = 1 << 2
    STRIP_INSERTION_ERROR = 1 << 3
    STRIP_TYPE_INCORRECT = 1 << 4
    RESULT_TOO_HIGH = 1 << 5
    RESULT_TOO_LOW = 1 << 6
    TEMPERATURE_TOO_HIGH = 1 << 7
    TEMPERATURE_TOO_LOW = 1 << 8
    READ_INTERRUPTED = 1 << 9
    GENERAL_DEVICE_FAULT = 1 << 10
    TIME_FAULT = 1 << 11


class ConcentrationUnit(enum.StrEnum):
    KG_PER_L = "kg/L"
    MOL_PER_L = "mol/L"


class CarbohydrateId(OpenCode):
    BREAKFAST = 1
    LUNCH = 2
    DINNER = 3
    SNACK = 4
    DRINK = 5
    SUPPER = 6
    BRUNCH = 7


class Meal(OpenCode):
    PREPRANDIAL = 1
    POSTPRANDIAL = 2
    FASTING = 3
    CASUAL = 4
    BEDTIME = 5


class Tester(_Nibble):
    SELF = 1
    HEALTH_CARE_PROFESSIONAL = 2
    LAB_TEST = 3
    NOT_AVAILABLE = 15


class Health(_Nibble):
    MINOR_HEALTH_ISSUES = 1
    MAJOR_HEALTH_ISSUES = 2
    DURING_MENSES = 3
    UNDER_STRESS = 4
    NO_HEALTH_ISSUES = 5
    NOT_AVAILABLE = 15


class MedicationId(OpenCode):
    RAPID_ACTING_INSULIN = 1
    SHORT_ACTING_INSULIN = 2
    INTERMEDIATE_ACTING_INSULIN = 3
    LONG_ACTING_INSULIN = 4
    PRE_MIXED_INSULIN = 5


class MedicationUnit(enum.StrEnum):
    KG = "kg"
    L = "L"


def _together(what: str, *parts: object) -> bool:
    """True when every part is present, False when none is; a field group sent under one flag
    cannot be half present."""
    present = [p is not None for p in parts]
    if all(present):
        return True
    if any(present):
        raise UnencodableValue(f"{what}: these fields are sent together, all or none")
    return False


@register(0x2A18)
@dataclass(frozen=True, slots=True)
class GlucoseMeasurement:
    """One stored glucose record. `base_time` is None when the meter sends an unknown date;
    `time_offset` is signed minutes; the concentration group (concentration, its unit, type,
    sample location) is all present or all absent."""

    class Flags(enum.IntFlag):
        TIME_OFFSET_PRESENT = 0x01
        CONCENTRATION_TYPE_LOCATION_PRESENT = 0x02
        CONCENTRATION_MOL_PER_L = 0x04
        SENSOR_STATUS_PRESENT = 0x08
        CONTEXT_FOLLOWS = 0x10

    UUID: ClassVar[int]
    sequence_number: int
    base_time: datetime | None
    time_offset: int | None = None
    concentration: Measure | None = None
    concentration_unit: ConcentrationUnit | None = None
    type: GlucoseType | None = None
    sample_location: SampleLocation | None = None
    sensor_status: SensorStatus | None = None
    context_follows: bool = False

    @property
    def user_facing_time(self) -> datetime | None:
        """Base time plus the time offset: the time the meter shows its user."""
        if self.base_time is None:
            return None
        return self.base_time + timedelta(minutes=self.time_offset or 0)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = ByteReader(0x2A18, data)
        flags = cls.Flags(r.u8("flags") & 0x1F)
        sequence_number = r.u16("sequence_number")
        base_time = r.date_time("base_time")
        time_offset = r.s16("time_offset") if flags & cls.Flags.TIME_OFFSET_PRESENT else None
        concentration = unit = kind = location = None
        if flags & cls.Flags.CONCENTRATION_TYPE_LOCATION_PRESENT:
            concentration = r.sfloat("concentration")
            type_location = r.u8("type_sample_location")
            kind = GlucoseType(type_location & 0x0F)
            location = SampleLocation(type_location >> 4)
            unit = (
                ConcentrationUnit.MOL_PER_L
                if flags & cls.Flags.CONCENTRATION_MOL_PER_L
                else ConcentrationUnit.KG_PER_L
            )
        status = None
        if flags & cls.Flags.SENSOR_STATUS_PRESENT:
            status = SensorStatus(r.u16("sensor_status"))
        return cls(
            sequence_number,
            base_time,
            time_offset,
            concentration,
            unit,
            kind,
            location,
            status,
            bool(flags & cls.Flags.CONTEXT_FOLLOWS),
        )

    def __bytes__(self) -> bytes:
        flags = self.Flags(0)
        if self.time_offset is not None:
            flags |= self.Flags.TIME_OFFSET_PRESENT
        has_concentration = _together(
            "concentration, concentration_unit, type, sample_location",
            self.concentration,
            self.concentration_unit,
            self.type,
            self.sample_location,
        )
        if has_concentration:
            flags |= self.Flags.CONCENTRATION_TYPE_LOCATION_PRESENT
            if self.concentration_unit == ConcentrationUnit.MOL_PER_L:
                flags |= self.Flags.CONCENTRATION_MOL_PER_L
        if self.sensor_status is not None:
            flags |= self.Flags.SENSOR_STATUS_PRESENT
        if self.context_follows:
            flags |= self.Flags.CONTEXT_FOLLOWS
        w = ByteWriter()
        w.u8(int(flags), "flags")
        w.u16(self.sequence_number, "sequence_number")
        w.date_time(self.base_time)
        if self.time_offset is not None:
            w.s16(self.time_offset, "time_offset")
        if has_concentration:
            assert self.concentration is not None  # _together checked the group
            w.sfloat(self.concentration)
            _nibbles(w, self.type, self.sample_location, "type", "sample_location")
        if self.sensor_status is not None:
            w.u16(int(self.sensor_status), "sensor_status")
        return bytes(w)


def _nibbles(
    w: ByteWriter, low: int | None, high: int | None, low_name: str, high_name: str
) -> None:
    """One octet of two 4-bit codes, the first-listed one in bits 0-3."""
    assert low is not None
    assert high is not None
    lo, hi = int(low), int(high)
    for name, value in ((low_name, lo), (high_name, hi)):
        if not 0 <= value <= 15:
            raise UnencodableValue(f"{name}={value} does not fit a 4-bit field")
    w.u8(lo | hi << 4, f"{low_name}_{high_name}")


@register(0x2A34)
@dataclass(frozen=True, slots=True)
class GlucoseMeasurementContext:
    """Context of the Glucose Measurement with the same `sequence_number`. Carbohydrate id and
    amount, tester and health, exercise duration and intensity, and medication id, amount and
    unit are each sent together or not at all. `extended_flags` (all bits reserved in GLS 1.0)
    is kept when the meter sends it."""

    class Flags(enum.IntFlag):
        CARBOHYDRATE_PRESENT = 0x01
        MEAL_PRESENT = 0x02
        TESTER_HEALTH_PRESENT = 0x04
        EXERCISE_PRESENT = 0x08
        MEDICATION_PRESENT = 0x10
        MEDICATION_LITRES = 0x20
        HBA1C_PRESENT = 0x40
        EXTENDED_FLAGS_PRESENT = 0x80

    UUID: ClassVar[int]
    sequence_number: int
    carbohydrate_id: CarbohydrateId | None = None
    carbohydrate_kg: Measure | None = None
    meal: Meal | None = None
    tester: Tester | None = None
    health: Health | None = None
    exercise_duration_s: int | None = None
    exercise_intensity_pct: int | None = None
    medication_id: MedicationId | None = None
    medication: Measure | None = None
    medication_unit: MedicationUnit | None = None
    hba1c_pct: Measure | None = None
    extended_flags: int | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        f = cls.Flags
        r = ByteReader(0x2A34, data)
        flags = f(r.u8("flags"))
        sequence_number = r.u16("sequence_number")
        extended = r.u8("extended_flags") if flags & f.EXTENDED_FLAGS_PRESENT else None
        carbohydrate_id = carbohydrate = None
        if flags & f.CARBOHYDRATE_PRESENT:
            carbohydrate_id = CarbohydrateId(r.u8("carbohydrate_id"))
            carbohydrate = r.sfloat("carbohydrate_kg")
        meal = Meal(r.u8("meal")) if flags & f.MEAL_PRESENT else None
        tester = health = None
        if flags & f.TESTER_HEALTH_PRESENT:
            tester_health = r.u8("tester_health")
            tester, health = Tester(tester_health & 0x0F), Health(tester_health >> 4)
        duration = intensity = None
        if flags & f.EXERCISE_PRESENT:
            duration = r.u16("exercise_duration_s")
            intensity = r.u8("exercise_intensity_pct")
        medication_id = medication = medication_unit = None
        if flags & f.MEDICATION_PRESENT:
            medication_id = MedicationId(r.u8("medication_id"))
            medication = r.sfloat("medication")
            medication_unit = MedicationUnit.L if flags & f.MEDICATION_LITRES else MedicationUnit.KG
        hba1c = r.sfloat("hba1c_pct") if flags & f.HBA1C_PRESENT else None
        return cls(
            sequence_number,
            carbohydrate_id,
            carbohydrate,
            meal,
            tester,
            health,
            duration,
            intensity,
            medication_id,
            medication,
            medication_unit,
            hba1c,
            extended,
        )

    def __bytes__(self) -> bytes:
        f = self.Flags
        flags = f(0)
        has_carbohydrate = _together(
            "carbohydrate_id, carbohydrate_kg", self.carbohydrate_id, self.carbohydrate_kg
        )
        has_tester = _together("tester, health", self.tester, self.health)
        has_exercise = _together(
            "exercise_duration_s, exercise_intensity_pct",
            self.exercise_duration_s,
            self.exercise_intensity_pct,
        )
        has_medication = _together(
            "medication_id, medication, medication_unit",
            self.medication_id,
            self.medication,
            self.medication_unit,
        )
        for present, bit in (
            (has_carbohydrate, f.CARBOHYDRATE_PRESENT),
            (self.meal is not None, f.MEAL_PRESENT),
            (has_tester, f.TESTER_HEALTH_PRESENT),
            (has_exercise, f.EXERCISE_PRESENT),
            (has_medication, f.MEDICATION_PRESENT),
            (self.hba1c_pct is not None, f.HBA1C_PRESENT),
            (self.extended_flags is not None, f.EXTENDED_FLAGS_PRESENT),
        ):
            if present:
                flags |= bit
        if has_medication and self.medication_unit == MedicationUnit.L:
            flags |= f.MEDICATION_LITRES
        w = ByteWriter()
        w.u8(int(flags), "flags")
        w.u16(self.sequence_number, "sequence_number")
        if self.extended_flags is not None:
            w.u8(self.extended_flags, "extended_flags")
        if has_carbohydrate:
            assert self.carbohydrate_id is not None
            assert self.carbohydrate_kg is not None
            w.u8(self.carbohydrate_id, "carbohydrate_id")
            w.sfloat(self.carbohydrate_kg)
        if self.meal is not None:
            w.u8(self.meal, "meal")
        if has_tester:
            _nibbles(w, self.tester, self.health, "tester", "health")
        if has_exercise:
            assert self.exercise_duration_s is not None
            assert self.exercise_intensity_pct is not None
            w.u16(self.exercise_duration_s, "exercise_duration_s")
            w.u8(self.exercise_intensity_pct, "exercise_intensity_pct")
        if has_medication:
            assert self.medication_id is not None
            assert self.medication is not None
            w.u8(self.medication_id, "medication_id")
            w.sfloat(self.medication)
        if self.hba1c_pct is not None:
            w.sfloat(self.hba1c_pct)
        return bytes(w)


@register(0x2A51)
@dataclass(frozen=True, slots=True)
class GlucoseFeature:
    """What the meter can detect (uint16; bits 11-15 reserved and ignored). Field order is bit
    order: field i is bit i."""

    UUID: ClassVar[int]
    low_battery_detection_during_measurement_supported: bool = False
    sensor_malfunction_detection_supported: bool = False
    sensor_sample_size_supported: bool = False
    sensor_strip_insertion_error_detection_supported: bool = False
    sensor_strip_type_error_detection_supported: bool = False
    sensor_result_high_low_detection_supported: bool = False
    sensor_temperature_high_low_detection_supported: bool = False
    sensor_read_interrupt_detection_supported: bool = False
    general_device_fault_supported: bool = False
    time_fault_supported: bool = False
    multiple_bond_supported: bool = False

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        bits = ByteReader(0x2A51, data).u16("glucose_feature")
        return cls(*(bool(bits >> i & 1) for i in range(len(fields(cls)))))

    def __bytes__(self) -> bytes:
        bits = 0
        for i, field in enumerate(fields(self)):
            if getattr(self, field.name):
                bits |= 1 << i
        w = ByteWriter()
        w.u16(bits, "glucose_feature")
        return bytes(w)
