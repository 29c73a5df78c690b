from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers import MalformedValue, Special, UnencodableValue, decode, to_json
from device_drivers.blood_pressure import (
    BloodPressureFeature,
    BloodPressureMeasurement,
    IntermediateCuffPressure,
    MeasurementStatus,
    PressureUnit,
    PulseRateRange,
)
from device_drivers.codec import InvalidField, from_json
from tests.device_drivers.codec_contract import FUZZ, CodecContract
from tests.device_drivers.strategies import datetimes, flagged, sfloats

statuses = st.builds(
    MeasurementStatus,
    body_movement=st.booleans(),
    cuff_too_loose=st.booleans(),
    irregular_pulse=st.booleans(),
    pulse_rate_range=st.sampled_from(PulseRateRange),
    improper_position=st.booleans(),
)


def pressure_values(cls: type[Any]) -> st.SearchStrategy[Any]:
    # Every optional field independently present or absent: all 32 flag combinations.
    return st.builds(
        cls,
        unit=st.sampled_from(PressureUnit),
        systolic=sfloats,
        diastolic=sfloats,
        mean_arterial_pressure=sfloats,
        timestamp=st.none() | datetimes,
        pulse_rate=st.none() | sfloats,
        user_id=st.none() | st.integers(0, 255),
        measurement_status=st.none() | statuses,
    )


FULL_MMHG = "1e78005000a5f3e807030f0e1e2d4800010900"


class TestBloodPressureMeasurement(CodecContract):
    codec = BloodPressureMeasurement
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        # 120/80 mmHg, MAP 933e-1, 2024-03-15 14:30:45, pulse 72, user 1,
        # status 0x0009 = body movement + pulse rate above the upper limit.
        (
            FULL_MMHG,
            {
                "unit": "mmHg",
                "systolic": 120,
                "diastolic": 80,
                "mean_arterial_pressure": 93.3,
                "timestamp": "2024-03-15T14:30:45",
                "pulse_rate": 72,
                "user_id": 1,
                "measurement_status": {
                    "body_movement": True,
                    "cuff_too_loose": False,
                    "irregular_pulse": False,
                    "pulse_rate_range": "above",
                    "improper_position": False,
                },
            },
        ),
        # kPa, no optional field: 160e-1 / 107e-1 / 124e-1 (exponent nibble 0xF = -1).
        (
            "01a0f06bf07cf0",
            {"unit": "kPa", "systolic": 16.0, "diastolic": 10.7, "mean_arterial_pressure": 12.4},
        ),
        # Specials stay distinct: NRes, -INF, NaN.
        (
            "0000080208ff07",
            {
                "unit": "mmHg",
                "systolic": "NRes",
                "diastolic": "-INF",
                "mean_arterial_pressure": "NaN",
            },
        ),
        # Unknown user 255 stays 255; status 0x003F: every bit, pulse range code 3 (reserved).
        (
            "1878005000a5f3ff3f00",
            {
                "unit": "mmHg",
                "systolic": 120,
                "diastolic": 80,
                "mean_arterial_pressure": 93.3,
                "user_id": 255,
                "measurement_status": {
                    "body_movement": True,
                    "cuff_too_loose": True,
                    "irregular_pulse": True,
                    "pulse_rate_range": "reserved",
                    "improper_position": True,
                },
            },
        ),
        # Pulse rate below the lower limit (status 0x0010), negative exponent pulse 605e-1.
        (
            "14780050005d005df21000",
            {
                "unit": "mmHg",
                "systolic": 120,
                "diastolic": 80,
                "mean_arterial_pressure": 93,
                "pulse_rate": 60.5,
                "measurement_status": {
                    "body_movement": False,
                    "cuff_too_loose": False,
                    "irregular_pulse": False,
                    "pulse_rate_range": "below",
                    "improper_position": False,
                },
            },
        ),
    ]
    values = pressure_values(BloodPressureMeasurement)


class TestIntermediateCuffPressure(CodecContract):
    codec = IntermediateCuffPressure
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        # Cuff at 150 mmHg; diastolic and MAP NaN as BLS asks.
        (
            "009600ff07ff07",
            {"unit": "mmHg", "systolic": 150, "diastolic": "NaN", "mean_arterial_pressure": "NaN"},
        ),
        # A cuff that sends 0 instead of NaN is decoded as sent.
        (
            "00960000000000",
            {"unit": "mmHg", "systolic": 150, "diastolic": 0, "mean_arterial_pressure": 0},
        ),
    ]
    values = pressure_values(IntermediateCuffPressure)


class TestBloodPressureFeature(CodecContract):
    codec = BloodPressureFeature
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        (
            "3f00",
            {
                "body_movement_detection_support": True,
                "cuff_fit_detection_support": True,
                "irregular_pulse_detection_support": True,
                "pulse_rate_range_detection_support": True,
                "measurement_position_detection_support": True,
                "multiple_bond_support": True,
            },
        ),
        (
            "2100",
            {
                "body_movement_detection_support": True,
                "cuff_fit_detection_support": False,
                "irregular_pulse_detection_support": False,
                "pulse_rate_range_detection_support": False,
                "measurement_position_detection_support": False,
                "multiple_bond_support": True,
            },
        ),
    ]
    values = st.builds(
        BloodPressureFeature,
        body_movement_detection_support=st.booleans(),
        cuff_fit_detection_support=st.booleans(),
        irregular_pulse_detection_support=st.booleans(),
        pulse_rate_range_detection_support=st.booleans(),
        measurement_position_detection_support=st.booleans(),
        multiple_bond_support=st.booleans(),
    )


