"""The machinery every characteristic codec shares: a bounds-checked reader and a writer of
little-endian GATT fields, the registry of codecs by 16-bit UUID, and the JSON view.

A codec is a frozen, slotted dataclass registered with `@register(0x2A35)`; it has a
``from_bytes`` classmethod, ``__bytes__`` and fields named as the contract's JSON names them.
`decode` is the one entry point: whatever the bytes, it returns a value or raises
`MalformedValue`. Anything else escaping a decoder is a bug, and the hypothesis tests hunt it.

Our reading of the specification on extra octets and reserved bits (GATT Specification
Supplement, "Reserved for Future Use"): a sender sets RFU bits to 0 and a receiver ignores
them; octets after the last field the flags announce are ignored too, so a device speaking a
later revision of a profile still decodes. Truncation is never tolerated: a value shorter
than its flags demand is `MalformedValue`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import struct
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Final, Protocol, Self, TypeVar

from device_drivers.errors import (
    DeviceDriverError,
    MalformedValue,
    UnencodableValue,
    UnknownCharacteristic,
)
from device_drivers.ieee11073 import (
    Measure,
    Special,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
    measure_to_json,
)

__all__ = [
    "ByteReader",
    "ByteWriter",
    "Codec",
    "InvalidField",
    "codec_for",
    "decode",
    "from_json",
    "register",
    "registered",
    "to_json",
]

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


class Codec(Protocol):
    """What every registered characteristic value type provides."""

    UUID: ClassVar[int]

    @classmethod
    def from_bytes(cls, data: bytes) -> Self: ...

    def __bytes__(self) -> bytes: ...


_REGISTRY: dict[int, type[Codec]] = {}
DECODE_CACHE_SIZE: Final = 4096  # a few uplink batches: each reading decodes once per mapping
C = TypeVar("C", bound=type[Any])


def register(uuid: int) -> Callable[[C], C]:
    """Class decorator: make `cls` the codec of characteristic `uuid`."""

    def apply(cls: C) -> C:
        if uuid in _REGISTRY:
            raise RuntimeError(f"two codecs for {uuid:04X}")
        cls.UUID = uuid
        _REGISTRY[uuid] = cls
        return cls

    return apply


def registered() -> Mapping[int, type[Codec]]:
    """Every registered codec by 16-bit UUID (import `device_drivers` to fill it)."""
    return dict(_REGISTRY)


def codec_for(uuid: int) -> type[Codec]:
    try:
        return _REGISTRY[uuid]
    except KeyError:
        raise UnknownCharacteristic(uuid) from None


def decode(uuid: int, data: bytes) -> Codec:
    """Decode one characteristic value; raises only `MalformedValue` or `UnknownCharacteristic`.

    Values are immutable and decoding is pure, so recent results are kept: the gateway reads
    a reading's fields at capture, then its time and value when mapping it, from the same bytes.
    """
    return _decode_cached(uuid, bytes(data))


@functools.lru_cache(maxsize=DECODE_CACHE_SIZE)
def _decode_cached(uuid: int, data: bytes) -> Codec:
    return codec_for(uuid).from_bytes(data)


class ByteReader:
    """Reads little-endian GATT fields from one value, raising `MalformedValue` with the
    characteristic, the offset and the hex on truncation or an out-of-range field."""

    __slots__ = ("_data", "_uuid", "offset")

    def __init__(self, uuid: int, data: bytes) -> None:
        self._uuid = uuid
        self._data = bytes(data)
        self.offset = 0

    def error(self, reason: str, offset: int | None = None) -> MalformedValue:
        return MalformedValue(
            self._uuid, self._data, self.offset if offset is None else offset, reason
        )

    def remaining(self) -> int:
        return len(self._data) - self.offset

    def take(self, n: int, what: str) -> bytes:
        start = self.offset
        end = start + n
        if end > len(self._data):
            raise self.error(f"{what} needs {n} octet(s), {self.remaining()} left")
        self.offset = end
        return self._data[start:end]

    def rest(self) -> bytes:
        chunk = self._data[self.offset :]
        self.offset = len(self._data)
        return chunk

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "little")

    # u8 and u16 are every characteristic's bread and butter: read in place, without a slice.
    def u8(self, what: str) -> int:
        start = self.offset
        if start >= len(self._data):
            raise self.error(f"{what} needs 1 octet(s), 0 left")
        self.offset = start + 1
        return self._data[start]

    def u16(self, what: str) -> int:
        start = self.offset
        if start + 2 > len(self._data):
            raise self.error(f"{what} needs 2 octet(s), {self.remaining()} left")
        self.offset = start + 2
        return self._data[start] | self._data[start + 1] << 8

    def u24(self, what: str) -> int:
        return self.uint(3, what)

    def u32(self, what: str) -> int:
        return self.uint(4, what)

    def s16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "little", signed=True)

    def sfloat(self, what: str) -> Measure:
        return decode_sfloat(self.u16(what))

    def float32(self, what: str) -> Measure:
        return decode_float(self.u32(what))

    def date_time(self, what: str) -> datetime | None:
        """A Date Time (0x2A08) field, 7 octets, as the device's naive local time.

        Year 0, month 0 or day 0 mean "not known" in the spec: such a stamp is no instant at all,
        so it reads as None (the reading then falls back to its receive time). A component out of
        its range (month 13, hour 24) or an impossible date (31 February) is `MalformedValue`.
        """
        start = self.offset
        year, month, day, hour, minute, second = struct.unpack("<HBBBBB", self.take(7, what))
        if year == 0 or month == 0 or day == 0:
            if not (hour <= 23 and minute <= 59 and second <= 59):
                raise self.error(f"{what}: time of day out of range", start)
            return None
        if not 1582 <= year <= 9999:
            raise self.error(f"{what}: year outside 1582..9999", start)
        try:
            # Device local time, deliberately naive: the device sends no zone (contract).
            return datetime(year, month, day, hour, minute, second)  # noqa: DTZ001
        except ValueError:
            # not the exception's text, which may quote the date (the reason carries no value)
            raise self.error(f"{what}: no such date or time of day", start) from None


class ByteWriter:
    """Builds a value field by field; encoding problems are `UnencodableValue`."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def __bytes__(self) -> bytes:
        return b"".join(self._parts)

    def raw(self, data: bytes) -> None:
        self._parts.append(bytes(data))

    def uint(self, value: int, n: int, what: str) -> None:
        try:
            self._parts.append(int(value).to_bytes(n, "little"))
        except OverflowError:
            raise UnencodableValue(f"{what}={value} does not fit {n} octet(s)") from None

    def u8(self, value: int, what: str) -> None:
        self.uint(value, 1, what)

    def u16(self, value: int, what: str) -> None:
        self.uint(value, 2, what)

    def u24(self, value: int, what: str) -> None:
        self.uint(value, 3, what)

    def u32(self, value: int, what: str) -> None:
        self.uint(value, 4, what)

    def s16(self, value: int, what: str) -> None:
        try:
            self._parts.append(int(value).to_bytes(2, "little", signed=True))
        except OverflowError:
            raise UnencodableValue(f"{what}={value} does not fit a signed 16-bit field") from None

    def sfloat(self, value: Measure) -> None:
        self.u16(encode_sfloat(value), "sfloat")

    def float32(self, value: Measure) -> None:
        self.u32(encode_float(value), "float")

    def date_time(self, value: datetime | None) -> None:
        if value is None:
            self._parts.append(bytes(7))
            return
        if not 1582 <= value.year <= 9999:
            raise UnencodableValue(f"year {value.year} outside 1582..9999")
        self._parts.append(
            struct.pack(
                "<HBBBBB",
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
            )
        )


