"""Errors of the BLE layer (drawn in the package docstring)."""

from __future__ import annotations

from gateway.errors import GatewayError

__all__ = ["BackendLoadError", "BleError", "NeedsRepairing", "ProcedureFailed"]


class BleError(GatewayError):
    """Root of the errors of `gateway.ble`."""


class BackendLoadError(BleError):
    """`[ble] backend` names something that is not a usable bleak backend."""


class NeedsRepairing(BleError):
    """The device refuses our link security: the bond is gone on one side (L4.4)."""


class ProcedureFailed(BleError):
    """A device answered a profile procedure (RACP) with something we cannot go on from."""
