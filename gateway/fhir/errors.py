"""Errors of the FHIR mapping::

GatewayError
└── MappingError            one reading cannot become Observations; names the item and why,
    │                       never a health value nor the reading's bytes
    └── NotAPatientResult   a control-solution glucose test: decoded fine, never sent
"""

from __future__ import annotations

from gateway.errors import GatewayError

__all__ = ["MappingError", "NotAPatientResult"]


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
