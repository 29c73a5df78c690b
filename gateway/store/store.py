"""`Store`: the async facade. Every public coroutine is one job on the owner thread, which
holds the only `sqlite3` connection: one thread hand-off per batch, not per row
(PERFORMANCE.md). aiosqlite's public API offers one hand-off per statement only, so the store
keeps its own owner thread (owner_thread.py), the same shape as aiosqlite's worker."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Final, Self, TypeVar

from device_drivers.reading import Reading
from gateway.store import crypto
from gateway.store.acked import AckedRuns, runs_of
from gateway.store.delivered_filter import DeliveredFilter
from gateway.store.errors import StoreBusy, StoreCorrupt, StoreError, StoreFull, TamperedRecord
from gateway.store.owner_thread import OwnerThread
from gateway.store.records import (
    DeviceRecord,
    Event,
    MalformedRecord,
    StoredReading,
    StoreStats,
    from_us,
    pack_captured_many,
    to_us,
)
from gateway.store.schema import DB_NAME, connect, migrate, set_aside
from gateway.store.sealed import SealedReading, open_row
from gateway.store.status import StoreStatus, device_rows, first_waiting, read_status, stats_of

__all__ = ["KEY_MAX_AGE", "Maintenance", "SealedOutbox", "Store"]

T = TypeVar("T")
MIB: Final = 1024 * 1024
ESTIMATED_ROW_BYTES: Final = 400  # upper bound of one reading on disk, for the free-disk check
QUOTA_THRESHOLDS: Final = (50, 80, 90, 100)  # percent of max_mb that raise quota_pressure
EVENTS_KEPT: Final = 10_000  # prune() trims the event log to its newest entries
MALFORMED_KEPT: Final = 1_000  # and the sealed malformed values (a faulty device repeats itself)
INSERT_READINGS: Final = (
    "INSERT INTO outbox (rid, key_id, captured_at, payload) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (rid) DO NOTHING"
)  # (rid, key id, captured ms, sealed payload): a reading the outbox holds is skipped
ROOM_RECHECK_S: Final = 1.0  # the disk is asked again at least this often while adding
KEY_MAX_AGE: Final = timedelta(days=30)  # a data key seals at most a month of readings
DELIVERED_FLUSH: Final = 250_000  # delivered rows moved to `tombstones` at once (sorted), or
# sooner when the queue runs empty (a lease finding nothing), before a retention expiry, at
# prune. Delivered rows wait as runs of seqs in `acked` (acked.py); a database written before
# schema 5 may also hold rows tombstoned in place (key id 0, payload erased; the literal 0 is
# what lets SQLite use the partial index outbox_delivered), which the flush moves the same way
_PAST_ALL: Final = 2**63  # above every seq
ACK_CHUNK: Final = 400  # keys per IN (...) list: two lists stay under SQLite < 3.32's 999
DetailValue = str | int | float | bool
# The Device Information strings of a `devices` row, the only columns a DIS read may write: a
# row rewritten whole from a copy read earlier would undo what was written since (the contact
# and battery of the session that read it, an unpairing).
DIS_COLUMNS: Final = (
    "manufacturer", "model", "serial", "firmware", "hardware", "software", "system_id",
    "weight_resolution", "height_resolution",
)  # fmt: skip
_UPDATE_DIS: Final = (
    "UPDATE devices SET "  # noqa: S608 - the constant column names above
    + ", ".join(f"{column} = coalesce(?, {column})" for column in DIS_COLUMNS)
    + " WHERE address = ?"
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _ms(at: datetime | None) -> int | None:
    if at is None:
        return None
    if at.tzinfo is None:
        raise StoreError(f"time {at.isoformat()} has no time zone: pass an aware UTC datetime")
    return to_us(at) // 1000


class _Tx:
    """BEGIN IMMEDIATE .. COMMIT, rolled back on any exception.

    `durable=False` commits with ``synchronous=NORMAL`` (no fdatasync): only for ack, the
    bulk move of tombstones and the lease bookkeeping (quarantine, attempts). WAL keeps such
    a commit atomic and a process crash loses nothing; a power cut may undo the last ones,
    which only means a reading is sent again under the same identifier (the backend's
    ifNoneExist drops it) or a count of sends is lower. The next durable commit syncs their
    WAL frames too. Half the fsyncs, half the SD-card wear of the delivery path."""

    def __init__(self, conn: sqlite3.Connection, *, durable: bool = True) -> None:
        self.conn = conn
        self.durable = durable

    def __enter__(self) -> sqlite3.Connection:
        if not self.durable:
            self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if et is None:
                self.conn.execute("COMMIT")
            elif self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        finally:
            if not self.durable:
                self.conn.execute("PRAGMA synchronous = FULL")


def _is_disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "full" in str(exc).lower()


@dataclass(frozen=True, slots=True)
class Maintenance:
    """What `Store.maintain` did: the new data key id if it rotated, the readings the
    technician's retention limit deleted."""

    rotated_to: int | None
    expired: int


