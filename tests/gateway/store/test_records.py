"""The sealed plaintext layouts (2 written now, 1 still read), the row key and the sealer."""

from __future__ import annotations

import dataclasses
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


# Bytes written by Carebox before the add path was batched (computed with that version): a
# reading re-sent after an upgrade must get the same identity, PHD seconds and row key, and a
# record the same plaintext, or dedup against what the store holds breaks.
PINNED_INDEX_KEY = bytes(range(32))
PINNED_RX = datetime(2026, 3, 1, 8, 30, 15, 250_000, tzinfo=UTC)
PINNED = [
    (
        Reading(
            "C0:11:22:33:44:55",
            0x2A35,
            bytes.fromhex("06780050006400ea070b1c0f1e004800"),
            PINNED_RX,
            True,
        ),
        "76e4d7add62d525b5064e75d9def1f22",
        849195000,
        "45c2da5d53e65218f395960fa28fe127",
        "02012a3500064bf24793045000000000329daff876e4d7add62d525b5064e75d9def1f22110010000043303a"
        "31313a32323a33333a34343a353506780050006400ea070b1c0f1e004800",
    ),
    (
        Reading(
            "C0:11:22:33:44:55",
            0x2A35,
            bytes.fromhex("00780050006400"),
            PINNED_RX,
            False,
            boot_id="00112233445566778899aabbccddeeff",
            monotonic_ns=123456789,
        ),
        "652912c48bcedb691658607cf2a4e80b",
        # the receive time to the microsecond since its change (`BP_BEFORE_MICROS`)
        "825669015.250000",
        "2f33b5d3e1bbc0391e54413eb30f0d11",
        "02282a3500064bf247930450000000003136b597652912c48bcedb691658607cf2a4e80b110007000000112233"
        "445566778899aabbccddeeff00000000075bcd150003d09043303a31313a32323a33333a34343a3535007800"
        "50006400",
    ),
    (
        Reading(
            "AA:BB:CC:DD:EE:FF",
            0x2A18,
            bytes.fromhex("030100ea070b1c0f1e00ffff5fb011"),
            PINNED_RX,
            True,
            context=bytes.fromhex("0201000100"),
            device_clock_offset_s=-12.5,
        ),
        "2d292c00a79dd90f68af055a9fc0e190",
        # its time offset (-1 min) appended since schema 6's change (`GLUCOSE_BEFORE_SUFFIX`)
        "849194940-1",
        "ceb76387bd86dd3b756ef7d38429ebb1",
        "02172a1800064bf24793045000000000329dafbc2d292c00a79dd90f68af055a9fc0e19011000f0005c02900"
        "0000000000ffff41413a42423a43433a44443a45453a4646030100ea070b1c0f1e00ffff5fb0110201000100",
    ),
]
# That glucose record as Carebox wrote it before its PHD timestamp part carried the offset:
# still opens, with the part it was sent under (a record is never re-keyed once stored).
GLUCOSE_BEFORE_SUFFIX = (
    "02072a1800064bf24793045000000000329dafbc2d292c00a79dd90f68af055a9fc0e19011000f0005c02900"
    "000000000041413a42423a43433a44443a45453a4646030100ea070b1c0f1e00ffff5fb0110201000100"
)


# That cuff reading (no device time) as Carebox wrote it while receive-time parts were whole
# seconds: it opens with the part it was captured with.
BP_BEFORE_MICROS = (
    "02082a3500064bf247930450000000003136b597652912c48bcedb691658607cf2a4e80b110007000000112233"
    "445566778899aabbccddeeff00000000075bcd1543303a31313a32323a33333a34343a353500780050006400"
)


def test_a_record_stored_before_the_microseconds_keeps_its_part() -> None:
    fields = records.unpack_fields(bytes.fromhex(BP_BEFORE_MICROS))
    assert fields[8] == "825669015"
    assert (fields[9], fields[10]) == ("00112233445566778899aabbccddeeff", 123456789)


@pytest.mark.parametrize(
    "phd",
    ["849182400.000250", "-5.999999", "849194940-60", "849194940+1", "12", "-3", "--5", "²"],
)
def test_every_captured_part_packs_in_layout_2_and_opens_as_it_was(phd: str) -> None:
    reading = blood_pressure(120, 80, 60)
    identity = reading.capture_keys()[0]
    packed = records.pack_reading(reading, identity, phd)
    # any other text goes to layout 1, as it is
    assert packed[0] == (1 if phd in ("--5", "²") else records.RECORD_FORMAT)
    assert records.unpack_fields(packed)[8] == phd


def test_a_record_stored_before_the_offset_suffix_keeps_its_part() -> None:
    fields = records.unpack_fields(bytes.fromhex(GLUCOSE_BEFORE_SUFFIX))
    assert fields[8] == "849194940"
    assert fields[7] == "2d292c00a79dd90f68af055a9fc0e190"


def test_the_add_path_writes_the_bytes_earlier_versions_wrote() -> None:
    batch = [reading for reading, *_ in PINNED]
    keys = [reading.capture_key_values() for reading in batch]
    rids = crypto.RowKeyer(PINNED_INDEX_KEY).of_digests([identity for identity, _ in keys])
    plain = records.pack_captured_many(batch, keys)
    for (_, identity, phd, rid, packed), (digest, seconds), got_rid, got in zip(
        PINNED, keys, rids, plain, strict=True
    ):
        assert (digest.hex(), seconds) == (identity, phd)
        assert got_rid.hex() == rid == crypto.row_key(PINNED_INDEX_KEY, identity).hex()
        assert got.hex() == packed


@settings(max_examples=50)
@given(st.binary(min_size=1, max_size=100), st.lists(st.binary(max_size=40), max_size=5))
def test_row_keys_of_digests_are_those_of_their_hex(key: bytes, digests: list[bytes]) -> None:
    keyer = crypto.RowKeyer(key)
    assert keyer.of_digests(digests) == [keyer(digest.hex()) for digest in digests]


@settings(max_examples=60)
@given(st.lists(readings(), max_size=6))
def test_packing_a_batch_gives_each_reading_its_own_bytes(batch: list[Reading]) -> None:
    """As a session's batch does, readings share one receive time and one device object, or
    not; any reading may have optional fields."""
    shared = [
        dataclasses.replace(r, device=batch[0].device, received_at=batch[0].received_at)
        for r in batch
    ]
    for readings_ in (batch, shared, shared + batch + shared):
        keys = [r.capture_key_values() for r in readings_]
        assert records.pack_captured_many(readings_, keys) == [
            records.pack_captured(r, *k) for r, k in zip(readings_, keys, strict=True)
        ]


@pytest.mark.parametrize(
    ("device", "identity", "phd"),
    [
        ("C" * 256, bytes(16), 0),  # a device name wider than layout 2's u8 length
        ("C0:11:22:33:44:55", bytes(15), 0),  # an identity of another length
        ("C0:11:22:33:44:55", bytes(16), 2**63),  # seconds beyond i64
    ],
)
def test_packing_a_batch_falls_back_to_layout_1_as_one_reading_does(
    device: str, identity: bytes, phd: int
) -> None:
    odd = dataclasses.replace(current_time(1), device=device)
    batch = [current_time(0), odd, current_time(2)]
    keys = [
        current_time(0).capture_key_values(),
        (identity, phd),
        current_time(2).capture_key_values(),
    ]
    packed = records.pack_captured_many(batch, keys)
    assert packed == [records.pack_captured(r, *k) for r, k in zip(batch, keys, strict=True)]
    assert packed[1][0] == 1
