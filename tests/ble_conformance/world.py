"""The fixture protocol every backend under conformance test implements.

The suite drives devices only through bleak's public API with `scanner_backend` /
`client_backend`; this protocol is the rest of the world a test needs: putting a simulated
device on the air, the technician's passkey entry, and the radio faults."""

from __future__ import annotations

from typing import Protocol

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from device_drivers.simulators.base import SimulatedDevice

__all__ = ["ConformanceWorld"]


class ConformanceWorld(Protocol):
    name: str
    scanner_backend: type[BaseBleakScanner]
    client_backend: type[BaseBleakClient]

    async def add_device(
        self, simulator: SimulatedDevice, *, passkey: int | None = None, mtu: int | None = None
    ) -> None:
        """Put `simulator` on the air, not bonded. With `passkey` it is a display-only device
        that bonds with LE Secure Connections passkey entry showing that passkey; without,
        Just Works. `mtu` is the largest ATT MTU the device accepts (None: the backend's)."""

    def set_agent_passkey(self, passkey: int | None) -> None:
        """What the technician types when a device asks for a passkey (None: cancels)."""

    async def wake(self, address: str) -> None:
        """The test changed the simulator (a new measurement): advertise if it now wants to."""

    async def drop_link(self, address: str) -> None:
        """The radio link to `address` is lost now; returns once both ends saw it."""

    def drop_link_after(self, address: str, values: int) -> None:
        """The next link to `address` is lost right after the device sent its `values`-th
        notification or indication (whose confirmation then never reaches the device)."""

    async def bonded(self, address: str) -> bool:
        """The gateway side holds a bond (LTK) for `address`."""
