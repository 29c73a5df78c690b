"""`bundle_to_json`: a Bundle dict → UTF-8 JSON bytes with every Decimal written exactly.

The stock `json` module cannot emit a Decimal, and a float loses trailing zeros (71.0 → 71),
which the PHD IG forbids (precision is data). Decimals print in plain notation: 1.2E+3 → 1200,
95E-5 scaled to mg/dL → 95, 70.000 stays 70.000.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Final

__all__ = ["bundle_to_json", "json_number", "json_string", "to_json"]


def _number(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError("a FHIR decimal must be finite")
    return format(value, "f")


json_number = _number
"""A Decimal as a JSON number, exactly (plain notation, trailing zeros kept)."""

json_string: Callable[[str], str] = encode_basestring
"""A JSON string literal, exactly as `json.dumps(text, ensure_ascii=False)` writes it."""


def _write(value: object, out: list[str]) -> None:
    if isinstance(value, Decimal):
        out.append(_number(value))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif value is None or isinstance(value, bool | int | float | str):
        out.append(json.dumps(value, ensure_ascii=False))
    else:
        raise TypeError(f"no JSON form for {type(value).__name__} in a Bundle")


_MARKER: Final = re.compile(r'"\\u0000(\d+)"')


def bundle_to_json(bundle: Mapping[str, object]) -> bytes:
    """Compact UTF-8 JSON of `bundle`, keys in insertion order, Decimals exact."""
    return to_json(bundle)


def to_json(bundle: object) -> bytes:
    """Compact UTF-8 JSON of any JSON-ready value (a Bundle or a part of one), keys in
    insertion order, Decimals exact.

    Fast path: the C encoder writes each Decimal as a marker string (NUL + index), then the
    markers become the exact numbers. A genuine string that looks like a marker shows up as a
    count or order mismatch, and the pure-Python writer does the whole job instead.
    """
    numbers: list[str] = []

    def number_marker(value: object) -> str:
        if not isinstance(value, Decimal):
            raise TypeError(f"no JSON form for {type(value).__name__} in a Bundle")
        numbers.append(_number(value))
        return f"\x00{len(numbers) - 1}"

    text = json.dumps(bundle, ensure_ascii=False, separators=(",", ":"), default=number_marker)
    found = _MARKER.findall(text)
    if [int(i) for i in found] != list(range(len(numbers))):
        out: list[str] = []
        _write(bundle, out)
        return "".join(out).encode("utf-8")
    return _MARKER.sub(lambda m: numbers[int(m.group(1))], text).encode("utf-8")
