from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers import MalformedValue, Special, UnencodableValue, decode, to_json
from device_drivers.body_composition import BodyCompositionFeature, BodyCompositionMeasurement
from device_drivers.codec import from_json
from device_drivers.weight_scale import HeightResolution, WeightResolution, WeightUnit
from tests.device_drivers.codec_contract import FUZZ, CodecContract
from tests.device_drivers.strategies import datetimes, flagged, steps


@st.composite
def body_compositions(draw: st.DrawFn) -> BodyCompositionMeasurement:
    unit = draw(st.sampled_from(WeightUnit))
    mass, length = ("0.005", "0.001") if unit is WeightUnit.SI else ("0.01", "0.1")

    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.none() | strategy)

    # Every one of the 12 optional fields independently: all 2^12 flag combinations.
    return BodyCompositionMeasurement(
        unit=unit,
        body_fat_pct=draw(st.just(Special.NAN) | steps("0.1", 0xFFFE)),
        timestamp=maybe(datetimes),
        user_id=maybe(st.integers(0, 255)),
        basal_metabolism_kj=maybe(st.integers(0, 0xFFFF)),
        muscle_pct=maybe(steps("0.1")),
        muscle_mass=maybe(steps(mass)),
        fat_free_mass=maybe(steps(mass)),
        soft_lean_mass=maybe(steps(mass)),
        body_water_mass=maybe(steps(mass)),
        impedance_ohm=maybe(steps("0.1")),
        weight=maybe(steps(mass)),
        height=maybe(steps(length)),
        multiple_packet=draw(st.booleans()),
    )


ALL_FIELDS_HEX = (
    "fe0f"  # flags: bits 1-11
    "d500"  # body fat 213 × 0.1 %
    "e807030f0e1e2d"  # 2024-03-15 14:30:45
    "02"  # user 2
    "f41a"  # basal metabolism 6900 kJ
    "a901"  # muscle 425 × 0.1 %
    "d417"  # muscle mass 6100 × 0.005 kg
    "882c"  # fat free mass 11400 × 0.005 kg
    "cc29"  # soft lean mass 10700 × 0.005 kg
    "541f"  # body water mass 8020 × 0.005 kg
    "0314"  # impedance 5123 × 0.1 Ω
    "a438"  # weight 14500 × 0.005 kg
    "e006"  # height 1760 × 0.001 m
)


class TestBodyCompositionMeasurement(CodecContract):
    codec = BodyCompositionMeasurement
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        (
            ALL_FIELDS_HEX,
            {
                "unit": "SI",
                "body_fat_pct": 21.3,
                "timestamp": "2024-03-15T14:30:45",
                "user_id": 2,
                "basal_metabolism_kj": 6900,
                "muscle_pct": 42.5,
                "muscle_mass": 30.5,
                "fat_free_mass": 57.0,
                "soft_lean_mass": 53.5,
                "body_water_mass": 40.1,
                "impedance_ohm": 512.3,
                "weight": 72.5,
                "height": 1.76,
                "multiple_packet": False,
            },
        ),
        # Body fat 0xFFFF: measurement unsuccessful.
        ("0000ffff", {"unit": "SI", "body_fat_pct": "NaN", "multiple_packet": False}),
        # Imperial, multiple-packet flag (0x1000), body fat 25.0 %, weight 160.2 lb.
        (
            "0114fa00943e",
            {"unit": "imperial", "body_fat_pct": 25.0, "weight": 160.2, "multiple_packet": True},
        ),
        # Muscle percentage (bit 4) alone: 35.0 %, not a mass.
        (
            "1000c8005e01",
            {"unit": "SI", "body_fat_pct": 20.0, "muscle_pct": 35.0, "multiple_packet": False},
        ),
    ]
    values = body_compositions()


