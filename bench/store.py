"""Benchmark of the encrypted store: add (batches of 100, sealing included) beside stdlib
sqlite3 executemany of same-size blobs with the same pragmas, lease+ack (batches of 100, and
of 1000 as the uplink's drain), bytes on disk per waiting reading, and RSS growth from 0 to
1,000,000 waiting, and add in a store that delivered 200,000 readings before (with and
without its in-memory filter of delivered keys). add and raw alternate over five rounds in
fresh files: add_per_s and raw_sqlite_per_s are medians, add_ratio the median of the rounds'
ratios. Last line: one JSON object.

    .venv/bin/python bench/store.py [--million N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_drivers.reading import Reading
from gateway.store import Store
from gateway.store.delivered_filter import DeliveredFilter
from gateway.store.records import pack_captured_many
from gateway.store.store import INSERT_READINGS

BATCH = 100
LEASE_BIG = 1000  # the uplink's drain leases this many at a time
ADD_READINGS = 20_000
DISK_READINGS = 100_000
ROUNDS = 5  # add and raw sqlite3 alternate this many times; medians reported
TOMBSTONES = 200_000  # readings delivered before, for add_after_deliveries
RECEIVED = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def bp(n: int) -> Reading:
    """A real Blood Pressure Measurement (mmHg, time stamp, pulse), distinct for each n."""
    minute, rest = n % 60, n // 60
    hour, rest = rest % 24, rest // 24
    day, rest = rest % 28 + 1, rest // 28
    month, year = rest % 12 + 1, 2000 + rest // 12
    value = (
        bytes([0x06])
        + struct.pack("<HHH", 120 + n % 60, 80 + n % 30, 95)
        + struct.pack("<HBBBBB", year, month, day, hour, minute, n % 60)
        + struct.pack("<H", 60 + n % 40)
    )
    return Reading("C0:11:22:33:44:55", 0x2A35, value, RECEIVED, clock_trusted=True)


class _Precomputed(Reading):
    """A Reading whose identity and PHD timestamp were computed beforehand: `add` with it
    measures the store's own cost (sealing, HMAC, SQLite) without the decode."""

    __slots__ = ("_keys",)
    _keys: tuple[bytes, int]

    def capture_key_values(self) -> tuple[bytes, int]:
        return self._keys


def precomputed(r: Reading) -> Reading:
    p = _Precomputed(r.device, r.characteristic, r.value, r.received_at, r.clock_trusted)
    object.__setattr__(p, "_keys", r.capture_key_values())
    return p


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def files_bytes(state_dir: Path) -> int:
    return sum(p.stat().st_size for p in state_dir.glob("store.db*"))


def bench_reading_keys() -> float:
    """`Reading.capture_key_values()` alone (identity and PHD timestamp from one decode), which
    `add` must call once per reading: a ceiling on add_per_s that is not the store's."""
    readings = [bp(n) for n in range(ADD_READINGS)]
    t0 = time.perf_counter()
    for r in readings:
        r.capture_key_values()
    return ADD_READINGS / (time.perf_counter() - t0)


