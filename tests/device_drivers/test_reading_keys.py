"""`Reading.capture_keys()` is the one-decode form of `identity()` and `phd_timestamp_part()`:
the store relies on the two agreeing for every kind of reading."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from device_drivers.reading import PHD_EPOCH, Reading

RECEIVED = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("uuid", "hex_value"),
    [
        (0x2A35, "06780050006400ea070b1c0f1e004800"),  # BP with a device timestamp
        (0x2A35, "00780050006400"),  # BP without a timestamp: the receive time counts
        (0x2A18, "030100ea070b1c0f1e00ffff5fb011"),  # glucose, time offset -1 min, seq 1
        (0x2A9D, "02b036ea070b1c0f1e00"),  # weight with a timestamp
        (0x2A35, "1e"),  # undecodable bytes
    ],
)
def test_capture_keys_equal_the_separate_calls(uuid: int, hex_value: str) -> None:
    r = Reading("C0:11:22:33:44:55", uuid, bytes.fromhex(hex_value), RECEIVED, True)
    assert r.capture_keys() == (r.identity(), r.phd_timestamp_part())


def test_glucose_identity_uses_the_sequence_number_and_offset_time() -> None:
    r = Reading(
        "C0:11:22:33:44:55", 0x2A18, bytes.fromhex("030100ea070b1c0f1e00ffff5fb011"), RECEIVED, True
    )
    assert r.sequence_number() == 1
    assert r.device_timestamp() == datetime(2026, 11, 28, 15, 29, 0)
    # 2026-11-28T15:29:00 is 849,194,940 s after 2000-01-01T00:00:00; the meter's offset of
    # -1 min follows, signed, in its own units (FHIR.md section 10's normative encoding)
    assert r.phd_timestamp_part() == "849194940-1"


def test_a_clock_turned_back_an_hour_keeps_two_glucose_records_apart() -> None:
    """Base 08:00 with offset -60 and base 07:00 with none read 07:00 both (winter time):
    two records, two identifiers; a record with no offset keeps the plain seconds."""

    def record(seq: int, hour: int, offset: int) -> Reading:
        value = bytes([0x03, seq, 0, 0xEA, 0x07, 11, 28, hour, 0, 0]) + offset.to_bytes(
            2, "little", signed=True
        )
        return Reading("C0:11:22:33:44:55", 0x2A18, value + bytes.fromhex("5fb011"), RECEIVED, True)

    summer, winter = record(1, 7, 0), record(2, 8, -60)
    assert summer.device_timestamp() == winter.device_timestamp()
    assert summer.phd_timestamp_part() == "849164400"
    assert winter.phd_timestamp_part() == "849164400-60"


def test_readings_without_time_or_sequence_stay_two() -> None:
    value = bytes.fromhex("00780050006400")
    a = Reading("C0:11:22:33:44:55", 0x2A35, value, RECEIVED, True)
    b = Reading("C0:11:22:33:44:55", 0x2A35, value, RECEIVED.replace(minute=5), True)
    assert a.identity() != b.identity()


@pytest.mark.parametrize(
    ("uuid", "hex_value", "described_as", "identity", "phd"),
    [
        (
            0x2A35,
            "06780050006400ea070b1c0f1e004800",
            "ts:2026-11-28T15:30:00",
            "76e4d7add62d525b5064e75d9def1f22",
            "849195000",
        ),
        (
            0x2A35,
            "00780050006400",
            "rx:2026-11-28T12:00:00+00:00",
            "9a3f17c7befc2b14d88b01ac3aa44ae9",
            # "849182400" until receive-time parts went to the microsecond (README changelog)
            "849182400.000000",
        ),
        (
            0x2A18,
            "030100ea070b1c0f1e00ffff5fb011",
            "seq:1",
            "3f525c31542627303dee189bdb68305f",
            # "849194940" until the meter's time offset joined the PHD part (README changelog);
            # the identity, which keys the store's dedup, is unchanged
            "849194940-1",
        ),
    ],
)
def test_identity_never_changes_from_one_version_to_the_next(
    uuid: int, hex_value: str, described_as: str, identity: str, phd: str
) -> None:
    """Stores keep identities and tombstones of earlier versions: a monitor re-sending a reading
    after an upgrade must hash to the same identity, so the formula is pinned here."""
    r = Reading("C0:11:22:33:44:55", uuid, bytes.fromhex(hex_value), RECEIVED, True)
    material = f"C0:11:22:33:44:55|{uuid:04X}|{described_as}|{hex_value}"
    assert hashlib.sha256(material.encode()).hexdigest()[:32] == identity
    assert r.capture_keys() == (identity, phd)
    digest, seconds = r.capture_key_values()
    assert (digest.hex(), str(seconds)) == (identity, phd)


def test_a_device_time_past_year_9999_gives_way_to_the_receive_time() -> None:
    """A meter clock at 9999-12-31T23:59 with a +60 min time offset: no datetime holds that
    time, so the reading counts as one without a device time instead of failing capture."""
    value = bytes.fromhex("030100" + "0f270c1f173b00" + "3c00" + "5fb011")
    r = Reading("C0:11:22:33:44:55", 0x2A18, value, RECEIVED, True)
    assert r.measurement().base_time == datetime(9999, 12, 31, 23, 59)  # type: ignore[attr-defined]
    assert r.device_timestamp() is None
    assert r.sequence_number() == 1
    seconds = int((RECEIVED.replace(tzinfo=None) - PHD_EPOCH).total_seconds())
    assert r.phd_timestamp_part() == f"{seconds}.000000"  # the receive time, to the microsecond
    assert r.capture_keys() == (r.identity(), r.phd_timestamp_part())


def test_readings_received_in_one_second_have_their_own_parts() -> None:
    """A cuff without time stamps sends its stored readings in one burst: each arrives in the
    same second, and the receive time's microseconds keep their identifiers apart."""
    value = bytes.fromhex("00780050006400")
    first = Reading("C0:11:22:33:44:55", 0x2A35, value, RECEIVED.replace(microsecond=250), True)
    second = Reading("C0:11:22:33:44:55", 0x2A35, value, RECEIVED.replace(microsecond=900), True)
    assert first.phd_timestamp_part() == "849182400.000250"
    assert second.phd_timestamp_part() == "849182400.000900"
