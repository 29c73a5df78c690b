# ruff: noqa: ASYNC240 - tests inspect the store's files directly, on purpose
"""Outbox semantics: add (with cursor), dedup and tombstones, lease, ack, release, stats."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.store import DeviceRecord, Store, StoreBusy, StoreError
from tests.gateway.store.conftest import FakeClock
from tests.gateway.store.factories import DEVICE, current_time


async def test_add_lease_ack_round_trip(store: Store) -> None:
    readings = [current_time(n) for n in range(5)]
    ids = await store.add(readings)
    assert len(set(ids)) == 5
    leased = await store.lease(10)
    assert [s.id for s in leased] == ids
    assert [s.reading for s in leased] == readings
    assert [s.identity for s in leased] == [r.identity() for r in readings]
    assert [s.phd_timestamp for s in leased] == [r.phd_timestamp_part() for r in readings]
    assert all(s.attempts == 1 for s in leased)
    assert all(s.captured_at.tzinfo is not None for s in leased)
    await store.ack(ids[:3])
    stats = await store.stats()
    assert stats.queue_depth == 2
    assert stats.last_ack is not None
    assert stats.tombstones == 3
    assert stats.delivered_waiting_prune == 3  # sealed until the flush
    await store.ack(ids[3:])
    assert await store.lease(10) == []  # the queue runs empty: the delivered rows go
    stats = await store.stats()
    assert (stats.queue_depth, stats.tombstones, stats.delivered_waiting_prune) == (0, 5, 0)


async def test_duplicates_are_stored_once_even_after_delivery(store: Store) -> None:
    first = await store.add([current_time(1), current_time(2)])
    again = await store.add([current_time(2), current_time(1), current_time(1)])
    assert again == [first[1], first[0], first[0]]
    assert (await store.stats()).queue_depth == 2
    await store.ack([first[0]])
    replay = await store.add([current_time(1)])  # a device re-sending its history
    assert replay == [first[0]]
    leased = await store.lease(10)
    assert [s.id for s in leased] == [first[1]]


async def test_row_key_is_not_the_identity(store: Store) -> None:
    reading = current_time(7)
    (rid,) = await store.add([reading])
    assert rid != reading.identity()
    assert len(bytes.fromhex(rid)) == 16


async def test_cursor_commits_with_its_batch(store: Store) -> None:
    assert await store.cursor(DEVICE) is None
    await store.add([current_time(1)], cursor=(DEVICE.lower(), 41))
    assert await store.cursor(DEVICE) == 41
    # a meter reset makes the cursor go back: it is set, not maxed
    await store.add([], cursor=(DEVICE, 3))
    assert await store.cursor(DEVICE) == 3


async def test_lease_takes_oldest_first_and_skips_leased(store: Store, clock: FakeClock) -> None:
    ids = await store.add([current_time(n) for n in range(6)])
    a = await store.lease(2, lease_s=30)
    b = await store.lease(2, lease_s=30)
    assert [s.id for s in a] == ids[:2]
    assert [s.id for s in b] == ids[2:4]
    assert (await store.stats()).leased == 4
    clock.now += 31  # the first leases expire: a crash mid-send re-sends
    c = await store.lease(10, lease_s=30)
    assert [s.id for s in c] == ids
    assert [s.attempts for s in c] == [2, 2, 2, 2, 1, 1]
    assert await store.lease(10) == []


async def test_release_returns_to_queue(store: Store) -> None:
    ids = await store.add([current_time(n) for n in range(3)])
    await store.lease(3)
    assert await store.lease(3) == []
    await store.release(ids[1:])
    assert [s.id for s in await store.lease(3)] == ids[1:]


async def test_acked_never_leased_again(store: Store, clock: FakeClock) -> None:
    ids = await store.add([current_time(n) for n in range(3)])
    await store.lease(3, lease_s=1)
    await store.ack(ids)
    clock.now += 100
    assert await store.lease(3) == []


async def test_reopen_clears_leases(state_dir: Path, clock: FakeClock) -> None:
    async with await Store.open(state_dir, min_free_mb=0, clock=clock) as s:
        ids = await s.add([current_time(n) for n in range(3)])
        await s.lease(3, lease_s=3600)
    async with await Store.open(state_dir, min_free_mb=0, clock=clock) as s:
        assert [x.id for x in await s.lease(3)] == ids


async def test_bad_ids_are_a_clear_error(store: Store) -> None:
    with pytest.raises(StoreError, match="not a store id"):
        await store.ack(["not-hex"])


async def test_one_process_per_state_dir(store: Store, state_dir: Path) -> None:
    with pytest.raises(StoreBusy, match="another process"):
        await Store.open(state_dir)


async def test_closed_store_refuses(state_dir: Path) -> None:
    s = await Store.open(state_dir, min_free_mb=0)
    await s.close()
    with pytest.raises(StoreError, match="closed"):
        await s.lease()


async def test_events_append_and_page(store: Store) -> None:
    await store.record_event("stranger_device", address="AA:BB:CC:DD:EE:FF", rssi=-60)
    await store.record_event("clock_untrusted", trusted=False, offset_s=1.5)
    events = await store.events()
    assert [e.kind for e in events] == ["stranger_device", "clock_untrusted"]
    assert events[0].detail == {"address": "AA:BB:CC:DD:EE:FF", "rssi": -60}
    assert events[1].detail == {"trusted": False, "offset_s": 1.5}
    assert [e.kind for e in await store.events(after=events[0].id)] == ["clock_untrusted"]
    assert len(await store.events(limit=1)) == 1
    with pytest.raises(StoreError, match="detail 'x'"):
        await store.record_event("bad", x=[1])  # type: ignore[arg-type]


async def test_device_registry(store: Store) -> None:
    paired = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    rec = DeviceRecord("aa:bb:cc:dd:ee:ff", "blood_pressure", "BP7000", paired, model="M7")
    await store.upsert_device(rec)
    await store.upsert_device(DeviceRecord("11:22:33:44:55:66", "glucose", "Meter", paired))
    devices = await store.devices()
    assert [d.address for d in devices] == ["11:22:33:44:55:66", "AA:BB:CC:DD:EE:FF"]
    assert devices[1].model == "M7"
    assert devices[1].paired_at == paired
    seen = datetime(2026, 1, 3, tzinfo=UTC)
    await store.touch_device("AA:BB:CC:DD:EE:FF", at=seen, battery=80)
    await store.touch_device("AA:BB:CC:DD:EE:FF", at=seen)
    touched = (await store.devices())[1]
    assert (touched.last_contact, touched.battery) == (seen, 80)
    with pytest.raises(StoreError, match="no time zone"):
        await store.upsert_device(
            DeviceRecord("AA:AA:AA:AA:AA:AA", "glucose", "x", datetime(2026, 1, 1))
        )
    await store.remove_device("aa:bb:cc:dd:ee:ff")
    assert [d.address for d in await store.devices()] == ["11:22:33:44:55:66"]


async def test_device_information_updates_only_its_columns(store: Store) -> None:
    paired = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    await store.upsert_device(DeviceRecord("AA:BB:CC:DD:EE:FF", "glucose", "Meter", paired))
    seen = datetime(2026, 1, 3, tzinfo=UTC)
    await store.touch_device("AA:BB:CC:DD:EE:FF", at=seen, battery=64)
    await store.update_device_information(
        "aa:bb:cc:dd:ee:ff", {"manufacturer": "Acme", "system_id": "0011223344556677"}
    )
    await store.update_device_information("AA:BB:CC:DD:EE:FF", {"model": "G2"})
    (row,) = await store.devices()
    assert (row.last_contact, row.battery) == (seen, 64)
    assert (row.name, row.paired_at) == ("Meter", paired)
    assert (row.manufacturer, row.model, row.system_id) == ("Acme", "G2", "0011223344556677")
    await store.update_device_information("11:22:33:44:55:66", {"model": "X"})  # not paired
    assert [d.address for d in await store.devices()] == ["AA:BB:CC:DD:EE:FF"]
    with pytest.raises(StoreError, match="'battery'"):
        await store.update_device_information("AA:BB:CC:DD:EE:FF", {"battery": "1"})


async def test_status_reads_while_service_runs(store: Store, state_dir: Path) -> None:
    await store.add([current_time(n) for n in range(4)])
    await store.upsert_device(
        DeviceRecord(DEVICE, "glucose", "Meter", datetime(2026, 1, 1, tzinfo=UTC))
    )
    # carebox status is another, synchronous process: here a thread stands in for it
    status = await asyncio.to_thread(Store.read_status, state_dir)
    assert status.stats.queue_depth == 4
    assert status.stats.oldest_waiting is not None
    assert status.stats.size_bytes > 0
    assert [d.address for d in status.devices] == [DEVICE]


def test_status_without_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store in"):
        Store.read_status(tmp_path)


async def test_files_are_private(store: Store, state_dir: Path) -> None:
    await store.add([current_time(1)])
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "keys" / "store.kek").stat().st_mode) == 0o600
    for name in ("store.db", "store.db-wal", "store.db-shm", "store.lock"):
        assert stat.S_IMODE((state_dir / name).stat().st_mode) == 0o600, name


async def test_rows_sealed_by_the_previous_layout_still_lease(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database written by the previous Carebox (layout 1 plaintexts) drains unchanged."""
    from gateway.store import records
    from gateway.store import store as store_module

    old = [current_time(n) for n in range(3)]
    with monkeypatch.context() as m:
        m.setattr(
            store_module,
            "pack_captured_many",
            lambda rs, keys: [
                records._pack_v1(r, i.hex(), str(p), r.device.encode())
                for r, (i, p) in zip(rs, keys, strict=True)
            ],
        )
        async with await Store.open(state_dir, min_free_mb=0) as s:
            old_ids = await s.add(old)
    async with await Store.open(state_dir, min_free_mb=0) as s:
        new_ids = await s.add([current_time(10), *old])  # old ones are duplicates
        assert new_ids[1:] == old_ids
        leased = await s.lease(10)
        assert [x.id for x in leased] == [*old_ids, new_ids[0]]
        assert [x.reading for x in leased] == [*old, current_time(10)]
        assert [x.identity for x in leased] == [r.identity() for r in [*old, current_time(10)]]


