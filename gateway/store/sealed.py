"""Leased readings still sealed, and their opening: in the store's `lease`, or in the process
that renders them (`gateway.render_pool`'s worker).

Why: opening (AES-GCM, the plaintext layout, a `Reading`) is most of a lease: 5.4 µs a
reading against 2.1 for the same lease left sealed (leases of 500). A store that hands out its
rows still sealed lets a rendering worker on another core open them, off the process whose
event loop, store thread and network thread share one GIL (bench/uplink.py).

A `SealedReading` carries the data key its row was sealed under, so the worker needs nothing
else from the store. The key stays in memory: in this process and in the rendering worker it
is handed to over a socket pair (spawned by this process, same user); it is never written,
logged or shown in a repr. A key rotation does not re-seal rows, and a key is dropped only
once no row uses it: a leased row's key stays valid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from device_drivers.reading import Reading
from gateway.store.crypto import Sealer
from gateway.store.errors import TamperedRecord
from gateway.store.records import CLOCK_TRUSTED, StoredReading, from_us, unpack_fields

__all__ = ["Opener", "SealedReading", "SealedRow", "as_rows", "open_row"]


SealedRow = tuple[int, bytes, int, int, bytes]
"""A sealed row as it crosses to the rendering worker: key id, row key, captured ms (commit
time since the epoch), attempts (this lease counted), sealed payload. Its key goes once per
request, by key id."""


@dataclass(frozen=True, slots=True)
class SealedReading:
    """A leased reading as its row holds it: `id` is `StoredReading.id` (the row key as hex),
    `row` what crosses to the worker, `key` the data key it was sealed under."""

    id: str
    row: SealedRow = field(repr=False)
    key: bytes = field(repr=False)

    @property
    def key_id(self) -> int:
        return self.row[0]

    @property
    def attempts(self) -> int:
        return self.row[3]


def open_row(
    rid: bytes,
    captured_ms: int,
    attempts: int,
    payload: bytes,
    *,
    sealer: Sealer,
    times: dict[int, datetime],
) -> StoredReading:
    """The `StoredReading` of one sealed row; `TamperedRecord` when it does not open or parse.
    `times`: datetimes already built, by microseconds (a batch shares its capture time, a
    device's history often its receive time)."""
    (
        device,
        characteristic,
        value,
        rx_us,
        flags,
        context,
        offset,
        ident,
        phd,
        boot,
        mono,
    ) = unpack_fields(sealer.open(sealer.aad_head + rid, payload))
    received_at = times.get(rx_us)
    if received_at is None:
        received_at = times[rx_us] = from_us(rx_us)
    captured_us = captured_ms * 1000
    captured_at = times.get(captured_us)
    if captured_at is None:
        captured_at = times[captured_us] = from_us(captured_us)
    return StoredReading(
        rid.hex(),
        Reading(
            device,
            characteristic,
            value,
            received_at,
            bool(flags & CLOCK_TRUSTED),
            context,
            offset,
            boot,
            mono,
        ),
        phd,
        captured_at,
        attempts,
        ident,
    )


_TIMES_KEPT = 4096  # datetimes an `Opener` keeps across calls


def as_rows(items: Sequence[SealedReading]) -> tuple[list[SealedRow], dict[int, bytes]]:
    """`items` as plain rows (cheap to pickle, unlike a slots dataclass) and their keys."""
    keys: dict[int, bytes] = {}
    rows: list[SealedRow] = []
    for item in items:
        row = item.row
        keys[row[0]] = item.key
        rows.append(row)
    return rows, keys


class Opener:
    """Opens sealed rows where they are rendered, keeping one `Sealer` per data key."""

    def __init__(self) -> None:
        self._sealers: dict[tuple[int, bytes], Sealer] = {}
        self._times: dict[int, datetime] = {}

    def open(
        self, rows: Sequence[SealedRow], keys: Mapping[int, bytes]
    ) -> tuple[list[StoredReading], list[tuple[str, str]]]:
        """(the readings that open, in order; (id, reason) of each that does not)."""
        sealers = self._sealers
        times = self._times
        if len(times) > _TIMES_KEPT:
            times.clear()
        out: list[StoredReading] = []
        bad: list[tuple[str, str]] = []
        for key_id, rid, captured_ms, attempts, payload in rows:
            key = keys[key_id]  # `as_rows` gave every row's key
            sealer = sealers.get((key_id, key))
            if sealer is None:
                sealer = sealers[key_id, key] = Sealer(key_id, key)
            try:
                out.append(
                    open_row(rid, captured_ms, attempts, payload, sealer=sealer, times=times)
                )
            except TamperedRecord as exc:
                bad.append((rid.hex(), str(exc)))
        return out, bad
