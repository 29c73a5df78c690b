"""Encrypted store-and-forward outbox: every reading is sealed and committed before it counts
as received, and kept until the upstream acknowledged it.

Layout
    store.py     `Store`, the async facade; `_Engine`, all SQL, run on one owner thread
    schema.py    database file, durability pragmas (and why), forward migrations, set-aside
    crypto.py    the only importer of `cryptography`: seal/open, key wrap, KEK providers
    acked.py     `AckedRuns`: delivered rows awaiting the flush, as runs of seqs
    sealed.py    `SealedReading`: a lease left sealed for the rendering worker to open
    records.py   the values (`StoredReading`, `StoreStats`, `DeviceRecord`, `Event`) and the
                 sealed plaintext layout of a reading
    status.py    read-only stats/devices for `carebox status` from another process
    errors.py    the error tree below

Invariants
- `add` returns only after its one transaction (readings + the device's cursor) committed
  with ``synchronous=FULL``: a cursor never runs ahead of the readings it covers (L2.2).
- A row's key is HMAC-SHA256(index key, `Reading.identity()`), truncated to 128 bits; the
  identity (a plain SHA-256 of device, time and value) is only ever inside the seal, so the
  file neither reveals nor confirms a health value. The identity is computed once, at add.
- A payload is AES-256-GCM under the current data key with a fresh random nonce; the
  associated data binds the envelope version (`crypto.SEAL_FORMAT`), key id and row key, so
  a ciphertext moved to another row fails. The plaintext layout (records.py, version in its
  first byte, under the tag) is 2 now; layout 1 records still open. A record failing its tag
  moves to `quarantine` with a ``tampered_record`` event and the queue flows on; for a lease
  left sealed (`lease_sealed`), whoever opens it reports it back (`quarantine_leased`).
- `ack` records the delivered rows as runs of seqs in `acked` (acked.py): one small row a
  run, not a rewrite of each row, on the delivery path. A delivered row stays in the outbox,
  sealed, its row key in the unique index, so a reading replayed by a device after delivery
  is recognised and not stored again. When a lease finds the queue empty (a drain is over),
  every `DELIVERED_FLUSH` delivered rows, before a retention expiry and at `prune`, the flush
  moves their keys to `tombstones` in key order and deletes the rows, one transaction:
  random-order index writes done in bulk, off the delivery path. Until then
  `StoreStats.delivered_waiting_prune` counts them; `tombstones` counts every delivered key.
  (A database from before schema 5 may still hold rows an ack rewrote in place, key id 0 and
  no payload; they count and flush the same way.) An add asks `tombstones` only for the keys
  an in-memory bitmap of its keys (delivered_filter.py, read at open) cannot rule out.
- `maintain` (the service runs it at start and every 6 hours): a new data key once the current
  one is `KEY_MAX_AGE` old, then `prune`.
- Nothing undelivered is deleted, except by a technician's `retention_days`. Past the
  free-disk floor new readings are refused (`StoreFull`, one ``store_full`` event); above the
  quota they are still accepted, with ``quota_pressure`` events at 50/80/90/100 %.
- Leases live in memory (`_Engine.leases`): they are promises of this process only, so a
  lease writes nothing and every open starts with none. A row's lease count reaches the
  database (`attempts`) at close; an unclean exit loses only those counts.
- One process per state directory (an flock on ``store.lock``); `carebox status` reads
  concurrently through `Store.read_status` (read-only, no keys).

Errors::

    GatewayError
    └── StoreError         a store that cannot be used; the message says what to do
        ├── StoreFull      free-disk floor reached; new readings refused, nothing lost
        ├── StoreCorrupt   integrity failure (database file or one record)
        │   └── TamperedRecord   a record failing its tag (quarantined, never raised by lease)
        ├── WrongKey       the KEK does not open the data keys; nothing was changed
        └── StoreBusy      another process holds the store

Gotchas
- ``auto_vacuum=INCREMENTAL`` only takes on a fresh file; `prune` runs the incremental vacuum
  and a TRUNCATE checkpoint so a drained backlog gives the disk back.
- The owner thread (owner_thread.py: a queue and `call_soon_threadsafe`, as aiosqlite's
  worker does) is ours, not aiosqlite: aiosqlite hands off once per statement, and a batch
  must be one hand-off (PERFORMANCE.md).
"""

from gateway.store.errors import (
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    TamperedRecord,
    WrongKey,
)
from gateway.store.records import (
    DeviceRecord,
    Event,
    MalformedRecord,
    StoredReading,
    StoreStats,
)
from gateway.store.status import StoreStatus
from gateway.store.store import KEY_MAX_AGE, Maintenance, Store

__all__ = [
    "KEY_MAX_AGE",
    "DeviceRecord",
    "Event",
    "Maintenance",
    "MalformedRecord",
    "Store",
    "StoreBusy",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreStats",
    "StoreStatus",
    "StoredReading",
    "TamperedRecord",
    "WrongKey",
]
