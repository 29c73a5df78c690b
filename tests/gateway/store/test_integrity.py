# ruff: noqa: ASYNC240 - tests inspect the store's files directly, on purpose
"""Tamper, swap, truncation, wrong keys, key providers, rotation, corrupt files, migrations,
and no plaintext health value in any file of the store."""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from device_drivers.codec import to_json
from device_drivers.reading import Reading
from gateway.store import Store, StoreError, WrongKey
from gateway.store.schema import MIGRATIONS, SCHEMA_VERSION
from tests.gateway.store.conftest import FakeClock
from tests.gateway.store.factories import blood_pressure, current_time, glucose, weight


def _db(state_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(state_dir / "store.db", isolation_level=None)


def _payloads(state_dir: Path) -> list[tuple[int, bytes]]:
    with _db(state_dir) as conn:
        return conn.execute("SELECT seq, payload FROM outbox ORDER BY seq").fetchall()


async def _filled(state_dir: Path, n: int) -> list[str]:
    async with await Store.open(state_dir, min_free_mb=0) as s:
        return await s.add([current_time(i) for i in range(n)])


def _edit(state_dir: Path, sql: str, *args: object) -> None:
    conn = _db(state_dir)
    try:
        conn.execute(sql, args)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("case", "quarantined"),
    [
        ("flip", {1}),
        ("truncate", {1}),
        ("empty", {1}),
        ("swap", {1, 2}),
        ("unknown_key", {1}),
    ],
)
async def test_bad_records_are_quarantined_and_the_rest_flows(
    state_dir: Path, case: str, quarantined: set[int]
) -> None:
    ids = await _filled(state_dir, 4)
    rows = dict(_payloads(state_dir))
    first, second = min(rows), min(rows) + 1
    if case == "flip":
        blob = bytearray(rows[first])
        blob[20] ^= 0x01
        _edit(state_dir, "UPDATE outbox SET payload = ? WHERE seq = ?", bytes(blob), first)
    elif case == "truncate":
        _edit(state_dir, "UPDATE outbox SET payload = ? WHERE seq = ?", rows[first][:-5], first)
    elif case == "empty":
        _edit(state_dir, "UPDATE outbox SET payload = x'' WHERE seq = ?", first)
    elif case == "swap":
        _edit(state_dir, "UPDATE outbox SET payload = ? WHERE seq = ?", rows[second], first)
        _edit(state_dir, "UPDATE outbox SET payload = ? WHERE seq = ?", rows[first], second)
    else:
        _edit(state_dir, "UPDATE outbox SET key_id = 99 WHERE seq = ?", first)
    bad = {ids[i - 1] for i in quarantined}
    async with await Store.open(state_dir, min_free_mb=0) as s:
        leased = await s.lease(10)
        assert [x.id for x in leased] == [i for i in ids if i not in bad]
        assert [x.reading for x in leased] == [
            current_time(n) for n in range(4) if ids[n] not in bad
        ]
        stats = await s.stats()
        assert stats.quarantined == len(bad)
        assert stats.queue_depth == 4 - len(bad)
        events = [e for e in await s.events() if e.kind == "tampered_record"]
        assert len(events) == len(bad)
        assert all(set(e.detail) == {"row", "key_id", "reason"} for e in events)


async def test_wrong_key_file_is_a_clear_error_and_changes_nothing(state_dir: Path) -> None:
    await _filled(state_dir, 3)
    kek = state_dir / "keys" / "store.kek"
    kek.write_bytes(bytes(32))
    before = (state_dir / "store.db").read_bytes()
    with pytest.raises(WrongKey, match="does not open"):
        await Store.open(state_dir, min_free_mb=0)
    assert (state_dir / "store.db").read_bytes() == before
    assert kek.read_bytes() == bytes(32)


async def test_missing_key_file_is_not_replaced(state_dir: Path) -> None:
    await _filled(state_dir, 1)
    (state_dir / "keys" / "store.kek").unlink()
    with pytest.raises(WrongKey, match="missing"):
        await Store.open(state_dir, min_free_mb=0)
    assert not (state_dir / "keys" / "store.kek").exists()


