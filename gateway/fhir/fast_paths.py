"""The commonest readings mapped straight from their bytes, skipping the decoded dataclass.

Why: a backlog drain renders tens of thousands of readings a second, and for a plain
blood-pressure record (mmHg, with or without time stamp, pulse and user id, no status field)
decoding into a `BloodPressureMeasurement` and walking it by field name costs more than the
rest of its two Observations together.

Contract: `blood_pressure(value)` returns exactly what the generic path
(`decode` → `observations.map_measurement` → `Reading.timestamp_of`) returns for the same bytes,
or None when the value is anything else (kPa, a status field, a special value such as NaN, an
unknown or impossible date, too few octets): the generic path then decides, so every
refusal and every rare shape keeps one implementation. `tests/gateway/fhir/test_fast_paths.py`
checks the equality over generated values and raw bytes.
"""

from __future__ import annotations

import functools
from datetime import datetime
from decimal import Decimal
from typing import Final

from device_drivers.blood_pressure import peek_timestamp
from device_drivers.ieee11073 import decode_sfloat
from gateway.fhir import codes
from gateway.fhir.elements import coded_text, quantity_or_absent_text
from gateway.fhir.observations import BP_COMPONENT_HEADS, BP_PANEL_HEAD, Draft

__all__ = ["blood_pressure"]

_UNIT_KPA: Final = 0x01
_HAS_TIME: Final = 0x02
_HAS_PULSE: Final = 0x04
_HAS_STATUS: Final = 0x10

_PULSE_HEAD: Final = '"code":' + coded_text(codes.PULSE_RATE) + ","
_PANEL_MDC: Final = codes.BP_PANEL.mdc
(_, _SYSTOLIC_HEAD), (_, _DIASTOLIC_HEAD), (_, _MEAN_HEAD) = BP_COMPONENT_HEADS


def _quantity(word: int, unit: codes.Unit) -> str | None:
    """The valueQuantity text of an SFLOAT word, or None for a special value."""
    value = decode_sfloat(word)
    if not isinstance(value, Decimal):
        return None
    return quantity_or_absent_text(value, unit)


# Keyed by the bare word (an int hashes in C; a `Unit` key would call the dataclass __hash__
# per value): a cuff's few hundred pressures and pulses are rendered once each.
@functools.lru_cache(maxsize=4096)
def _systolic(word: int) -> str | None:
    quantity = _quantity(word, codes.MM_HG)
    return None if quantity is None else _SYSTOLIC_HEAD + quantity + "}"


@functools.lru_cache(maxsize=4096)
def _diastolic(word: int) -> str | None:
    quantity = _quantity(word, codes.MM_HG)
    return None if quantity is None else _DIASTOLIC_HEAD + quantity + "}"


@functools.lru_cache(maxsize=4096)
def _mean(word: int) -> str | None:
    quantity = _quantity(word, codes.MM_HG)
    return None if quantity is None else _MEAN_HEAD + quantity + "}"


@functools.lru_cache(maxsize=1024)
def _pulse(word: int) -> Draft | None:
    """The pulse-rate draft of an SFLOAT word: immutable, so one instance serves every
    reading with that pulse."""
    quantity = _quantity(word, codes.PER_MINUTE)
    if quantity is None:
        return None
    pulse = codes.PULSE_RATE
    return Draft(pulse.mdc, codes.PROFILE_NUMERIC, pulse.vital_sign, _PULSE_HEAD + quantity)


def blood_pressure(value: bytes) -> tuple[list[Draft], datetime | None] | None:
    """(drafts, device time) of a 0x2A35 value in its common shape, or None (see the module
    docstring)."""
    if not value:
        return None
    flags = value[0]
    if flags & (_UNIT_KPA | _HAS_STATUS):
        return None
    certain, stamp = peek_timestamp(value)  # the length and the date, as the decoder checks
    if not certain:
        return None
    systolic = _systolic(value[1] | value[2] << 8)
    diastolic = _diastolic(value[3] | value[4] << 8)
    mean = _mean(value[5] | value[6] << 8)
    if systolic is None or diastolic is None or mean is None:
        return None
    panel = Draft(
        _PANEL_MDC,
        codes.PROFILE_COMPOUND,
        True,
        f"{BP_PANEL_HEAD}{systolic},{diastolic},{mean}]",
    )
    if not flags & _HAS_PULSE:
        return [panel], stamp
    at = 14 if flags & _HAS_TIME else 7
    pulse = _pulse(value[at] | value[at + 1] << 8)
    if pulse is None:
        return None
    return [panel, pulse], stamp
