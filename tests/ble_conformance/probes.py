"""Small `SimulatedDevice`s shaped like a cuff and a meter, for radio-layer behaviour the
suite needs exactly (stored values as opaque bytes, an RACP reduced to "≥ sequence number").

They exercise the radio layer, not the profiles: the health simulators of
`device_drivers.simulators` run through the same suite in `test_health_devices.py`."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from device_drivers.simulators.base import (
    AttError,
    AttErrorCode,
    CharacteristicSpec,
    DeviceKind,
    Emit,
    Security,
    ServiceSpec,
    SimulatedDevice,
)

__all__ = ["ProbeCuff", "ProbeMeter", "racp_report_from", "record_sequence"]

BLOOD_PRESSURE = 0x1810
BP_MEASUREMENT = 0x2A35
BP_FEATURE = 0x2A49
GLUCOSE = 0x1808
GLUCOSE_MEASUREMENT = 0x2A18
GLUCOSE_FEATURE = 0x2A51
RACP = 0x2A52

_RACP_REPORT = 0x01
_RACP_RESPONSE = 0x06
_RACP_GREATER_OR_EQUAL = 0x03
_RACP_FILTER_SEQUENCE = 0x01
RACP_SUCCESS = 0x01
RACP_NOT_SUPPORTED = 0x02
RACP_NO_RECORDS = 0x06


@dataclass(slots=True)
class ProbeCuff(SimulatedDevice):
    """Indicates its stored values right after the CCCD write; forgets one only when its
    indication is confirmed."""

    kind: ClassVar[DeviceKind] = DeviceKind.BLOOD_PRESSURE
    stored: list[bytes] = field(default_factory=list)

    def services(self) -> tuple[ServiceSpec, ...]:
        return (
            ServiceSpec(
                BLOOD_PRESSURE,
                (
                    CharacteristicSpec(BP_MEASUREMENT, frozenset({"indicate"}), Security.ENCRYPTED),
                    CharacteristicSpec(BP_FEATURE, frozenset({"read"})),
                ),
            ),
        )

    def advertised_services(self) -> tuple[int, ...]:
        return (BLOOD_PRESSURE,)

    def advertising(self) -> bool:
        return bool(self.stored)

    def read(self, uuid: int) -> bytes:
        if uuid == BP_FEATURE:
            return b"\x00\x00"
        raise AttError(AttErrorCode.READ_NOT_PERMITTED)

    def write(self, uuid: int, data: bytes) -> Sequence[Emit]:
        raise AttError(AttErrorCode.WRITE_NOT_PERMITTED)

    def subscribed(self, uuid: int) -> Sequence[Emit]:
        return [Emit(BP_MEASUREMENT, value, indicate=True) for value in self.stored]

    def confirmed(self, emit: Emit) -> None:
        self.stored.remove(emit.value)


def glucose_record(sequence: int) -> bytes:
    """A Glucose Measurement shaped value: flags, sequence number, then opaque bytes."""
    return struct.pack("<BH", 0x00, sequence) + bytes(range(7))


def record_sequence(value: bytes) -> int:
    return int(struct.unpack_from("<H", value, 1)[0])


def racp_report_from(sequence: int) -> bytes:
    """RACP "report stored records, sequence number ≥ `sequence`"."""
    return struct.pack(
        "<BBBH", _RACP_REPORT, _RACP_GREATER_OR_EQUAL, _RACP_FILTER_SEQUENCE, sequence
    )


def racp_response(result: int) -> bytes:
    return bytes([_RACP_RESPONSE, 0x00, _RACP_REPORT, result])


@dataclass(slots=True)
class ProbeMeter(SimulatedDevice):
    """Keeps its records (a meter never deletes on its own); answers "≥ n" with one
    notification per record, then the RACP response indication."""

    kind: ClassVar[DeviceKind] = DeviceKind.GLUCOSE
    records: int = 0
    _racp_enabled: bool = field(default=False, init=False)

    def services(self) -> tuple[ServiceSpec, ...]:
        return (
            ServiceSpec(
                GLUCOSE,
                (
                    CharacteristicSpec(
                        GLUCOSE_MEASUREMENT, frozenset({"notify"}), Security.ENCRYPTED
                    ),
                    CharacteristicSpec(GLUCOSE_FEATURE, frozenset({"read"}), Security.ENCRYPTED),
                    CharacteristicSpec(RACP, frozenset({"write", "indicate"}), Security.ENCRYPTED),
                ),
            ),
        )

    def advertised_services(self) -> tuple[int, ...]:
        return (GLUCOSE,)

    def advertising(self) -> bool:
        return self.records > 0

    def read(self, uuid: int) -> bytes:
        if uuid == GLUCOSE_FEATURE:
            return b"\x00\x00"
        raise AttError(AttErrorCode.READ_NOT_PERMITTED)

    def write(self, uuid: int, data: bytes) -> Sequence[Emit]:
        if uuid != RACP:
            raise AttError(AttErrorCode.WRITE_NOT_PERMITTED)
        if not self._racp_enabled:
            raise AttError(AttErrorCode.CCCD_IMPROPERLY_CONFIGURED)
        if len(data) != 5 or data[:3] != bytes(
            [_RACP_REPORT, _RACP_GREATER_OR_EQUAL, _RACP_FILTER_SEQUENCE]
        ):
            return [Emit(RACP, racp_response(RACP_NOT_SUPPORTED), indicate=True)]
        first = int(struct.unpack_from("<H", data, 3)[0])
        emits = [
            Emit(GLUCOSE_MEASUREMENT, glucose_record(n), indicate=False)
            for n in range(max(first, 1), self.records + 1)
        ]
        result = RACP_SUCCESS if emits else RACP_NO_RECORDS
        return [*emits, Emit(RACP, racp_response(result), indicate=True)]

    def subscribed(self, uuid: int) -> Sequence[Emit]:
        if uuid == RACP:
            self._racp_enabled = True
        return ()

    def disconnected(self) -> None:
        self._racp_enabled = False
