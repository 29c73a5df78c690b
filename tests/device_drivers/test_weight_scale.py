from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers import MalformedValue, Special, UnencodableValue, decode, to_json
from device_drivers.codec import InvalidField, from_json
from device_drivers.weight_scale import (
    HeightResolution,
    WeightMeasurement,
    WeightResolution,
    WeightScaleFeature,
    WeightUnit,
)
from tests.device_drivers.codec_contract import FUZZ, CodecContract
from tests.device_drivers.strategies import datetimes, flagged, steps


@st.composite
def weight_measurements(draw: st.DrawFn) -> WeightMeasurement:
    unit = draw(st.sampled_from(WeightUnit))
    mass, length = ("0.005", "0.001") if unit is WeightUnit.SI else ("0.01", "0.1")
    with_bmi = draw(st.booleans())
    return WeightMeasurement(
        unit=unit,
        weight=draw(st.just(Special.NAN) | steps(mass, 0xFFFE)),
        timestamp=draw(st.none() | datetimes),
        user_id=draw(st.none() | st.integers(0, 255)),
        bmi=draw(steps("0.1")) if with_bmi else None,
        height=draw(steps(length)) if with_bmi else None,
    )


class TestWeightMeasurement(CodecContract):
    codec = WeightMeasurement
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        # 72.5 kg = 14500 × 0.005 (0x38A4); BMI 23.4 = 234 × 0.1; height 1.760 m = 1760 × 0.001.
        (
            "0ea438e807030f0e1e2d01ea00e006",
            {
                "unit": "SI",
                "weight": 72.5,
                "timestamp": "2024-03-15T14:30:45",
                "user_id": 1,
                "bmi": 23.4,
                "height": 1.76,
            },
        ),
        # 160.2 lb = 16020 × 0.01 (0x3E94).
        ("01943e", {"unit": "imperial", "weight": 160.2}),
        # 150 lb, BMI 22.1, 69.5 in = 695 × 0.1 (0x02B7).
        (
            "09983add00b702",
            {"unit": "imperial", "weight": 150, "bmi": 22.1, "height": 69.5},
        ),
        # 0xFFFF: measurement unsuccessful (not 327.675 kg); unknown user 255 stays 255.
        ("04ffffff", {"unit": "SI", "weight": "NaN", "user_id": 255}),
    ]
    values = weight_measurements()


class TestWeightScaleFeature(CodecContract):
    codec = WeightScaleFeature
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        # 0x000001BF: bits 0-2, weight resolution 7 (0.005 kg) << 3, height resolution 3 << 7.
        (
            "bf010000",
            {
                "time_stamp_supported": True,
                "multiple_users_supported": True,
                "bmi_supported": True,
                "weight_measurement_resolution": 7,
                "height_measurement_resolution": 3,
            },
        ),
        # 0x00000020: weight resolution 4 (0.05 kg / 0.1 lb) only.
        (
            "20000000",
            {
                "time_stamp_supported": False,
                "multiple_users_supported": False,
                "bmi_supported": False,
                "weight_measurement_resolution": 4,
                "height_measurement_resolution": 0,
            },
        ),
    ]
    values = st.builds(
        WeightScaleFeature,
        time_stamp_supported=st.booleans(),
        multiple_users_supported=st.booleans(),
        bmi_supported=st.booleans(),
        weight_measurement_resolution=st.integers(0, 15).map(WeightResolution),
        height_measurement_resolution=st.integers(0, 7).map(HeightResolution),
    )


@pytest.mark.parametrize("uuid", [0x2A9D, 0x2A9E])
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


def test_weights_are_exact_decimals() -> None:
    value = decode(0x2A9D, bytes.fromhex("00a438"))
    assert isinstance(value, WeightMeasurement)
    assert value.weight == Decimal("72.5")
    assert isinstance(value.weight, Decimal)
    assert value.successful


def test_unsuccessful_weight() -> None:
    value = WeightMeasurement(weight=Special.NAN)
    assert bytes(value).hex() == "00ffff"
    assert not value.successful


def test_reserved_flag_bits_are_ignored() -> None:
    assert decode(0x2A9D, bytes.fromhex("f1943e")) == decode(0x2A9D, bytes.fromhex("01943e"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight": Decimal("327.675")}, "unsuccessful"),  # raw 0xFFFF
        ({"weight": Decimal("72.501")}, "multiple of 0.005"),
        ({"weight": Decimal("-1")}, "weight"),
        ({"weight": Special.NRES}, "NRes"),
        ({"weight": Decimal(70), "bmi": Decimal("22.1")}, "both or neither"),
        ({"weight": Decimal(70), "bmi": Decimal("22.15"), "height": Decimal(1)}, "bmi"),
        ({"weight": Decimal(70), "user_id": 256}, "user_id"),
    ],
)
def test_unencodable_weights(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UnencodableValue, match=match):
        bytes(WeightMeasurement(**kwargs))


@pytest.mark.parametrize(
    ("code", "unit", "expected"),
    [
        (1, WeightUnit.SI, Decimal("0.5")),
        (1, WeightUnit.IMPERIAL, Decimal("1")),
        (4, WeightUnit.SI, Decimal("0.05")),
        (7, WeightUnit.SI, Decimal("0.005")),
        (7, WeightUnit.IMPERIAL, Decimal("0.01")),
        (0, WeightUnit.SI, None),
        (12, WeightUnit.SI, None),  # RFU code: kept, no precision
    ],
)
def test_weight_precision(code: int, unit: WeightUnit, expected: Decimal | None) -> None:
    raw = (code << 3).to_bytes(4, "little")
    feature = decode(0x2A9E, raw)
    assert isinstance(feature, WeightScaleFeature)
    assert feature.weight_precision(unit) == expected
    assert bytes(feature) == raw


def test_height_precision_and_reserved_code() -> None:
    feature = decode(0x2A9E, (3 << 7).to_bytes(4, "little"))
    assert isinstance(feature, WeightScaleFeature)
    assert feature.height_precision(WeightUnit.SI) == Decimal("0.001")
    assert feature.height_precision(WeightUnit.IMPERIAL) == Decimal("0.1")
    reserved = decode(0x2A9E, (6 << 7).to_bytes(4, "little"))
    assert isinstance(reserved, WeightScaleFeature)
    assert reserved.height_measurement_resolution.name == "RESERVED_6"
    assert reserved.height_precision(WeightUnit.SI) is None
    assert to_json(reserved)["height_measurement_resolution"] == 6  # type: ignore[index,call-overload]


@FUZZ
@given(value=weight_measurements())
def test_from_json_inverts_to_json(value: WeightMeasurement) -> None:
    assert from_json(WeightMeasurement, to_json(value)) == value  # type: ignore[arg-type]


def test_from_json_unsuccessful_and_errors() -> None:
    assert from_json(WeightMeasurement, {"weight": "NaN"}).weight is Special.NAN
    with pytest.raises(InvalidField) as info:
        from_json(WeightMeasurement, {"weight": 70, "unit": "kg"})
    assert info.value.field == "unit"
    with pytest.raises(InvalidField) as info:
        from_json(WeightMeasurement, {"weight": 70, "bmi": "NaN"})
    assert info.value.field == "bmi"
