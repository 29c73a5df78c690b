"""The sans-I/O shape every simulated health device has.

A simulator is the device's side of GATT as plain method calls: the radio layer (the
simulated bleak backend in `gateway.ble`, or a bumble peripheral in the tests) owns links,
bonds, CCCD state and timing, and asks the simulator what to answer. Values leave a simulator
only as `Emit`s: the notifications and indications the device would send, in order.

Lifecycle seen from the radio layer:
- `advertising()` says whether the device is in an advertising burst (it has something to
  send, or was just switched on); `services()` is its GATT table.
- `read(uuid)` / `write(uuid, data)` answer ATT reads and writes, or raise `AttError` with the
  code a real device answers (insufficient encryption is the radio layer's business, from the
  characteristic's `security`).
- `subscribed(uuid)` is called after a CCCD is enabled; a monitor or scale answers with its
  stored measurements (they go out right after the CCCD write on real devices).
- `confirmed(emit)` is called when an indication was confirmed by the central; a device forgets
  a stored measurement only then, so a link lost before the confirmation re-sends it next time.
- `disconnected()` resets per-link state (a running RACP procedure is abandoned).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from device_drivers.errors import DeviceDriverError

__all__ = [
    "AttError",
    "AttErrorCode",
    "CharacteristicSpec",
    "DeviceKind",
    "Emit",
    "Security",
    "ServiceSpec",
    "SimulatedDevice",
]


class DeviceKind(enum.StrEnum):
    BLOOD_PRESSURE = "blood_pressure"
    GLUCOSE = "glucose"
    WEIGHT_SCALE = "weight_scale"


class Security(enum.Enum):
    OPEN = "open"
    ENCRYPTED = "encrypted"  # reads, writes and CCCD writes need an encrypted (bonded) link


class AttErrorCode(enum.IntEnum):
    """ATT error codes a health device answers with (Core Spec Vol 3 Part F 3.4.1.1, the
    Core Specification Supplement's common profile codes, and GLS 1.0's own 0x80/0x81)."""

    READ_NOT_PERMITTED = 0x02
    WRITE_NOT_PERMITTED = 0x03
    INSUFFICIENT_AUTHENTICATION = 0x05
    REQUEST_NOT_SUPPORTED = 0x06
    INVALID_ATTRIBUTE_VALUE_LENGTH = 0x0D
    INSUFFICIENT_ENCRYPTION = 0x0F
    GLS_PROCEDURE_ALREADY_IN_PROGRESS = 0x80
    GLS_CCCD_IMPROPERLY_CONFIGURED = 0x81
    CCCD_IMPROPERLY_CONFIGURED = 0xFD
    PROCEDURE_ALREADY_IN_PROGRESS = 0xFE
    OUT_OF_RANGE = 0xFF


class AttError(DeviceDriverError):
    """The ATT error a simulated device answers a read or write with."""

    def __init__(self, code: AttErrorCode, reason: str = "") -> None:
        self.code = code
        super().__init__(
            f"ATT error 0x{int(code):02X} {code.name}" + (f": {reason}" if reason else "")
        )


@dataclass(frozen=True, slots=True)
class CharacteristicSpec:
    uuid: int
    properties: frozenset[str]  # bleak's names: "read", "write", "notify", "indicate"
    security: Security = Security.OPEN


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    uuid: int
    characteristics: tuple[CharacteristicSpec, ...]


@dataclass(frozen=True, slots=True)
class Emit:
    """A value the device sends unprompted: a notification or, when `indicate`, an indication."""

    uuid: int
    value: bytes
    indicate: bool


@dataclass(slots=True)
class SimulatedDevice(ABC):
    """Base of the three device simulators. `clock` gives the device's own local time (naive),
    so tests drive time without I/O; `faults` are the contract's fault knobs."""

    kind: ClassVar[DeviceKind]
    address: str
    name: str
    clock: Callable[[], datetime]
    corrupt_every: int = 0  # every n-th measurement value sent is corrupted (0: never)
    _sent: int = field(default=0, init=False)

    @abstractmethod
    def services(self) -> tuple[ServiceSpec, ...]: ...

    @abstractmethod
    def advertised_services(self) -> tuple[int, ...]:
        """16-bit service UUIDs in the advertising data."""

    @abstractmethod
    def advertising(self) -> bool:
        """True while the device advertises (it holds something to send)."""

    @abstractmethod
    def read(self, uuid: int) -> bytes: ...

    @abstractmethod
    def write(self, uuid: int, data: bytes) -> Sequence[Emit]: ...

    @abstractmethod
    def subscribed(self, uuid: int) -> Sequence[Emit]: ...

    def confirmed(self, emit: Emit) -> None:  # noqa: B027 - optional hook
        """An indication was confirmed by the central."""

    def disconnected(self) -> None:  # noqa: B027 - optional hook
        """The link dropped or was closed."""

    def _maybe_corrupt(self, value: bytes) -> bytes:
        """Apply `corrupt_every`: the n-th measurement value goes out truncated to its flags
        octet, which no health characteristic accepts."""
        self._sent += 1
        if self.corrupt_every and self._sent % self.corrupt_every == 0:
            return value[:1]
        return value
