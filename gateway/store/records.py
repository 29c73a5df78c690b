"""The store's values, and the layout of a sealed reading's plaintext.

A reading's plaintext (only ever inside AES-GCM) is, big-endian, layout 2 (written now)::

    u8 format=2 | u8 flags | u16 characteristic | i64 received_at (µs since the Unix epoch,
    UTC) | i64 phd_timestamp (s) | 16 bytes identity | u8 len(device) | u16 len(value) |
    u16 len(context) | [f64 device_clock_offset_s if flags & HAS_OFFSET] |
    [16 bytes boot id, i64 monotonic ns if flags & HAS_MONOTONIC] |
    [i16 the PHD timestamp's offset suffix (a glucose record's time offset, minutes) if
    flags & HAS_PHD_OFFSET] | [u32 its microseconds (a receive time) if flags &
    HAS_PHD_MICROS] | device | value | context (present iff flags & HAS_CONTEXT)

one fixed head read with one `struct` call; or layout 1 (written before, and still for an
identity or timestamp of an unusual shape)::

    u8 format=1 | u8 flags | u16 characteristic | i64 received_at
    [f64 device_clock_offset_s if flags & HAS_OFFSET]
    then u16-length-prefixed: device, value, [context if flags & HAS_CONTEXT], identity,
    phd_timestamp

The PHD timestamp part lives inside the seal too: it is the device's time, and with the
plaintext capture time it would say when a patient measured. Only the gateway's capture time
(`captured_at`) is plaintext, so status can report the oldest waiting reading without keys.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from device_drivers.reading import Reading
from gateway.store.errors import TamperedRecord

__all__ = [
    "CLOCK_TRUSTED",
    "RECORD_FORMAT",
    "DeviceRecord",
    "Event",
    "MalformedRecord",
    "StoreStats",
    "StoredReading",
    "pack_captured",
    "pack_captured_many",
    "pack_reading",
    "unpack_fields",
    "unpack_reading",
]

RECORD_FORMAT: Final = 2
"""Version of the plaintext layout written now (its first byte, authenticated by the tag);
layout 1 records stay readable. What the associated data binds is `crypto.SEAL_FORMAT`."""

_FORMAT_V1: Final = 1

UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_HEAD: Final = struct.Struct(">BBHq")
_F64: Final = struct.Struct(">d")
_LEN: Final = struct.Struct(">H")
# layout 2: format, flags, characteristic, received_at µs, PHD timestamp part (s), identity
# (16 bytes), then the lengths of device, value and context
_HEAD2: Final = struct.Struct(">BBHqq16sBHH")
_IDENTITY_LEN: Final = 16
_U8_MAX: Final = 0xFF
_U16_MAX: Final = 0xFFFF
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1


CLOCK_TRUSTED: Final = 0x01  # plaintext flag bits
_HAS_CONTEXT: Final = 0x02
_HAS_OFFSET: Final = 0x04
_HAS_MONOTONIC: Final = 0x08  # received while the wall clock was untrusted (LESSONS L7.2)
_MONOTONIC: Final = struct.Struct(">16sq")
_HAS_PHD_OFFSET: Final = 0x10  # the PHD timestamp part ends with a signed offset: "...-60"
_HAS_PHD_MICROS: Final = 0x20  # the PHD timestamp part has microseconds: "....250000"
_I16: Final = struct.Struct(">h")
_U32: Final = struct.Struct(">I")
PhdStamp = int | str
"""A PHD timestamp part as captured: whole seconds, or its text: seconds then the signed offset
the device reported, or seconds and microseconds (`Reading.capture_key_values`)."""
_Suffix = tuple[int, int] | None  # (the flag, its value) beyond the seconds


def _phd_parts(phd: PhdStamp) -> tuple[int, _Suffix] | None:
    """(seconds, suffix) of a PHD timestamp part layout 2 holds exactly; None for any other
    text (layout 1 keeps it as it is)."""
    if isinstance(phd, int):
        return phd, None
    try:
        if "." in phd:
            head, _, micros = phd.partition(".")
            seconds, suffix = int(head), (_HAS_PHD_MICROS, int(micros))
            canonical = f"{seconds}.{suffix[1]:06d}"
            fits = len(micros) == 6 and 0 <= suffix[1] < 10**6
        else:
            head, sign, tail = phd.rpartition("-") if "-" in phd[1:] else phd.rpartition("+")
            if not sign:
                return None  # plain seconds come as an int
            seconds, suffix = int(head), (_HAS_PHD_OFFSET, int(sign + tail))
            canonical = f"{seconds}{suffix[1]:+d}"
            fits = -(2**15) <= suffix[1] < 2**15
    except ValueError:
        return None
    return (seconds, suffix) if fits and canonical == phd else None


def _phd_text(seconds: int, flags: int, suffix: int) -> str:
    if flags & _HAS_PHD_MICROS:
        return f"{seconds}.{suffix:06d}"
    return f"{seconds}{suffix:+d}"


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
    """What `carebox status` shows; no health values. `delivered_waiting_prune`: rows
    delivered whose sealed payload the store still holds, until its next flush (when the queue
    runs empty, at prune); `tombstones` counts every delivered reading's key, those included."""

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
    # A scale's Weight Scale Feature resolution codes, as text ("0": not specified)
    weight_resolution: str | None = None
    height_resolution: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the append-only event log (security and integrity; no health values)."""

    id: int
    at: datetime
    kind: str
    detail: dict[str, str | int | float | bool]


@dataclass(frozen=True, slots=True)
class MalformedRecord:
    """Bytes a device sent that did not decode, as received (LESSONS L8.2); `value` is None
    when the record no longer opens (tampered, or its key is gone)."""

    id: int
    at: datetime
    device: str
    characteristic: int
    value: bytes | None


def to_us(at: datetime) -> int:
    d = at - UNIX_EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def from_us(us: int) -> datetime:
    return UNIX_EPOCH + timedelta(microseconds=us)


def pack_reading(reading: Reading, identity: str, phd_timestamp: str) -> bytes:
    """Layout 2 when the identity and timestamp have their usual shapes (always, for keys
    `Reading.capture_keys` made), layout 1 otherwise; both stay readable."""
    try:
        ident = bytes.fromhex(identity)
    except ValueError:
        return _pack_v1(reading, identity, phd_timestamp, reading.device.encode())
    # lower case hex and canonical decimal: unpacking gives back the exact text
    if ident.hex() != identity:
        return _pack_v1(reading, identity, phd_timestamp, reading.device.encode())
    # plain seconds as the int the add path gives; any other text as it is (pack_captured
    # keeps the suffixes layout 2 holds, and writes anything else in layout 1)
    seconds = _canonical_int(phd_timestamp)
    return pack_captured(reading, ident, phd_timestamp if seconds is None else seconds)


def _canonical_int(text: str) -> int | None:
    """`text` as an int when it is one's canonical decimal text (what unpacking gives back)."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if str(value) == text else None


