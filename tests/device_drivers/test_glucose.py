from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers import MalformedValue, Special, UnencodableValue, decode, glucose, to_json
from device_drivers.glucose import (
    ConcentrationUnit,
    GlucoseFeature,
    GlucoseMeasurement,
    GlucoseMeasurementContext,
    GlucoseType,
    Health,
    MedicationUnit,
    SampleLocation,
    SensorStatus,
)
from device_drivers.reading import Reading
from tests.device_drivers.codec_contract import FUZZ, CodecContract
from tests.device_drivers.glucose_strategies import contexts, measurements

BASE = "e807030f0e1e2d"  # 2024-03-15 14:30:45
BASE_JSON = "2024-03-15T14:30:45"


class TestGlucoseMeasurement(CodecContract):
    codec = GlucoseMeasurement
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        # Only the mandatory fields.
        (
            "000100" + BASE,
            {"sequence_number": 1, "base_time": BASE_JSON, "context_follows": False},
        ),
        # Every flag: offset -1 min (0xFFFF), 98 mg/dL = 0.00098 kg/L (mantissa 98, exponent
        # -5 -> 0xB062), capillary plasma (2) at the finger (1) -> 0x12, battery low.
        (
            "1b0201" + BASE + "ffff" + "62b0" + "12" + "0100",
            {
                "sequence_number": 258,
                "base_time": BASE_JSON,
                "time_offset": -1,
                "concentration": 0.00098,
                "concentration_unit": "kg/L",
                "type": 2,
                "sample_location": 1,
                "sensor_status": 1,
                "context_follows": True,
            },
        ),
        # 5.4 mmol/L = 0.0054 mol/L (54e-4 -> 0xC036), venous plasma (4), alternate site (2).
        (
            "060700e1070c1f173b3b" + "36c0" + "24",
            {
                "sequence_number": 7,
                "base_time": "2017-12-31T23:59:59",
                "concentration": 0.0054,
                "concentration_unit": "mol/L",
                "type": 4,
                "sample_location": 2,
                "context_follows": False,
            },
        ),
        # NaN concentration (0x07FF), location not available (15) -> 0xF1; offset +32767 min.
        (
            "030300" + BASE + "ff7f" + "ff07" + "f1",
            {
                "sequence_number": 3,
                "base_time": BASE_JSON,
                "time_offset": 32767,
                "concentration": "NaN",
                "concentration_unit": "kg/L",
                "type": 1,
                "sample_location": 15,
                "context_follows": False,
            },
        ),
        # Reserved codes are kept: type 11, location 0; 50 kg/L as an integer SFLOAT; the
        # reserved status bits 12-15 and a time fault (bit 11).
        (
            "0affff" + BASE + "3200" + "0b" + "00f8",
            {
                "sequence_number": 65535,
                "base_time": BASE_JSON,
                "concentration": 50,
                "concentration_unit": "kg/L",
                "type": 11,
                "sample_location": 0,
                "sensor_status": 0xF800,
                "context_follows": False,
            },
        ),
        # A meter that does not know the date sends zeros: base_time is omitted.
        ("100400" + "00000000000000", {"sequence_number": 4, "context_follows": True}),
    ]
    values = measurements()


