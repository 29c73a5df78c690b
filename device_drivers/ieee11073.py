"""IEEE 11073-20601 SFLOAT (16-bit) and FLOAT (32-bit) numbers.

A value is ``mantissa × 10**exponent`` with a two's-complement signed mantissa (12 bits for
SFLOAT, 24 for FLOAT) and a two's-complement signed exponent (4 bits, 8 bits). Reading the
exponent as biased (``nibble - 8``), as one published library does, turns 120 into 1.2e-6.

Numbers decode to `decimal.Decimal` so a device's precision survives: mantissa 1205 with
exponent -1 is ``Decimal('120.5')``, never ``120.49999``. The special values are their own
type, `Special`, never a float NaN: NaN, NRes ("not at this resolution"), +INF, -INF and the
reserved value are five different statements by a device.

Our reading of the specials: 20601 defines them as whole words whose exponent is 0
(SFLOAT 0x07FE..0x0802, FLOAT 0x007FFFFE..0x00800002). The same mantissas with another
exponent are ordinary numbers, so the encoder never produces a special word for a number.
"""

from __future__ import annotations

import enum
import functools
from decimal import Decimal
from typing import Final

from device_drivers.errors import UnencodableValue

__all__ = [
    "FLOAT_SPECIALS",
    "SFLOAT_SPECIALS",
    "Measure",
    "Special",
    "decode_float",
    "decode_sfloat",
    "encode_float",
    "encode_sfloat",
    "measure_to_json",
]


class Special(enum.Enum):
    """The IEEE 11073 special values; `.value` is the contract's JSON string."""

    NAN = "NaN"
    NRES = "NRes"
    POSITIVE_INFINITY = "+INF"
    NEGATIVE_INFINITY = "-INF"
    RESERVED = "Reserved"


Measure = Decimal | Special
"""A reported quantity: an exact decimal number or one of the special values."""

SFLOAT_SPECIALS: Final[dict[int, Special]] = {
    0x07FE: Special.POSITIVE_INFINITY,
    0x07FF: Special.NAN,
    0x0800: Special.NRES,
    0x0801: Special.RESERVED,
    0x0802: Special.NEGATIVE_INFINITY,
}
FLOAT_SPECIALS: Final[dict[int, Special]] = {
    0x007FFFFE: Special.POSITIVE_INFINITY,
    0x007FFFFF: Special.NAN,
    0x00800000: Special.NRES,
    0x00800001: Special.RESERVED,
    0x00800002: Special.NEGATIVE_INFINITY,
}
WORD_CACHE_SIZE: Final = 2048
_SFLOAT_WORD: Final = {v: k for k, v in SFLOAT_SPECIALS.items()}
_FLOAT_WORD: Final = {v: k for k, v in FLOAT_SPECIALS.items()}


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw & (1 << (bits - 1)) else raw


def _decode(
    word: int, mantissa_bits: int, exponent_bits: int, specials: dict[int, Special]
) -> Measure:
    special = specials.get(word)
    if special is not None:
        return special
    mantissa = _signed(word & ((1 << mantissa_bits) - 1), mantissa_bits)
    exponent = _signed(word >> mantissa_bits, exponent_bits)
    return Decimal(mantissa).scaleb(exponent)


def _encode(
    value: Measure, mantissa_bits: int, exponent_bits: int, words: dict[Special, int], name: str
) -> int:
    if isinstance(value, Special):
        return words[value]
    if not value.is_finite():
        raise UnencodableValue(f"{value} is not a finite number; use a Special for {name}")
    sign, digits, raw_exponent = value.as_tuple()
    assert isinstance(raw_exponent, int)  # finite, checked above
    exponent = raw_exponent
    mantissa = int("".join(map(str, digits)) or "0")
    if sign:
        mantissa = -mantissa
    m_max = (1 << (mantissa_bits - 1)) - 1
    e_min, e_max = -(1 << (exponent_bits - 1)), (1 << (exponent_bits - 1)) - 1

    def fits(m: int) -> bool:
        return -m_max - 1 <= m <= m_max

    # Shed trailing zeros only as far as needed to fit: the device's precision is kept.
    while (not fits(mantissa) or exponent < e_min) and mantissa and mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    while exponent > e_max and fits(mantissa * 10):
        mantissa *= 10
        exponent -= 1
    if mantissa == 0:
        exponent = min(max(exponent, e_min), e_max)
    if not (fits(mantissa) and e_min <= exponent <= e_max):
        raise UnencodableValue(f"{value} does not fit an IEEE 11073 {name} exactly")
    word = ((exponent & ((1 << exponent_bits) - 1)) << mantissa_bits) | (
        mantissa & ((1 << mantissa_bits) - 1)
    )
    if exponent == 0 and word in words.values():
        raise UnencodableValue(f"{value} collides with a special value of {name}")
    return word


# Physiological values repeat (the same few hundred words for pressures, pulses, weights), and
# Decimals are immutable: remembering recent words spares the Decimal arithmetic.
@functools.lru_cache(maxsize=WORD_CACHE_SIZE)
def decode_sfloat(word: int) -> Measure:
    """Decode a 16-bit SFLOAT word (already assembled little-endian)."""
    return _decode(word & 0xFFFF, 12, 4, SFLOAT_SPECIALS)


def encode_sfloat(value: Measure) -> int:
    """Encode to a 16-bit SFLOAT word, exactly; `UnencodableValue` when it cannot be exact."""
    return _encode(value, 12, 4, _SFLOAT_WORD, "SFLOAT")


@functools.lru_cache(maxsize=WORD_CACHE_SIZE)
def decode_float(word: int) -> Measure:
    """Decode a 32-bit FLOAT word (already assembled little-endian)."""
    return _decode(word & 0xFFFFFFFF, 24, 8, FLOAT_SPECIALS)


def encode_float(value: Measure) -> int:
    """Encode to a 32-bit FLOAT word, exactly; `UnencodableValue` when it cannot be exact."""
    return _encode(value, 24, 8, _FLOAT_WORD, "FLOAT")


def measure_to_json(value: Measure) -> int | float | str:
    """A JSON scalar that prints as the device meant it.

    A Decimal from at most 8 significant digits converts to the float whose shortest repr is
    that same decimal, so `json` prints ``120.5``, not ``120.49999``.
    """
    if isinstance(value, Special):
        return value.value
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent >= 0:
        return int(value)
    return float(value)
