"""Capture keys computed without a full decode (blood pressure) agree with the decoded path."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.blood_pressure import BloodPressureMeasurement, peek_timestamp
from device_drivers.reading import Reading, _device_timestamp
from tests.device_drivers.test_blood_pressure import pressure_values

MANY = settings(max_examples=400, deadline=None)
RECEIVED = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def decoded_keys(reading: Reading) -> tuple[str, str]:
    """The keys as the decoding path computes them (no blood-pressure shortcut)."""
    m = reading._decoded()
    stamp = _device_timestamp(m)
    return reading._identity(None, stamp).hex(), str(reading._phd_seconds(stamp))


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