class TestGlucoseMeasurementContext(CodecContract):
    codec = GlucoseMeasurementContext
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        ("000100", {"sequence_number": 1}),
        # Every flag, medication in litres: extended flags 0; breakfast (1), 50 g = 0.05 kg
        # (50e-3 -> 0xD032); preprandial (1); tester self (1) in bits 0-3, health "no health
        # issues" (5) in bits 4-7 -> 0x51; 3600 s (0x0E10) at 50 %; rapid-acting insulin (1),
        # 0.1 mL = 0.0001 L (1e-4 -> 0xC001); HbA1c 6.5 % (65e-1 -> 0xF041).
        (
            "ff0500" + "00" + "0132d0" + "01" + "51" + "100e32" + "0101c0" + "41f0",
            {
                "sequence_number": 5,
                "extended_flags": 0,
                "carbohydrate_id": 1,
                "carbohydrate_kg": 0.05,
                "meal": 1,
                "tester": 1,
                "health": 5,
                "exercise_duration_s": 3600,
                "exercise_intensity_pct": 50,
                "medication_id": 1,
                "medication": 0.0001,
                "medication_unit": "L",
                "hba1c_pct": 6.5,
            },
        ),
        # Medication in kilograms (bit 5 clear): long-acting insulin (4), 2 mg (2e-6 -> 0xA002).
        (
            "100200" + "0402a0",
            {
                "sequence_number": 2,
                "medication_id": 4,
                "medication": 0.000002,
                "medication_unit": "kg",
            },
        ),
        # Tester health care professional (2), health "during menses" (3): 0x32.
        ("040900" + "32", {"sequence_number": 9, "tester": 2, "health": 3}),
        # Exercise overrun (65535 s) and HbA1c NRes.
        (
            "480a00" + "ffff64" + "0008",
            {
                "sequence_number": 10,
                "exercise_duration_s": 65535,
                "exercise_intensity_pct": 100,
                "hba1c_pct": "NRes",
            },
        ),
    ]
    values = contexts()


class TestGlucoseFeature(CodecContract):
    codec = GlucoseFeature
    _names: ClassVar[list[str]] = [
        "low_battery_detection_during_measurement_supported",
        "sensor_malfunction_detection_supported",
        "sensor_sample_size_supported",
        "sensor_strip_insertion_error_detection_supported",
        "sensor_strip_type_error_detection_supported",
        "sensor_result_high_low_detection_supported",
        "sensor_temperature_high_low_detection_supported",
        "sensor_read_interrupt_detection_supported",
        "general_device_fault_supported",
        "time_fault_supported",
        "multiple_bond_supported",
    ]
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        ("0000", dict.fromkeys(_names, False)),
        ("ff07", dict.fromkeys(_names, True)),
        # Low battery (bit 0) and multiple bond (bit 10).
        (
            "0104",
            dict.fromkeys(_names, False)
            | {
                "low_battery_detection_during_measurement_supported": True,
                "multiple_bond_supported": True,
            },
        ),
    ]
    values = st.builds(GlucoseFeature, *(st.booleans() for _ in _names))


def test_time_offset_is_signed() -> None:
    value = GlucoseMeasurement.from_bytes(bytes.fromhex("010100" + BASE + "ffff"))
    assert value.time_offset == -1
    assert value.user_facing_time == datetime(2024, 3, 15, 14, 29, 45)


def test_reserved_flag_bits_are_ignored() -> None:
    plain = GlucoseMeasurement.from_bytes(bytes.fromhex("000100" + BASE))
    assert GlucoseMeasurement.from_bytes(bytes.fromhex("e00100" + BASE)) == plain
    assert GlucoseFeature.from_bytes(bytes.fromhex("00f8")) == GlucoseFeature()


def test_units_flag_without_concentration_is_ignored() -> None:
    value = GlucoseMeasurement.from_bytes(bytes.fromhex("040100" + BASE))
    assert value.concentration_unit is None
    expected = {"sequence_number": 1, "base_time": BASE_JSON, "context_follows": False}
    assert to_json(value) == expected


def test_concentration_stays_in_the_unit_sent() -> None:
    value = GlucoseMeasurement.from_bytes(bytes.fromhex("020100" + BASE + "62b011"))
    assert value.concentration == Decimal("0.00098")
    assert value.concentration_unit is ConcentrationUnit.KG_PER_L


def test_coded_fields_are_enums_that_keep_reserved_codes() -> None:
    value = GlucoseMeasurement.from_bytes(bytes.fromhex("020100" + BASE + "62b0" + "5c"))
    assert value.type is not None
    assert value.sample_location is SampleLocation(5)
    assert value.type.name == "RESERVED_12"
    assert value.type is GlucoseType(12)  # one pseudo-member per code
    assert int(GlucoseType.CONTROL_SOLUTION) == 10
    with pytest.raises(ValueError, match="16"):
        GlucoseType(16)  # a nibble cannot hold it


