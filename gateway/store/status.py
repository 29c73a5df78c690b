"""Synchronous queries for stats and the device registry, shared by the store's owner thread
and `carebox status`, which reads a running service's database read-only from its own
process without any key (nothing here needs decryption)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from gateway.store.acked import AckedRuns
from gateway.store.errors import StoreError
from gateway.store.records import DeviceRecord, StoreStats, from_us
from gateway.store.schema import BUSY_TIMEOUT_MS, DB_NAME

__all__ = ["StoreStatus", "device_rows", "first_waiting", "read_status", "stats_of"]

_DEVICE_COLUMNS_5 = (
    "address, kind, name, paired_at, manufacturer, model, serial, firmware, hardware, "
    "software, system_id, last_contact, battery"
)
_DEVICE_COLUMNS = _DEVICE_COLUMNS_5 + ", weight_resolution, height_resolution"
# constant column lists, nothing from outside
_SELECT_DEVICES = "SELECT " + _DEVICE_COLUMNS + " FROM devices ORDER BY address"  # noqa: S608
_SELECT_DEVICES_5 = "SELECT " + _DEVICE_COLUMNS_5 + ", NULL, NULL FROM devices ORDER BY address"  # noqa: S608


@dataclass(frozen=True, slots=True)
class StoreStatus:
    stats: StoreStats
    devices: list[DeviceRecord]


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def first_waiting(conn: sqlite3.Connection, runs: AckedRuns, floor: int) -> tuple[int, int] | None:
    """(seq, captured ms) of the oldest row after seq `floor` still waiting for delivery: each
    step jumps over a whole run of delivered rows still in the outbox."""
    while True:
        row = conn.execute(
            "SELECT seq, captured_at FROM outbox WHERE seq > ? AND key_id != 0 "
            "ORDER BY seq LIMIT 1",
            (floor,),
        ).fetchone()
        if row is None:
            return None
        end = runs.run_end(row[0])
        if end is None:
            return int(row[0]), int(row[1])
        floor = end


def stats_of(
    conn: sqlite3.Connection, path: Path, *, leased: int = 0, floor: int = -1
) -> StoreStats:
    """`floor`: a seq below which every row is known delivered (the store's own lease floor),
    so finding the oldest waiting row does not step over every delivered row kept."""
    # a delivered row waits in the outbox until the store's flush: its seq in a run of `acked`
    # (sealed payload kept), or, written before schema 5, a tombstone in place (key_id 0)
    rows = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    in_place = conn.execute("SELECT count(*) FROM outbox WHERE key_id = 0").fetchone()[0]
    runs = AckedRuns(conn.execute("SELECT lo, hi FROM acked").fetchall())
    acked = runs.count
    depth = rows - in_place - acked
    oldest = first_waiting(conn, runs, floor)
    last_ack = conn.execute("SELECT value FROM meta WHERE name = 'last_ack'").fetchone()
    quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    tombstones = conn.execute("SELECT count(*) FROM tombstones").fetchone()[0] + in_place + acked
    size = sum(_file_size(path.with_name(path.name + s)) for s in ("", "-wal"))
    return StoreStats(
        queue_depth=int(depth),
        oldest_waiting=from_us(int(oldest[1]) * 1000) if oldest else None,
        last_ack=from_us(int(last_ack[0]) * 1000) if last_ack else None,
        size_bytes=size,
        delivered_waiting_prune=int(acked),
        quarantined=int(quarantined),
        leased=leased,
        tombstones=int(tombstones),
    )


def device_rows(conn: sqlite3.Connection) -> list[DeviceRecord]:
    try:
        rows = conn.execute(_SELECT_DEVICES).fetchall()
    except sqlite3.OperationalError:
        # a store the service has not migrated yet (status opens it read-only): schema 5 had
        # no resolution columns
        rows = conn.execute(_SELECT_DEVICES_5).fetchall()
    return [
        DeviceRecord(
            address=r[0],
            kind=r[1],
            name=r[2],
            paired_at=from_us(r[3] * 1000),
            manufacturer=r[4],
            model=r[5],
            serial=r[6],
            firmware=r[7],
            hardware=r[8],
            software=r[9],
            system_id=r[10],
            last_contact=None if r[11] is None else from_us(r[11] * 1000),
            battery=r[12],
            weight_resolution=r[13],
            height_resolution=r[14],
        )
        for r in rows
    ]


def read_status(state_dir: Path) -> StoreStatus:
    """Stats and devices of the store in `state_dir`, opened read-only (safe while the
    service runs: WAL readers never block the writer)."""
    path = state_dir / DB_NAME
    if not path.exists():
        raise StoreError(f"no store in {state_dir}: has the service run once (carebox run)?")
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path} read-only: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return StoreStatus(stats_of(conn, path), device_rows(conn))
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    finally:
        conn.close()