def pack_captured(reading: Reading, identity: bytes, phd: PhdStamp) -> bytes:
    """`pack_reading` from the keys in binary (`Reading.capture_key_values`), the store's add
    path: layout 2, or layout 1 for a field wider than layout 2 holds."""
    device = reading.device.encode()
    value = reading.value
    context = reading.context
    parts = _phd_parts(phd)
    phd_seconds, phd_suffix = parts if parts is not None else (0, None)
    if (
        parts is None
        or len(identity) != _IDENTITY_LEN
        or not _I64_MIN <= phd_seconds <= _I64_MAX
        or len(device) > _U8_MAX
        or len(value) > _U16_MAX
        or (context is not None and len(context) > _U16_MAX)
    ):
        return _pack_v1(reading, identity.hex(), str(phd), device)
    # plain ints, not the IntFlag: this runs once per reading on the add path
    flags = CLOCK_TRUSTED if reading.clock_trusted else 0
    if context is None:
        context = b""
    else:
        flags |= _HAS_CONTEXT
    offset = reading.device_clock_offset_s
    if offset is not None:
        flags |= _HAS_OFFSET
    tail = b""
    if reading.boot_id is not None and reading.monotonic_ns is not None:
        try:
            boot = bytes.fromhex(reading.boot_id)
        except ValueError:
            boot = b""
        if len(boot) == 16 and boot.hex() == reading.boot_id and reading.monotonic_ns >= 0:
            flags |= _HAS_MONOTONIC
            tail = _MONOTONIC.pack(boot, reading.monotonic_ns)
    if phd_suffix is not None:
        flag, suffix = phd_suffix
        flags |= flag
        tail += (_I16 if flag == _HAS_PHD_OFFSET else _U32).pack(suffix)
    head = _HEAD2.pack(
        RECORD_FORMAT,
        flags,
        reading.characteristic,
        to_us(reading.received_at),
        phd_seconds,
        identity,
        len(device),
        len(value),
        len(context),
    )
    if offset is not None:
        return b"".join((head, _F64.pack(offset), tail, device, value, context))
    return b"".join((head, tail, device, value, context))


