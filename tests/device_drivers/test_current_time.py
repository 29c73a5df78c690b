from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st

from device_drivers import MalformedValue, decode
from device_drivers.current_time import AdjustReason, CurrentTime, DateTime
from tests.device_drivers.codec_contract import CodecContract

datetimes = st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda d: d.replace(microsecond=0)
)


class TestCurrentTime(CodecContract):
    codec = CurrentTime
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        # 2024-03-15 14:30:45, Friday (5), 128/256 s, external reference update.
        (
            "e807030f0e1e2d058002",
            {
                "timestamp": "2024-03-15T14:30:45",
                "day_of_week": 5,
                "fractions256": 128,
                "adjust_reason": 2,
            },
        ),
        # A device that does not know the date: the timestamp is omitted.
        ("00000000000000000000", {"day_of_week": 0, "fractions256": 0, "adjust_reason": 0}),
    ]
    values = st.builds(
        CurrentTime,
        st.none() | datetimes,
        st.integers(0, 7),
        st.integers(0, 255),
        st.integers(0, 15).map(AdjustReason),
    )


class TestDateTime(CodecContract):
    codec = DateTime
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        ("e1070c1f173b3b", {"timestamp": "2017-12-31T23:59:59"}),
    ]
    values = st.builds(DateTime, st.none() | datetimes)


@pytest.mark.parametrize(
    ("hex_value", "wrong"),
    [
        ("e1070d01000000", "13"),  # month 13
        ("e107021e000000", "30"),  # 30 February
        ("e1070101180000", "24"),  # hour 24
        ("10270101000000", "10000"),  # year 10000
    ],
)
def test_impossible_dates_are_malformed(hex_value: str, wrong: str) -> None:
    with pytest.raises(MalformedValue, match="2A08") as info:
        decode(0x2A08, bytes.fromhex(hex_value))
    # the reason may go where the bytes may not (events): it names the field, not its value
    assert info.value.reason.startswith("date_time: ")
    assert wrong not in info.value.reason


def test_day_of_week_out_of_range_names_no_value() -> None:
    with pytest.raises(MalformedValue, match="day_of_week") as info:
        decode(0x2A2B, bytes.fromhex("e807030f0e1e2d0980f2"))
    assert "9" not in info.value.reason


def test_reserved_adjust_reason_bits_are_ignored() -> None:
    value = decode(0x2A2B, bytes.fromhex("e807030f0e1e2d0580f2"))
    assert isinstance(value, CurrentTime)
    assert value.adjust_reason == AdjustReason.EXTERNAL_REFERENCE_TIME_UPDATE


def test_gateway_time_written_to_a_device() -> None:
    value = CurrentTime.at(datetime(2026, 11, 28, 15, 0, 0, 500_000))
    assert bytes(value).hex() == "ea070b1c0f0000068000"
