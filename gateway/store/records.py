"""The store's values, and the layout of a sealed reading's plaintext.

A reading's plaintext (only ever inside AES-GCM) is, big-endian::

    u8 format | u8 flags | u16 characteristic | i64 received_at (µs since the Unix epoch, UTC)
    [f64 device_clock_offset_s if flags & HAS_OFFSET]
    then u16-length-prefixed: device, value, [context if flags & HAS_CONTEXT], identity,
    phd_timestamp

The PHD timestamp part lives inside the seal too: it is the device's time, and with the
plaintext capture time it would say when a patient measured. Only the gateway's capture time
(`captured_at`) is plaintext, so status can report the oldest waiting reading without keys.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from device_drivers.reading import Reading
from gateway.store.errors import TamperedRecord

__all__ = [
    "RECORD_FORMAT",
    "DeviceRecord",
    "Event",
    "StoreStats",
    "StoredReading",
    "pack_reading",
    "unpack_reading",
]

RECORD_FORMAT: Final = 1
"""Version of the plaintext layout; also bound into the associated data (schema migrations do
not touch sealed records, so the database's user_version is deliberately not what is bound)."""

UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_HEAD: Final = struct.Struct(">BBHq")
_F64: Final = struct.Struct(">d")
_LEN: Final = struct.Struct(">H")


_CLOCK_TRUSTED: Final = 0x01
_HAS_CONTEXT: Final = 0x02
_HAS_OFFSET: Final = 0x04


@dataclass(frozen=True, slots=True)
class StoredReading:
    """A leased reading. `id` is the store's row key as hex (a keyed hash, not the identity);
    `identity` is `Reading.identity()` as computed once at capture."""

    id: str
    reading: Reading
    phd_timestamp: str
    captured_at: datetime
    attempts: int
    identity: str = field(default="", compare=True)


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What `carebox status` shows; no health values. `delivered_waiting_prune` is always 0
    with this design (an ack deletes the row at once, keeping only a tombstone)."""

    queue_depth: int
    oldest_waiting: datetime | None
    last_ack: datetime | None
    size_bytes: int
    delivered_waiting_prune: int
    quarantined: int
    leased: int = 0
    tombstones: int = 0


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A paired device in the registry, with its Device Information Service strings."""

    address: str
    kind: str
    name: str
    paired_at: datetime
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    hardware: str | None = None
    software: str | None = None
    system_id: str | None = None
    last_contact: datetime | None = None
    battery: int | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the append-only event log (security and integrity; no health values)."""

    id: int
    at: datetime
    kind: str
    detail: dict[str, str | int | float | bool]


def to_us(at: datetime) -> int:
    d = at - UNIX_EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def from_us(us: int) -> datetime:
    return UNIX_EPOCH + timedelta(microseconds=us)


def pack_reading(reading: Reading, identity: str, phd_timestamp: str) -> bytes:
    # plain ints, not the IntFlag: this runs once per reading on the add path
    flags = _CLOCK_TRUSTED if reading.clock_trusted else 0
    parts = [b"", b""]
    offset = reading.device_clock_offset_s
    if offset is not None:
        flags |= _HAS_OFFSET
        parts.append(_F64.pack(offset))
    context = reading.context
    device = reading.device.encode()
    value = reading.value
    parts += (_LEN.pack(len(device)), device, _LEN.pack(len(value)), value)
    if context is not None:
        flags |= _HAS_CONTEXT
        parts += (_LEN.pack(len(context)), context)
    ident, phd = identity.encode(), phd_timestamp.encode()
    parts += (_LEN.pack(len(ident)), ident, _LEN.pack(len(phd)), phd)
    parts[0] = _HEAD.pack(RECORD_FORMAT, flags, reading.characteristic, to_us(reading.received_at))
    return b"".join(parts)


class _Cursor:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise TamperedRecord("sealed reading shorter than its layout")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def field(self) -> bytes:
        (n,) = _LEN.unpack(self.take(_LEN.size))
        return self.take(n)


def unpack_reading(data: bytes) -> tuple[Reading, str, str]:
    """(reading, identity, phd_timestamp); `TamperedRecord` on a layout that does not parse."""
    cur = _Cursor(data)
    fmt, raw_flags, characteristic, received_us = _HEAD.unpack(cur.take(_HEAD.size))
    if fmt != RECORD_FORMAT:
        raise TamperedRecord(f"sealed reading has unknown format {fmt}")
    flags = int(raw_flags)
    offset = _F64.unpack(cur.take(_F64.size))[0] if flags & _HAS_OFFSET else None
    try:
        device = cur.field().decode()
        value = cur.field()
        context = cur.field() if flags & _HAS_CONTEXT else None
        identity = cur.field().decode()
        phd = cur.field().decode()
    except UnicodeDecodeError as exc:
        raise TamperedRecord("sealed reading has a text field that is not UTF-8") from exc
    if cur.pos != len(data):
        raise TamperedRecord("sealed reading longer than its layout")
    reading = Reading(
        device=device,
        characteristic=characteristic,
        value=value,
        received_at=from_us(received_us),
        clock_trusted=bool(flags & _CLOCK_TRUSTED),
        context=context,
        device_clock_offset_s=offset,
    )
    return reading, identity, phd
