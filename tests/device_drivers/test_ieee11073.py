from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers.errors import UnencodableValue
from device_drivers.ieee11073 import (
    FLOAT_SPECIALS,
    SFLOAT_SPECIALS,
    Special,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
    measure_to_json,
)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        (0x0078, Decimal("120")),  # 120 mmHg, exponent 0
        (0xF4B5, Decimal("120.5")),  # mantissa 1205, exponent -1
        (0xF04B, Decimal("7.5")),  # mantissa 75, exponent -1
        (0x0FFF, Decimal("-1")),  # mantissa -1
        (0x8001, Decimal("1E-8")),  # smallest exponent
        (0x7001, Decimal("1E+7")),  # largest exponent
        (0x0801 + 0x1000, Decimal("-2047E+1")),  # a special mantissa with exponent 1 is a number
        (0x0000, Decimal("0")),
    ],
)
def test_sfloat_numbers(word: int, expected: Decimal) -> None:
    value = decode_sfloat(word)
    assert value == expected
    assert isinstance(value, Decimal)
    assert encode_sfloat(value) == word


def test_sfloat_exponent_is_twos_complement_not_biased() -> None:
    # A biased reading (nibble - 8) would turn 120 into 1.2e-6.
    assert decode_sfloat(0x0078) == 120
    assert decode_sfloat(0xE4B0) == Decimal("12.00")


def test_specials_are_five_distinct_values_never_numbers() -> None:
    assert len(set(SFLOAT_SPECIALS.values())) == 5
    assert len(set(FLOAT_SPECIALS.values())) == 5
    for word, special in SFLOAT_SPECIALS.items():
        assert decode_sfloat(word) is special
        assert encode_sfloat(special) == word
    for word, special in FLOAT_SPECIALS.items():
        assert decode_float(word) is special
        assert encode_float(special) == word
    assert [measure_to_json(s) for s in Special] == ["NaN", "NRes", "+INF", "-INF", "Reserved"]


def test_float_numbers() -> None:
    assert decode_float(0xFF0000C8) == Decimal("20.0")
    assert decode_float(0x00FFFFFF) == Decimal("-1")
    assert encode_float(Decimal("98.6")) == 0xFF0003DA


def test_json_prints_as_the_device_meant() -> None:
    assert json.dumps(measure_to_json(decode_sfloat(0xF4B5))) == "120.5"
    assert json.dumps(measure_to_json(Decimal("70.005"))) == "70.005"
    assert json.dumps(measure_to_json(Decimal("0.0001"))) == "0.0001"
    assert json.dumps(measure_to_json(Decimal("1.2E+3"))) == "1200"


@pytest.mark.parametrize("value", ["2046", "0.12345", "1E+20", "NaN"])
def test_unencodable_values_are_refused(value: str) -> None:
    with pytest.raises(UnencodableValue):
        encode_sfloat(Decimal(value))


@given(st.integers(0, 0xFFFF))
def test_every_sfloat_word_round_trips(word: int) -> None:
    value = decode_sfloat(word)
    assert decode_sfloat(encode_sfloat(value)) == value
    if isinstance(value, Decimal):
        text = json.dumps(measure_to_json(value))
        assert Decimal(text) == value


@given(st.integers(0, 0xFFFFFFFF))
def test_every_float_word_round_trips(word: int) -> None:
    value = decode_float(word)
    assert decode_float(encode_float(value)) == value
    if isinstance(value, Decimal):
        assert Decimal(json.dumps(measure_to_json(value))) == value
