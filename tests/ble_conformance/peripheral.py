"""A bumble peripheral serving a `SimulatedDevice`'s GATT table over a real host stack.

The simulator stays sans-I/O: this module owns the link, the CCCDs, pairing and the order
in which `Emit`s leave the device. One pusher task per connection sends them one at a time,
so an indication is confirmed (or the link is gone) before the next value goes out, as on a
real device with one ATT bearer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bumble import att, gatt, hci
from bumble.core import UUID, AdvertisingData
from bumble.data_types import CompleteListOf16BitServiceUUIDs, CompleteLocalName, Flags
from bumble.device import Connection, Device
from bumble.gatt_server import Server
from bumble.pairing import PairingConfig, PairingDelegate

from device_drivers.simulators.base import (
    AttError,
    CharacteristicSpec,
    Emit,
    Security,
    ServiceSpec,
    SimulatedDevice,
)

__all__ = ["GATT_PROPERTIES", "SimulatedPeripheral"]

# bleak's property names (what `CharacteristicSpec.properties` holds) as bumble's flags.
GATT_PROPERTIES: dict[str, gatt.Characteristic.Properties] = {
    "read": gatt.Characteristic.Properties.READ,
    "write": gatt.Characteristic.Properties.WRITE,
    "write-without-response": gatt.Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
    "notify": gatt.Characteristic.Properties.NOTIFY,
    "indicate": gatt.Characteristic.Properties.INDICATE,
}

# A connectable burst as short as the specification allows (20 ms): the scanner sees the
# device on the next loop turns instead of after bumble's 1 s default.
ADVERTISING_INTERVAL_MS = 20.0

_CCCD_NOTIFY = 0x01
_CCCD_INDICATE = 0x02


class _DisplayDelegate(PairingDelegate):
    """A device with a display and no keyboard: it shows `passkey` (fixed, so the test
    knows what the technician reads); without a passkey it pairs Just Works."""

    def __init__(self, passkey: int | None) -> None:
        super().__init__(
            io_capability=(
                PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT
                if passkey is None
                else PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY
            )
        )
        self._passkey = passkey

    async def generate_passkey(self) -> int:
        assert self._passkey is not None
        return self._passkey


class SimulatedPeripheral:
    """`simulator` as a bumble `Device` already attached to a `LocalLink` controller.

    `start()` powers it on and advertises while the simulator says so; afterwards every ATT
    request, CCCD write, confirmation and disconnection reaches the simulator."""

    def __init__(
        self,
        simulator: SimulatedDevice,
        device: Device,
        passkey: int | None,
        *,
        security_request: bool = False,
    ) -> None:
        self.simulator = simulator
        self.device = device
        self.passkey = passkey
        # Like some cuffs (BLE.md §8, Omron): ask the central for security on connecting.
        self.security_request = security_request
        self._characteristics: dict[int, gatt.Characteristic[bytes]] = {}
        self._pushers: dict[Connection, tuple[asyncio.Queue[Emit], asyncio.Task[None]]] = {}
        self.connection: Connection | None = None
        self.errors: list[BaseException] = []  # what a pusher raised; the suite asserts none
        self._tasks: set[asyncio.Task[None]] = set()
        self._advertising_lock = asyncio.Lock()
        self._drop_after: int | None = None  # fault: lose the next link after n values
        device.pairing_config_factory = self._pairing_config
        device.on(Device.EVENT_CONNECTION, self._on_connection)

    async def start(self) -> None:
        await self.device.power_on()
        self.device.add_services([self._service(spec) for spec in self.simulator.services()])
        self.device.advertising_data = bytes(
            AdvertisingData(
                [
                    Flags(
                        AdvertisingData.Flags.LE_GENERAL_DISCOVERABLE_MODE
                        | AdvertisingData.Flags.BR_EDR_NOT_SUPPORTED
                    ),
                    CompleteListOf16BitServiceUUIDs(
                        [UUID.from_16_bits(u) for u in self.simulator.advertised_services()]
                    ),
                    CompleteLocalName(self.simulator.name),
                ]
            )
        )
        await self.update_advertising()

    async def update_advertising(self) -> None:
        """Advertise exactly while the simulator has something to send and nobody is
        connected (a connection ends a legacy connectable advertising set by itself)."""
        # Serialised: the end of a link and the test's `wake` may both get here, and two
        # overlapping bumble start/stop sequences remove the same advertising set twice.
        async with self._advertising_lock:
            wanted = self.simulator.advertising() and self.connection is None
            if wanted and not self.device.is_advertising:
                await self.device.start_advertising(
                    advertising_interval_min=ADVERTISING_INTERVAL_MS,
                    advertising_interval_max=ADVERTISING_INTERVAL_MS,
                )
            elif not wanted and self.device.is_advertising:
                await self.device.stop_advertising()

    def _pairing_config(self, _connection: Connection) -> PairingConfig:
        # Identity address type RANDOM on both sides, else the bond is stored under the
        # public address and a reconnect from the random one finds no key (BLE.md §10 trap 1).
        return PairingConfig(
            sc=True,
            mitm=self.passkey is not None,
            bonding=True,
            delegate=_DisplayDelegate(self.passkey),
            identity_address_type=PairingConfig.AddressType.RANDOM,
        )

    # GATT table

    def _service(self, spec: ServiceSpec) -> gatt.Service:
        return gatt.Service(
            UUID.from_16_bits(spec.uuid), [self._characteristic(c) for c in spec.characteristics]
        )

    def _characteristic(self, spec: CharacteristicSpec) -> gatt.Characteristic[bytes]:
        properties = gatt.Characteristic.Properties(0)
        for name in spec.properties:
            properties |= GATT_PROPERTIES[name]
        permissions = gatt.Characteristic.Permissions.READABLE
        permissions |= gatt.Characteristic.Permissions.WRITEABLE
        if spec.security is Security.ENCRYPTED:
            permissions |= gatt.Characteristic.Permissions.READ_REQUIRES_ENCRYPTION
            permissions |= gatt.Characteristic.Permissions.WRITE_REQUIRES_ENCRYPTION
        characteristic: gatt.Characteristic[bytes] = gatt.Characteristic(
            UUID.from_16_bits(spec.uuid),
            properties,
            permissions,
            gatt.CharacteristicValue(read=self._reader(spec.uuid), write=self._writer(spec.uuid)),
        )
        if properties & (
            gatt.Characteristic.Properties.NOTIFY | gatt.Characteristic.Properties.INDICATE
        ):
            characteristic.descriptors = [self._cccd(characteristic, spec.security)]
            characteristic.on(
                gatt.Characteristic.EVENT_SUBSCRIPTION, self._on_subscription(spec.uuid)
            )
        self._characteristics[spec.uuid] = characteristic
        return characteristic

    def _cccd(
        self, characteristic: gatt.Characteristic[bytes], security: Security
    ) -> gatt.Descriptor:
        # bumble's own CCCD is writable on any link (BLE.md §10 trap 3): supply one that
        # refuses an unencrypted write, delegating its state to the server as bumble does.
        server: Server = self.device.gatt_server
        permissions = gatt.Descriptor.Permissions.READABLE | gatt.Descriptor.Permissions.WRITEABLE
        if security is Security.ENCRYPTED:
            permissions |= gatt.Descriptor.Permissions.WRITE_REQUIRES_ENCRYPTION
        return gatt.Descriptor(
            gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
            permissions,
            att.AttributeValueV2(
                read=lambda bearer: server.read_cccd(bearer, characteristic),
                write=lambda bearer, value: server.write_cccd(bearer, characteristic, value),
            ),
        )

    def _reader(self, uuid: int) -> Callable[[Connection], bytes]:
        def read(_connection: Connection) -> bytes:
            try:
                return self.simulator.read(uuid)
            except AttError as exc:
                raise att.ATT_Error(error_code=int(exc.code), message=str(exc)) from exc

        return read

    def _writer(self, uuid: int) -> Callable[[Connection, bytes], None]:
        def write(connection: Connection, value: bytes) -> None:
            try:
                emits = self.simulator.write(uuid, bytes(value))
            except AttError as exc:
                raise att.ATT_Error(error_code=int(exc.code), message=str(exc)) from exc
            # Queued, not sent: bumble answers the write after this returns, and the
            # response precedes what the write triggers, as on a real meter.
            self._enqueue(connection, emits)

        return write

    def _on_subscription(self, uuid: int) -> Callable[[Any, bool, bool], None]:
        def on_subscription(bearer: Any, notify: bool, indicate: bool) -> None:
            if notify or indicate:
                connection = bearer.connection if att.is_enhanced_bearer(bearer) else bearer
                self._enqueue(connection, self.simulator.subscribed(uuid))

        return on_subscription

    # Pushing values

    def _enqueue(self, connection: Connection, emits: Sequence[Emit]) -> None:
        pusher = self._pushers.get(connection)
        if pusher is None:
            return  # the link is already gone: the device keeps what it holds
        for emit in emits:
            pusher[0].put_nowait(emit)

    def drop_link_after(self, values: int) -> None:
        self._drop_after = values

    async def _push(self, connection: Connection, queue: asyncio.Queue[Emit]) -> None:
        server: Server = self.device.gatt_server
        drop_after, self._drop_after = self._drop_after, None
        sent = 0
        while True:
            emit = await queue.get()
            characteristic = self._characteristics[emit.uuid]
            cccd = server.subscribers.get(connection, {}).get(characteristic.handle, b"\0\0")
            wanted = _CCCD_INDICATE if emit.indicate else _CCCD_NOTIFY
            if not cccd[0] & wanted:
                continue  # not enabled: a real device does not send, and keeps the value
            sent += 1
            if sent == drop_after:
                await self._send_and_drop(connection, characteristic, emit)
                return
            if emit.indicate:
                # Returns only once the central confirmed (bumble awaits the confirmation);
                # cancelled by the disconnection otherwise, so `confirmed` is never called
                # for an indication that did not arrive.
                await server.indicate_subscriber(connection, characteristic, emit.value)
                self.simulator.confirmed(emit)
            else:
                await server.notify_subscriber(connection, characteristic, emit.value)

    async def _send_and_drop(
        self, connection: Connection, characteristic: gatt.Characteristic[bytes], emit: Emit
    ) -> None:
        """Send `emit` and lose the link before anything comes back: the PDU and the
        termination travel the same ordered pipe, so the central gets the value, and its
        confirmation finds no link."""
        pdu_type = (
            att.ATT_Handle_Value_Indication if emit.indicate else att.ATT_Handle_Value_Notification
        )
        value = emit.value[: connection.att_mtu - 3]  # bumble truncates the same way
        self.device.gatt_server.send_gatt_pdu(
            connection,
            bytes(pdu_type(attribute_handle=characteristic.handle, attribute_value=value)),
        )
        await connection.disconnect(reason=hci.HCI_CONNECTION_TIMEOUT_ERROR)

    # Link events

    def _on_connection(self, connection: Connection) -> None:
        self.connection = connection
        queue: asyncio.Queue[Emit] = asyncio.Queue()
        task = self._spawn(self._push(connection, queue), "push")
        self._pushers[connection] = (queue, task)
        connection.on(
            Connection.EVENT_DISCONNECTION,
            lambda _reason: self._on_disconnection(connection),
        )
        if self.security_request:
            connection.request_pairing()

    def _on_disconnection(self, connection: Connection) -> None:
        _queue, task = self._pushers.pop(connection)
        task.cancel()
        if self.connection is connection:
            self.connection = None
        self.simulator.disconnected()
        self._spawn(self._after_disconnection(task), "advertise")

    async def _after_disconnection(self, pusher: asyncio.Task[None]) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await pusher
        await self.update_advertising()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(
            coroutine, name=f"peripheral[{self.simulator.address}].{what}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._on_task_done)
        return task

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.errors.append(exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.device.power_off()
