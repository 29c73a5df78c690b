"""The in-memory bitmap of delivered row keys: never misses one, clears most others, grows
with the `tombstones` table, and the store dedups through it across flushes and reopens."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.store import Store
from gateway.store import delivered_filter as df
from gateway.store.delivered_filter import DeliveredFilter
from tests.gateway.store.factories import current_time

ROW_KEYS = st.lists(st.binary(min_size=16, max_size=16), max_size=300)


@given(ROW_KEYS, ROW_KEYS)
def test_every_added_key_is_a_candidate(added: list[bytes], others: list[bytes]) -> None:
    f = DeliveredFilter(len(added))
    f.update(added)
    assert f.candidates(added) == added
    mixed = others + added
    assert set(added) <= set(f.candidates(mixed)) <= set(mixed)


def test_most_absent_keys_are_cleared() -> None:
    rng = random.Random(7)
    f = DeliveredFilter(50_000)
    f.update(rng.randbytes(16) for _ in range(50_000))
    absent = [rng.randbytes(16) for _ in range(20_000)]
    # 16 bits a key: about 1 - e^(-1/16), 6 %, of absent keys pass when full
    assert len(f.candidates(absent)) < 0.08 * len(absent)
    assert DeliveredFilter(0).candidates(absent) == []


def test_size_follows_the_expected_count_within_bounds() -> None:
    assert DeliveredFilter(0).size_bits == 2**16
    assert DeliveredFilter(10_000).size_bits == 2**18  # >= 160,000 bits
    assert DeliveredFilter(10**8).size_bits == 2**24  # 2 MiB at most
    small = DeliveredFilter(0)
    small.update(random.Random(1).randbytes(16) for _ in range(2**16 // df.BITS_PER_KEY))
    assert not small.full
    small.update([bytes(16)])
    assert small.full
    top = DeliveredFilter(10**8)
    top.count = 2**24  # as many keys as it has bits
    assert not top.full  # nothing larger to grow into: it only gets less selective


async def test_store_dedups_through_a_growing_filter(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filter made for very few keys is rebuilt larger when the flush fills it; every
    delivered reading is still refused, in this process and after a reopen."""
    monkeypatch.setattr(df, "_MIN_BITS_LOG2", 4)
    readings = [current_time(n) for n in range(40)]
    async with await Store.open(state_dir, min_free_mb=0) as s:
        assert s._engine.delivered.size_bits == 16
        ids = await s.add(readings)
        await s.ack(ids)
        await s.prune()  # the in-place tombstones move, and their bits with them
        assert s._engine.delivered.size_bits == 2**10  # rebuilt for 40 keys
        assert await s.add(readings) == ids
        assert (await s.stats()).queue_depth == 0
    with sqlite3.connect(state_dir / "store.db") as conn:
        assert conn.execute("SELECT count(*) FROM tombstones").fetchone()[0] == 40
    async with await Store.open(state_dir, min_free_mb=0) as s:
        assert s._engine.delivered.count == 40
        assert await s.add(readings[::-1]) == ids[::-1]
        fresh = await s.add([current_time(1000)])
        assert [x.id for x in await s.lease(10)] == fresh