async def test_attempts_count_every_lease_across_release_and_reopen(
    state_dir: Path, clock: FakeClock
) -> None:
    async with await Store.open(state_dir, min_free_mb=0, clock=clock) as s:
        ids = await s.add([current_time(n) for n in range(3)])
        assert [x.attempts for x in await s.lease(2)] == [1, 1]
        await s.release(ids[:1])
        assert [x.attempts for x in await s.lease(3)] == [2, 1]  # ids[0], ids[2]
        clock.now += 3600  # every lease expires
        assert [x.attempts for x in await s.lease(3)] == [3, 2, 2]
    async with await Store.open(state_dir, min_free_mb=0, clock=clock) as s:
        assert [x.attempts for x in await s.lease(3)] == [4, 3, 3]
        await s.ack(ids[1:])
    async with await Store.open(state_dir, min_free_mb=0, clock=clock) as s:
        assert [(x.id, x.attempts) for x in await s.lease(3)] == [(ids[0], 5)]


async def test_a_held_row_is_never_leased_twice(store: Store, clock: FakeClock) -> None:
    ids = await store.add([current_time(n) for n in range(10)])
    a = await store.lease(3, lease_s=100)
    await store.release([ids[1]])
    b = await store.lease(3, lease_s=10)  # ids[1] again, then past the held ones
    assert [x.id for x in b] == [ids[1], ids[3], ids[4]]
    await store.ack([ids[3]])
    clock.now += 50  # b's leases expired, a's (but ids[1]) still held
    c = await store.lease(10, lease_s=100)
    assert [x.id for x in c] == [ids[1], ids[4], *ids[5:]]
    assert {x.id for x in a} & {x.id for x in c} == {ids[1]}
    assert await store.lease(10) == []
    assert (await store.stats()).leased == 9


