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


@functools.lru_cache(maxsize=4096)
def _quantity(word: int, unit: codes.Unit) -> str | None:
    """The valueQuantity text of an SFLOAT word, or None for a special value."""
    value = decode_sfloat(word)
    if not isinstance(value, Decimal):
        return None
    return quantity_or_absent_text(value, unit)


def _word(value: bytes, at: int) -> int:
    return value[at] | value[at + 1] << 8


def blood_pressure(value: bytes) -> tuple[list[Draft], datetime | None] | None:
    """(drafts, device time) of a 0x2A35 value in its common shape, or None (see the module
    docstring)."""
    if not value or value[0] & (_UNIT_KPA | _HAS_STATUS):
        return None
    certain, stamp = peek_timestamp(value)  # the length and the date, as the decoder checks
    if not certain:
        return None
    components = []
    for i, (_, head) in enumerate(BP_COMPONENT_HEADS):
        quantity = _quantity(_word(value, 1 + 2 * i), codes.MM_HG)
        if quantity is None:
            return None
        components.append(head + quantity + "}")
    panel = codes.BP_PANEL
    drafts = [
        Draft(panel.mdc, codes.PROFILE_COMPOUND, True, BP_PANEL_HEAD + ",".join(components) + "]")
    ]
    if value[0] & _HAS_PULSE:
        quantity = _quantity(_word(value, 14 if value[0] & _HAS_TIME else 7), codes.PER_MINUTE)
        if quantity is None:
            return None
        pulse = codes.PULSE_RATE
        drafts.append(
            Draft(pulse.mdc, codes.PROFILE_NUMERIC, pulse.vital_sign, _PULSE_HEAD + quantity)
        )
    return drafts, stamp