def scaled(raw: int, resolution: str) -> Decimal:
    """A fixed-resolution integer field as an exact decimal (weight: raw × 0.005 kg)."""
    return Decimal(raw) * Decimal(resolution)


def unscaled(value: Decimal, resolution: str, what: str) -> int:
    """The integer a fixed-resolution field carries; refuses values between two steps."""
    steps = value / Decimal(resolution)
    if steps != steps.to_integral_value():
        raise UnencodableValue(f"{what}={value} is not a multiple of {resolution}")
    return int(steps)


_JSON_SKIP: Final = frozenset({"UUID"})


def to_json(value: object) -> JsonValue:
    """The contract's JSON view of a decoded value: absent optional fields omitted, numbers
    exact, special values as their strings, enums as their values, times ISO 8601."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Decimal | Special):
        return measure_to_json(value)
    if isinstance(value, enum.Enum):
        inner = value.value
        return inner if isinstance(inner, int | str) else str(inner)
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, JsonValue] = {}
        for field in dataclasses.fields(value):
            if field.name.startswith("_") or field.name in _JSON_SKIP:
                continue
            item = getattr(value, field.name)
            if item is None:
                continue
            out[field.name] = to_json(item)
        return out
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    raise TypeError(f"no JSON view for {type(value).__name__}")


class InvalidField(DeviceDriverError, ValueError):
    """A decoded-JSON table that does not describe a value of its codec: an unknown key, a
    missing required one, or a value of the wrong type. `field` is the dotted path of the key
    (``measurement_status.pulse_rate_range``)."""

    def __init__(self, codec: str, field: str, reason: str) -> None:
        self.codec = codec
        self.field = field
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.codec}: field {self.field!r}: {self.reason}"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.codec, self.field, self.reason))


class _Mismatch(Exception):
    """A JSON value the annotated type does not accept (internal to `from_json`); `field` is
    set when the culprit is a key of a nested table."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


