"""A radio-free BLE world: one bumble central and the simulated peripherals on a `LocalLink`.

Every party is a bumble `Controller` + `Host` + `Device` in this event loop; advertising,
connections, ATT/GATT and SMP run for real between them. The central plays the gateway's
adapter (one `Device`, shared by every scanner and client of the bound backend), with an
agent that types `agent_passkey` when a device asks for one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner
from bumble import hci
from bumble.controller import Controller
from bumble.device import Advertisement, Connection, Device
from bumble.host import Host
from bumble.link import LocalLink
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport.common import AsyncPipeSink

from device_drivers.simulators.base import SimulatedDevice
from tests.ble_conformance.bumble_backend import make_backend
from tests.ble_conformance.peripheral import SimulatedPeripheral

__all__ = ["BumbleWorld"]

# The gateway's adapter address (random static: the two top bits set).
CENTRAL_ADDRESS = "F0:CA:2E:B0:00:01"
# Bounds a connection attempt to a device that stopped advertising; bumble connects in
# milliseconds otherwise, and bleak's own timeout (10 s default) applies on top.
CONNECT_TIMEOUT_S = 10.0

AdvertisementListener = Callable[[Advertisement], None]


class _AgentDelegate(PairingDelegate):
    """The gateway's pairing agent: a keyboard (the technician types what the device shows)."""

    def __init__(self, world: BumbleWorld) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY)
        self._world = world

    async def get_number(self) -> int | None:
        return self._world.agent_passkey  # None answers "Passkey Entry Failed"


class BumbleWorld:
    """Fixture protocol (`tests.ble_conformance.world.ConformanceWorld`) over bumble."""

    name = "bumble"

    def __init__(self) -> None:
        self.link = LocalLink()  # type: ignore[no-untyped-call]  # bumble leaves it untyped
        self.central = self._device("carebox", CENTRAL_ADDRESS)
        self.central.pairing_config_factory = self._central_pairing_config
        self.agent_passkey: int | None = None
        self.peripherals: dict[str, SimulatedPeripheral] = {}
        self._listeners: list[AdvertisementListener] = []
        self._connect_lock = asyncio.Lock()  # one pending LE connect per adapter (§10 trap 6)
        self.central.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        self.scanner_backend: type[BaseBleakScanner]
        self.client_backend: type[BaseBleakClient]
        self.scanner_backend, self.client_backend = make_backend(self)

    def _device(self, name: str, address: str) -> Device:
        controller = Controller(name, link=self.link)
        host = Host(controller, AsyncPipeSink(controller))
        return Device(name=name, address=hci.Address(address), host=host)

    async def start(self) -> None:
        await self.central.power_on()

    async def close(self) -> None:
        for peripheral in self.peripherals.values():
            await peripheral.close()
        for connection in list(self.central.connections.values()):
            await connection.disconnect()
        await self.central.power_off()

    def _central_pairing_config(self, _connection: Connection) -> PairingConfig:
        return PairingConfig(
            sc=True,
            mitm=True,
            bonding=True,
            delegate=_AgentDelegate(self),
            identity_address_type=PairingConfig.AddressType.RANDOM,
        )

    # Fixture protocol

    async def add_device(
        self,
        simulator: SimulatedDevice,
        *,
        passkey: int | None = None,
        mtu: int | None = None,
        security_request: bool = False,
    ) -> None:
        device = self._device(simulator.name, simulator.address)
        if mtu is not None:
            device.gatt_server.max_mtu = mtu  # what the device answers the MTU exchange with
        peripheral = SimulatedPeripheral(
            simulator, device, passkey, security_request=security_request
        )
        self.peripherals[simulator.address.upper()] = peripheral
        await peripheral.start()

    def set_agent_passkey(self, passkey: int | None) -> None:
        self.agent_passkey = passkey

    async def wake(self, address: str) -> None:
        await self.peripherals[address.upper()].update_advertising()

    async def drop_link(self, address: str) -> None:
        """The radio link is lost (supervision timeout): both ends see a disconnection."""
        peripheral = self.peripherals[address.upper()]
        connection = peripheral.connection
        if connection is None:
            return
        central_side = self.central.find_connection_by_bd_addr(connection.self_address)
        lost = asyncio.get_running_loop().create_future()
        if central_side is not None:
            central_side.once(Connection.EVENT_DISCONNECTION, lost.set_result)
        else:
            lost.set_result(None)
        await connection.disconnect(reason=hci.HCI_CONNECTION_TIMEOUT_ERROR)
        await lost

    def drop_link_after(self, address: str, values: int) -> None:
        self.peripherals[address.upper()].drop_link_after(values)

    async def bonded(self, address: str) -> bool:
        keystore = self.central.keystore
        assert keystore is not None
        return await keystore.get(address.upper()) is not None

    async def forget(self, address: str) -> None:
        keystore = self.central.keystore
        assert keystore is not None
        if await keystore.get(address.upper()) is not None:
            await keystore.delete(address.upper())

    # Central plumbing used by the backend

    def peripheral(self, address: str) -> SimulatedPeripheral | None:
        return self.peripherals.get(address.upper())

    async def connect(self, address: hci.Address) -> Connection:
        async with self._connect_lock:
            return await self.central.connect(
                address, own_address_type=hci.OwnAddressType.RANDOM, timeout=CONNECT_TIMEOUT_S
            )

    async def start_scanning(self, listener: AdvertisementListener, *, active: bool) -> None:
        self._listeners.append(listener)
        if not self.central.is_scanning:
            await self.central.start_scanning(active=active, filter_duplicates=False)

    async def stop_scanning(self, listener: AdvertisementListener) -> None:
        self._listeners.remove(listener)
        if not self._listeners and self.central.is_scanning:
            await self.central.stop_scanning()

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        for listener in list(self._listeners):
            listener(advertisement)
