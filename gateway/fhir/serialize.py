"""`bundle_to_json`: a Bundle dict → UTF-8 JSON bytes with every Decimal written exactly.

The stock `json` module cannot emit a Decimal, and a float loses trailing zeros (71.0 → 71),
which the PHD IG forbids (precision is data). Decimals print in plain notation: 1.2E+3 → 1200,
95E-5 scaled to mg/dL → 95, 70.000 stays 70.000.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal

__all__ = ["bundle_to_json"]


def _number(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError("a FHIR decimal must be finite")
    return format(value, "f")


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
    elif value is None or isinstance(value, bool | int | str):
        out.append(json.dumps(value, ensure_ascii=False))
    else:
        raise TypeError(f"no JSON form for {type(value).__name__} in a Bundle")


def bundle_to_json(bundle: Mapping[str, object]) -> bytes:
    """Compact UTF-8 JSON of `bundle`, keys in insertion order, Decimals exact."""
    out: list[str] = []
    _write(bundle, out)
    return "".join(out).encode("utf-8")
