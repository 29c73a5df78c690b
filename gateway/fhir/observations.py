"""One decoded measurement → the Observation bodies it produces (notes/FHIR.md sections 2-8).

A `Draft` holds what depends on the measurement alone: profile, code, value or components,
dataAbsentReason, and which sibling Observations of the same reading it derives from (by MDC type
code, which is also its part of the dedup identifier). `bundle.py` adds what every Observation
shares: identifier, subject, time, device references.

Decoded values are read by attribute name (the contract's "Decoded JSON" field names), so the
mapping depends on the codecs' field names only, never on their classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Final

from device_drivers.ieee11073 import Special
from device_drivers.weight_scale import HeightResolution, WeightResolution, WeightUnit
from gateway.fhir import codes
from gateway.fhir.codes import Code, Unit
from gateway.fhir.elements import (
    coded_text,
    concept_text,
    field,
    int_code,
    kpa_to_mmhg,
    quantity_or_absent_text,
    text_value,
)
from gateway.fhir.errors import MappingError, NotAPatientResult
from gateway.fhir.serialize import to_json

__all__ = ["Draft", "map_measurement"]

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Draft:
    """An Observation body before the shared elements. `type_code` is the MDC code of its
    `code`: unique within one reading, it keys the identifier and `derived_from`. `body` is
    JSON text: the Observation's own members (``"code":{...},"valueQuantity":{...}``), no
    braces, written straight into the Bundle. `vital_sign`: the PHD Bundle adds the
    `vital-signs` category beside `phd`; true only for the R4 vital signs (BP panel, pulse
    rate, body weight, body height, BMI; FHIR.md sections 2 and 4), never for glucose, body fat
    and the other body-composition values, status bits or context."""

    type_code: int
    profile: str
    vital_sign: bool
    body: str
    derived_from: tuple[int, ...] = ()
    period_s: int | None = None
    """A measurement duration: the Observation's time is then an `effectivePeriod` from the
    reading's time to this many seconds later (the IG's mapping of a measurement duration)."""


def _measure(value: object, name: str) -> Decimal | Special | None:
    if value is None or type(value) is Decimal or isinstance(value, Special):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise MappingError(f"field {name} is not a number")


def _numeric(code: Code, value: Decimal | Special, unit: Unit) -> Draft:
    return Draft(
        code.mdc,
        codes.PROFILE_NUMERIC,
        code.vital_sign,
        '"code":' + coded_text(code) + "," + quantity_or_absent_text(value, unit),
    )


def _bits(code: Code, bits: list[tuple[int, str]], derived_from: int) -> Draft:
    """A PhdBitsEnumerationObservation of the bits that are set (event bits: reported only
    when set, FHIR.md section 6)."""
    components = [
        {
            "code": {
                "coding": [
                    {"system": codes.ASN1_TO_HL7, "code": f"{code.mdc}.{bit}", "display": meaning}
                ]
            },
            "valueBoolean": True,
        }
        for bit, meaning in bits
    ]
    return Draft(
        code.mdc,
        codes.PROFILE_BITS,
        False,
        '"code":' + coded_text(code) + ',"component":' + to_json(components).decode("utf-8"),
        (derived_from,),
    )


def _coded_value(code: Code, value_code: int, derived_from: int) -> Draft:
    return Draft(
        code.mdc,
        codes.PROFILE_CODED,
        False,
        '"code":' + coded_text(code) + ',"valueCodeableConcept":' + concept_text(value_code),
        (derived_from,),
    )


# --- blood pressure 0x2A35 ------------------------------------------------------------------
_BP_COMPONENTS: Final = (
    (codes.BP_SYSTOLIC, "systolic"),
    (codes.BP_DIASTOLIC, "diastolic"),
    (codes.BP_MEAN, "mean_arterial_pressure"),
)
_BP_STATUS_FLAGS: Final = (
    ("body_movement", 0, "body-movement"),
    ("cuff_too_loose", 1, "cuff-too-loose"),
    ("irregular_pulse", 2, "irregular-pulse"),
    ("improper_position", 5, "improper-body-position"),
)
_PULSE_RANGE_BITS: Final = {
    "above": (3, "pulse-over-range-limit"),
    "below": (4, "pulse-under-range-limit"),
}


# The blood-pressure body's fixed text, shared with fast_paths (the same Observation from bytes).
BP_COMPONENT_HEADS: Final = tuple(
    (name, '{"code":' + coded_text(code) + ",") for code, name in _BP_COMPONENTS
)
BP_PANEL_HEAD: Final = '"code":' + coded_text(codes.BP_PANEL) + ',"component":['


def _blood_pressure(m: object) -> list[Draft]:
    unit = text_value(field(m, "unit"))
    if unit not in ("mmHg", "kPa"):
        raise MappingError("blood pressure unit is neither mmHg nor kPa")
    kpa = unit == "kPa"
    components = []
    for name, head in BP_COMPONENT_HEADS:
        value = _measure(field(m, name), name)
        if value is None:
            continue
        if kpa and isinstance(value, Decimal):
            # R4 vital-signs `bp` fixes mm[Hg]; the raw kPa value stays in the store.
            value = kpa_to_mmhg(value)
        components.append(head + quantity_or_absent_text(value, codes.MM_HG) + "}")
    panel = codes.BP_PANEL
    drafts = [
        Draft(
            panel.mdc,
            codes.PROFILE_COMPOUND,
            True,
            BP_PANEL_HEAD + ",".join(components) + "]",
        )
    ]
    pulse = _measure(field(m, "pulse_rate"), "pulse_rate")
    if pulse is not None:
        drafts.append(_numeric(codes.PULSE_RATE, pulse, codes.PER_MINUTE))
    status = field(m, "measurement_status")
    if status is not None:
        bits = [(bit, meaning) for name, bit, meaning in _BP_STATUS_FLAGS if field(status, name)]
        pulse_range = _PULSE_RANGE_BITS.get(str(text_value(field(status, "pulse_rate_range"))))
        if pulse_range is not None:
            bits.append(pulse_range)
        if bits:
            drafts.append(_bits(codes.BP_STATUS, sorted(bits), panel.mdc))
    return drafts


# --- glucose 0x2A18 (+ context 0x2A34) ------------------------------------------------------
def _glucose(m: object, context: object | None) -> list[Draft]:
    sample_type = int_code(field(m, "type"))
    location = int_code(field(m, "sample_location"))
    if (
        sample_type == codes.GLUCOSE_CONTROL_SOLUTION_TYPE
        or location == codes.GLUCOSE_CONTROL_SOLUTION_LOCATION
    ):
        raise NotAPatientResult("control-solution test, not a patient result")
    concentration = _measure(field(m, "concentration"), "concentration")
    glucose = codes.GLUCOSE_BY_TYPE.get(sample_type or 0, codes.GLUCOSE_GENERIC)
    if concentration is None:
        # A test the meter recorded without a result (a strip or sample error, its sensor
        # status says which): sent as not performed, with its status bits and context, rather
        # than left out (FHIR.md section 6: "not available" -> DAR not-performed).
        drafts = [_not_performed(Code(glucose.mdc, glucose.reference_id))]
        drafts.extend(_glucose_annotations(m, context, glucose.mdc, location))
        return drafts
    unit = text_value(field(m, "concentration_unit"))
    if unit == "kg/L":
        fhir_unit, loinc = codes.MG_PER_DL, glucose.loinc_mass
        scale = 5  # kg/L → mg/dL: × 10^5, exact, mantissa kept
    elif unit == "mol/L":
        fhir_unit, loinc = codes.MMOL_PER_L, glucose.loinc_molar
        scale = 3  # mol/L → mmol/L: × 10^3
    else:
        raise MappingError("glucose unit is neither kg/L nor mol/L")
    if isinstance(concentration, Decimal):
        concentration = concentration.scaleb(scale)
    # Not a vital sign in R4 (FHIR.md sections 2 and 4): category `phd` only. The ANS
    # "Mesures de santé" profiles want `vital-signs` on glucose: mes.py writes that category
    # itself, whatever the draft says.
    code = Code(glucose.mdc, glucose.reference_id, loinc)
    drafts = [_numeric(code, concentration, fhir_unit)]
    drafts.extend(_glucose_annotations(m, context, glucose.mdc, location))
    return drafts


def _glucose_annotations(
    m: object, context: object | None, glucose_code: int, location: int | None
) -> list[Draft]:
    """What a glucose Observation carries beside it: sample location, sensor status bits,
    context (each derived from it)."""
    drafts = []
    if location in codes.GLUCOSE_LOCATION_VALUES:
        drafts.append(
            _coded_value(
                codes.GLUCOSE_SAMPLE_LOCATION, codes.GLUCOSE_LOCATION_VALUES[location], glucose_code
            )
        )
    status = int_code(field(m, "sensor_status"))
    if status:
        bits = [(bit, name) for bit, name in codes.GLUCOSE_SENSOR_BITS.items() if status >> bit & 1]
        if bits:
            drafts.append(_bits(codes.GLUCOSE_SENSOR_STATUS, bits, glucose_code))
    if context is not None:
        drafts.extend(_glucose_context(context, glucose_code))
    return drafts


_NOT_PERFORMED: Final = to_json(
    {"coding": [{"system": codes.DATA_ABSENT_REASON, "code": "not-performed"}]}
).decode()


def _not_performed(code: Code) -> Draft:
    """A numeric Observation the device has no value for: its dataAbsentReason, no value."""
    return Draft(
        code.mdc,
        codes.PROFILE_NUMERIC,
        code.vital_sign,
        '"code":' + coded_text(code) + ',"dataAbsentReason":' + _NOT_PERFORMED,
    )


_CONTEXT_ENUMS: Final = (
    ("meal", codes.CONTEXT_MEAL, codes.MEAL_VALUES),
    ("tester", codes.CONTEXT_TESTER, codes.TESTER_VALUES),
    ("health", codes.CONTEXT_HEALTH, codes.HEALTH_VALUES),
)


def _glucose_context(context: object, glucose_code: int) -> list[Draft]:
    drafts = []
    for name, code, values in _CONTEXT_ENUMS:
        value = int_code(field(context, name))
        if value in values:
            drafts.append(_coded_value(code, values[value], glucose_code))
    carbohydrate = _measure(field(context, "carbohydrate_kg"), "carbohydrate_kg")
    if carbohydrate is not None:
        if isinstance(carbohydrate, Decimal):
            carbohydrate = carbohydrate.scaleb(3)  # kg → g, exact
        carb_id = int_code(field(context, "carbohydrate_id"))
        carb_code = Code(codes.CARBOHYDRATE_BY_ID.get(carb_id or 0, codes.CONTEXT_CARBOHYDRATE.mdc))
        drafts.append(_derived(carb_code, carbohydrate, codes.GRAM, glucose_code))
    hba1c = _measure(field(context, "hba1c_pct"), "hba1c_pct")
    if hba1c is not None:
        drafts.append(_derived(codes.CONTEXT_HBA1C, hba1c, codes.PERCENT, glucose_code))
    medication = _medication(context, glucose_code)
    if medication is not None:
        drafts.append(medication)
    exercise = _measure(field(context, "exercise_intensity_pct"), "exercise_intensity_pct")
    if exercise is not None:
        draft = _derived(codes.CONTEXT_EXERCISE, exercise, codes.PERCENT, glucose_code)
        duration = field(context, "exercise_duration_s")
        # 65535 is the meter's "overrun": longer than it counts, so no end is known
        if isinstance(duration, int) and duration != EXERCISE_OVERRUN:
            draft = replace(draft, period_s=duration)
        drafts.append(draft)
    return drafts


EXERCISE_OVERRUN: Final = 0xFFFF
# BLE medication units -> (the UCUM unit sent, the power of ten from the BLE unit to it)
_MEDICATION_UNITS: Final = {"kg": (codes.MILLIGRAM, 6), "L": (codes.MILLILITRE, 3)}


def _medication(context: object, glucose_code: int) -> Draft | None:
    amount = _measure(field(context, "medication"), "medication")
    if amount is None:
        return None
    unit_name = text_value(field(context, "medication_unit"))
    if unit_name not in _MEDICATION_UNITS:
        raise MappingError("medication unit is neither kg nor L")
    unit, power = _MEDICATION_UNITS[unit_name]
    if isinstance(amount, Decimal):
        amount = amount.scaleb(power)  # kg → mg, L → mL: exact
    kind = int_code(field(context, "medication_id"))
    code = Code(codes.MEDICATION_BY_ID.get(kind or 0, codes.CONTEXT_MEDICATION.mdc))
    return _derived(code, amount, unit, glucose_code)


def _derived(code: Code, value: Decimal | Special, unit: Unit, derived_from: int) -> Draft:
    draft = _numeric(code, value, unit)
    return Draft(draft.type_code, draft.profile, draft.vital_sign, draft.body, (derived_from,))


# --- weight scale 0x2A9D and body composition 0x2A9C ----------------------------------------
def _units(m: object) -> tuple[Unit, Unit | None]:
    """(mass unit, height unit) for the `unit` field; height in m is converted to cm."""
    unit = text_value(field(m, "unit"))
    if unit == "SI":
        return codes.KG, None
    if unit == "imperial":
        return codes.POUND, codes.INCH
    raise MappingError("weight unit is neither SI nor imperial")


def _stated(value: Decimal | Special, step: Decimal | None) -> Decimal | Special:
    """`value` with the decimals of the precision the device states (a scale of 0.05 kg steps
    sends 72.35, not the 72.350 of the field's 0.005 kg unit), never with more than it has.
    Only zeros are dropped: a value finer than the stated step (a device that says less than
    it measures) keeps every digit it sent."""
    if step is None or type(value) is not Decimal:
        return value
    exponent = step.as_tuple().exponent
    own = value.as_tuple().exponent
    if not isinstance(exponent, int) or not isinstance(own, int) or own >= exponent:
        return value
    stated = value.quantize(Decimal(1).scaleb(exponent))
    return stated if stated == value else value


def _steps(
    resolutions: tuple[int | None, int | None], imperial: bool
) -> tuple[Decimal | None, Decimal | None]:
    """(weight step, height step) in the measurement's units (kg/lb, m/in), or None."""
    unit = WeightUnit.IMPERIAL if imperial else WeightUnit.SI
    weight_code, height_code = resolutions
    weight = None if weight_code is None else WeightResolution(weight_code).precision(unit)
    height = None if height_code is None else HeightResolution(height_code).precision(unit)
    return weight, height


def _height(m: object, inch: Unit | None, step: Decimal | None = None) -> Draft | None:
    height = _measure(field(m, "height"), "height")
    if height is None:
        return None
    height = _stated(height, step)
    if inch is not None:
        return _numeric(codes.BODY_HEIGHT, height, inch)
    if isinstance(height, Decimal):
        height = height.scaleb(2)  # m → cm, exact: R4 bodyheight allows cm and [in_i] only
    return _numeric(codes.BODY_HEIGHT, height, codes.CM)


def _weight_scale(
    m: object, resolutions: tuple[int | None, int | None] = (None, None)
) -> list[Draft]:
    mass, inch = _units(m)
    weight_step, height_step = _steps(resolutions, imperial=inch is not None)
    weight = _measure(field(m, "weight"), "weight")
    if weight is None:
        raise MappingError("weight record without a weight")
    drafts = [_numeric(codes.BODY_WEIGHT, _stated(weight, weight_step), mass)]
    height = _height(m, inch, height_step)
    if height is not None:
        drafts.append(height)
    bmi = _measure(field(m, "bmi"), "bmi")
    if bmi is not None:
        sources = tuple(d.type_code for d in drafts)
        draft = _numeric(codes.BMI, bmi, codes.KG_PER_M2)
        drafts.append(Draft(draft.type_code, draft.profile, True, draft.body, sources))
    return drafts


_BODY_COMPOSITION_MASSES: Final = (
    ("fat_free_mass", codes.FAT_FREE_MASS),
    ("soft_lean_mass", codes.SOFT_LEAN_MASS),
    ("body_water_mass", codes.BODY_WATER),
)


def _body_composition(m: object) -> list[Draft]:
    mass, inch = _units(m)
    fat = _measure(field(m, "body_fat_pct"), "body_fat_pct")
    if fat is None:
        raise MappingError("body composition record without body fat")
    drafts = [_numeric(codes.BODY_FAT, fat, codes.PERCENT)]
    basal = _measure(field(m, "basal_metabolism_kj"), "basal_metabolism_kj")
    if basal is not None:
        drafts.append(_numeric(codes.BASAL_METABOLISM, basal, codes.KJ))
    for name, code in _BODY_COMPOSITION_MASSES:
        value = _measure(field(m, name), name)
        if value is not None:
            drafts.append(_numeric(code, value, mass))
    weight = _measure(field(m, "weight"), "weight")
    if weight is not None:
        drafts.append(_numeric(codes.BODY_WEIGHT, weight, mass))
    height = _height(m, inch)
    if height is not None:
        drafts.append(height)
    # muscle_pct, muscle_mass, impedance_ohm: no code in the guides, not sent (kept in the store).
    return drafts


_MAPPERS: Final[dict[int, Callable[[object], list[Draft]]]] = {
    0x2A35: _blood_pressure,
    0x2A9C: _body_composition,
}


def map_measurement(
    characteristic: int,
    measurement: object,
    context: object | None,
    resolutions: tuple[int | None, int | None] = (None, None),
) -> list[Draft]:
    """The Observation drafts of one decoded measurement; `MappingError` if it cannot map.
    `resolutions`: the device's Weight Scale Feature weight and height resolution codes."""
    if characteristic == 0x2A18:
        return _glucose(measurement, context)
    if characteristic == 0x2A9D:
        return _weight_scale(measurement, resolutions)
    mapper = _MAPPERS.get(characteristic)
    if mapper is None:
        raise MappingError(f"characteristic {characteristic:04X} is not a measurement")
    return mapper(measurement)