class _Engine:
    """Everything that touches the connection; runs only on the owner thread."""

    def __init__(
        self,
        state_dir: Path,
        provider: crypto.KekProvider,
        *,
        max_bytes: int,
        min_free_bytes: int,
        retention: timedelta | None,
        clock: Callable[[], float],
    ) -> None:
        self.state_dir = state_dir
        self.path = state_dir / DB_NAME
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self.retention = retention
        self.clock = clock
        self.lock_fd = self._lock()
        # row key -> (lease expiry on `clock`, seq, leases not yet counted in `attempts`):
        # leases are promises of this process only, so they live here, not in the file, and a
        # lease costs no write. Entries go at ack, release, quarantine, retention and close.
        self.leases: dict[bytes, tuple[float, int, int]] = {}
        # every row with seq <= floor is delivered (acked, or a tombstone in place, or gone):
        # leases start after it. Only a flush deletes such rows, so only a flush resets it.
        self.floor = -1
        self.acked = AckedRuns()  # delivered rows still in the outbox, as runs of seqs
        self.pending = 0  # delivered rows still in the outbox (acked, or key_id 0)
        # every row with seq <= held_to is leased (or delivered, or gone) until held_until at
        # least: a lease starts after it. Reset by whatever could free a row below it.
        self.held_to = -1
        self.held_until = 0.0
        self.quota_level = 0
        self.room_credit = 0  # bytes adds may use before the next full room check
        self.room_checked_at = 0.0
        self.refusing = False
        # a store_full event the full disk itself refused; written with the next commit
        self.unrecorded_full: dict[str, DetailValue] | None = None
        set_aside_as: Path | None = None
        try:
            try:
                self.conn = connect(self.path)
            except StoreCorrupt:
                set_aside_as = set_aside(self.path)
                self.conn = connect(self.path)
            migrate(self.conn)
            self._fsync_dir()
            self.index_key, self.sealers = self._load_keys(provider)
            self.row_key = crypto.RowKeyer(self.index_key)
            self.current = max(self.sealers)
            self.delivered = self._load_delivered()
            with _Tx(self.conn) as c:
                # leases are promises of this process only: whatever was in flight died
                c.execute("UPDATE outbox SET lease_until = 0 WHERE lease_until != 0")
                self.acked = AckedRuns(c.execute("SELECT lo, hi FROM acked").fetchall())
                self.pending = self.acked.count + int(
                    c.execute(
                        "SELECT count(*) FROM outbox WHERE key_id = 0"  # outbox_delivered
                    ).fetchone()[0]
                )
                if set_aside_as is not None:
                    self._event(c, "store_set_aside", {"moved_to": set_aside_as.name})
        except BaseException:
            self.close()
            raise

    # -- set-up ---------------------------------------------------------------------------
    def _lock(self) -> int:
        fd = os.open(self.state_dir / "store.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreBusy(
                f"the store in {self.state_dir} is open in another process: stop it first"
            ) from None
        return fd

    def _fsync_dir(self) -> None:
        fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _load_keys(self, provider: crypto.KekProvider) -> tuple[bytes, dict[int, crypto.Sealer]]:
        rows = self.conn.execute(
            "SELECT key_id, purpose, wrapped FROM keys ORDER BY key_id"
        ).fetchall()
        if not rows:
            kek = provider.load(create=True)
            now = _now_ms()
            index_key, data_key = crypto.new_key(), crypto.new_key()
            with _Tx(self.conn) as c:
                c.execute(
                    "INSERT INTO keys VALUES (1, 'index', ?, ?)",
                    (crypto.wrap_key(kek, "index", 1, index_key), now),
                )
                c.execute(
                    "INSERT INTO keys VALUES (2, 'data', ?, ?)",
                    (crypto.wrap_key(kek, "data", 2, data_key), now),
                )
            self.kek = kek
            return index_key, {2: crypto.Sealer(2, data_key)}
        kek = provider.load(create=False)
        index: bytes | None = None
        sealers: dict[int, crypto.Sealer] = {}
        for key_id, purpose, wrapped in rows:
            key = crypto.unwrap_key(kek, purpose, key_id, wrapped)
            if purpose == "index":
                index = key
            else:
                sealers[key_id] = crypto.Sealer(key_id, key)
        if index is None or not sealers:
            raise StoreCorrupt(f"{self.path} lacks its index or data key")
        self.kek = kek
        return index, sealers

    def _load_delivered(self) -> DeliveredFilter:
        """The bitmap of `tombstones` (see delivered_filter), streamed from one scan."""
        count = int(self.conn.execute("SELECT count(*) FROM tombstones").fetchone()[0])
        made = DeliveredFilter(count)
        made.update(rid for (rid,) in self.conn.execute("SELECT rid FROM tombstones"))
        return made

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            with suppress(sqlite3.Error):  # closing anyway: at worst a count of sends is lost
                self._save_attempts()
            conn.close()
            self.conn = None  # type: ignore[assignment]
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1

    # -- events ---------------------------------------------------------------------------
    @staticmethod
    def _event(c: sqlite3.Connection, kind: str, detail: dict[str, DetailValue]) -> None:
        c.execute(
            "INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)",
            (_now_ms(), kind, json.dumps(detail, sort_keys=True)),
        )

    @staticmethod
    def _check_detail(detail: dict[str, DetailValue]) -> None:
        for key, value in detail.items():
            if not isinstance(value, str | int | float | bool):
                raise StoreError(f"event detail {key!r} must be str, int, float or bool")

    def record_event(self, kind: str, detail: dict[str, DetailValue]) -> None:
        self._check_detail(detail)
        with _Tx(self.conn) as c:
            self._event(c, kind, detail)

    def record_malformed(
        self, device: str, characteristic: int, value: bytes, detail: dict[str, DetailValue]
    ) -> int:
        """LESSONS L8.2: the bytes sealed under the current data key, and the event naming
        them without them (`detail` plus `record`, the sealed row's id), in one transaction."""
        self._check_detail(detail)
        sealer = self.sealers[self.current]
        with _Tx(self.conn) as c:
            (record,) = c.execute(
                "INSERT INTO malformed (at, device, characteristic, key_id, payload) "
                "VALUES (?, ?, ?, ?, x'') RETURNING id",
                (_now_ms(), device, characteristic, sealer.key_id),
            ).fetchone()
            aad = crypto.malformed_aad(sealer.key_id, record, device, characteristic)
            c.execute(
                "UPDATE malformed SET payload = ? WHERE id = ?",
                (sealer.seal(aad, value), record),
            )
            self._event(c, "malformed_value", {**detail, "record": record})
        return int(record)

    def malformed(self, after: int, limit: int) -> list[MalformedRecord]:
        rows = self.conn.execute(
            "SELECT id, at, device, characteristic, key_id, payload FROM malformed "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        ).fetchall()
        out = []
        for record, at, device, characteristic, key_id, payload in rows:
            value: bytes | None = None
            sealer = self.sealers.get(key_id)
            if sealer is not None:
                with suppress(TamperedRecord):
                    aad = crypto.malformed_aad(key_id, record, device, characteristic)
                    value = sealer.open(aad, payload)
            out.append(MalformedRecord(record, from_us(at * 1000), device, characteristic, value))
        return out

    def events(self, after: int, limit: int) -> list[Event]:
        rows = self.conn.execute(
            "SELECT id, at, kind, detail FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        ).fetchall()
        return [Event(i, from_us(at * 1000), kind, json.loads(d)) for i, at, kind, d in rows]

    # -- limits ---------------------------------------------------------------------------
    def _db_bytes(self) -> int:
        row = self.conn.execute(
            "SELECT (p.page_count - f.freelist_count) * s.page_size "
            "FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s"
        ).fetchone()
        return int(row[0])

    def _check_room(self, count: int) -> None:
        """Refuse past the free-disk floor; report quota pressure at rising thresholds.

        A full check (page count, statvfs) leaves a credit: the bytes that can go in before
        anything could change (the next quota threshold, the quota itself, the free-disk floor),
        counted at `ESTIMATED_ROW_BYTES` a reading, an upper bound. Adds spend it without asking
        the disk again, for at most `ROOM_RECHECK_S` (something else may fill the disk)."""
        need = count * ESTIMATED_ROW_BYTES
        now = time.monotonic()
        if need <= self.room_credit and now - self.room_checked_at < ROOM_RECHECK_S:
            self.room_credit -= need
            return
        self.room_credit = 0
        used = self._db_bytes()
        if used + need > self.max_bytes and self.retention is not None:
            self._expire()
            used = self._db_bytes()
        level = max(
            (t for t in QUOTA_THRESHOLDS if used + need >= self.max_bytes * t // 100), default=0
        )
        if level > self.quota_level:
            with _Tx(self.conn) as c:
                self._event(
                    c,
                    "quota_pressure",
                    {"percent": level, "used_bytes": used, "max_bytes": self.max_bytes},
                )
        self.quota_level = level
        st = os.statvfs(self.state_dir)
        free = st.f_bavail * st.f_frsize
        if free - need < self.min_free_bytes:
            self._refuse(count, f"{free // MIB} MiB free, floor {self.min_free_bytes // MIB} MiB")
        boundaries = [self.max_bytes * t // 100 for t in QUOTA_THRESHOLDS]
        headroom = [b - used - need for b in boundaries if b > used + need]
        headroom.append(free - need - self.min_free_bytes)
        if self.retention is not None and used + need >= self.max_bytes:
            headroom.append(0)  # over quota with a retention limit: expire at every add
        self.room_credit = max(0, min(headroom))
        self.room_checked_at = now

    def _refuse(self, count: int, why: str) -> None:
        if not self.refusing:
            self.refusing = True
            self.unrecorded_full = {"refused": count, "reason": why}
            with suppress(sqlite3.Error):
                self.record_event("store_full", self.unrecorded_full)
                self.unrecorded_full = None
        raise StoreFull(
            f"store full ({why}): {count} new readings refused, nothing committed was lost; "
            "free disk space or restore the uplink so delivered readings can be pruned"
        )

    def _expire(self) -> int:
        """Delete undelivered readings older than the technician's retention limit."""
        if self.retention is None:
            return 0
        if self.acked:
            # delivered rows keep their tombstones (dedup); what remains is all undelivered
            self._flush_delivered()
        cutoff = _now_ms() - self.retention // timedelta(milliseconds=1)
        with _Tx(self.conn) as c:
            gone = c.execute(
                "DELETE FROM outbox WHERE captured_at < ? AND key_id != 0 RETURNING rid",
                (cutoff,),
            ).fetchall()
            for (rid,) in gone:
                self.leases.pop(rid, None)
            if gone:
                self.held_to = -1  # the newest row gone: its seq may be reused
            n = len(gone)
            if n:
                self._event(
                    c,
                    "retention_expired",
                    {"deleted": n, "retention_s": int(self.retention.total_seconds())},
                )
        return int(n)

    # -- outbox ---------------------------------------------------------------------------
    def add(self, readings: Sequence[Reading], cursor: tuple[str, int] | None) -> list[str]:
        if not readings and cursor is None:
            return []
        self._check_room(len(readings))
        sealer = self.sealers[self.current]
        key_id = sealer.key_id
        now = _now_ms()
        keys = [reading.capture_key_values() for reading in readings]  # once, at capture
        rids = self.row_key.of_digests([identity for identity, _ in keys])
        aad_head = sealer.aad_head
        sealed = sealer.seal_many(
            [
                (aad_head + rid, plain)
                for rid, plain in zip(rids, pack_captured_many(readings, keys), strict=True)
            ]
        )
        ids = [rid.hex() for rid in rids]
        try:
            with _Tx(self.conn) as c:
                # readings delivered before (their row keys moved to `tombstones`) are not
                # stored again: the bitmap clears most keys, one lookup for the rest, then a
                # plain insert that skips what the outbox holds (waiting, or delivered and
                # still in place)
                gone = self._tombstoned(c, self.delivered.candidates(rids))
                c.executemany(
                    INSERT_READINGS,
                    [
                        (rid, key_id, now, blob)
                        for rid, blob in zip(rids, sealed, strict=True)
                        if rid not in gone
                    ],
                )
                if self.unrecorded_full is not None:
                    self._event(c, "store_full", self.unrecorded_full)
                if cursor is not None:
                    c.execute(
                        "INSERT INTO cursors VALUES (?, ?) "
                        "ON CONFLICT (device) DO UPDATE SET seq = excluded.seq",
                        (cursor[0].upper(), cursor[1]),
                    )
        except sqlite3.Error as exc:
            if _is_disk_full(exc):
                self._refuse(len(readings), "the file system is full")
            raise StoreError(f"cannot commit {len(readings)} readings: {exc}") from exc
        self.refusing = False
        self.unrecorded_full = None
        return ids

    @staticmethod
    def _tombstoned(c: sqlite3.Connection, rids: Sequence[bytes]) -> set[bytes]:
        """Which of `rids` are in `tombstones` (one query per `ACK_CHUNK` keys)."""
        gone: set[bytes] = set()
        for start in range(0, len(rids), ACK_CHUNK):
            chunk = rids[start : start + ACK_CHUNK]
            marks = ", ".join("?" * len(chunk))
            query = f"SELECT rid FROM tombstones WHERE rid IN ({marks})"  # noqa: S608
            gone.update(rid for (rid,) in c.execute(query, chunk))
        return gone

    def lease(self, limit: int, lease_s: float) -> list[StoredReading]:
        rows = self._lease_rows(limit, lease_s)
        out: list[StoredReading] = []
        bad: list[tuple[int, str]] = []
        times: dict[int, datetime] = {}
        openers: dict[int, crypto.Sealer] = {}
        for seq, rid, key_id, captured, attempts, payload in rows:
            try:
                opener = openers.get(key_id)
                if opener is None:
                    opener = openers[key_id] = self._opener(key_id)
                out.append(open_row(rid, captured, attempts, payload, sealer=opener, times=times))
            except TamperedRecord as exc:
                bad.append((seq, str(exc)))
        if bad:
            self._quarantine_all(bad)
        return out

    def lease_sealed(self, limit: int, lease_s: float) -> list[SealedReading]:
        """`lease`, the readings left sealed, each with its data key (sealed.py)."""
        rows = self._lease_rows(limit, lease_s)
        out: list[SealedReading] = []
        bad: list[tuple[int, str]] = []
        for seq, rid, key_id, captured, attempts, payload in rows:
            try:
                sealer = self._opener(key_id)
            except TamperedRecord as exc:
                bad.append((seq, str(exc)))
                continue
            row = (key_id, rid, captured, attempts, payload)
            out.append(SealedReading(rid.hex(), row, sealer.key))
        if bad:
            self._quarantine_all(bad)
        return out

    def quarantine_leased(self, found: Sequence[tuple[str, str]]) -> None:
        """Rows this process leased sealed and found failing their tag where they were opened:
        quarantined as `lease` does (a row no longer leased, or no longer there, is left)."""
        bad: list[tuple[int, str]] = []
        for (rid,), (_, reason) in zip(self._rids([i for i, _ in found]), found, strict=True):
            held = self.leases.get(rid)
            if held is None:
                continue
            row = self.conn.execute("SELECT rid FROM outbox WHERE seq = ?", (held[1],)).fetchone()
            if row is not None and row[0] == rid:
                bad.append((held[1], reason))
        if bad:
            self._quarantine_all(bad)

    def _quarantine_all(self, bad: list[tuple[int, str]]) -> None:
        with _Tx(self.conn, durable=False) as c:
            for seq, reason in bad:
                self._quarantine(c, seq, reason)

    def _lease_rows(
        self, limit: int, lease_s: float
    ) -> list[tuple[int, bytes, int, int, int, bytes]]:
        """The oldest rows not delivered nor under an unexpired lease, now leased: (seq, row
        key, key id, captured ms, attempts counting this lease, sealed payload)."""
        now = self.clock()
        until = now + lease_s
        leases = self.leases
        out: list[tuple[int, bytes, int, int, int, bytes]] = []
        # a read, not a write: leases are this process's promises, kept in `self.leases`
        acked = self.acked
        first = first_waiting(self.conn, acked, self.floor)
        if first is None:
            if self.pending:
                # nothing waits: the drain is over, a good time to tidy the delivered rows away
                # (during a drain this move would cost the delivery path ~10 us a reading)
                self._flush_delivered()
            return out
        self.floor = first[0] - 1  # what the query stepped over is all delivered
        # past the rows earlier leases held, while none of those can have expired
        start, held_until = self.floor, until
        if self.held_to > start and now < self.held_until:
            start, held_until = self.held_to, min(self.held_until, until)
        cur = self.conn.execute(
            "SELECT seq, rid, key_id, captured_at, attempts, payload FROM outbox "
            "WHERE seq > ? AND key_id != 0 ORDER BY seq",
            (start,),
        )
        # the delivered runs ahead of the scan, stepped over as it meets them
        skip = acked.after(start)
        skip_at = 0
        skip_lo, skip_hi = skip[0] if skip else (_PAST_ALL, _PAST_ALL)
        try:
            while len(out) < limit:
                rows = cur.fetchmany(limit - len(out))
                if not rows:
                    break
                # every row read is held from here on (skipped as held, leased now, or
                # quarantined): the next lease may start after the last one
                self.held_to = rows[-1][0]
                for seq, rid, key_id, captured, attempts, payload in rows:
                    if seq >= skip_lo:
                        while seq > skip_hi:
                            skip_at += 1
                            if skip_at == len(skip):
                                skip_lo = skip_hi = _PAST_ALL
                                break
                            skip_lo, skip_hi = skip[skip_at]
                        if skip_lo <= seq:  # and seq <= skip_hi: in a delivered run
                            continue
                    held = leases.get(rid)
                    unsaved = 0  # leases of this row by this process not yet in `attempts`
                    if held is not None and held[1] == seq:  # a seq reused: not this row's
                        if held[0] > now:
                            held_until = min(held_until, held[0])
                            continue
                        unsaved = held[2]
                    leases[rid] = (until, seq, unsaved + 1)
                    out.append((seq, rid, key_id, captured, attempts + unsaved + 1, payload))
        finally:
            cur.close()
        self.held_until = held_until
        return out

    def _opener(self, key_id: int) -> crypto.Sealer:
        sealer = self.sealers.get(key_id)
        if sealer is None:
            raise TamperedRecord(f"record names unknown key {key_id}")
        return sealer

    def _quarantine(self, c: sqlite3.Connection, seq: int, reason: str) -> None:
        rid, key_id = c.execute("SELECT rid, key_id FROM outbox WHERE seq = ?", (seq,)).fetchone()
        c.execute(
            "INSERT OR REPLACE INTO quarantine "
            "SELECT seq, rid, key_id, captured_at, payload, ?, ? FROM outbox WHERE seq = ?",
            (reason, _now_ms(), seq),
        )
        c.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        self.leases.pop(rid, None)
        self.held_to = -1  # the newest row gone: its seq may be reused
        self._event(c, "tampered_record", {"row": seq, "key_id": key_id, "reason": reason})

    @staticmethod
    def _rids(ids: Sequence[str]) -> list[tuple[bytes]]:
        try:
            return [(bytes.fromhex(i),) for i in ids]
        except ValueError as exc:
            raise StoreError(f"not a store id: {exc}") from exc

    def ack(self, ids: Sequence[str]) -> None:
        """Delivered: the rows' seqs join `acked` as runs (acked.py), one small row a run,
        instead of a rewrite of every row. The rows stay in the outbox (sealed, their row keys
        in its unique index dedup them meanwhile) until the flush moves their keys to
        `tombstones` and deletes them, many at once, in key order (`_flush_delivered`)."""
        rids = self._rids(ids)
        if not rids:
            return
        leases = self.leases
        seqs: list[int] = []
        others: list[bytes] = []  # not leased by this process: found by key
        for (rid,) in rids:
            held = leases.get(rid)
            if held is None:
                others.append(rid)
            else:
                seqs.append(held[1])
        with _Tx(self.conn, durable=False) as c:
            for start in range(0, len(others), ACK_CHUNK):
                chunk = others[start : start + ACK_CHUNK]
                marks = ", ".join("?" * len(chunk))
                seqs += (
                    seq
                    for (seq,) in c.execute(
                        f"SELECT seq FROM outbox WHERE rid IN ({marks}) AND key_id != 0",  # noqa: S608
                        chunk,
                    )
                )
            runs = runs_of(self.acked.new_of(seqs))  # an id acked twice counts once
            c.executemany("INSERT INTO acked VALUES (?, ?)", runs)
            c.execute(
                "INSERT INTO meta VALUES ('last_ack', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (_now_ms(),),
            )
        # only once committed: a failed ack leaves the leases held
        self.acked.add(runs)
        self.pending += sum(hi - lo + 1 for lo, hi in runs)
        for (rid,) in rids:
            leases.pop(rid, None)
        if self.pending >= DELIVERED_FLUSH:
            self._flush_delivered()

    def _flush_delivered(self) -> None:
        """Move the delivered rows' keys to `tombstones`, in key order, and delete the rows,
        in one transaction."""
        runs = self.acked.runs()
        with _Tx(self.conn, durable=False) as c:
            # the bits go in before the commit: a rolled-back move leaves only false positives
            self.delivered.update(
                rid
                for (rid,) in c.execute(
                    # each run a range of the table's own order (CROSS JOIN fixes the loop
                    # order; the planner would rather walk the whole key index), then sorted
                    "INSERT OR IGNORE INTO tombstones "
                    "SELECT rid FROM outbox INDEXED BY outbox_delivered WHERE key_id = 0 "
                    "UNION ALL SELECT o.rid FROM acked a CROSS JOIN outbox o "
                    "ON o.seq BETWEEN a.lo AND a.hi ORDER BY 1 RETURNING rid"
                )
            )
            c.execute("DELETE FROM outbox WHERE key_id = 0")
            c.executemany("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", runs)
            c.execute("DELETE FROM acked")
        self.acked.clear()
        self.pending = 0
        self.floor = self.held_to = -1  # the deleted rows may have been the newest: seqs reused
        if self.delivered.full:
            # a larger bitmap, read back from the table; should that read fail, the full one
            # still holds every key (only less selective) and the next flush tries again
            with suppress(sqlite3.Error):
                self.delivered = self._load_delivered()

    def release(self, ids: Sequence[str]) -> None:
        """Ends the leases in memory. No write (their counts reach `attempts` at close), so a
        release works on a full disk too."""
        leases = self.leases
        self.held_to = -1
        for (rid,) in self._rids(ids):
            held = leases.get(rid)
            if held is not None:
                leases[rid] = (0.0, held[1], held[2])

    def _save_attempts(self) -> None:
        """Write the leases' counts into `attempts` (one transaction), ending them all."""
        counts = [(n, seq, rid) for rid, (_, seq, n) in self.leases.items()]
        self.leases.clear()
        if counts:
            with _Tx(self.conn, durable=False) as c:
                c.executemany(
                    "UPDATE outbox SET attempts = attempts + ? WHERE seq = ? AND rid = ?", counts
                )

    def prune(self) -> int:
        if self.pending:
            self._flush_delivered()
        removed = self._expire()
        with _Tx(self.conn) as c:
            # a data key goes once no record sealed with it remains; the newest always stays
            for key_id in [k for k in self.sealers if k != self.current]:
                used = c.execute(
                    "SELECT EXISTS (SELECT 1 FROM outbox WHERE key_id = ?) "
                    "OR EXISTS (SELECT 1 FROM quarantine WHERE key_id = ?) "
                    "OR EXISTS (SELECT 1 FROM malformed WHERE key_id = ?)",
                    (key_id, key_id, key_id),
                ).fetchone()[0]
                if not used:
                    c.execute("DELETE FROM keys WHERE key_id = ?", (key_id,))
                    del self.sealers[key_id]
            c.execute(
                "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?", (EVENTS_KEPT,)
            )
            c.execute(
                "DELETE FROM malformed WHERE id <= (SELECT max(id) FROM malformed) - ?",
                (MALFORMED_KEPT,),
            )
        # executescript steps to the end; execute() would free one page per call
        self.conn.executescript("PRAGMA incremental_vacuum;")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return removed

    def data_key_age(self) -> timedelta:
        """How long the key sealing new records has been in use."""
        row = self.conn.execute(
            "SELECT created_at FROM keys WHERE key_id = ?", (self.current,)
        ).fetchone()
        created = 0 if row is None else int(row[0])
        return timedelta(milliseconds=max(0, _now_ms() - created))

    def rotate_key(self) -> int:
        kek = getattr(self, "kek", None)
        if kek is None:
            raise StoreError("reopen the store before rotating its key")
        key = crypto.new_key()
        with _Tx(self.conn) as c:
            key_id = int(c.execute("SELECT max(key_id) + 1 FROM keys").fetchone()[0])
            c.execute(
                "INSERT INTO keys VALUES (?, 'data', ?, ?)",
                (key_id, crypto.wrap_key(kek, "data", key_id, key), _now_ms()),
            )
            self._event(c, "key_rotated", {"key_id": key_id})
        self.sealers[key_id] = crypto.Sealer(key_id, key)
        self.current = key_id
        return key_id

    def cursor(self, device: str) -> int | None:
        row = self.conn.execute(
            "SELECT seq FROM cursors WHERE device = ?", (device.upper(),)
        ).fetchone()
        return None if row is None else int(row[0])

    def stats(self) -> StoreStats:
        now = self.clock()
        leased = sum(1 for until, _, _ in self.leases.values() if until > now)
        return stats_of(self.conn, self.path, leased=leased, floor=self.floor)

    # -- devices --------------------------------------------------------------------------
    def upsert_device(self, d: DeviceRecord) -> None:
        values = (
            d.address.upper(), d.kind, d.name, _ms(d.paired_at), d.manufacturer, d.model,
            d.serial, d.firmware, d.hardware, d.software, d.system_id, _ms(d.last_contact),
            d.battery, d.weight_resolution, d.height_resolution,
        )  # fmt: skip
        with _Tx(self.conn) as c:
            c.execute(
                "INSERT OR REPLACE INTO devices (address, kind, name, paired_at, manufacturer, "
                "model, serial, firmware, hardware, software, system_id, last_contact, battery, "
                "weight_resolution, height_resolution) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )

    def devices(self) -> list[DeviceRecord]:
        return device_rows(self.conn)

    def remove_device(self, address: str) -> None:
        with _Tx(self.conn) as c:
            c.execute("DELETE FROM devices WHERE address = ?", (address.upper(),))

    def touch_device(self, address: str, at: datetime, battery: int | None) -> None:
        with _Tx(self.conn) as c:
            c.execute(
                "UPDATE devices SET last_contact = ?, battery = coalesce(?, battery) "
                "WHERE address = ?",
                (_ms(at), battery, address.upper()),
            )

    def update_device_information(self, address: str, info: Mapping[str, str]) -> None:
        unknown = sorted(set(info) - set(DIS_COLUMNS))
        if unknown:
            raise StoreError(f"{unknown[0]!r} is not a Device Information column")
        with _Tx(self.conn) as c:
            c.execute(
                _UPDATE_DIS,
                (*(info.get(column) for column in DIS_COLUMNS), address.upper()),
            )


class Store:
    """The encrypted store-and-forward outbox. Open with `await Store.open(state_dir)`."""

    def __init__(self, engine: _Engine, owner: OwnerThread) -> None:
        self._engine = engine
        self._owner = owner
        self._closed = False

    @classmethod
    async def open(
        cls,
        state_dir: Path,
        *,
        max_mb: int = 512,
        min_free_mb: int = 64,
        key_provider: str = "file",
        retention_days: int | None = None,
        otp_reader: Callable[[], bytes] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Store:
        """Open (creating) the store in `state_dir` (made 0700). `clock` times leases
        (monotonic: leases never outlive the process); `otp_reader` replaces the Raspberry Pi
        OTP read for the ``rpi-otp`` provider."""
        state_dir = Path(state_dir)
        if retention_days is not None and retention_days <= 0:
            raise StoreError(f"[store] retention_days must be positive, not {retention_days}")
        provider = crypto.kek_provider(key_provider, state_dir, otp_reader=otp_reader)
        owner = OwnerThread("carebox-store")

        def start() -> _Engine:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(state_dir, 0o700)
            return _Engine(
                state_dir,
                provider,
                max_bytes=max_mb * MIB,
                min_free_bytes=min_free_mb * MIB,
                retention=None if retention_days is None else timedelta(days=retention_days),
                clock=clock,
            )

        try:
            engine = await owner.run(start)
        except BaseException:
            owner.close()
            raise
        return cls(engine, owner)

    @staticmethod
    def read_status(state_dir: Path) -> StoreStatus:
        """Synchronous, read-only stats and devices for `carebox status` (another process)."""
        return read_status(Path(state_dir))

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StoreError("the store is closed")
        try:
            return await self._owner.run(fn)
        except sqlite3.Error as exc:
            if _is_disk_full(exc):
                raise StoreFull(
                    "the file system holding the store is full: free disk space "
                    "(min_free_mb keeps headroom for delivering the queue)"
                ) from exc
            raise StoreError(f"store database error: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        await self._run(self._engine.close)
        self._closed = True
        self._owner.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def add(
        self, readings: Sequence[Reading], *, cursor: tuple[str, int] | None = None
    ) -> list[str]:
        """Seal and commit `readings` (and the device's cursor) in one transaction; durable
        when it returns. Returns each reading's id, a duplicate's being the stored one's."""
        batch = list(readings)
        return await self._run(lambda: self._engine.add(batch, cursor))

    async def lease(self, limit: int = 100, *, lease_s: float = 60.0) -> list[StoredReading]:
        """The oldest undelivered readings not under an unexpired lease, now leased."""
        if limit <= 0:
            return []
        return await self._run(lambda: self._engine.lease(limit, lease_s))

    async def lease_sealed(self, limit: int = 100, *, lease_s: float = 60.0) -> list[SealedReading]:
        """`lease`, the readings left sealed for the process that renders them (sealed.py);
        what does not open there comes back through `quarantine_leased`."""
        if limit <= 0:
            return []
        return await self._run(lambda: self._engine.lease_sealed(limit, lease_s))

    async def quarantine_leased(self, found: Sequence[tuple[str, str]]) -> None:
        """(id, reason) of leased readings that failed their tag where they were opened:
        quarantined, with a ``tampered_record`` event each, as `lease` does itself."""
        batch = list(found)
        if batch:
            await self._run(lambda: self._engine.quarantine_leased(batch))

    def sealed(self) -> SealedOutbox:
        """This store as an outbox (gateway.uplink) whose leases stay sealed."""
        return SealedOutbox(self)

    async def ack(self, ids: Sequence[str]) -> None:
        """Delivered upstream: never leased again; the rows' keys stay (dedup), their sealed
        payloads go at the next flush (the queue found empty, prune)."""
        batch = list(ids)
        await self._run(lambda: self._engine.ack(batch))

    async def release(self, ids: Sequence[str]) -> None:
        batch = list(ids)
        await self._run(lambda: self._engine.release(batch))

    async def prune(self) -> int:
        """Apply the retention limit, drop unused old data keys, trim the event log and
        return free pages to the file system. Returns the readings deleted (retention)."""
        return await self._run(self._engine.prune)

    async def rotate_key(self) -> int:
        """A new data key for new records; older keys stay until their records are gone."""
        return await self._run(self._engine.rotate_key)

    async def maintain(self, *, key_max_age: timedelta = KEY_MAX_AGE) -> Maintenance:
        """The periodic housekeeping the service runs: a new data key once the current one is
        `key_max_age` old (a key seals a bounded span of readings), then `prune` (retention,
        keys no record needs any more, the event log, free pages back to the file system)."""

        def run() -> Maintenance:
            engine = self._engine
            rotated = None
            if engine.data_key_age() >= key_max_age:
                rotated = engine.rotate_key()
            return Maintenance(rotated_to=rotated, expired=engine.prune())

        return await self._run(run)

    async def cursor(self, device: str) -> int | None:
        return await self._run(lambda: self._engine.cursor(device))

    async def stats(self) -> StoreStats:
        return await self._run(self._engine.stats)

    async def record_event(self, kind: str, **detail: DetailValue) -> None:
        await self._run(lambda: self._engine.record_event(kind, detail))

    async def events(self, after: int = 0, limit: int = 100) -> list[Event]:
        return await self._run(lambda: self._engine.events(after, limit))

    async def record_malformed(
        self, device: str, characteristic: int, value: bytes, /, **detail: DetailValue
    ) -> None:
        """Bytes from `device` that do not decode: sealed, with a `malformed_value` event
        that names them (`detail`, never the bytes) and the sealed record's id."""
        data = bytes(value)
        await self._run(lambda: self._engine.record_malformed(device, characteristic, data, detail))

    async def malformed(self, after: int = 0, limit: int = 100) -> list[MalformedRecord]:
        """The sealed malformed values, opened (for diagnosis by whoever holds the keys)."""
        return await self._run(lambda: self._engine.malformed(after, limit))

    async def upsert_device(self, device: DeviceRecord) -> None:
        await self._run(lambda: self._engine.upsert_device(device))

    async def devices(self) -> list[DeviceRecord]:
        return await self._run(self._engine.devices)

    async def remove_device(self, address: str) -> None:
        await self._run(lambda: self._engine.remove_device(address))

    async def touch_device(self, address: str, *, at: datetime, battery: int | None = None) -> None:
        if at.tzinfo is None:
            raise StoreError("touch_device needs a timezone-aware time (UTC)")
        await self._run(lambda: self._engine.touch_device(address, at, battery))

    async def update_device_information(self, address: str, info: Mapping[str, str]) -> None:
        """Write the Device Information strings given (keys: `DIS_COLUMNS`, the `DeviceRecord`
        field names) into a paired device's row, and nothing else of it: its contact, battery
        and pairing stay as they are; a device no longer paired stays absent."""
        await self._run(lambda: self._engine.update_device_information(address, dict(info)))


class SealedOutbox:
    """A `Store` as the uplink's outbox (gateway.uplink.outbox), its leases sealed: for a
    mapper that opens them in its rendering worker (gateway.render_pool)."""

    __slots__ = ("store",)

    def __init__(self, store: Store) -> None:
        self.store = store

    async def lease(self, limit: int = 100, *, lease_s: float = 60.0) -> list[SealedReading]:
        return await self.store.lease_sealed(limit, lease_s=lease_s)

    async def ack(self, ids: Sequence[str]) -> None:
        await self.store.ack(ids)

    async def release(self, ids: Sequence[str]) -> None:
        await self.store.release(ids)

    async def stats(self) -> StoreStats:
        return await self.store.stats()

    async def events(self, after: int = 0, limit: int = 100) -> list[Event]:
        return await self.store.events(after, limit)

    async def record_event(self, kind: str, **detail: DetailValue) -> None:
        await self.store.record_event(kind, **detail)
