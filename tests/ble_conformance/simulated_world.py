"""`ConformanceWorld` over the simulated backend (`gateway.ble.simulated`).

Only translation lives here: what the suite asks for, said in `World`'s terms. A behaviour
the simulated backend lacks is not patched in: the suite fails, and the drift is visible."""

from __future__ import annotations

import asyncio
import contextlib

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from device_drivers.simulators.base import SimulatedDevice
from gateway.ble.simulated.world import Link, World

__all__ = ["SimulatedWorld"]

# As often as the bumble peripherals advertise (20 ms): discovery is one interval away.
ADVERT_INTERVAL_S = 0.02


class _OneShotDropWorld(World):
    """`World` whose `disconnect_after` fault is cleared once it fired: the suite's
    `drop_link_after` concerns the next link only."""

    def close_link(self, link: Link, *, by_device: bool) -> None:
        super().close_link(link, by_device=by_device)
        if by_device:
            link.peripheral.disconnect_after = None


class SimulatedWorld:
    name = "simulated"

    def __init__(self) -> None:
        self.world = _OneShotDropWorld(
            advert_interval_s=ADVERT_INTERVAL_S, pairing_agent=self._type_passkey
        )
        self.agent_passkey: int | None = None
        self.scanner_backend: type[BaseBleakScanner]
        self.client_backend: type[BaseBleakClient]
        self.scanner_backend, self.client_backend = self.world.backend()
        self._runner: asyncio.Task[None] | None = None

    async def _type_passkey(self, _address: str) -> int | None:
        return self.agent_passkey

    async def close(self) -> None:
        await self._stop_running()

    async def _stop_running(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None

    async def add_device(
        self, simulator: SimulatedDevice, *, passkey: int | None = None, mtu: int | None = None
    ) -> None:
        peripheral = self.world.add(simulator, bonded=False, passkey=passkey)
        if mtu is not None:
            peripheral.mtu = mtu
        # `World.run()` starts one advertiser per peripheral it holds when it starts:
        # restart it so the new device gets one.
        await self._stop_running()
        self._runner = asyncio.get_running_loop().create_task(
            self.world.run(), name="conformance.simulated-world"
        )

    def set_agent_passkey(self, passkey: int | None) -> None:
        self.agent_passkey = passkey

    async def wake(self, address: str) -> None:
        self.world.wake(address)

    async def drop_link(self, address: str) -> None:
        self.world.drop_link(address)

    def drop_link_after(self, address: str, values: int) -> None:
        self.world.peripheral(address).disconnect_after = values

    async def bonded(self, address: str) -> bool:
        return self.world.bonds.has(address)