@pytest.mark.parametrize("uuid", [0x2A35, 0x2A36, 0x2A49])
@FUZZ
@given(data=flagged(1))
def test_any_flags_decode_or_raise_malformed(uuid: int, data: bytes) -> None:
    try:
        value = decode(uuid, data)
    except MalformedValue as exc:
        assert exc.characteristic == uuid
        assert exc.data == data
        return
    assert isinstance(value.__bytes__(), bytes)


def test_reserved_flag_and_status_bits_are_ignored() -> None:
    clean = decode(0x2A35, bytes.fromhex("1078005000a5f30100"))
    noisy = decode(0x2A35, bytes.fromhex("f078005000a5f3c1ff"))
    assert noisy == clean
    assert bytes(noisy).hex() == "1078005000a5f30100"


def test_reserved_feature_bits_are_ignored() -> None:
    value = decode(0x2A49, bytes.fromhex("ffff"))
    assert bytes(value).hex() == "3f00"


def test_unknown_date_reads_as_no_timestamp() -> None:
    value = decode(0x2A35, bytes.fromhex("0278005000a5f300000000000000"))
    assert isinstance(value, BloodPressureMeasurement)
    assert value.timestamp is None


def test_impossible_timestamp_is_malformed() -> None:
    with pytest.raises(MalformedValue, match=r"2A35.*offset 7"):
        decode(0x2A35, bytes.fromhex("0278005000a5f3e8070d0f0e1e2d"))


def test_cuff_pressure_is_the_systolic_field() -> None:
    icp = IntermediateCuffPressure(systolic=Decimal(150))
    assert icp.cuff_pressure == Decimal(150)
    assert icp.diastolic is Special.NAN
    assert bytes(icp).hex() == "009600ff07ff07"


def test_a_cuff_value_is_not_a_measurement() -> None:
    # 2A36 and 2A35 share a layout but never a type: gateway code tests isinstance.
    icp = decode(0x2A36, bytes.fromhex("009600ff07ff07"))
    assert not isinstance(icp, BloodPressureMeasurement)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"user_id": 256}, "user_id"),
        ({"user_id": -1}, "user_id"),
        ({"pulse_rate": Decimal("12345")}, "SFLOAT"),
        ({"systolic": Decimal("NaN")}, "Special"),
    ],
)
def test_unencodable_values(kwargs: dict[str, Any], match: str) -> None:
    base: dict[str, Any] = {
        "systolic": Decimal(120),
        "diastolic": Decimal(80),
        "mean_arterial_pressure": Decimal(93),
    }
    with pytest.raises(UnencodableValue, match=match):
        bytes(BloodPressureMeasurement(**{**base, **kwargs}))


@FUZZ
@given(value=pressure_values(BloodPressureMeasurement))
def test_from_json_inverts_to_json(value: BloodPressureMeasurement) -> None:
    assert from_json(BloodPressureMeasurement, to_json(value)) == value  # type: ignore[arg-type]


def test_from_json_config_table() -> None:
    # What a `[[simulator]]` readings table holds: TOML types, defaults for the rest.
    value = from_json(
        BloodPressureMeasurement,
        {
            "systolic": 128,
            "diastolic": 84,
            "mean_arterial_pressure": "98.7",
            "timestamp": datetime(2026, 1, 2, 8, 30),
            "pulse_rate": 66.0,
            "measurement_status": {"irregular_pulse": True},
        },
    )
    assert value == BloodPressureMeasurement(
        systolic=Decimal(128),
        diastolic=Decimal(84),
        mean_arterial_pressure=Decimal("98.7"),
        timestamp=datetime(2026, 1, 2, 8, 30),
        pulse_rate=Decimal(66),
        measurement_status=MeasurementStatus(irregular_pulse=True),
    )
    # 66.0 keeps its stated decimal: 660e-1 (0xF294), where 66 would be 0x0042.
    assert bytes(value).hex() == "1680005400dbf3ea070102081e0094f20400"


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"systolic": 1, "diastolic": 2, "mean_arterial_pressure": 3, "sistolic": 4}, "sistolic"),
        ({"systolic": "high", "diastolic": 2, "mean_arterial_pressure": 3}, "systolic"),
        ({"systolic": True, "diastolic": 2, "mean_arterial_pressure": 3}, "systolic"),
        ({"diastolic": 2, "mean_arterial_pressure": 3}, "systolic"),
        ({"systolic": 1, "diastolic": 2, "mean_arterial_pressure": 3, "unit": "psi"}, "unit"),
        ({"systolic": 1, "diastolic": 2, "mean_arterial_pressure": 3, "user_id": 1.5}, "user_id"),
        (
            {"systolic": 1, "diastolic": 2, "mean_arterial_pressure": 3, "timestamp": "soon"},
            "timestamp",
        ),
        (
            {
                "systolic": 1,
                "diastolic": 2,
                "mean_arterial_pressure": 3,
                "timestamp": "2024-01-01T10:00:00+01:00",
            },
            "timestamp",
        ),
        (
            {
                "systolic": 1,
                "diastolic": 2,
                "mean_arterial_pressure": 3,
                "measurement_status": {"pulse_rate_range": "fast"},
            },
            "measurement_status.pulse_rate_range",
        ),
        (
            {
                "systolic": 1,
                "diastolic": 2,
                "mean_arterial_pressure": 3,
                "measurement_status": {"cuff_loose": True},
            },
            "measurement_status.cuff_loose",
        ),
    ],
)
def test_from_json_names_the_bad_field(table: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidField) as info:
        from_json(BloodPressureMeasurement, table)
    assert info.value.field == field
    assert repr(field) in str(info.value)
    assert "BloodPressureMeasurement" in str(info.value)
