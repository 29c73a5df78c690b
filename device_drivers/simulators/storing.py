"""`StoringDevice`: what the simulated monitor and scale share. Current Time, Device
Information, Battery, and a queue of stored measurements that go out as indications once the
central enables the CCCD.

A device forgets a stored measurement only when the central confirms its indication; a link
lost before the confirmation leaves it stored and it is indicated again on the next
connection (the gateway deduplicates by identity). The device keeps its own clock:
`device_time()` is the injected `clock()` plus `clock_offset`, which a Current Time write
(0x2A2B) sets, as a real device sets its RTC.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from device_drivers.current_time import CurrentTime
from device_drivers.device_information import (
    BatteryLevel,
    FirmwareRevisionString,
    HardwareRevisionString,
    ManufacturerNameString,
    ModelNumberString,
    SerialNumberString,
    SoftwareRevisionString,
    SystemId,
)
from device_drivers.errors import MalformedValue
from device_drivers.simulators.base import (
    AttError,
    AttErrorCode,
    CharacteristicSpec,
    Emit,
    ServiceSpec,
    SimulatedDevice,
)

__all__ = ["StoringDevice"]

CURRENT_TIME_LENGTH: Final = 10

_READ: Final = frozenset({"read"})
_CURRENT_TIME_SERVICE: Final = ServiceSpec(
    0x1805, (CharacteristicSpec(0x2A2B, frozenset({"read", "write", "notify"})),)
)
_DEVICE_INFORMATION_SERVICE: Final = ServiceSpec(
    0x180A,
    tuple(
        CharacteristicSpec(uuid, _READ)
        for uuid in (0x2A29, 0x2A24, 0x2A25, 0x2A27, 0x2A26, 0x2A28, 0x2A23)
    ),
)
_BATTERY_SERVICE: Final = ServiceSpec(0x180F, (CharacteristicSpec(0x2A19, _READ),))


class _Stored:
    """One stored measurement value; compared by identity, so two equal values stay two."""

    __slots__ = ("uuid", "value")

    def __init__(self, uuid: int, value: bytes) -> None:
        self.uuid = uuid
        self.value = value


def default_system_id(address: str) -> SystemId:
    """The System ID a simulated device has unless told: its address with FF-FE inserted."""
    try:
        return SystemId.from_bd_addr(address)
    except ValueError:
        # Not a Bluetooth address (a test's symbolic name): a stable id derived from it.
        digest = int.from_bytes(hashlib.sha256(address.encode()).digest()[:8], "big")
        return SystemId(digest & ((1 << 40) - 1), digest >> 40)


@dataclass(slots=True, kw_only=True)
class StoringDevice(SimulatedDevice):
    """Base of the monitor and the scale: device information, clock, battery and the store of
    measurements awaiting confirmed indication. Subclasses add their profile's service."""

    manufacturer: str = "Carebox Simulated Devices"
    model: str = "SIM-1"
    serial: str = "SIM-000001"
    firmware: str = "1.0.0"
    hardware: str = "1.0"
    software: str = "1.0.0"
    system_id: SystemId | None = None  # None: derived from `address` (FF-FE inserted)
    battery_level: int = 100
    clock_offset: timedelta = timedelta(0)
    _stored: list[_Stored] = field(default_factory=list, init=False)
    _pending: list[tuple[Emit, _Stored]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.system_id is None:
            self.system_id = default_system_id(self.address)
        bytes(BatteryLevel(self.battery_level))  # refuse an impossible level at construction

    # -- what subclasses and tests use ---------------------------------------------------

    def device_time(self) -> datetime:
        """The device's own local time."""
        return self.clock() + self.clock_offset

    def stored(self, uuid: int | None = None) -> list[bytes]:
        """The measurement values still held (not yet confirmed), oldest first."""
        return [s.value for s in self._stored if uuid is None or s.uuid == uuid]

    def _store(self, uuid: int, value: bytes) -> None:
        self._stored.append(_Stored(uuid, bytes(value)))

    def _indications(self, uuid: int) -> list[Emit]:
        emits = []
        for stored in self._stored:
            if stored.uuid != uuid:
                continue
            emit = Emit(uuid, self._maybe_corrupt(stored.value), indicate=True)
            self._pending.append((emit, stored))
            emits.append(emit)
        return emits

    def _common_services(self) -> tuple[ServiceSpec, ...]:
        return (_CURRENT_TIME_SERVICE, _DEVICE_INFORMATION_SERVICE, _BATTERY_SERVICE)

    def _read_common(self, uuid: int) -> bytes:
        strings = {
            0x2A29: ManufacturerNameString(self.manufacturer),
            0x2A24: ModelNumberString(self.model),
            0x2A25: SerialNumberString(self.serial),
            0x2A27: HardwareRevisionString(self.hardware),
            0x2A26: FirmwareRevisionString(self.firmware),
            0x2A28: SoftwareRevisionString(self.software),
        }
        if uuid in strings:
            return bytes(strings[uuid])
        if uuid == 0x2A23:
            assert self.system_id is not None  # set in __post_init__
            return bytes(self.system_id)
        if uuid == 0x2A19:
            return bytes(BatteryLevel(self.battery_level))
        if uuid == 0x2A2B:
            return bytes(CurrentTime.at(self.device_time()))
        raise AttError(
            AttErrorCode.READ_NOT_PERMITTED, f"characteristic {uuid:04X} is not readable"
        )

    def _write_common(self, uuid: int, data: bytes) -> list[Emit]:
        if uuid != 0x2A2B:
            raise AttError(
                AttErrorCode.WRITE_NOT_PERMITTED, f"characteristic {uuid:04X} is not writable"
            )
        if len(data) != CURRENT_TIME_LENGTH:
            raise AttError(AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH, "Current Time is 10 octets")
        try:
            written = CurrentTime.from_bytes(data)
        except MalformedValue as exc:
            raise AttError(AttErrorCode.OUT_OF_RANGE, exc.reason) from None
        if written.timestamp is None:
            raise AttError(AttErrorCode.OUT_OF_RANGE, "a device clock cannot be set to no date")
        moment = written.timestamp + timedelta(seconds=written.fractions256 / 256)
        self.clock_offset = moment - self.clock()
        return []

    # -- the SimulatedDevice protocol ----------------------------------------------------

    def advertising(self) -> bool:
        return bool(self._stored)

    def confirmed(self, emit: Emit) -> None:
        for i, (sent, stored) in enumerate(self._pending):
            if sent == emit:
                del self._pending[i]
                self._stored = [s for s in self._stored if s is not stored]
                return

    def disconnected(self) -> None:
        # Unconfirmed indications stay stored and go out again on the next connection.
        self._pending.clear()
