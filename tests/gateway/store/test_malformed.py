"""Bytes a device sent that do not decode (LESSONS L8.2): sealed like readings, each named by a
value-free event, bound to its row, bounded in number, and their key kept while they need it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.store import Store, StoreError
from gateway.store import store as store_module

CUFF = "C0:11:22:33:44:55"
BAD = bytes.fromhex("1e780050006400ea070b1c0f1e00480001")  # 120/80/100 mmHg, pulse 72, cut off


async def test_the_bytes_are_sealed_and_the_event_names_their_record(
    store: Store, state_dir: Path
) -> None:
    await store.record_malformed(CUFF, 0x2A35, BAD, length=len(BAD), reason="cut off")
    (event,) = await store.events()
    assert (event.kind, dict(event.detail)) == (
        "malformed_value",
        {"length": 17, "reason": "cut off", "record": 1},
    )
    (kept,) = await store.malformed()
    assert (kept.id, kept.device, kept.characteristic, kept.value) == (1, CUFF, 0x2A35, BAD)
    for name in ("store.db", "store.db-wal"):
        path = state_dir / name
        if path.exists():
            data = path.read_bytes()
            assert BAD not in data
            assert BAD.hex().encode() not in data


async def test_a_record_moved_to_another_row_or_device_does_not_open(state_dir: Path) -> None:
    async with await Store.open(state_dir, min_free_mb=0) as s:
        await s.record_malformed(CUFF, 0x2A35, BAD)
        await s.record_malformed(CUFF, 0x2A35, b"\x00")
    with sqlite3.connect(state_dir / "store.db") as conn:
        (payload,) = conn.execute("SELECT payload FROM malformed WHERE id = 1").fetchone()
        conn.execute("UPDATE malformed SET payload = ? WHERE id = 2", (payload,))
        conn.execute("UPDATE malformed SET device = 'C0:11:22:33:44:56' WHERE id = 1")
    async with await Store.open(state_dir, min_free_mb=0) as s:
        assert [m.value for m in await s.malformed()] == [None, None]


async def test_event_details_are_checked_before_anything_is_kept(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.record_malformed(CUFF, 0x2A35, BAD, value=[120])  # type: ignore[arg-type]
    assert await store.malformed() == []
    assert await store.events() == []


async def test_prune_keeps_the_newest_and_the_key_they_need(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MALFORMED_KEPT", 2)
    for n in range(3):
        await store.record_malformed(CUFF, 0x2A35, bytes([n]))
    await store.rotate_key()  # the old key now seals only malformed values
    await store.prune()
    assert [(m.id, m.value) for m in await store.malformed()] == [(2, b"\x01"), (3, b"\x02")]
