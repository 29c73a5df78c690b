"""Acks as runs of seqs (acked.py): the runs against a plain set, and the store's outbox when
acks arrive out of order, twice, or before a restart."""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway.store import Store
from gateway.store.acked import AckedRuns, runs_of
from tests.gateway.store.conftest import FakeClock
from tests.gateway.store.factories import current_time


@given(st.lists(st.lists(st.integers(0, 60), max_size=12), max_size=10))
def test_runs_hold_exactly_the_seqs_added(acks: list[list[int]]) -> None:
    runs = AckedRuns()
    model: set[int] = set()
    for seqs in acks:
        new = runs.new_of(seqs)
        assert set(new) == set(seqs) - model
        runs.add(runs_of(new))
        model |= set(seqs)
        assert runs.count == len(model)
        held = runs.runs()
        # disjoint, in order, and merged wherever they touch
        assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(held))
        assert {s for lo, hi in held for s in range(lo, hi + 1)} == model
        for seq in range(-1, 63):
            end = runs.run_end(seq)
            assert (end is not None) == (seq in model)
            if end is not None:
                assert all(s in model for s in range(seq, end + 1))
                assert end + 1 not in model
        for start in range(-1, 62, 7):
            assert runs.after(start) == [r for r in held if r[1] > start]
    assert AckedRuns(runs_of(model)).runs() == runs.runs()


def test_runs_of_cuts_at_gaps() -> None:
    assert runs_of([7, 3, 4, 5, 9, 8, 4]) == [(3, 5), (7, 9)]
    assert runs_of([]) == []


async def test_out_of_order_and_repeated_acks(store: Store, clock: FakeClock) -> None:
    ids = await store.add([current_time(n) for n in range(40)])
    leased = [s.id for s in await store.lease(40, lease_s=10)]
    assert leased == ids
    picked = random.Random(5).sample(range(40), 25)
    for part in (picked[:10], picked[10:], picked[:3]):  # the last part again
        await store.ack([ids[i] for i in part])
    await store.ack([ids[picked[0]], ids[picked[1]]])  # not leased any more: found by key
    waiting = [ids[i] for i in range(40) if i not in picked]
    stats = await store.stats()
    assert (stats.queue_depth, stats.tombstones, stats.delivered_waiting_prune) == (15, 25, 25)
    first_waiting = min(i for i in range(40) if i not in picked)
    status = await asyncio.to_thread(Store.read_status, store._engine.state_dir)
    assert status.stats.queue_depth == 15
    assert status.stats.oldest_waiting == stats.oldest_waiting is not None
    clock.now += 20  # the leases expired: only what was not delivered comes back
    assert [s.id for s in await store.lease(100)] == waiting
    assert waiting[0] == ids[first_waiting]
    await store.ack(waiting)
    assert await store.lease(100) == []  # empty: the delivered rows go to `tombstones`
    assert await store.add([current_time(n) for n in range(40)]) == ids  # still deduped
    stats = await store.stats()
    assert (stats.queue_depth, stats.tombstones, stats.delivered_waiting_prune) == (0, 40, 0)


async def test_acks_survive_a_restart_before_the_flush(state_dir: Path) -> None:
    async with await Store.open(state_dir, min_free_mb=0) as s:
        ids = await s.add([current_time(n) for n in range(10)])
        leased = [x.id for x in await s.lease(10)]
        await s.ack(leased[2:5])
        await s.ack(leased[7:8])
    with sqlite3.connect(state_dir / "store.db") as conn:
        assert conn.execute("SELECT lo, hi FROM acked ORDER BY lo").fetchall() == [
            (3, 5),
            (8, 8),
        ]
    async with await Store.open(state_dir, min_free_mb=0) as s:
        status = await asyncio.to_thread(Store.read_status, state_dir)
        assert status.stats.queue_depth == (await s.stats()).queue_depth == 6
        assert [x.id for x in await s.lease(100)] == [*ids[:2], *ids[5:7], *ids[8:]]
        assert await s.add([current_time(3)]) == [ids[3]]


async def test_status_skips_a_delivered_prefix(state_dir: Path) -> None:
    """The oldest waiting reading, read by `carebox status` from another process, is the
    first one not delivered, though delivered rows before it are still in the outbox."""
    async with await Store.open(state_dir, min_free_mb=0) as s:
        ids = await s.add([current_time(n) for n in range(3)])
        later = await s.add([current_time(10)])
        await s.ack(ids)
        with sqlite3.connect(state_dir / "store.db") as conn:
            conn.execute(
                "UPDATE outbox SET captured_at = 5000 WHERE rid = ?", (bytes.fromhex(later[0]),)
            )
        status = await asyncio.to_thread(Store.read_status, state_dir)
        assert status.stats.queue_depth == 1
        assert status.stats.oldest_waiting is not None
        assert status.stats.oldest_waiting.timestamp() == 5.0