async def test_a_failed_ack_keeps_nothing_half_done(store: Store) -> None:
    ids = await store.add([current_time(n) for n in range(3)])
    await store.lease(3)
    with pytest.raises(StoreError, match="not a store id"):
        await store.ack([ids[0], "zz"])
    assert (await store.stats()).queue_depth == 3
    assert (await store.stats()).leased == 3


async def test_delivered_rows_stay_tombstones_through_the_bulk_move(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ack records the rows as delivered runs, kept in place; every DELIVERED_FLUSH of them
    (and prune) moves their keys to `tombstones` and deletes them. Dedup, stats and status
    hold on both sides of the move."""
    from gateway.store import store as store_module

    monkeypatch.setattr(store_module, "DELIVERED_FLUSH", 4)
    async with await Store.open(state_dir, min_free_mb=0) as s:
        ids = await s.add([current_time(n) for n in range(6)])
        await s.ack([x.id for x in await s.lease(3)])  # 3 kept, delivered
        stats = await s.stats()
        assert (stats.queue_depth, stats.tombstones, stats.delivered_waiting_prune) == (3, 3, 3)
        status = await asyncio.to_thread(Store.read_status, state_dir)
        assert (status.stats.queue_depth, status.stats.tombstones) == (3, 3)
        assert await s.add([current_time(1)]) == ids[1:2]  # deduped by the row kept
        assert [x.id for x in await s.lease(10)] == ids[3:]
        await s.ack(ids[3:4])  # 4 kept: moved
        with sqlite3.connect(state_dir / "store.db") as conn:
            assert conn.execute("SELECT count(*) FROM tombstones").fetchone()[0] == 4
            assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 2
        assert await s.add([current_time(0), current_time(3)]) == [ids[0], ids[3]]
        await s.ack(ids[4:])  # everything delivered and moved: the highest seqs go too
        await s.prune()
        fresh = await s.add([current_time(100), current_time(101)])
        assert [x.id for x in await s.lease(10)] == fresh  # a reused seq is not "delivered"
        stats = await s.stats()
        assert (stats.queue_depth, stats.tombstones) == (2, 6)


async def test_retention_never_deletes_a_tombstone(state_dir: Path) -> None:
    async with await Store.open(state_dir, min_free_mb=0, retention_days=1) as s:
        ids = await s.add([current_time(1), current_time(2)])
        await s.ack(ids[:1])
        # the technician's limit applies to undelivered rows only, even mid-way (quota)
        assert await s._run(s._engine._expire) == 0  # nothing is older than a day
        with sqlite3.connect(state_dir / "store.db") as conn:
            conn.execute("UPDATE outbox SET captured_at = 1 WHERE key_id != 0")
        assert await s._run(s._engine._expire) == 1
        assert await s.add([current_time(1)]) == ids[:1]
        assert (await s.stats()).queue_depth == 0


async def test_version_2_database_migrates_with_its_tombstones(state_dir: Path) -> None:
    from gateway.store import schema

    async with await Store.open(state_dir, min_free_mb=0) as s:
        ids = await s.add([current_time(n) for n in range(4)])
        await s.ack(ids[:2])
        await s.prune()  # into `tombstones`, as version 2 kept them
    with sqlite3.connect(state_dir / "store.db") as conn:
        conn.execute("DROP INDEX outbox_delivered")
        conn.execute("DROP TABLE malformed")
        conn.execute("DROP TABLE acked")
        _without_resolutions(conn)
        conn.execute("PRAGMA user_version = 2")
    async with await Store.open(state_dir, min_free_mb=0) as s:
        assert await s.add([current_time(0)]) == ids[:1]
        assert [x.id for x in await s.lease(10)] == ids[2:]
        await s.ack(ids[2:3])
        assert (await s.stats()).tombstones == 3
    with sqlite3.connect(state_dir / "store.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION == 6


def _without_resolutions(conn: sqlite3.Connection) -> None:
    """The devices table as versions 2-5 had it (schema 6 added the scale resolutions)."""
    conn.execute("ALTER TABLE devices DROP COLUMN weight_resolution")
    conn.execute("ALTER TABLE devices DROP COLUMN height_resolution")


async def _schema_5_store_with_a_scale(state_dir: Path) -> None:
    paired = datetime(2026, 1, 2, tzinfo=UTC)
    async with await Store.open(state_dir, min_free_mb=0) as s:
        await s.upsert_device(DeviceRecord("E0:11:22:33:44:55", "weight_scale", "WS", paired))
    with sqlite3.connect(state_dir / "store.db") as conn:
        _without_resolutions(conn)
        conn.execute("PRAGMA user_version = 5")


async def test_version_5_devices_gain_the_scale_resolutions(state_dir: Path) -> None:
    await _schema_5_store_with_a_scale(state_dir)
    async with await Store.open(state_dir, min_free_mb=0) as s:
        (device,) = await s.devices()
        assert (device.name, device.weight_resolution, device.height_resolution) == (
            "WS",
            None,
            None,
        )
        await s.update_device_information(
            "E0:11:22:33:44:55", {"weight_resolution": "4", "height_resolution": "3"}
        )
        (device,) = await s.devices()
        assert (device.weight_resolution, device.height_resolution) == ("4", "3")


async def test_version_3_database_gains_the_sealed_malformed_values(state_dir: Path) -> None:
    async with await Store.open(state_dir, min_free_mb=0) as s:
        ids = await s.add([current_time(n) for n in range(2)])
    with sqlite3.connect(state_dir / "store.db") as conn:
        conn.execute("DROP TABLE malformed")  # as version 3 had it
        conn.execute("DROP TABLE acked")
        _without_resolutions(conn)
        conn.execute("PRAGMA user_version = 3")
    async with await Store.open(state_dir, min_free_mb=0) as s:
        assert [x.id for x in await s.lease(10)] == ids
        await s.record_malformed("C0:11:22:33:44:55", 0x2A35, b"\x1e\x78", length=2)
        (kept,) = await s.malformed()
        assert kept.value == b"\x1e\x78"


async def test_version_4_database_keeps_its_in_place_tombstones(state_dir: Path) -> None:
    """Before schema 5 an ack rewrote each delivered row in place (key id 0, payload erased):
    such rows still dedup, count as delivered, and go to `tombstones` at the flush."""
    async with await Store.open(state_dir, min_free_mb=0) as s:
        ids = await s.add([current_time(n) for n in range(4)])
    with sqlite3.connect(state_dir / "store.db") as conn:
        conn.execute(
            "UPDATE outbox SET key_id = 0, payload = x'', captured_at = 0, attempts = 0 "
            "WHERE seq <= 2"
        )  # what version 4's ack wrote
        conn.execute("DROP TABLE acked")
        _without_resolutions(conn)
        conn.execute("PRAGMA user_version = 4")
    async with await Store.open(state_dir, min_free_mb=0) as s:
        stats = await s.stats()
        assert (stats.queue_depth, stats.tombstones, stats.delivered_waiting_prune) == (2, 2, 0)
        assert await s.add([current_time(1), current_time(0)]) == [ids[1], ids[0]]
        leased = [x.id for x in await s.lease(10)]
        assert leased == ids[2:]
        await s.ack(leased)
        assert (await s.stats()).delivered_waiting_prune == 2
        assert await s.lease(10) == []  # empty: both kinds are flushed
        assert await s.add([current_time(n) for n in range(4)]) == ids
        stats = await s.stats()
        assert (stats.queue_depth, stats.tombstones, stats.delivered_waiting_prune) == (0, 4, 0)
    with sqlite3.connect(state_dir / "store.db") as conn:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM tombstones").fetchone()[0] == 4


async def test_leases_of_different_lengths_expire_each_in_time(
    store: Store, clock: FakeClock
) -> None:
    """A lease starts after the rows earlier leases hold only while none of those expired."""
    ids = await store.add([current_time(n) for n in range(6)])
    assert [x.id for x in await store.lease(2, lease_s=100)] == ids[:2]
    assert [x.id for x in await store.lease(2, lease_s=10)] == ids[2:4]
    assert [x.id for x in await store.lease(1, lease_s=100)] == ids[4:5]
    clock.now += 20  # the middle lease expired, the others did not
    assert [x.id for x in await store.lease(10, lease_s=100)] == [*ids[2:4], ids[5]]
    assert await store.lease(10) == []
    clock.now += 100
    assert [x.id for x in await store.lease(10)] == ids


async def test_a_quarantined_newest_row_frees_its_place(state_dir: Path, clock: FakeClock) -> None:
    async with await Store.open(state_dir, min_free_mb=0, clock=clock) as s:
        ids = await s.add([current_time(n) for n in range(3)])
    with sqlite3.connect(state_dir / "store.db") as conn:
        conn.execute("UPDATE outbox SET payload = x'00' WHERE rid = ?", (bytes.fromhex(ids[2]),))
    async with await Store.open(state_dir, min_free_mb=0, clock=clock) as s:
        assert [x.id for x in await s.lease(10)] == ids[:2]  # the third is quarantined
        new = await s.add([current_time(9)])  # may take the quarantined row's seq
        assert [x.id for x in await s.lease(10)] == new


async def test_status_reads_a_store_not_yet_migrated(state_dir: Path) -> None:
    """`carebox status` opens the store read-only: after an upgrade, before the service has
    migrated it, a schema 5 store still shows its devices."""
    await _schema_5_store_with_a_scale(state_dir)
    (device,) = Store.read_status(state_dir).devices
    assert (device.address, device.weight_resolution) == ("E0:11:22:33:44:55", None)
