"""The error tree of Carebox, rooted here because `device_drivers` is the one package every
other package may import::

    CareboxError                  every error Carebox raises on purpose
    └── DeviceDriverError         protocol knowledge failed
        ├── MalformedValue        (also ValueError) bytes that do not decode; carries the
        │                         characteristic, the offset, the bytes and a reason that
        │                         names fields and lengths, never a value read from the bytes
        ├── UnencodableValue      (also ValueError) a typed value the wire format cannot carry
        └── UnknownCharacteristic (also KeyError) no codec for that UUID

`gateway` and `provisioning` subclass `CareboxError` for their own trees.
"""

from __future__ import annotations


class CareboxError(Exception):
    """Root of every error Carebox raises on purpose."""


class DeviceDriverError(CareboxError):
    """Root of the errors of `device_drivers`."""


class MalformedValue(DeviceDriverError, ValueError):
    """Bytes from a device that do not decode as the characteristic they claim to be.

    `reason` names the field and the lengths ("measurement_status needs 2 octet(s), 0 left"),
    never a value read from `data`, so it may go where health values may not (the event log);
    `str()` adds the hex and is for the one who holds the bytes already (`carebox decode`)."""

    def __init__(self, characteristic: int, data: bytes, offset: int, reason: str) -> None:
        self.characteristic = characteristic
        self.data = bytes(data)
        self.offset = offset
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return (
            f"malformed {self.characteristic:04X} value at offset {self.offset}: "
            f"{self.reason} (hex {self.data.hex() or '<empty>'})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.characteristic, self.data, self.offset, self.reason))


class UnencodableValue(DeviceDriverError, ValueError):
    """A typed value that the characteristic's wire format cannot represent."""


class UnknownCharacteristic(DeviceDriverError, KeyError):
    """No codec is registered for a characteristic UUID."""

    def __init__(self, characteristic: int) -> None:
        self.characteristic = characteristic
        super().__init__(characteristic)

    def __str__(self) -> str:
        return f"no codec for characteristic {self.characteristic:04X}"
