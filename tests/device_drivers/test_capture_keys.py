"""Capture keys computed without a full decode (blood pressure) agree with the decoded path."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers import reading as reading_module
from device_drivers.blood_pressure import BloodPressureMeasurement, peek_timestamp
from device_drivers.reading import Reading, _device_timestamp
from tests.device_drivers.test_blood_pressure import pressure_values

MANY = settings(max_examples=400, deadline=None)
RECEIVED = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def decoded_keys(reading: Reading) -> tuple[str, str]:
    """The keys as the decoding path computes them (no blood-pressure shortcut)."""
    m = reading._decoded()
    stamp = _device_timestamp(m)
    return reading._identity(None, stamp).hex(), str(reading._phd_part(stamp))


@MANY
@given(pressure_values(BloodPressureMeasurement))
def test_generated_values_give_the_same_keys(value: BloodPressureMeasurement) -> None:
    reading = Reading("C0:11:22:33:44:55", 0x2A35, bytes(value), RECEIVED, True)
    assert reading.capture_keys() == decoded_keys(reading)
    certain, stamp = peek_timestamp(bytes(value))
    if certain:
        assert stamp == value.timestamp


@MANY
@given(st.binary(max_size=24))
def test_arbitrary_bytes_give_the_same_keys(raw: bytes) -> None:
    reading = Reading("C0:11:22:33:44:55", 0x2A35, raw, RECEIVED, True)
    assert reading.capture_keys() == decoded_keys(reading)


def test_plain_records_are_certain_and_odd_ones_are_left_to_the_decoder() -> None:
    plain = bytes.fromhex("0e790050005f00ea070b1c0a1e00480001")
    assert peek_timestamp(plain) == (True, datetime(2026, 11, 28, 10, 30))
    assert peek_timestamp(plain[:-1]) == (False, None)  # the user id is missing
    unknown_date = bytes.fromhex("02" + "7900" * 3 + "00000000000000")
    assert peek_timestamp(unknown_date) == (False, None)
    assert peek_timestamp(bytes.fromhex("00" + "7900" * 3)) == (True, None)


# Date Time fields at every edge the stamp's text and seconds depend on: the years the decoder
# accepts (1582..9999) and just outside them, century and 400-year leap rules, month ends and
# the day after them, the last valid hour, minute and second and the first invalid one.
EDGES = (
    (0, 1, 1581, 1582, 1600, 1700, 1900, 2000, 2100, 2400, 9999, 10000, 65535),
    (0, 1, 2, 12, 13, 255),
    (0, 1, 28, 29, 30, 31, 32, 255),
    (0, 23, 24, 255),
    (0, 59, 60, 255),
    (0, 59, 60, 255),
)
DEVICES = st.sampled_from(["C0:11:22:33:44:55", "c0:11:22:33:44:55", "é0:11"])


@st.composite
def stamped_values(draw: st.DrawFn) -> bytes:
    """A Blood Pressure Measurement with a time stamp (any other flags, any fields after it,
    sometimes cut short): a valid time with some of its fields at or past an edge, so that
    every edge meets otherwise valid fields."""
    when = draw(st.datetimes(datetime(1582, 1, 1), datetime(9999, 12, 31, 23, 59, 59)))
    fields = [when.year, when.month, when.day, when.hour, when.minute, when.second]
    for i, edges in enumerate(EDGES):
        if draw(st.booleans()):
            fields[i] = draw(st.sampled_from(edges))
    flags = draw(st.integers(0, 255)) | 0x02
    head = bytes([flags]) + draw(st.binary(min_size=6, max_size=6))
    value = head + struct.pack("<HBBBBB", *fields) + draw(st.binary(max_size=8))
    return value[: draw(st.integers(0, len(value)))] if draw(st.booleans()) else value


@settings(max_examples=2000, deadline=None)
@given(stamped_values(), DEVICES)
def test_time_stamp_keys_equal_the_general_path(value: bytes, device: str) -> None:
    """Identities and PHD seconds are stable identifiers (a reading re-sent after an upgrade
    must dedup against one stored before): the stamp's text and seconds built from its
    integers must equal those of its datetime, and an invalid date must fall back."""
    reading = Reading(device, 0x2A35, value, RECEIVED, True)
    expected = decoded_keys(reading)
    assert reading.capture_keys() == expected
    assert reading.capture_keys() == expected  # again, from the cached date
    mutable = Reading(device, 0x2A35, bytearray(value), RECEIVED, True)  # type: ignore[arg-type]
    assert mutable.capture_keys() == expected
    certain, stamp = peek_timestamp(value)
    if certain and stamp is not None:
        assert expected[0] == reading._identity(None, stamp).hex()
        assert expected[1] == str(reading._phd_seconds(stamp))


@pytest.mark.parametrize(
    ("stamp", "phd"),
    [
        ((1582, 1, 1, 0, 0, 0), -13_190_774_400),
        ((1600, 2, 29, 12, 0, 0), -12_617_640_000),
        ((1999, 12, 31, 23, 59, 59), -1),
        ((2000, 1, 1, 0, 0, 0), 0),
        ((2024, 2, 29, 23, 59, 59), 762_566_399),
        ((9999, 12, 31, 23, 59, 59), 252_455_615_999),
    ],
)
def test_time_stamp_seconds_at_the_edges(stamp: tuple[int, ...], phd: int) -> None:
    value = bytes([0x02, 0x79, 0, 0x50, 0, 0x5F, 0]) + struct.pack("<HBBBBB", *stamp)
    reading = Reading("C0:11:22:33:44:55", 0x2A35, value, RECEIVED, True)
    assert reading.capture_key_values()[1] == phd
    assert reading.capture_keys() == decoded_keys(reading)


@pytest.mark.parametrize(
    "stamp",
    [(1581, 12, 31), (2100, 2, 29), (2023, 2, 29), (2024, 4, 31), (2024, 13, 1), (10000, 1, 1)],
)
def test_impossible_dates_fall_back_to_the_receive_time(stamp: tuple[int, int, int]) -> None:
    value = bytes([0x02, 0x79, 0, 0x50, 0, 0x5F, 0]) + struct.pack("<HBBBBB", *stamp, 8, 0, 0)
    reading = Reading("C0:11:22:33:44:55", 0x2A35, value, RECEIVED, True)
    seconds = int((RECEIVED.replace(tzinfo=None) - reading_module.PHD_EPOCH).total_seconds())
    assert reading.capture_key_values()[1] == f"{seconds}.000000"  # to the microsecond
    assert reading.capture_keys() == decoded_keys(reading)


def test_the_date_cache_stays_bounded_and_right() -> None:
    base = bytes([0x02, 0x79, 0, 0x50, 0, 0x5F, 0])
    readings = [
        Reading(
            "C0:11:22:33:44:55",
            0x2A35,
            base + struct.pack("<HBBBBB", 2001 + n // 365, n % 12 + 1, n % 28 + 1, 7, 8, 9),
            RECEIVED,
            True,
        )
        for n in range(3 * reading_module._DAYS_KEPT)
    ]
    for reading in readings + readings[::-1]:
        assert reading.capture_keys() == decoded_keys(reading)
        assert len(reading_module._days) <= reading_module._DAYS_KEPT
