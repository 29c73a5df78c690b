"""Sealed leases: what the rendering worker opens is what `lease` would have handed out; a
record that fails its tag there is quarantined as `lease` quarantines it; keys stay out of
reprs; a rotated store's rows open with the key each carries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.store import Store, StoredReading
from gateway.store.sealed import Opener, SealedReading, as_rows
from tests.gateway.store.conftest import FakeClock
from tests.gateway.store.factories import blood_pressure, current_time, glucose, weight


def _opened(items: list[SealedReading]) -> tuple[list[StoredReading], list[tuple[str, str]]]:
    rows, keys = as_rows(items)
    return Opener().open(rows, keys)


def _sql(state_dir: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(state_dir / "store.db", isolation_level=None)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _flip_byte(state_dir: Path, seq: int) -> None:
    ((blob,),) = _sql(state_dir, "SELECT payload FROM outbox WHERE seq = ?", seq)
    assert isinstance(blob, bytes)
    bad = bytearray(blob)
    bad[20] ^= 0x01
    _sql(state_dir, "UPDATE outbox SET payload = ? WHERE seq = ?", bytes(bad), seq)


async def test_opened_sealed_leases_are_what_lease_hands_out(
    store: Store, clock: FakeClock
) -> None:
    readings = [current_time(1), blood_pressure(120, 80, 64), glucose(3, 95), weight(14_000)]
    ids = await store.add(readings)
    sealed = await store.lease_sealed(10, lease_s=30)
    assert [s.id for s in sealed] == ids
    assert [s.attempts for s in sealed] == [1] * 4
    opened, bad = _opened(sealed)
    assert bad == []
    # leased: a second lease, sealed or not, hands out nothing until they expire
    assert await store.lease(10, lease_s=30) == []
    assert await store.lease_sealed(10, lease_s=30) == []
    clock.now += 31
    plain = await store.lease(10, lease_s=30)
    assert [p.attempts for p in plain] == [2] * 4
    # the same readings, identities, PHD timestamps and times; only the count moved on
    assert [(o.id, o.reading, o.phd_timestamp, o.captured_at, o.identity) for o in opened] == [
        (p.id, p.reading, p.phd_timestamp, p.captured_at, p.identity) for p in plain
    ]
    assert [o.reading for o in opened] == readings


async def test_sealed_leases_ack_and_release_like_any_lease(store: Store) -> None:
    ids = await store.add([current_time(n) for n in range(6)])
    outbox = store.sealed()
    first = await outbox.lease(4, lease_s=30)
    assert [s.id for s in first] == ids[:4]
    await outbox.ack([s.id for s in first[:2]])
    await outbox.release([s.id for s in first[2:]])
    again = await outbox.lease(10, lease_s=30)
    assert [s.id for s in again] == ids[2:]
    assert [s.attempts for s in again] == [2, 2, 1, 1]
    assert (await outbox.stats()).queue_depth == 4


async def test_a_record_failing_its_tag_in_the_worker_is_quarantined(
    store: Store, state_dir: Path
) -> None:
    ids = await store.add([current_time(n) for n in range(3)])
    ((seq,),) = _sql(state_dir, "SELECT min(seq) + 1 FROM outbox")
    assert isinstance(seq, int)
    _flip_byte(state_dir, seq)
    sealed = await store.lease_sealed(10, lease_s=30)
    assert [s.id for s in sealed] == ids  # the store does not open them: the worker does
    opened, bad = _opened(sealed)
    assert [o.id for o in opened] == [ids[0], ids[2]]
    assert [i for i, _ in bad] == [ids[1]]
    assert "tag" in bad[0][1]
    await store.quarantine_leased(bad)
    stats = await store.stats()
    assert stats.quarantined == 1
    assert stats.queue_depth == 2
    events = [e for e in await store.events() if e.kind == "tampered_record"]
    assert [e.detail["row"] for e in events] == [seq]
    # its message goes out without it; the ack of the whole cut leaves nothing behind
    await store.ack(ids)
    assert (await store.stats()).queue_depth == 0
    assert await store.lease(10) == []


async def test_quarantine_leased_leaves_rows_it_did_not_lease(store: Store) -> None:
    ids = await store.add([current_time(n) for n in range(2)])
    await store.quarantine_leased([(ids[0], "not leased here")])
    await store.quarantine_leased([("ab" * 16, "no such row")])
    assert (await store.stats()).quarantined == 0
    assert [s.id for s in await store.lease(10)] == ids


async def test_an_unknown_key_is_quarantined_by_the_sealed_lease(
    store: Store, state_dir: Path
) -> None:
    ids = await store.add([current_time(n) for n in range(2)])
    _sql(state_dir, "UPDATE outbox SET key_id = 99 WHERE seq = (SELECT min(seq) FROM outbox)")
    sealed = await store.lease_sealed(10)
    assert [s.id for s in sealed] == ids[1:]
    assert (await store.stats()).quarantined == 1


async def test_rows_of_a_rotated_store_open_with_the_key_each_carries(store: Store) -> None:
    old = await store.add([current_time(1)])
    new_key = await store.rotate_key()
    new = await store.add([current_time(2)])
    sealed = await store.lease_sealed(10)
    assert [s.id for s in sealed] == old + new
    assert sealed[0].key_id != sealed[1].key_id == new_key
    assert sealed[0].key != sealed[1].key
    opened, bad = _opened(sealed)
    assert bad == []
    assert [o.reading for o in opened] == [current_time(1), current_time(2)]
    # a row's key id with another key's bytes fails its tag: the key is bound to the record
    rows, keys = as_rows(sealed)
    swapped = dict.fromkeys(keys, keys[new_key])
    opened, bad = Opener().open(rows, swapped)
    assert [o.id for o in opened] == new
    assert [i for i, _ in bad] == old


def test_a_sealed_reading_shows_neither_its_key_nor_its_payload() -> None:
    key, payload = bytes(range(32)), b"\xaa" * 40
    shown = repr(SealedReading("ab" * 16, (2, bytes(16), 0, 1, payload), key))
    assert key.hex() not in shown
    assert repr(key) not in shown
    assert repr(payload) not in shown


@pytest.mark.parametrize("limit", [0, -1])
async def test_an_empty_sealed_lease(store: Store, limit: int) -> None:
    await store.add([current_time(1)])
    assert await store.lease_sealed(limit) == []