T = TypeVar("T")


def from_json(codec_cls: type[T], obj: Mapping[str, object]) -> T:
    """The inverse of `to_json` for a codec (or a nested value dataclass): build the typed
    value from a table keyed by the contract's decoded-JSON field names.

    ``from_json(type(v), to_json(v)) == v`` for every value `v` of a measurement codec.
    Numbers come back as exact decimals (``120.5`` is ``Decimal('120.5')``; JSON cannot carry
    trailing zeros, and decimals compare by value, so ``72.5 == 72.500``); the special-value
    strings ("NaN", "NRes", "+INF", "-INF", "Reserved") become `Special`; enum fields take
    their JSON value; timestamps an ISO 8601 string without zone (or a naive `datetime`, as a
    TOML local date-time arrives). An absent key takes the field's default. Decimal strings
    ("120.5") are accepted where a number is expected, so TOML tables can state a precision
    a float cannot. Derived fields (``init=False``) may be present and must then agree.

    Raises `InvalidField` naming the key for an unknown key, a missing required one or a
    mistyped value; whether the value fits the wire format is `bytes(value)`'s business
    (`UnencodableValue`).
    """
    return _from_mapping(codec_cls, obj, "")


def _from_mapping(cls: type[T], obj: object, prefix: str) -> T:
    name = cls.__name__
    if not isinstance(obj, Mapping):
        raise InvalidField(name, prefix or "<value>", f"expected a table, got {_kind(obj)}")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{name} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {
        f.name: f
        for f in dataclasses.fields(cls)
        if not f.name.startswith("_") and f.name not in _JSON_SKIP
    }
    for key in obj:
        if key not in fields:
            known = ", ".join(fields)
            raise InvalidField(name, f"{prefix}{key}", f"unknown field (known: {known})")
    kwargs: dict[str, Any] = {}
    for field_name, field in fields.items():
        if not field.init or field_name not in obj:
            continue
        path = f"{prefix}{field_name}"
        try:
            kwargs[field_name] = _convert(hints[field_name], obj[field_name], path)
        except _Mismatch as exc:
            raise InvalidField(name, exc.field or path, str(exc)) from None
    for field_name, field in fields.items():
        if field.init and field_name not in obj and _required(field):
            raise InvalidField(name, f"{prefix}{field_name}", "required field missing")
    try:
        value = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, DeviceDriverError):
            raise
        raise InvalidField(name, prefix or "<value>", str(exc)) from None
    for field_name, field in fields.items():
        if not field.init and field_name in obj:
            derived = to_json(getattr(value, field_name))
            if derived != obj[field_name]:
                raise InvalidField(
                    name,
                    f"{prefix}{field_name}",
                    f"derived field is {derived!r} for these values, not {obj[field_name]!r}",
                )
    return value


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _kind(raw: object) -> str:
    return "null" if raw is None else type(raw).__name__