async def test_rpi_otp_provider(state_dir: Path) -> None:
    otp = bytes(range(1, 33))
    async with await Store.open(
        state_dir, min_free_mb=0, key_provider="rpi-otp", otp_reader=lambda: otp
    ) as s:
        ids = await s.add([current_time(1)])
    assert not (state_dir / "keys").exists()  # nothing on the card opens it
    async with await Store.open(
        state_dir, min_free_mb=0, key_provider="rpi-otp", otp_reader=lambda: otp
    ) as s:
        assert [x.id for x in await s.lease()] == ids
    other_board = bytes(range(2, 34))
    with pytest.raises(WrongKey):
        await Store.open(
            state_dir, min_free_mb=0, key_provider="rpi-otp", otp_reader=lambda: other_board
        )
    with pytest.raises(StoreError, match="not programmed"):
        await Store.open(
            state_dir, min_free_mb=0, key_provider="rpi-otp", otp_reader=lambda: bytes(32)
        )


async def test_unknown_key_provider(state_dir: Path) -> None:
    with pytest.raises(StoreError, match="key_provider 'tpm' is unknown"):
        await Store.open(state_dir, key_provider="tpm")


async def test_key_rotation_keeps_old_keys_until_their_records_go(
    state_dir: Path, clock: FakeClock
) -> None:
    async with await Store.open(state_dir, min_free_mb=0, clock=clock) as s:
        old = await s.add([current_time(1), current_time(2)])
        new_key = await s.rotate_key()
        new = await s.add([current_time(3)])
    with _db(state_dir) as conn:
        key_of = dict(conn.execute("SELECT hex(rid), key_id FROM outbox").fetchall())
        assert {key_of[i.upper()] for i in old} == {new_key - 1}
        assert key_of[new[0].upper()] == new_key
    async with await Store.open(state_dir, min_free_mb=0, clock=clock) as s:
        assert [x.id for x in await s.lease(10)] == old + new
        await s.ack(old[:1])
        await s.prune()
        assert _data_keys(state_dir) == [new_key - 1, new_key]
        await s.ack(old[1:])
        await s.prune()
        assert _data_keys(state_dir) == [new_key]
        # dedup survives rotation: the index key did not change
        assert await s.add([current_time(1)]) == old[:1]
        assert (await s.stats()).queue_depth == 1
    kinds = [e.kind for e in (await _events(state_dir))]
    assert "key_rotated" in kinds


def _data_keys(state_dir: Path) -> list[int]:
    with _db(state_dir) as conn:
        rows = conn.execute("SELECT key_id FROM keys WHERE purpose = 'data' ORDER BY 1")
        return [r[0] for r in rows.fetchall()]


async def _events(state_dir: Path) -> list[object]:
    async with await Store.open(state_dir, min_free_mb=0) as s:
        return list(await s.events())


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
async def test_database_that_will_not_open_is_set_aside(state_dir: Path, damage: str) -> None:
    await _filled(state_dir, 50)
    db = state_dir / "store.db"
    if damage == "garbage":
        db.write_bytes(b"this is not a database" * 500)
    else:
        with db.open("r+b") as f:
            f.truncate(4096 + 100)
    wreck = db.read_bytes()
    async with await Store.open(state_dir, min_free_mb=0) as s:
        assert (await s.stats()).queue_depth == 0
        events = [e for e in await s.events() if e.kind == "store_set_aside"]
        assert len(events) == 1
        kept = state_dir / str(events[0].detail["moved_to"])
        assert kept.read_bytes() == wreck
        await s.add([current_time(1)])
        assert len(await s.lease()) == 1


