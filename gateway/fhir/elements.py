"""Small FHIR data types built from codes and device numbers: CodeableConcepts, Quantities,
dataAbsentReason, unit conversions.

Numbers stay `Decimal` end to end and keep the device's precision (FHIR.md section 8): exact
conversions shift the exponent (95 × 10^-5 kg/L → 95 mg/dL, 1.75 m → 175 cm); the one inexact
conversion, kPa → mm[Hg], is computed exactly then rounded to 0.1 mm[Hg].
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, Final

from device_drivers.ieee11073 import Special
from gateway.fhir import codes
from gateway.fhir.codes import Code, Unit
from gateway.fhir.serialize import json_number, json_string, to_json

__all__ = [
    "coded",
    "coded_text",
    "concept_text",
    "convert",
    "field",
    "int_code",
    "kpa_to_mmhg",
    "mdc_concept",
    "quantity_or_absent",
    "quantity_or_absent_text",
    "text_value",
]

JsonObject = dict[str, Any]

_PA_PER_MMHG: Final = Decimal("133.322387415")  # exact by definition of the mm[Hg]
_EXACT: Final = Context(prec=40)
_TENTH: Final = Decimal("0.1")
_ONE: Final = Decimal(1)


_MISSING: Final = object()


def field(obj: object, name: str) -> Any:
    """Attribute `name` of a decoded value (or key, for a mapping); None when absent."""
    value = getattr(obj, name, _MISSING)  # decoded values are objects: one lookup
    if value is not _MISSING:
        return value
    if isinstance(obj, Mapping):
        return obj.get(name)
    return None


def text_value(value: object) -> object:
    """An enum's contract value (``"kPa"``, ``"imperial"``), anything else unchanged."""
    return value.value if isinstance(value, enum.Enum) else value


def int_code(value: object) -> int | None:
    """A coded field as an int (plain int, IntEnum/IntFlag, or an Enum holding an int)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, enum.Enum) and isinstance(value.value, int):
        return value.value
    return None


def kpa_to_mmhg(value: Decimal) -> Decimal:
    """kPa → mm[Hg], exact then rounded half-even to 0.1 mm[Hg]."""
    exact = _EXACT.divide(_EXACT.multiply(value, Decimal(1000)), _PA_PER_MMHG)
    return exact.quantize(_TENTH, rounding=ROUND_HALF_EVEN)


def convert(value: Decimal, factor: Decimal) -> Decimal:
    """`value` × `factor`, rounded half-even to as many significant digits as `value` has, but
    never coarser than units (5.5 mmol/L → 99 mg/dL, 160.50 lb → 72.802 kg, 69.0 in → 175 cm):
    a unit change neither invents nor drops precision."""
    exact = _EXACT.multiply(value, factor)
    source = value.as_tuple()
    if not exact:  # zero has no significant digit to keep: keep its decimals instead
        return exact.quantize(_ONE.scaleb(min(int(source.exponent), 0)))
    exponent = min(exact.adjusted() - len(source.digits) + 1, 0)
    return exact.quantize(_ONE.scaleb(exponent), rounding=ROUND_HALF_EVEN)


def mdc_coding(code: int, display: str | None = None) -> JsonObject:
    coding: JsonObject = {"system": codes.MDC, "code": str(code)}
    if display:
        coding["display"] = display
    return coding


def mdc_concept(code: int, display: str | None = None) -> JsonObject:
    return {"coding": [mdc_coding(code, display)]}


def coded(code: Code, loinc: str | None = None) -> JsonObject:
    """`code` as a CodeableConcept: the MDC coding first, then the LOINC one if any."""
    codings = [mdc_coding(code.mdc, code.reference_id)]
    loinc = loinc or code.loinc
    if loinc:
        codings.append({"system": codes.LOINC, "code": loinc})
    return {"coding": codings}


def absent(special: Special) -> JsonObject:
    return {"coding": [{"system": codes.DATA_ABSENT_REASON, "code": codes.ABSENT_REASON[special]}]}


def quantity_or_absent(value: Decimal | Special, unit: Unit) -> JsonObject:
    """``{"valueQuantity": ...}`` for a number, ``{"dataAbsentReason": ...}`` for a special."""
    if isinstance(value, Special):
        return {"dataAbsentReason": absent(value)}
    return {
        "valueQuantity": {
            "value": value,
            "unit": unit.display,
            "system": codes.UCUM,
            "code": unit.code,
        }
    }


# --- the same elements as JSON text ---------------------------------------------------------
# An Observation body is written as text (`observations.Draft.body`): codes and units come from
# closed tables, so their JSON is rendered once; only the numbers are written per reading.


@functools.cache
def coded_text(code: Code) -> str:
    """`coded(code)` as JSON."""
    return to_json(coded(code)).decode("utf-8")


@functools.lru_cache(maxsize=256)
def concept_text(code: int) -> str:
    """`mdc_concept(code)` as JSON."""
    return to_json(mdc_concept(code)).decode("utf-8")


@functools.cache
def _unit_tail(unit: Unit) -> str:
    return (
        f',"unit":{json_string(unit.display)},"system":{json_string(codes.UCUM)},'
        f'"code":{json_string(unit.code)}}}'
    )


@functools.cache
def _absent_text(special: Special) -> str:
    return '"dataAbsentReason":' + to_json(absent(special)).decode("utf-8")


def quantity_or_absent_text(value: Decimal | Special, unit: Unit) -> str:
    """`quantity_or_absent(value, unit)`'s one member as JSON text (no braces)."""
    if type(value) is not Decimal:  # a Special (checked by type: this runs per value)
        return _absent_text(value)
    return '"valueQuantity":{"value":' + json_number(value) + _unit_tail(unit)