def pack_captured_many(
    readings: Sequence[Reading], keys: Sequence[tuple[bytes, PhdStamp]]
) -> list[bytes]:
    """`pack_captured` of each reading with its keys, the same bytes. A batch mostly shares
    one receive time and one device: each is converted once while it repeats. A reading with
    optional fields packs through `pack_captured`."""
    out = []
    last_at: datetime | None = None
    received_us = 0
    last_device = ""
    device = b""
    pack = _HEAD2.pack
    for reading, (identity, phd_seconds) in zip(readings, keys, strict=True):
        value = reading.value
        if (
            reading.context is not None
            or reading.device_clock_offset_s is not None
            or reading.boot_id is not None
            or type(phd_seconds) is not int
            or len(identity) != _IDENTITY_LEN
            or not _I64_MIN <= phd_seconds <= _I64_MAX
            or len(value) > _U16_MAX
        ):
            out.append(pack_captured(reading, identity, phd_seconds))
            continue
        # `is`: a datetime and a str are immutable, so the same object converts the same
        if reading.received_at is not last_at:
            last_at = reading.received_at
            received_us = to_us(last_at)
        if reading.device is not last_device:
            last_device = reading.device
            device = last_device.encode()
        if len(device) > _U8_MAX:
            out.append(pack_captured(reading, identity, phd_seconds))
            continue
        head = pack(
            RECORD_FORMAT,
            CLOCK_TRUSTED if reading.clock_trusted else 0,
            reading.characteristic,
            received_us,
            phd_seconds,
            identity,
            len(device),
            len(value),
            0,
        )
        out.append(head + device + value)
    return out


def _pack_v1(reading: Reading, identity: str, phd_timestamp: str, device: bytes) -> bytes:
    flags = CLOCK_TRUSTED if reading.clock_trusted else 0
    parts = [b""]
    offset = reading.device_clock_offset_s
    if offset is not None:
        flags |= _HAS_OFFSET
        parts.append(_F64.pack(offset))
    context = reading.context
    value = reading.value
    parts += (_LEN.pack(len(device)), device, _LEN.pack(len(value)), value)
    if context is not None:
        flags |= _HAS_CONTEXT
        parts += (_LEN.pack(len(context)), context)
    ident, phd = identity.encode(), phd_timestamp.encode()
    parts += (_LEN.pack(len(ident)), ident, _LEN.pack(len(phd)), phd)
    parts[0] = _HEAD.pack(_FORMAT_V1, flags, reading.characteristic, to_us(reading.received_at))
    return b"".join(parts)


class _Cursor:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise TamperedRecord("sealed reading shorter than its layout")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def field(self) -> bytes:
        return self.take(int.from_bytes(self.take(_LEN.size)))