async def bench_add_store_only(root: Path) -> float:
    batches = [
        [precomputed(bp(i * BATCH + j)) for j in range(BATCH)] for i in range(ADD_READINGS // BATCH)
    ]
    async with await Store.open(root / "add-store-only", min_free_mb=0) as store:
        t0 = time.perf_counter()
        for batch in batches:
            await store.add(batch)
        elapsed = time.perf_counter() - t0
        assert (await store.stats()).queue_depth == ADD_READINGS
    return ADD_READINGS / elapsed


async def drain(store: Store, size: int) -> float:
    """Readings per second through lease(size) + ack of what was leased, until empty."""
    t0 = time.perf_counter()
    drained = 0
    while leased := await store.lease(size):
        await store.ack([s.id for s in leased])
        drained += len(leased)
    elapsed = time.perf_counter() - t0
    assert drained == ADD_READINGS
    return drained / elapsed


async def drain_on_store_thread(store: Store, size: int) -> float:
    """As `drain`, but the whole loop is one job on the store's owner thread: the store's
    own cost of lease+ack, without one event-loop hand-off per call (store internals)."""
    engine = store._engine

    def loop() -> tuple[int, float]:
        t0 = time.perf_counter()
        drained = 0
        while leased := engine.lease(size, 60.0):
            engine.ack([s.id for s in leased])
            drained += len(leased)
        return drained, time.perf_counter() - t0

    drained, elapsed = await store._owner.run(loop)
    assert drained == ADD_READINGS
    return drained / elapsed


async def bench_add(root: Path) -> tuple[float, float, float, float]:
    """add, then lease+ack in batches of BATCH, then (after the same add again, new
    readings) lease+ack in batches of LEASE_BIG, as the uplink's drain does."""
    batches = [[bp(i * BATCH + j) for j in range(BATCH)] for i in range(ADD_READINGS // BATCH)]
    async with await Store.open(root / "add", min_free_mb=0) as store:
        t0 = time.perf_counter()
        for batch in batches:
            await store.add(batch)
        add_s = time.perf_counter() - t0
        lease_ack = await drain(store, BATCH)
        for n in range(ADD_READINGS, 2 * ADD_READINGS, LEASE_BIG):
            await store.add([bp(n + i) for i in range(LEASE_BIG)])
        lease_ack_big = await drain(store, LEASE_BIG)
        for n in range(2 * ADD_READINGS, 3 * ADD_READINGS, LEASE_BIG):
            await store.add([bp(n + i) for i in range(LEASE_BIG)])
        lease_ack_thread = await drain_on_store_thread(store, LEASE_BIG)
    return ADD_READINGS / add_s, lease_ack, lease_ack_big, lease_ack_thread


async def bench_add_after_decode(root: Path) -> float:
    """add as the gateway's BLE session calls it: each value was decoded just before (to
    refuse a malformed one), so `capture_keys` finds the decode in the codec's cache. Only
    `add` is timed; `add_per_s` above is the cold case (nothing decoded before)."""
    batches = [
        [bp(10**6 + i * BATCH + j) for j in range(BATCH)] for i in range(ADD_READINGS // BATCH)
    ]
    elapsed = 0.0
    async with await Store.open(root / "add-after-decode", min_free_mb=0) as store:
        for batch in batches:
            for r in batch:
                r.measurement()
            t0 = time.perf_counter()
            await store.add(batch)
            elapsed += time.perf_counter() - t0
        assert (await store.stats()).queue_depth == ADD_READINGS
    return ADD_READINGS / elapsed


class _NoFilter(DeliveredFilter):
    """Every key a candidate: each add looks all its keys up in `tombstones`."""

    def candidates(self, rids: Iterable[bytes]) -> list[bytes]:
        return list(rids)


async def bench_add_after_deliveries(root: Path) -> tuple[float, float]:
    """add_per_s in a store that has delivered TOMBSTONES readings before (each add must not
    store one of them again), with the in-memory filter of delivered keys and without it
    (every key looked up in SQLite). What was added is delivered before the next timing."""
    async with await Store.open(root / "after-deliveries", min_free_mb=0, max_mb=4096) as store:
        for base in range(0, TOMBSTONES, LEASE_BIG):
            await store.ack(await store.add([bp(5 * 10**6 + base + i) for i in range(LEASE_BIG)]))
        await store.prune()  # the delivered keys move to `tombstones`
        engine = store._engine
        kept = engine.delivered
        rates = []
        for n, delivered in enumerate((kept, _NoFilter(0))):
            engine.delivered = delivered
            start = 6 * 10**6 + n * ADD_READINGS
            batches = [
                [bp(start + i * BATCH + j) for j in range(BATCH)]
                for i in range(ADD_READINGS // BATCH)
            ]
            t0 = time.perf_counter()
            for batch in batches:
                await store.add(batch)
            rates.append(ADD_READINGS / (time.perf_counter() - t0))
            while leased := await store.lease(LEASE_BIG):
                await store.ack([s.id for s in leased])
        engine.delivered = kept
    return rates[0], rates[1]


async def bench_add_fresh(root: Path, n: int) -> float:
    """add_per_s alone, in a fresh store: round `n` of the add/raw alternation."""
    first = 7 * 10**6 + n * ADD_READINGS
    batches = [
        [bp(first + i * BATCH + j) for j in range(BATCH)] for i in range(ADD_READINGS // BATCH)
    ]
    async with await Store.open(root / f"add-{n}", min_free_mb=0) as store:
        t0 = time.perf_counter()
        for batch in batches:
            await store.add(batch)
        return ADD_READINGS / (time.perf_counter() - t0)


RAW_INSERT = "INSERT INTO outbox (rid, key_id, captured_at, payload) VALUES (?, ?, ?, ?)"


def raw_db(path: Path) -> sqlite3.Connection:
    """The raw limit's database: the store's pragmas and outbox table, nothing of the store."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, rid BLOB NOT NULL UNIQUE, "
        "key_id INTEGER NOT NULL, captured_at INTEGER NOT NULL, "
        "lease_until REAL NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, "
        "payload BLOB NOT NULL)"
    )
    return conn


def bench_raw(root: Path, blob_len: int, name: str) -> float:
    """Same rows, same pragmas, same batch size and one commit per batch: the limit."""
    conn = raw_db(root / f"{name}.db")
    rows = [
        [(os.urandom(16), 2, 1_700_000_000_000, os.urandom(blob_len)) for _ in range(BATCH)]
        for _ in range(ADD_READINGS // BATCH)
    ]
    t0 = time.perf_counter()
    for batch in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(RAW_INSERT, batch)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return ADD_READINGS / elapsed


async def fill(store: Store, start: int, count: int) -> None:
    chunk = 1000
    for base in range(start, start + count, chunk):
        await store.add([bp(n) for n in range(base, base + chunk)])


async def bench_footprint(root: Path, million: int) -> tuple[float, float, float]:
    state_dir = root / "big"
    async with await Store.open(state_dir, min_free_mb=0, max_mb=4096) as store:
        await fill(store, 0, 1000)  # warm every code path once, then drain to "none waiting"
        while leased := await store.lease(1000):
            await store.ack([s.id for s in leased])
        await store.prune()
        assert (await store.stats()).queue_depth == 0
        rss_empty = rss_mib()
        before = files_bytes(state_dir)
        await fill(store, 10_000, DISK_READINGS)
        await store.prune()  # checkpoint: count the bytes in the main file
        per_reading = (files_bytes(state_dir) - before) / DISK_READINGS
        await fill(store, 10_000 + DISK_READINGS, million - DISK_READINGS)
        stats = await store.stats()
        assert stats.queue_depth == million, stats
        leased = await store.lease(BATCH)  # streaming: a lease reads only what it returns
        await store.release([s.id for s in leased])
        rss_full = rss_mib()
    return per_reading, rss_full - rss_empty, rss_full


async def bench_add_parts(root: Path) -> dict[str, float]:
    """Where an add's time goes, µs per reading: each step of `add` timed on the store's thread
    with the store's own pieces, plus the hand-off to that thread (per batch, spread over its
    readings). Beside it, `raw_parts_us` splits raw sqlite3 the same way (insert, commit)."""
    batches = [[bp(3 * 10**6 + i * BATCH + j) for j in range(BATCH)] for i in range(60)]
    async with await Store.open(root / "add-parts", min_free_mb=0) as store:
        engine = store._engine
        sealer = engine.sealers[engine.current]
        spent = dict.fromkeys(("room", "keys", "row_key", "pack", "seal", "insert", "commit"), 0.0)

        def steps() -> None:
            clock = time.perf_counter
            for batch in batches:
                t = clock()
                engine._check_room(len(batch))
                spent["room"] += clock() - t
                t = clock()
                keys = [r.capture_key_values() for r in batch]
                spent["keys"] += clock() - t
                t = clock()
                rids = engine.row_key.of_digests([identity for identity, _ in keys])
                spent["row_key"] += clock() - t
                t = clock()
                plain = [
                    (sealer.aad_head + rid, packed)
                    for rid, packed in zip(rids, pack_captured_many(batch, keys), strict=True)
                ]
                spent["pack"] += clock() - t
                t = clock()
                sealed = sealer.seal_many(plain)
                spent["seal"] += clock() - t
                pairs = zip(rids, sealed, strict=True)
                rows = [(rid, sealer.key_id, 1, blob) for rid, blob in pairs]
                t = clock()
                engine.conn.execute("BEGIN IMMEDIATE")
                engine._tombstoned(engine.conn, engine.delivered.candidates(rids))
                engine.conn.executemany(INSERT_READINGS, rows)
                spent["insert"] += clock() - t
                t = clock()
                engine.conn.execute("COMMIT")
                spent["commit"] += clock() - t

        await store._run(steps)
        t0 = time.perf_counter()
        for _ in batches:
            await store._run(lambda: None)
        spent["thread_handoff"] = time.perf_counter() - t0
    n = len(batches) * BATCH
    return {k: round(v / n * 1e6, 2) for k, v in spent.items()}


def bench_raw_parts(root: Path, blob_len: int) -> dict[str, float]:
    conn = raw_db(root / "raw-parts.db")
    spent = {"insert": 0.0, "commit": 0.0}
    for _ in range(60):
        batch = [(os.urandom(16), 2, 1, os.urandom(blob_len)) for _ in range(BATCH)]
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(RAW_INSERT, batch)
        spent["insert"] += time.perf_counter() - t
        t = time.perf_counter()
        conn.execute("COMMIT")
        spent["commit"] += time.perf_counter() - t
    conn.close()
    return {k: round(v / (60 * BATCH) * 1e6, 2) for k, v in spent.items()}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--million", type=int, default=1_000_000, help="readings for RSS")
    args = parser.parse_args()
    args.million = max(args.million, DISK_READINGS)
    with tempfile.TemporaryDirectory(prefix="carebox-bench-store-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        (
            add_per_s,
            lease_ack_per_s,
            lease_ack_1000_per_s,
            lease_ack_1000_thread_per_s,
        ) = await bench_add(root)
        async with await Store.open(root / "size", min_free_mb=0) as store:
            await store.add([bp(n) for n in range(BATCH)])
        conn = sqlite3.connect(root / "size" / "store.db")
        blob_len = round(conn.execute("SELECT avg(length(payload)) FROM outbox").fetchone()[0])
        conn.close()
        # add and raw alternate, each round in fresh files: the machine's moments (other
        # load, the disk's write-back) fall on both alike; the figures are the medians
        adds, raws = [add_per_s], [bench_raw(root, blob_len, "raw-0")]
        for n in range(1, ROUNDS):
            adds.append(await bench_add_fresh(root, n))
            raws.append(bench_raw(root, blob_len, f"raw-{n}"))
        add_per_s, raw_per_s = statistics.median(adds), statistics.median(raws)
        add_ratio = statistics.median(a / r for a, r in zip(adds, raws, strict=True))
        keys_per_s = bench_reading_keys()
        store_only_per_s = await bench_add_store_only(root)
        after_decode_per_s = await bench_add_after_decode(root)
        add_parts = await bench_add_parts(root)
        after_deliveries, after_deliveries_unfiltered = await bench_add_after_deliveries(root)
        raw_parts = bench_raw_parts(root, blob_len)
        per_reading, rss_growth, rss_full = await bench_footprint(root, args.million)
    print(
        json.dumps(
            {
                "bench": "store",
                "add_per_s": round(add_per_s),
                "raw_sqlite_per_s": round(raw_per_s),
                "add_ratio": round(add_ratio, 3),
                "add_rounds_per_s": [round(a) for a in adds],
                "raw_rounds_per_s": [round(r) for r in raws],
                "reading_keys_per_s": round(keys_per_s),
                "add_store_only_per_s": round(store_only_per_s),
                "add_store_only_ratio": round(store_only_per_s / raw_per_s, 3),
                "add_after_decode_per_s": round(after_decode_per_s),
                "add_after_decode_ratio": round(after_decode_per_s / raw_per_s, 3),
                "add_after_deliveries_per_s": round(after_deliveries),
                "add_after_deliveries_unfiltered_per_s": round(after_deliveries_unfiltered),
                "delivered_before": TOMBSTONES,
                "lease_ack_per_s": round(lease_ack_per_s),
                "lease_ack_1000_per_s": round(lease_ack_1000_per_s),
                "lease_ack_1000_thread_per_s": round(lease_ack_1000_thread_per_s),
                "bytes_per_reading": round(per_reading, 1),
                "rss_growth_mib": round(rss_growth, 2),
                "rss_mib": round(rss_full, 1),
                "waiting_for_rss": args.million,
                "payload_bytes": blob_len,
                "add_parts_us": add_parts,
                "raw_parts_us": raw_parts,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
