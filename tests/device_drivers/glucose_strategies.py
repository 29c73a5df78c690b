"""Hypothesis strategies for the Glucose Service values, shared by the codec and meter tests."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from device_drivers import Measure, Special
from device_drivers.glucose import (
    CarbohydrateId,
    ConcentrationUnit,
    GlucoseMeasurement,
    GlucoseMeasurementContext,
    GlucoseType,
    Health,
    Meal,
    MedicationId,
    MedicationUnit,
    SampleLocation,
    SensorStatus,
    Tester,
)

# SFLOAT words whose exponent is 0 and mantissa 0x7FE..0x802 are the special values.
_SPECIAL_MANTISSAS = {2046, 2047, -2048, -2047, -2046}

sfloat_numbers = st.builds(
    lambda m, e: Decimal(m).scaleb(e), st.integers(-2048, 2047), st.integers(-8, 7)
).filter(lambda d: not (d.as_tuple().exponent == 0 and int(d) in _SPECIAL_MANTISSAS))
measures: st.SearchStrategy[Measure] = sfloat_numbers | st.sampled_from(Special)

datetimes = st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda d: d.replace(microsecond=0)
)
uint16 = st.integers(0, 0xFFFF)


def nibble(cls: Any) -> st.SearchStrategy[Any]:
    return st.integers(0, 15).map(cls)


def octet(cls: Any) -> st.SearchStrategy[Any]:
    return st.integers(0, 255).map(cls)


@st.composite
def measurements(draw: st.DrawFn, sequence_number: int | None = None) -> GlucoseMeasurement:
    concentration = draw(st.none() | measures)
    unit = kind = location = None
    if concentration is not None:
        unit = draw(st.sampled_from(ConcentrationUnit))
        kind = draw(nibble(GlucoseType))
        location = draw(nibble(SampleLocation))
    return GlucoseMeasurement(
        draw(uint16) if sequence_number is None else sequence_number,
        draw(st.none() | datetimes),
        draw(st.none() | st.integers(-32768, 32767)),
        concentration,
        unit,
        kind,
        location,
        draw(st.none() | uint16.map(SensorStatus)),
        draw(st.booleans()),
    )


@st.composite
def contexts(draw: st.DrawFn) -> GlucoseMeasurementContext:
    kwargs: dict[str, Any] = {}
    if draw(st.booleans()):
        kwargs |= {
            "carbohydrate_id": draw(octet(CarbohydrateId)),
            "carbohydrate_kg": draw(measures),
        }
    if draw(st.booleans()):
        kwargs["meal"] = draw(octet(Meal))
    if draw(st.booleans()):
        kwargs |= {"tester": draw(nibble(Tester)), "health": draw(nibble(Health))}
    if draw(st.booleans()):
        kwargs |= {
            "exercise_duration_s": draw(uint16),
            "exercise_intensity_pct": draw(st.integers(0, 255)),
        }
    if draw(st.booleans()):
        kwargs |= {
            "medication_id": draw(octet(MedicationId)),
            "medication": draw(measures),
            "medication_unit": draw(st.sampled_from(MedicationUnit)),
        }
    if draw(st.booleans()):
        kwargs["hba1c_pct"] = draw(measures)
    if draw(st.booleans()):
        kwargs["extended_flags"] = draw(st.integers(0, 255))
    return GlucoseMeasurementContext(draw(uint16), **kwargs)
