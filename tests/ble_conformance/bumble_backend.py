"""A test-only bleak backend over a bumble central: what BlueZ would do, on a real host stack.

`make_backend(world)` returns a scanner and a client class bound to one `BumbleWorld` (no
globals, no test-only kwargs: bleak builds them through `backend=`). Where bumble and BlueZ
differ, the backend does what BlueZ does, so the conformance suite can hold the simulated
backend to the same behaviour:
- connecting to a bonded device re-encrypts the link with the stored LTK at once;
- `pair=True` / `pair()` runs SMP with an agent that types the world's passkey;
- a Security Request from the device is acted on (encrypt if bonded, else pair; §10 trap 7);
- the MTU is exchanged on connect (BlueZ asks for 517);
- a failed CCCD write leaves no subscriber behind (§10 trap 2);
- errors are bleak's: `BleakGATTProtocolError` for ATT errors, BlueZ-shaped `BleakDBusError`s
  for pairing failures, `BleakDeviceNotFoundError`, `TimeoutError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bleak.args import SizedBuffer
from bleak.assigned_numbers import gatt_char_props_to_strs
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDBusError, BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bleak.uuids import normalize_uuid_str
from bumble import att, hci, smp
from bumble.core import UUID, AdvertisingData, ProtocolError
from bumble.device import Advertisement, Connection, Peer
from bumble.gatt_client import CharacteristicProxy

if TYPE_CHECKING:
    from tests.ble_conformance.bumble_world import BumbleWorld

__all__ = ["make_backend"]

# What BlueZ offers in its MTU exchange; the peripheral answers with its own maximum.
BLUEZ_MTU = 517
# BlueZ's pairing timeout is its D-Bus method timeout (25 s); bumble pairs in milliseconds,
# so this only bounds a pairing the device never answers.
PAIRING_TIMEOUT_S = 25.0

_SMP_REJECTED = {
    smp.ErrorCode.PAIRING_NOT_SUPPORTED,
    smp.ErrorCode.UNSPECIFIED_REASON,
}


def make_backend(
    world: BumbleWorld,
) -> tuple[type[BaseBleakScanner], type[BaseBleakClient]]:
    """Scanner and client classes for `BleakScanner(backend=...)` / `BleakClient(backend=...)`
    bound to `world`'s central."""

    class BumbleScanner(_BumbleScanner):
        _world = world

    class BumbleClient(_BumbleClient):
        _world = world

    return BumbleScanner, BumbleClient


def _bleak_uuid(uuid: UUID) -> str:
    return normalize_uuid_str(uuid.to_hex_str("-"))


def _advertisement_data(advertisement: Advertisement) -> AdvertisementData:
    data = advertisement.data
    uuids: list[str] = []
    for ad_type in (
        AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    ):
        for entry in data.get_all(ad_type):
            uuids.extend(_bleak_uuid(u) for u in entry)
    name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME)
    manufacturer: dict[int, bytes] = {
        company: bytes(payload)
        for company, payload in data.get_all(AdvertisingData.MANUFACTURER_SPECIFIC_DATA)
    }
    service_data: dict[str, bytes] = {
        _bleak_uuid(u): bytes(payload)
        for u, payload in data.get_all(AdvertisingData.SERVICE_DATA_16_BIT_UUID)
    }
    tx_power = data.get(AdvertisingData.TX_POWER_LEVEL)
    return AdvertisementData(
        local_name=str(name) if name is not None else None,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=uuids,
        tx_power=int(tx_power) if tx_power is not None else None,
        rssi=advertisement.rssi,
        platform_data=(advertisement,),
    )


class _BumbleScanner(BaseBleakScanner):
    _world: BumbleWorld

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._active = scanning_mode == "active"
        self._scanning = False

    async def start(self) -> None:
        self.seen_devices = {}
        await self._world.start_scanning(self._on_advertisement, active=self._active)
        self._scanning = True

    async def stop(self) -> None:
        if self._scanning:
            self._scanning = False
            await self._world.stop_scanning(self._on_advertisement)

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        adv = _advertisement_data(advertisement)
        # BlueZ filters after the fact with the same plain string comparison, so a 16-bit
        # UUID string in the filter matches nothing (BLE.md §5.1).
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        address = advertisement.address.to_string(with_type_qualifier=False)
        device = self.create_or_update_device(
            address, address, adv.local_name, advertisement.address, adv
        )
        self.call_detection_callbacks(device, adv)


