"""Errors of the FHIR mapping::

GatewayError
└── MappingError            one reading cannot become Observations; names the item and why,
    │                       never a health value nor the reading's bytes
    ├── NotAPatientResult   a control-solution glucose test: decoded fine, never sent
    ├── NotForDestination   decoded fine, but the destination (ANS MES) takes nothing of it:
    │                       permanent for that destination, the reading may be acknowledged
    └── DeviceNotIdentified its device has no system id (SYSID) and the destination (MES)
                            keys devices on it: a registry gap, not a property of the reading;
                            keep the reading and register the device's system id
"""

from __future__ import annotations

from gateway.errors import GatewayError

__all__ = [
    "DeviceNotIdentified",
    "MappingError",
    "NotAPatientResult",
    "NotForDestination",
]


class MappingError(GatewayError):
    """A reading that cannot be mapped. `item_id` is the store's id of the reading (empty when
    the mapping was called without one); the message carries no health value."""

    def __init__(self, reason: str, item_id: str = "") -> None:
        self.reason = reason
        self.item_id = item_id
        super().__init__(f"reading {item_id or '?'}: {reason}")

    def for_item(self, item_id: str) -> MappingError:
        """The same error, naming the stored reading it is about."""
        return type(self)(self.reason, item_id)


class NotAPatientResult(MappingError):
    """A reading that decoded but must never reach a patient record (control solution)."""


class NotForDestination(MappingError):
    """A reading the destination profile refuses as a whole (a body-composition record, an
    interstitial glucose or a special value for ANS MES): it will never be sendable there."""


class DeviceNotIdentified(MappingError):
    """The reading's device has no DIS system id, which the destination needs as its device
    key: sendable once the registry knows the id, so the reading must not be dropped."""