async def test_forward_migration_keeps_data(state_dir: Path) -> None:
    from gateway.store import schema

    state_dir.mkdir(mode=0o700)
    conn = schema.connect(state_dir / "store.db")
    schema.migrate(conn, target=1)
    conn.close()
    async with await Store.open(state_dir, min_free_mb=0) as s:
        ids = await s.add([current_time(1)])
    with _db(state_dir) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    async with await Store.open(state_dir, min_free_mb=0) as s:
        assert [x.id for x in await s.lease()] == ids


async def test_newer_schema_is_refused_unchanged(state_dir: Path) -> None:
    await _filled(state_dir, 1)
    _edit(state_dir, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = (state_dir / "store.db").read_bytes()
    with pytest.raises(StoreError, match="upgrade Carebox"):
        await Store.open(state_dir, min_free_mb=0)
    assert (state_dir / "store.db").read_bytes() == before


def _needles(reading: Reading) -> list[bytes]:
    """The reading's bytes, their usual encodings, the SFLOAT fields alone, the identity
    (which confirms a guessed value) and the decoded numbers as text."""
    value, identity = reading.value, reading.identity()
    needles = [
        value,
        value[1:],
        value.hex().encode(),
        value.hex().upper().encode(),
        base64.b64encode(value),
        identity.encode(),
        bytes.fromhex(identity),
        reading.phd_timestamp_part().encode(),
        json.dumps(to_json(reading.measurement())).encode(),
    ]
    if reading.characteristic == 0x2A35:
        needles += [value[1:5], b'"systolic"']  # systolic + diastolic SFLOATs
    return needles


async def test_no_plaintext_health_value_in_any_file(state_dir: Path) -> None:
    """Greps the database, its WAL and any journal for the readings' bytes and encodings."""
    readings = [blood_pressure(143 + i, 97, 77, minute=i) for i in range(3)]
    readings += [glucose(4000 + i, 123 + i) for i in range(3)]
    readings += [weight(16_543 + i) for i in range(3)]
    needles = [n for r in readings for n in _needles(r)]
    async with await Store.open(state_dir, min_free_mb=0) as s:
        ids = await s.add(readings, cursor=("C0:11:22:33:44:55", 4002))
        leased = await s.lease(4)
        await s.release([x.id for x in leased[:2]])
        await s.ack([x.id for x in leased[2:]])
        await s.rotate_key()
        await s.add(readings[:2])
        await s.record_event("tampered_record", row=1)
        files = sorted(p for p in state_dir.iterdir() if p.is_file())
        assert {p.name for p in files} >= {"store.db", "store.db-wal"}
        for path in files:
            raw = path.read_bytes()
            for needle in needles:
                assert needle not in raw, (path.name, needle)
        # the store itself still reads them back
        assert [x.reading for x in await s.lease(100)] == [
            r for r, i in zip(readings, ids, strict=True) if i not in {x.id for x in leased[2:]}
        ]
        await s.prune()  # checkpoint everything into the main file
    raw = (state_dir / "store.db").read_bytes()
    assert all(needle not in raw for needle in needles)


async def test_maintenance_rotates_an_old_key_only_and_prunes(
    state_dir: Path, clock: FakeClock
) -> None:
    async with await Store.open(state_dir, min_free_mb=0, clock=clock) as s:
        first = _data_keys(state_dir)
        done = await s.maintain()  # a key made just now is young: kept
        assert done.rotated_to is None
        assert _data_keys(state_dir) == first
        old = await s.add([current_time(1)])
        done = await s.maintain(key_max_age=timedelta(0))  # every key is old enough
        assert done.rotated_to == first[-1] + 1
        new = await s.add([current_time(2)])
        with _db(state_dir) as conn:
            key_of = dict(conn.execute("SELECT hex(rid), key_id FROM outbox").fetchall())
        assert key_of[old[0].upper()] == first[-1]
        assert key_of[new[0].upper()] == done.rotated_to
        await s.ack([x.id for x in await s.lease(10)])
        await s.maintain()  # the old key sealed nothing still waiting: gone
        assert _data_keys(state_dir) == [done.rotated_to]