def test_sensor_status_flag_view() -> None:
    value = GlucoseMeasurement.from_bytes(bytes.fromhex("080100" + BASE + "2108"))
    assert value.sensor_status is not None
    assert SensorStatus.DEVICE_BATTERY_LOW in value.sensor_status
    assert SensorStatus.RESULT_TOO_HIGH in value.sensor_status
    assert SensorStatus.TIME_FAULT in value.sensor_status
    assert SensorStatus.SENSOR_MALFUNCTION not in value.sensor_status


def test_tester_is_the_low_nibble() -> None:
    value = GlucoseMeasurementContext.from_bytes(bytes.fromhex("040100" + "f2"))
    assert value.tester is glucose.Tester.HEALTH_CARE_PROFESSIONAL
    assert value.health is Health.NOT_AVAILABLE
    again = GlucoseMeasurementContext(1, tester=glucose.Tester.LAB_TEST, health=Health.UNDER_STRESS)
    assert bytes(again).hex() == "040100" + "43"


def test_medication_unit_flag_without_medication_is_ignored() -> None:
    value = GlucoseMeasurementContext.from_bytes(bytes.fromhex("200100"))
    assert value == GlucoseMeasurementContext(1)


@pytest.mark.parametrize(
    "value",
    [
        GlucoseMeasurement(1, None, concentration=Decimal(1)),
        GlucoseMeasurement(
            1, None, concentration_unit=ConcentrationUnit.KG_PER_L, type=GlucoseType(1)
        ),
        GlucoseMeasurement(
            1,
            None,
            concentration=Decimal("1E+12"),
            concentration_unit=ConcentrationUnit.KG_PER_L,
            type=GlucoseType(1),
            sample_location=SampleLocation(1),
        ),
        GlucoseMeasurement(1, None, time_offset=40000),
        GlucoseMeasurement(0x10000, None),
        GlucoseMeasurementContext(1, tester=glucose.Tester.SELF),
        GlucoseMeasurementContext(1, medication=Decimal(1), medication_unit=MedicationUnit.KG),
        GlucoseMeasurementContext(1, tester=glucose.Tester.SELF, health=16),  # type: ignore[arg-type]
        GlucoseMeasurementContext(1, exercise_duration_s=1),
    ],
)
def test_unencodable_values_are_refused(value: object) -> None:
    with pytest.raises(UnencodableValue):
        bytes(value)  # type: ignore[call-overload]


def test_special_concentrations_round_trip() -> None:
    for special in Special:
        value = GlucoseMeasurement(
            1,
            datetime(2024, 1, 1),
            concentration=special,
            concentration_unit=ConcentrationUnit.MOL_PER_L,
            type=GlucoseType.CAPILLARY_WHOLE_BLOOD,
            sample_location=SampleLocation.FINGER,
        )
        assert GlucoseMeasurement.from_bytes(bytes(value)) == value
        as_json = to_json(value)
        assert isinstance(as_json, dict)
        assert as_json["concentration"] == special.value


@FUZZ
@given(value=measurements())
def test_reading_sees_glucose_time_and_sequence(value: GlucoseMeasurement) -> None:
    reading = Reading(
        "C0:11:22:33:44:55", 0x2A18, bytes(value), datetime(2026, 1, 1, tzinfo=UTC), True
    )
    assert reading.sequence_number() == value.sequence_number
    if value.base_time is None:
        assert reading.device_timestamp() is None
    else:
        assert reading.device_timestamp() == value.base_time + timedelta(
            minutes=value.time_offset or 0
        )


def test_truncated_optional_fields_name_the_field() -> None:
    with pytest.raises(MalformedValue, match="sensor_status"):
        decode(0x2A18, bytes.fromhex("080100" + BASE + "21"))
    with pytest.raises(MalformedValue, match="hba1c_pct"):
        decode(0x2A34, bytes.fromhex("400100" + "41"))
