"""Database file, durability settings and forward migrations (stdlib `sqlite3`, sync code that
runs on the store's owner thread or in `carebox status`).

Durability, chosen for an SD card whose power is pulled:
- ``journal_mode=WAL``: a commit appends to the WAL; readers (``carebox status``) never block
  the writer and a torn write never damages the main file.
- ``synchronous=FULL``: in WAL mode the WAL is fsynced at every commit, so a committed batch
  survives power loss (NORMAL may lose the last commits: LESSONS L2.1; ThingsBoard's choice).
  One commit per batch keeps this to one fdatasync per batch (PERFORMANCE.md).
  Delivery bookkeeping (acks, quarantine) commits with NORMAL (see store.py `_Tx`): losing
  the last of those to a power cut only re-sends readings the backend drops by identifier,
  and the next FULL commit syncs those frames anyway. Leases are not written at all.
- ``auto_vacuum=INCREMENTAL`` (set before the first table) and ``journal_size_limit``: pruning
  and ``wal_checkpoint(TRUNCATE)`` return a drained backlog's pages to the file system (L2.5).
- ``page_size`` stays 4096, an SD card's write unit.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from gateway.store.errors import StoreCorrupt, StoreError

__all__ = ["DB_NAME", "MIGRATIONS", "SCHEMA_VERSION", "connect", "migrate", "set_aside"]

DB_NAME: Final = "store.db"
BUSY_TIMEOUT_MS: Final = 5000  # status readers hold the WAL for milliseconds; never wait forever
JOURNAL_SIZE_LIMIT: Final = 4 * 1024 * 1024  # WAL shrinks back to this after a checkpoint

MIGRATIONS: Final[Sequence[str]] = (
    # 1: outbox, tombstones, cursors, keys, events
    """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
    CREATE TABLE keys (
        key_id INTEGER PRIMARY KEY,
        purpose TEXT NOT NULL CHECK (purpose IN ('index', 'data')),
        wrapped BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,
        rid BLOB NOT NULL UNIQUE,
        key_id INTEGER NOT NULL,
        captured_at INTEGER NOT NULL,
        lease_until REAL NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        payload BLOB NOT NULL
    );
    CREATE TABLE tombstones (rid BLOB PRIMARY KEY) WITHOUT ROWID;
    CREATE TABLE cursors (device TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    """,
    # 2: device registry and quarantine
    """
    CREATE TABLE devices (
        address TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        paired_at INTEGER NOT NULL,
        manufacturer TEXT, model TEXT, serial TEXT, firmware TEXT, hardware TEXT,
        software TEXT, system_id TEXT,
        last_contact INTEGER,
        battery INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE quarantine (
        seq INTEGER PRIMARY KEY,
        rid BLOB NOT NULL,
        key_id INTEGER NOT NULL,
        captured_at INTEGER NOT NULL,
        payload BLOB NOT NULL,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    """,
    # 3: a delivered row may first become a tombstone in place (key_id 0, payload erased),
    # moved to `tombstones` in bulk later (store.py): this index finds them
    """
    CREATE INDEX outbox_delivered ON outbox (seq) WHERE key_id = 0;
    """,
    # 4: bytes a device sent that do not decode, sealed like readings (LESSONS L8.2): the
    # event log says what went wrong without them, this keeps them for whoever holds the keys
    """
    CREATE TABLE malformed (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        device TEXT NOT NULL,
        characteristic INTEGER NOT NULL,
        key_id INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    """,
    # 5: an ack writes the delivered rows' seqs as runs (acked.py), not each row in place
    """
    CREATE TABLE acked (lo INTEGER PRIMARY KEY, hi INTEGER NOT NULL);
    """,
    # 6: a scale's stated weight and height resolutions (Weight Scale Feature 0x2A9E codes),
    # read with its Device Information: the FHIR mapping keeps the precision they state
    """
    ALTER TABLE devices ADD COLUMN weight_resolution TEXT;
    ALTER TABLE devices ADD COLUMN height_resolution TEXT;
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def _pragmas(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"the store's file system refuses WAL mode ({mode}); use a local disk")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
    conn.execute("PRAGMA foreign_keys = OFF")


def _quick_check(conn: sqlite3.Connection, path: Path) -> None:
    check = conn.execute("PRAGMA quick_check").fetchall()
    if check != [("ok",)]:
        raise StoreCorrupt(f"{path} fails quick_check: {check[0][0]}")


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating) the database and check it; `StoreCorrupt` if it is not a usable
    database. The caller sets a corrupt file aside; nothing here deletes anything."""
    fresh = not path.exists() or path.stat().st_size == 0
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    try:
        if fresh:
            # must precede the first table; an existing file keeps what it has
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        _quick_check(conn, path)
        _pragmas(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreCorrupt(f"{path} is not a usable database: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    os.chmod(path, 0o600)
    return conn


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the forward migrations up to `target`, each in its own transaction."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store's schema is version {version}, newer than this Carebox knows "
            f"({SCHEMA_VERSION}): upgrade Carebox (the database was not changed)"
        )
    for number in range(version + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[number - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return target


def set_aside(path: Path) -> Path:
    """Rename a database that will not open (and its WAL and shm) out of the way; kept."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    path.rename(target)
    return target
