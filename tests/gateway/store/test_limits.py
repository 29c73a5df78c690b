"""Quota, free-disk floor, a really full file system, retention, space reclaim."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_drivers.reading import Reading
from gateway.store import Store, StoreFull
from gateway.store import store as store_module
from tests.gateway.store.factories import current_time


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted for the test (the suite runs as root, as `make test` does)."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _grow(mount: Path) -> None:
    """Free space the way a technician would: here, by growing the file system."""
    subprocess.run(["mount", "-o", "remount,size=6m", str(mount)], check=True)


async def _fill_until_full(
    store: Store, start: int
) -> tuple[list[list[str]], list[Reading], StoreFull]:
    committed: list[list[str]] = []
    n = start
    while True:
        batch = [current_time(n + i) for i in range(200)]
        try:
            committed.append(await store.add(batch))
        except StoreFull as exc:
            return committed, batch, exc
        n += 200


@pytest.mark.parametrize("floor_mb", [1, 0])
async def test_full_disk_refuses_clearly_and_loses_nothing(small_fs: Path, floor_mb: int) -> None:
    """floor 1: the free-disk floor refuses first; floor 0: SQLite itself hits ENOSPC."""
    state_dir = small_fs / "state"
    async with await Store.open(state_dir, min_free_mb=floor_mb) as store:
        committed, refused, exc = await _fill_until_full(store, 0)
        assert committed, "nothing fitted at all"
        assert "refused" in str(exc)
        assert "nothing committed was lost" in str(exc)
        with pytest.raises(StoreFull):  # refused again while still full
            await store.add(refused)
        delivered: set[str] = set()
        if not floor_mb:
            # no headroom was kept: a lease still works (it writes nothing); an ack writes a
            # few bytes (runs of seqs), which a full disk may still take or refuse: either the
            # readings are delivered for good, or a clear error leaves them waiting
            leased = [s.id for s in await store.lease(1000)]
            assert len(leased) == 1000
            try:
                await store.ack(leased)
                delivered = set(leased)
            except StoreFull as full:
                assert "free disk space" in str(full)
                await store.release(leased)
        _grow(small_fs)
        # one event for the episode (written late when the full disk refused it at once)
        late = await store.add([current_time(999_999)])
        full = [e for e in await store.events() if e.kind == "store_full"]
        assert len(full) == 1
    ids = [i for batch in committed for i in batch if i not in delivered] + late
    async with await Store.open(state_dir, min_free_mb=0) as store:
        got = []
        while leased := await store.lease(1000):
            got += [s.id for s in leased]
            await store.ack([s.id for s in leased])
        assert got == ids
        assert (await store.stats()).quarantined == 0


async def test_over_quota_still_accepts_with_rising_events(state_dir: Path) -> None:
    async with await Store.open(state_dir, max_mb=1, min_free_mb=0) as store:
        for n in range(0, 8000, 500):
            await store.add([current_time(n + i) for i in range(500)])
        assert (await store.stats()).queue_depth == 8000
        levels = [e.detail["percent"] for e in await store.events() if e.kind == "quota_pressure"]
        assert levels == [50, 80, 90, 100]


async def test_nothing_undelivered_is_deleted_without_retention(state_dir: Path) -> None:
    async with await Store.open(state_dir, min_free_mb=0) as store:
        await store.add([current_time(1)])
    _age_all(state_dir, days=400)
    async with await Store.open(state_dir, min_free_mb=0) as store:
        assert await store.prune() == 0
        assert (await store.stats()).queue_depth == 1


async def test_retention_limit_deletes_old_undelivered_with_event(state_dir: Path) -> None:
    async with await Store.open(state_dir, min_free_mb=0) as store:
        await store.add([current_time(1), current_time(2)])
    _age_all(state_dir, days=31)
    async with await Store.open(state_dir, min_free_mb=0, retention_days=30) as store:
        fresh = await store.add([current_time(3)])
        assert await store.prune() == 2
        assert [s.id for s in await store.lease()] == fresh
        (event,) = [e for e in await store.events() if e.kind == "retention_expired"]
        assert event.detail == {"deleted": 2, "retention_s": 30 * 86400}


def _age_all(state_dir: Path, *, days: int) -> None:
    conn = sqlite3.connect(state_dir / "store.db", isolation_level=None)
    try:
        conn.execute("UPDATE outbox SET captured_at = captured_at - ?", (days * 86_400_000,))
    finally:
        conn.close()


def _on_disk(state_dir: Path) -> int:
    return sum(p.stat().st_size for p in state_dir.glob("store.db*"))


async def test_drained_backlog_returns_the_disk(state_dir: Path) -> None:
    async with await Store.open(state_dir, min_free_mb=0) as store:
        await store.prune()
        empty = _on_disk(state_dir)
        for n in range(0, 20_000, 1000):
            await store.add([current_time(n + i) for i in range(1000)])
        await store.prune()
        full = _on_disk(state_dir)
        while leased := await store.lease(1000):
            await store.ack([s.id for s in leased])
        await store.prune()
        drained = _on_disk(state_dir)
    assert full > 3_000_000
    # what stays is the tombstones (~30 bytes per delivered reading)
    assert drained - empty < 20_000 * 50
    assert drained < full / 4


async def test_room_is_asked_once_then_credited_until_it_could_matter(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await Store.open(state_dir, min_free_mb=0, max_mb=512) as s:
        engine = s._engine
        asked = 0
        db_bytes = engine._db_bytes

        def counting() -> int:
            nonlocal asked
            asked += 1
            return db_bytes()

        monkeypatch.setattr(engine, "_db_bytes", counting)
        monkeypatch.setattr(store_module, "ROOM_RECHECK_S", 3600.0)  # a slow CI stays inside
        for n in range(5):
            await s.add([current_time(n)])
        assert asked == 1  # far from every limit: one full check for five adds
        monkeypatch.setattr(store_module, "ROOM_RECHECK_S", 0.0)
        await s.add([current_time(10)])
        assert asked == 2  # the credit expires: the disk is asked again


async def test_a_batch_bigger_than_the_credit_is_checked_in_full(state_dir: Path) -> None:
    # 1 MiB quota: the 50 % threshold is ~1,300 readings away at the estimate per reading
    async with await Store.open(state_dir, min_free_mb=0, max_mb=1) as s:
        await s.add([current_time(0)])
        credit = s._engine.room_credit
        assert 0 < credit < 1024 * 1024
        big = credit // store_module.ESTIMATED_ROW_BYTES + 2  # past the threshold itself
        await s.add([current_time(1 + n) for n in range(big)])
        kinds = [e.kind for e in await s.events()]
        assert "quota_pressure" in kinds  # crossing a threshold is never skipped