class TestBodyCompositionFeature(CodecContract):
    codec = BodyCompositionFeature
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        # 0x0001BFFF: bits 0-10, mass resolution 7 << 11, height resolution 3 << 15.
        (
            "ffbf0100",
            {
                "time_stamp_supported": True,
                "multiple_users_supported": True,
                "basal_metabolism_supported": True,
                "muscle_percentage_supported": True,
                "muscle_mass_supported": True,
                "fat_free_mass_supported": True,
                "soft_lean_mass_supported": True,
                "body_water_mass_supported": True,
                "impedance_supported": True,
                "weight_supported": True,
                "height_supported": True,
                "mass_measurement_resolution": 7,
                "height_measurement_resolution": 3,
            },
        ),
        # 0x00002008: muscle percentage (bit 3), mass resolution 4 (0.05 kg).
        (
            "08200000",
            {
                "time_stamp_supported": False,
                "multiple_users_supported": False,
                "basal_metabolism_supported": False,
                "muscle_percentage_supported": True,
                "muscle_mass_supported": False,
                "fat_free_mass_supported": False,
                "soft_lean_mass_supported": False,
                "body_water_mass_supported": False,
                "impedance_supported": False,
                "weight_supported": False,
                "height_supported": False,
                "mass_measurement_resolution": 4,
                "height_measurement_resolution": 0,
            },
        ),
    ]
    values = st.builds(
        BodyCompositionFeature,
        time_stamp_supported=st.booleans(),
        multiple_users_supported=st.booleans(),
        basal_metabolism_supported=st.booleans(),
        muscle_percentage_supported=st.booleans(),
        muscle_mass_supported=st.booleans(),
        fat_free_mass_supported=st.booleans(),
        soft_lean_mass_supported=st.booleans(),
        body_water_mass_supported=st.booleans(),
        impedance_supported=st.booleans(),
        weight_supported=st.booleans(),
        height_supported=st.booleans(),
        mass_measurement_resolution=st.integers(0, 15).map(WeightResolution),
        height_measurement_resolution=st.integers(0, 7).map(HeightResolution),
    )


@pytest.mark.parametrize(("uuid", "flag_bytes"), [(0x2A9C, 2), (0x2A9B, 1)])
@FUZZ
@given(data=st.data())
def test_any_flags_decode_or_raise_malformed(
    uuid: int, flag_bytes: int, data: st.DataObject
) -> None:
    raw = data.draw(flagged(flag_bytes))
    try:
        value = decode(uuid, raw)
    except MalformedValue as exc:
        assert exc.characteristic == uuid
        assert exc.data == raw
        return
    assert isinstance(value.__bytes__(), bytes)


def test_reserved_flag_bits_are_ignored() -> None:
    assert decode(0x2A9C, bytes.fromhex("00e0c800")) == decode(0x2A9C, bytes.fromhex("0000c800"))


def test_feature_precisions() -> None:
    feature = decode(0x2A9B, bytes.fromhex("ffbf0100"))
    assert isinstance(feature, BodyCompositionFeature)
    assert feature.mass_precision(WeightUnit.SI) == Decimal("0.005")
    assert feature.mass_precision(WeightUnit.IMPERIAL) == Decimal("0.01")
    assert feature.height_precision(WeightUnit.IMPERIAL) == Decimal("0.1")


def test_unencodable_values() -> None:
    with pytest.raises(UnencodableValue, match="muscle_mass"):
        bytes(BodyCompositionMeasurement(body_fat_pct=Decimal(20), muscle_mass=Decimal("1.001")))
    with pytest.raises(UnencodableValue, match="basal_metabolism_kj"):
        bytes(BodyCompositionMeasurement(body_fat_pct=Decimal(20), basal_metabolism_kj=70000))


@FUZZ
@given(value=body_compositions())
def test_from_json_inverts_to_json(value: BodyCompositionMeasurement) -> None:
    assert from_json(BodyCompositionMeasurement, to_json(value)) == value  # type: ignore[arg-type]


def test_from_json_defaults_multiple_packet_to_false() -> None:
    value = from_json(BodyCompositionMeasurement, {"body_fat_pct": 21.3, "weight": 72.5})
    assert value.multiple_packet is False
    assert bytes(value).hex() == "0004d500a438"