class _BumbleClient(BaseBleakClient):
    _world: BumbleWorld

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        if isinstance(address_or_ble_device, BLEDevice) and isinstance(
            address_or_ble_device.details, hci.Address
        ):
            self._peer_address = address_or_ble_device.details
        else:
            self._peer_address = hci.Address(self.address, hci.Address.RANDOM_DEVICE_ADDRESS)
        self._name = (
            address_or_ble_device.name if isinstance(address_or_ble_device, BLEDevice) else None
        )
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._proxies: dict[int, CharacteristicProxy[bytes]] = {}
        # One dispatcher per handle: re-subscribing never registers a second callback.
        self._dispatchers: dict[int, Callable[[bytes], None]] = {}
        self._callbacks: dict[int, NotifyCallback] = {}
        self._security_task: asyncio.Task[None] | None = None

    # Connectivity

    @property
    def name(self) -> str:
        return self._name or self.address

    @property
    def mtu_size(self) -> int:
        connection = self._require_connection()
        return int(connection.att_mtu)

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        timeout = float(kwargs.get("timeout", self._timeout))
        if self._world.peripheral(self.address) is None:
            raise BleakDeviceNotFoundError(
                self.address, f"Device with address {self.address} was not found"
            )
        async with asyncio.timeout(timeout):
            connection = await self._world.connect(self._peer_address)
            self._connection = connection
            connection.on(Connection.EVENT_DISCONNECTION, self._on_disconnection)
            connection.on(Connection.EVENT_SECURITY_REQUEST, self._on_security_request)
            try:
                if await self._world.bonded(self.address):
                    await connection.encrypt()
                elif pair:
                    await self._pair(connection)
                peer = Peer(connection)
                await peer.request_mtu(BLUEZ_MTU)
                self.services = await self._discover(peer)
                self._peer = peer
            except BaseException:
                with contextlib.suppress(Exception):
                    await connection.disconnect()
                raise

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        disconnected = asyncio.get_running_loop().create_future()
        connection.once(Connection.EVENT_DISCONNECTION, disconnected.set_result)
        await connection.disconnect()
        await disconnected

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        connection = self._require_connection()
        if connection.is_encrypted:
            return  # BlueZ returns at once for a paired device
        if await self._world.bonded(self.address):
            await connection.encrypt()
            return
        await self._pair(connection)

    async def unpair(self) -> None:
        # BlueZ's RemoveDevice: forgets the bond and drops the link.
        await self.disconnect()
        await self._world.forget(self.address)

    async def _pair(self, connection: Connection) -> None:
        try:
            async with asyncio.timeout(PAIRING_TIMEOUT_S):
                await connection.pair()
        except ProtocolError as exc:
            reason = exc.error_code
            if reason in _SMP_REJECTED:
                raise BleakDBusError(
                    "org.bluez.Error.AuthenticationRejected", ["Authentication Rejected"]
                ) from exc
            raise BleakDBusError(
                "org.bluez.Error.AuthenticationFailed", ["Authentication Failed"]
            ) from exc

    def _on_security_request(self, _auth_req: int) -> None:
        connection = self._connection
        if connection is None or connection.is_encrypted:
            return
        self._security_task = asyncio.get_running_loop().create_task(
            self._answer_security_request(connection),
            name=f"bumble-central[{self.address}].security",
        )

    async def _answer_security_request(self, connection: Connection) -> None:
        with contextlib.suppress(BleakError, ProtocolError, asyncio.CancelledError):
            if await self._world.bonded(self.address):
                await connection.encrypt()
            else:
                await self._pair(connection)

    def _on_disconnection(self, _reason: int) -> None:
        self._connection = None
        self._peer = None
        self._proxies = {}
        self._dispatchers = {}
        self._callbacks = {}
        if self._security_task is not None:
            self._security_task.cancel()
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    def _require_connection(self) -> Connection:
        if self._connection is None:
            raise BleakError("Not connected")
        return self._connection

    def _require_proxy(self, characteristic: BleakGATTCharacteristic) -> CharacteristicProxy[bytes]:
        self._require_connection()
        return self._proxies[characteristic.handle]

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        proxies: dict[int, CharacteristicProxy[bytes]] = {}
        for service in await peer.discover_services():
            bleak_service = BleakGATTService(service, service.handle, _bleak_uuid(service.uuid))
            collection.add_service(bleak_service)
            for characteristic in await peer.discover_characteristics(service=service):
                bleak_characteristic = BleakGATTCharacteristic(
                    characteristic,
                    characteristic.handle,
                    _bleak_uuid(characteristic.uuid),
                    list(gatt_char_props_to_strs(int(characteristic.properties))),
                    lambda: self.mtu_size - 3,
                    bleak_service,
                )
                collection.add_characteristic(bleak_characteristic)
                proxies[characteristic.handle] = characteristic
                for descriptor in await peer.discover_descriptors(characteristic):
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            descriptor,
                            descriptor.handle,
                            _bleak_uuid(descriptor.type),
                            bleak_characteristic,
                        )
                    )
        self._proxies = proxies
        return collection

    # GATT

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        proxy = self._require_proxy(characteristic)
        try:
            return bytearray(await proxy.read_value())
        except att.ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        self._require_connection()
        assert self._peer is not None
        try:
            return bytearray(await self._peer.read_value(descriptor.handle))
        except att.ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        proxy = self._require_proxy(characteristic)
        try:
            await proxy.write_value(bytes(data), with_response=response)
        except att.ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        self._require_connection()
        assert self._peer is not None
        try:
            await self._peer.write_value(descriptor.handle, bytes(data), with_response=True)
        except att.ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        proxy = self._require_proxy(characteristic)
        handle = characteristic.handle
        dispatcher = self._dispatchers.setdefault(handle, self._dispatcher(handle))
        self._callbacks[handle] = callback
        try:
            # Notify when the characteristic offers both, as BlueZ does.
            await proxy.subscribe(dispatcher, prefer_notify=True)
        except att.ATT_Error as exc:
            # bumble registered the subscriber before writing the CCCD (§10 trap 2).
            self._callbacks.pop(handle, None)
            with contextlib.suppress(att.ATT_Error):
                await proxy.unsubscribe(dispatcher)
            raise BleakGATTProtocolError(exc.error_code) from exc

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        proxy = self._require_proxy(characteristic)
        handle = characteristic.handle
        self._callbacks.pop(handle, None)
        dispatcher = self._dispatchers.pop(handle, None)
        try:
            await proxy.unsubscribe(dispatcher)
        except att.ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc

    def _dispatcher(self, handle: int) -> Callable[[bytes], None]:
        def dispatch(value: bytes) -> None:
            callback = self._callbacks.get(handle)
            if callback is not None:
                callback(bytearray(value))

        return dispatch
