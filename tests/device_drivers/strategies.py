"""Hypothesis strategies shared by the codec tests of the blood pressure, weight scale, body
composition and device information profiles."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from hypothesis import strategies as st

from device_drivers.codec import scaled
from device_drivers.ieee11073 import Measure, decode_sfloat

# Every SFLOAT word decodes to something a device may send: numbers and the five specials.
sfloats: st.SearchStrategy[Measure] = st.integers(0, 0xFFFF).map(decode_sfloat)

datetimes = st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda d: d.replace(microsecond=0)
)


def steps(resolution: str, top: int = 0xFFFF) -> st.SearchStrategy[Decimal]:
    """Exact multiples of a fixed resolution that a u16 field carries."""
    return st.integers(0, top).map(lambda n: scaled(n, resolution))


def flagged(flag_bytes: int) -> st.SearchStrategy[bytes]:
    """Any flags value followed by arbitrary octets: reaches every optional-field path."""
    flags = st.integers(0, (1 << (8 * flag_bytes)) - 1).map(
        lambda f: f.to_bytes(flag_bytes, "little")
    )
    return st.tuples(flags, st.binary(max_size=40)).map(lambda t: t[0] + t[1])
