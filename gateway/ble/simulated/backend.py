"""bleak backend classes over a simulated `World`: `BaseBleakScanner` / `BaseBleakClient`
subclasses, produced per world by `backend_classes(world)` (the factory trick bleak-esphome
uses), passed to `BleakScanner(backend=...)` / `BleakClient(backend=...)`.

Faithful where the central could otherwise get away with something BlueZ punishes:
- the scanner compares advertised 128-bit UUIDs as strings (bleak's `is_allowed_uuid`), so a
  16-bit filter matches nothing, as on BlueZ;
- `BLEDevice.details` carries no ``"path"`` (bleak-retry-connector would go to D-Bus);
- `connect()` sets `self.services`; GATT objects resolve by handle, never by UUID;
- ATT errors are `BleakGATTProtocolError`s with the device's code; pairing failures and busy
  radios are BlueZ-shaped `BleakDBusError`s (`faults.py`);
- indications are confirmed once the value was handed to the callback (BlueZ confirms on
  receipt), and only then does the simulator forget a stored measurement;
- the disconnected callback runs on every disconnect, requested or not.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Final, cast

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import (
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)
from bleak.uuids import normalize_uuid_16

from device_drivers.simulators.base import AttError, CharacteristicSpec, Security
from gateway.ble.simulated import faults
from gateway.ble.simulated.world import Link, Peripheral, World

__all__ = ["SimClient", "SimScanner", "backend_classes"]

CCCD: Final = 0x2902
RSSI: Final = -62  # a cuff on the table next to the box


def backend_classes(world: World) -> tuple[type[SimScanner], type[SimClient]]:
    """A scanner class and a client class bound to `world`."""
    scanner = type("SimScanner", (SimScanner,), {"world": world})
    client = type("SimClient", (SimClient,), {"world": world})
    return scanner, client


class SimScanner(BaseBleakScanner):
    world: ClassVar[World]

    def __init__(
        self,
        detection_callback: Any,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._scanning_mode = scanning_mode

    async def start(self) -> None:
        self.world.start_scan(self)
        self.seen_devices = {}

    async def stop(self) -> None:
        self.world.stop_scan(self)

    def heard(self, p: Peripheral) -> None:
        """One advertisement of `p` reached the antenna."""
        adv = AdvertisementData(
            local_name=p.device.name,
            manufacturer_data={},
            service_data={},
            service_uuids=[normalize_uuid_16(u) for u in p.device.advertised_services()],
            tx_power=None,
            rssi=RSSI,
            platform_data=(),
        )
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        device = self.create_or_update_device(
            p.address, p.address, p.device.name, {"simulated": True}, adv
        )
        self.call_detection_callbacks(device, adv)


def _gatt(p: Peripheral) -> BleakGATTServiceCollection:
    """The device's GATT table with fixed handles: service, then each characteristic followed
    by its CCCD when it notifies or indicates."""
    services = BleakGATTServiceCollection()
    handle = 0
    for spec in p.device.services():
        handle += 1
        service = BleakGATTService(spec, handle, normalize_uuid_16(spec.uuid))
        services.add_service(service)
        for char_spec in spec.characteristics:
            handle += 2  # declaration, then the value handle bleak reports
            char = BleakGATTCharacteristic(
                char_spec,
                handle,
                normalize_uuid_16(char_spec.uuid),
                cast("list[CharacteristicPropertyName]", sorted(char_spec.properties)),
                lambda: p.mtu - 3,
                service,
            )
            services.add_characteristic(char)
            if char_spec.properties & {"notify", "indicate"}:
                handle += 1
                services.add_descriptor(
                    BleakGATTDescriptor(None, handle, normalize_uuid_16(CCCD), char)
                )
    return services


class SimClient(BaseBleakClient):
    world: ClassVar[World]

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        disconnected_callback: Any = None,
        services: Any = None,
        *,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._link: Link | None = None
        self._pump: asyncio.Task[None] | None = None

    # -- connection -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._peripheral().device.name

    @property
    def mtu_size(self) -> int:
        return self._peripheral().mtu

    @property
    def is_connected(self) -> bool:
        return self._link is not None and not self._link.closed

    def _peripheral(self) -> Peripheral:
        try:
            return self.world.peripheral(self.address)
        except KeyError:
            raise BleakDeviceNotFoundError(
                self.address, f"Device with address {self.address} was not found."
            ) from None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        p = self._peripheral()
        self.world.begin_connect(p)
        try:
            if not p.advertising_now(self.world.monotonic()):
                # BlueZ waits for an advertisement that never comes, then gives up.
                await asyncio.sleep(min(self._timeout, self.world.connect_timeout_s))
                raise TimeoutError
            link = self.world.open_link(p)
        finally:
            self.world.end_connect()
        link.on_closed = self._on_link_lost
        self._link = link
        self.services = _gatt(p)
        self._pump = asyncio.get_running_loop().create_task(
            self._deliver(link), name=f"carebox[{p.address}].sim-link"
        )
        if pair and not link.encrypted:
            try:
                await self.pair()
            except BaseException:
                await self.disconnect()
                raise

    async def disconnect(self) -> None:
        link = self._link
        if link is None:
            return
        self.world.close_link(link, by_device=False)

    def _on_link_lost(self) -> None:
        link, self._link = self._link, None
        pump, self._pump = self._pump, None
        if pump is not None and pump is not asyncio.current_task():
            pump.cancel()
        del link
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        link = self._require_link()
        p = link.peripheral
        if link.encrypted:
            return
        if p.refuse_pairing:
            raise faults.authentication_rejected()
        if p.passkey is not None:
            agent = self.world.pairing_agent
            typed = await agent(p.address) if agent is not None else None
            if typed != p.passkey:
                raise faults.authentication_failed()
        self.world.bonds.add(p.address)
        p.device_bonded = True
        link.encrypted = True

    async def unpair(self) -> None:
        """BlueZ `RemoveDevice`: forgets the gateway's bond and disconnects."""
        p = self._peripheral()
        self.world.bonds.remove(p.address)
        await self.disconnect()

    # -- GATT -------------------------------------------------------------------------------

    def _require_link(self) -> Link:
        if self._link is None or self._link.closed:
            raise BleakError("Not connected")
        return self._link

    def _check_security(self, link: Link, spec: CharacteristicSpec) -> None:
        if spec.security is Security.OPEN or link.encrypted:
            return
        if self.world.bonds.has(link.peripheral.address):
            # BlueZ holds keys the device no longer has: the encryption attempt fails.
            raise faults.authentication_failed()
        raise faults.insufficient_encryption()

    @staticmethod
    def _spec(characteristic: BleakGATTCharacteristic) -> CharacteristicSpec:
        spec = characteristic.obj
        assert isinstance(spec, CharacteristicSpec)
        return spec

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        link = self._require_link()
        spec = self._spec(characteristic)
        if "read" not in spec.properties:
            raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.READ_NOT_PERMITTED)
        self._check_security(link, spec)
        try:
            value = link.peripheral.device.read(spec.uuid)
        except AttError as exc:
            raise BleakGATTProtocolError(int(exc.code)) from exc
        return bytearray(value[: link.peripheral.mtu - 1])

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Only CCCDs exist here: 0x0001 notifications on, 0x0002 indications on."""
        link = self._require_link()
        assert self.services is not None
        char = self.services.get_characteristic(descriptor.characteristic_handle)
        assert char is not None
        if self._spec(char).uuid not in link.subscribers:
            return bytearray(2)
        return bytearray((2 if "indicate" in char.properties else 1).to_bytes(2, "little"))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        link = self._require_link()
        spec = self._spec(characteristic)
        if not spec.properties & {"write", "write-without-response"}:
            raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED)
        self._check_security(link, spec)
        try:
            emits = link.peripheral.device.write(spec.uuid, bytes(data))
        except AttError as exc:
            raise BleakGATTProtocolError(int(exc.code)) from exc
        for emit in emits:
            link.outbox.put_nowait(emit)

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        link = self._require_link()
        spec = self._spec(characteristic)
        if not spec.properties & {"notify", "indicate"}:
            raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED)
        self._check_security(link, spec)  # the CCCD carries the characteristic's security
        link.subscribers[spec.uuid] = callback
        for emit in link.peripheral.device.subscribed(spec.uuid):
            link.outbox.put_nowait(emit)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        link = self._require_link()
        link.subscribers.pop(self._spec(characteristic).uuid, None)

    async def _deliver(self, link: Link) -> None:
        """The device's side of the air: values go out one at a time, in order."""
        p = link.peripheral
        while not link.closed:
            emit = await link.outbox.get()
            callback = link.subscribers.get(emit.uuid)
            if callback is None:
                continue  # CCCD not enabled: the device sends nothing
            callback(bytearray(emit.value[: p.mtu - 3]))  # silent truncation, as on air
            if emit.indicate and p.lost_confirmations > 0:
                p.lost_confirmations -= 1
                self.world.close_link(link, by_device=True)
                return
            link.sent += 1
            if p.disconnect_after is not None and link.sent >= p.disconnect_after:
                # The link drops with this value: an indication's confirmation never reaches
                # the device, which therefore keeps the value and sends it again (as on air).
                self.world.close_link(link, by_device=True)
                return
            if emit.indicate:
                p.device.confirmed(emit)
            # one value per loop turn: the receiver runs between packets, as with a radio
            await asyncio.sleep(0)