def _convert(tp: Any, raw: object, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        arms = typing.get_args(tp)
        if raw is None and type(None) in arms:
            return None
        mismatches: list[_Mismatch] = []
        for arm in arms:
            if arm is type(None):
                continue
            try:
                return _convert(arm, raw, path)
            except _Mismatch as exc:
                mismatches.append(exc)
        if len(mismatches) == 1:
            raise mismatches[0]
        raise _Mismatch("; ".join(str(m) for m in mismatches))
    if not isinstance(tp, type):
        raise TypeError(f"from_json cannot build a {tp!r} ({path})")
    if issubclass(tp, enum.Enum):
        return _convert_enum(tp, raw)
    if tp is bool:
        if not isinstance(raw, bool):
            raise _Mismatch(f"expected true or false, got {_kind(raw)}")
        return raw
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _Mismatch(f"expected an integer, got {_kind(raw)}")
        return raw
    if tp is str:
        if not isinstance(raw, str):
            raise _Mismatch(f"expected a string, got {_kind(raw)}")
        return raw
    if tp is Decimal:
        return _convert_decimal(raw)
    if tp is datetime:
        return _convert_datetime(raw)
    if tp is bytes:
        if not isinstance(raw, str):
            raise _Mismatch(f"expected a hex string, got {_kind(raw)}")
        try:
            return bytes.fromhex(raw)
        except ValueError:
            raise _Mismatch(f"{raw!r} is not hex") from None
    if dataclasses.is_dataclass(tp):
        try:
            return _from_mapping(tp, raw, f"{path}.")
        except InvalidField as exc:
            # Re-raised by the outer level with the outer codec's name and the dotted path.
            raise _Mismatch(exc.reason, exc.field) from None
    raise TypeError(f"from_json cannot build a {tp.__name__} ({path})")


def _convert_enum(tp: type[enum.Enum], raw: object) -> enum.Enum:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise _Mismatch(f"expected one of {_choices(tp)}, got {_kind(raw)}")
    try:
        return tp(raw)
    except ValueError:
        raise _Mismatch(f"{raw!r} is not one of {_choices(tp)}") from None


def _choices(tp: type[enum.Enum]) -> str:
    return ", ".join(repr(m.value) for m in tp)


def _convert_decimal(raw: object) -> Decimal:
    if isinstance(raw, bool):
        raise _Mismatch("expected a number, got bool")
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        # repr gives the shortest decimal that reads back as this float: what the JSON said.
        value = Decimal(repr(raw))
    elif isinstance(raw, str):
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise _Mismatch(f"{raw!r} is neither a number nor a special value") from None
    else:
        raise _Mismatch(f"expected a number, got {_kind(raw)}")
    if not value.is_finite():
        raise _Mismatch(f"{raw!r} is not a finite number; specials are {_choices(Special)}")
    return value


def _convert_datetime(raw: object) -> datetime:
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise _Mismatch(f"{raw!r} is not an ISO 8601 date-time") from None
    else:
        raise _Mismatch(f"expected an ISO 8601 date-time, got {_kind(raw)}")
    if value.tzinfo is not None:
        raise _Mismatch("a device timestamp is local time as sent: give it without a zone")
    return value
