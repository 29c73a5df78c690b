"""The sealed plaintext layouts (2 written now, 1 still read), the row key and the sealer."""

from __future__ import annotations

import hmac
import os
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.reading import Reading
from gateway.store import TamperedRecord, crypto, records
from tests.gateway.store.factories import blood_pressure, current_time, glucose

DEVICES = st.sampled_from(["C0:11:22:33:44:55", "AA:BB:CC:DD:EE:FF", "é" * 10])


@st.composite
def readings(draw: st.DrawFn, *, with_boot: bool = True) -> Reading:
    boot, monotonic = None, None
    if with_boot and draw(st.booleans()):  # received while the clock was untrusted (L7.2)
        boot = draw(st.binary(min_size=16, max_size=16)).hex()
        monotonic = draw(st.integers(0, 2**63 - 1))
    return Reading(
        draw(DEVICES),
        draw(st.sampled_from([0x2A35, 0x2A18, 0x2A9D, 0x2A9C, 0x2A2B])),
        draw(st.binary(max_size=40)),
        datetime.fromtimestamp(draw(st.integers(0, 4_000_000_000)), UTC).replace(
            microsecond=draw(st.integers(0, 999_999))
        ),
        draw(st.booleans()),
        draw(st.none() | st.binary(max_size=20)),
        draw(st.none() | st.floats(allow_nan=False)),
        boot,
        monotonic,
    )


@settings(max_examples=60)
@given(readings())
def test_layout_2_round_trips(reading: Reading) -> None:
    identity, phd = reading.capture_keys()
    packed = records.pack_reading(reading, identity, phd)
    assert packed[0] == records.RECORD_FORMAT == 2
    assert records.unpack_reading(packed) == (reading, identity, phd)


@settings(max_examples=60)
@given(readings())
def test_the_add_path_packs_the_same_bytes_from_binary_keys(reading: Reading) -> None:
    digest, seconds = reading.capture_key_values()
    packed = records.pack_captured(reading, digest, seconds)
    assert packed == records.pack_reading(reading, *reading.capture_keys())
    assert records.unpack_reading(packed) == (reading, digest.hex(), str(seconds))


@settings(max_examples=30)
@given(readings(with_boot=False), st.text(max_size=40), st.text(max_size=12))
def test_unusual_keys_fall_back_to_layout_1(reading: Reading, identity: str, phd: str) -> None:
    packed = records.pack_reading(reading, identity, phd)
    assert records.unpack_reading(packed) == (reading, identity, phd)


@pytest.mark.parametrize(
    ("identity", "phd"),
    [
        ("A" * 32, "1"),  # upper-case hex would come back lower-case
        ("0" * 31, "1"),
        ("0" * 32, "01"),  # not the canonical decimal
        ("0" * 32, "+1"),
        ("0" * 32, str(2**63)),  # beyond i64
    ],
)
def test_keys_that_would_not_round_trip_use_layout_1(identity: str, phd: str) -> None:
    reading = current_time(1)
    packed = records.pack_reading(reading, identity, phd)
    assert packed[0] == 1
    assert records.unpack_reading(packed) == (reading, identity, phd)


def test_layout_1_records_are_still_read() -> None:
    """Bytes as the previous Carebox wrote them (layout 1), built by hand."""
    reading = glucose(7, 110)
    identity, phd = reading.capture_keys()
    device, ident, stamp = reading.device.encode(), identity.encode(), phd.encode()
    old = (
        bytes([1, 0x01])
        + reading.characteristic.to_bytes(2)
        + records.to_us(reading.received_at).to_bytes(8, signed=True)
    )
    for part in (device, reading.value, ident, stamp):
        old += len(part).to_bytes(2) + part
    assert records.unpack_reading(old) == (reading, identity, phd)


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_layout_2_checks_its_lengths(cut: int) -> None:
    reading = blood_pressure(120, 80, 60)
    packed = records.pack_reading(reading, *reading.capture_keys())
    with pytest.raises(TamperedRecord):
        records.unpack_reading(packed[:-cut])
    with pytest.raises(TamperedRecord):
        records.unpack_reading(packed + b"\0" * cut)
    with pytest.raises(TamperedRecord, match="unknown format"):
        records.unpack_reading(bytes([9]) + packed[1:])


@settings(max_examples=50)
@given(st.binary(min_size=1, max_size=100), st.text(max_size=80))
def test_row_keyer_is_hmac_sha256(key: bytes, identity: str) -> None:
    expected = hmac.digest(key, identity.encode(), "sha256")[: crypto.ROW_KEY_LEN]
    assert crypto.RowKeyer(key)(identity) == expected == crypto.row_key(key, identity)


def test_seal_many_draws_fresh_nonces_and_opens() -> None:
    sealer = crypto.Sealer(2, os.urandom(crypto.KEY_LEN))
    items = [(sealer.aad_head + bytes([i]) * 16, b"same plaintext") for i in range(50)]
    blobs = sealer.seal_many(items)
    assert len({b[: crypto.NONCE_LEN] for b in blobs}) == len(items)
    assert [sealer.open(aad, b) for (aad, _), b in zip(items, blobs, strict=True)] == [
        p for _, p in items
    ]
    with pytest.raises(TamperedRecord):
        sealer.open(items[1][0], blobs[0])  # moved to another row