_Fields = tuple[
    str, int, bytes, int, int, bytes | None, float | None, str, str, str | None, int | None
]
"""device, characteristic, value, received_us, flags, context, offset, identity, phd, boot id,
monotonic ns"""


def unpack_fields(data: bytes) -> _Fields:
    """The fields of a sealed reading's plaintext (either layout); `TamperedRecord` on a
    layout that does not parse. No datetime is built here: callers share them."""
    if len(data) >= _HEAD2.size and data[0] == RECORD_FORMAT:
        _, flags, characteristic, received_us, phd, ident, dl, vl, cl = _HEAD2.unpack_from(data)
        pos = _HEAD2.size
        has_offset = flags & _HAS_OFFSET
        has_monotonic = flags & _HAS_MONOTONIC
        end = pos + (_F64.size if has_offset else 0) + dl + vl + cl
        end += _MONOTONIC.size if has_monotonic else 0
        end += _I16.size if flags & _HAS_PHD_OFFSET else 0
        end += _U32.size if flags & _HAS_PHD_MICROS else 0
        if end != len(data):
            raise TamperedRecord("sealed reading does not match its layout's lengths")
        offset: float | None = None
        if has_offset:
            (offset,) = _F64.unpack_from(data, pos)
            pos += _F64.size
        boot: str | None = None
        monotonic: int | None = None
        if has_monotonic:
            raw_boot, monotonic = _MONOTONIC.unpack_from(data, pos)
            boot = raw_boot.hex()
            pos += _MONOTONIC.size
        phd_text = str(phd)
        if flags & (_HAS_PHD_OFFSET | _HAS_PHD_MICROS):
            if flags & _HAS_PHD_OFFSET and flags & _HAS_PHD_MICROS:
                raise TamperedRecord("sealed reading has two timestamp suffixes")
            suffix_struct = _I16 if flags & _HAS_PHD_OFFSET else _U32
            (suffix,) = suffix_struct.unpack_from(data, pos)
            phd_text = _phd_text(phd, flags, suffix)
            pos += suffix_struct.size
        if cl and not flags & _HAS_CONTEXT:
            raise TamperedRecord("sealed reading has a context its flags deny")
        try:
            device = data[pos : pos + dl].decode()
        except UnicodeDecodeError as exc:
            raise TamperedRecord("sealed reading has a text field that is not UTF-8") from exc
        pos += dl
        return (
            device,
            characteristic,
            data[pos : pos + vl],
            received_us,
            flags,
            data[pos + vl : end] if flags & _HAS_CONTEXT else None,
            offset,
            ident.hex(),
            phd_text,
            boot,
            monotonic,
        )
    return _unpack_v1(data)


def _unpack_v1(data: bytes) -> _Fields:
    if len(data) < _HEAD.size:
        raise TamperedRecord("sealed reading shorter than its layout")
    fmt, flags, characteristic, received_us = _HEAD.unpack_from(data)
    if fmt != _FORMAT_V1:
        raise TamperedRecord(f"sealed reading has unknown format {fmt}")
    cur = _Cursor(data, _HEAD.size)
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
    fields = (device, characteristic, value, received_us, flags, context, offset, identity, phd)
    return (*fields, None, None)


def unpack_reading(data: bytes) -> tuple[Reading, str, str]:
    """(reading, identity, phd_timestamp); `TamperedRecord` on a layout that does not parse."""
    fields = unpack_fields(data)
    device, characteristic, value, received_us, flags, context, offset, identity, phd = fields[:9]
    boot, mono = fields[9:]
    reading = Reading(
        device=device,
        characteristic=characteristic,
        value=value,
        received_at=from_us(received_us),
        clock_trusted=bool(flags & CLOCK_TRUSTED),
        context=context,
        device_clock_offset_s=offset,
        boot_id=boot,
        monotonic_ns=mono,
    )
    return reading, identity, phd
