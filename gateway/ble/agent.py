"""A BlueZ pairing agent (`org.bluez.Agent1`) over dbus-fast, for the pairing window only.

bleak 3.1 registers no agent, so without one BlueZ pairs as NoInputNoOutput and every passkey
device fails with AuthenticationFailed (BLE.md section 7, LESSONS.md L4.1-L4.3). Provisioning's
`carebox provision pair` opens `pairing_window(bus, address, passkey=...)` around
`BleakClient.pair()`:
- the agent answers only for the one device being paired; anything else is rejected
  (`org.bluez.Error.Rejected`), so an unsolicited pairing request fails even inside the window;
- passkey entry: `passkey(address)` returns the six digits the technician typed (the meter
  shows them); None rejects;
- numeric comparison: `confirm(address, number)` says yes or no; without it, rejected;
- Just Works: `RequestAuthorization` for the target device is accepted;
- on leaving the window the agent is unregistered and unexported, so outside it no permissive
  agent exists.

The bus is injected (a `dbus_fast.aio.MessageBus` connected to the system bus in production,
a fake in the tests); this module never connects by itself. Only the bluez backend uses it.

No `from __future__ import annotations` here: dbus-fast reads the D-Bus signatures from the
evaluated `Annotated` parameter types.
"""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol

from dbus_fast import DBusError, Message, MessageType
from dbus_fast.annotations import DBusObjectPath, DBusStr, DBusUInt16, DBusUInt32
from dbus_fast.service import ServiceInterface, dbus_method

from gateway.ble.errors import BleError

__all__ = ["AGENT_PATH", "AgentBus", "PairingAgent", "address_of", "pairing_window"]

log = logging.getLogger(__name__)

AGENT_PATH: Final = "/org/carebox/agent"
REJECTED: Final = "org.bluez.Error.Rejected"
CANCELED: Final = "org.bluez.Error.Canceled"
# Keyboard for the passkey a meter displays, display for a device that asks us to show one.
CAPABILITY: Final = "KeyboardDisplay"

PasskeyProvider = Callable[[str], Awaitable[int | None]]
Confirmer = Callable[[str, int], Awaitable[bool]]


class AgentBus(Protocol):
    """The part of `dbus_fast.aio.MessageBus` the agent uses."""

    def export(self, path: str, interface: ServiceInterface) -> None: ...
    def unexport(self, path: str, interface: ServiceInterface | str | None = None) -> None: ...
    async def call(self, msg: Message) -> Message | None: ...


def address_of(device_path: str) -> str:
    """``/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF`` -> ``AA:BB:CC:DD:EE:FF``."""
    leaf = device_path.rsplit("/", 1)[-1]
    if not leaf.startswith("dev_"):
        raise DBusError(REJECTED, f"not a device object: {device_path}")
    return leaf[4:].replace("_", ":").upper()


class PairingAgent(ServiceInterface):
    def __init__(
        self,
        address: str,
        *,
        passkey: PasskeyProvider | None = None,
        confirm: Confirmer | None = None,
    ) -> None:
        super().__init__("org.bluez.Agent1")
        self.address = address.upper()
        self._passkey = passkey
        self._confirm = confirm
        self.displayed: list[tuple[str, int]] = []
        self.cancelled = False
        self.released = False

    def _ours(self, device: str) -> str:
        address = address_of(device)
        if address != self.address:
            log.warning("pairing request from %s refused: not the device being paired", address)
            raise DBusError(REJECTED, f"{address} is not the device being paired")
        return address

    @dbus_method()
    def Release(self) -> None:
        self.released = True

    @dbus_method()
    def RequestPinCode(self, device: DBusObjectPath) -> DBusStr:
        self._ours(device)
        raise DBusError(REJECTED, "legacy PIN pairing is not supported (LE devices only)")

    @dbus_method()
    def DisplayPinCode(self, device: DBusObjectPath, pincode: DBusStr) -> None:
        self._ours(device)
        raise DBusError(REJECTED, "legacy PIN pairing is not supported (LE devices only)")

    @dbus_method()
    async def RequestPasskey(self, device: DBusObjectPath) -> DBusUInt32:
        address = self._ours(device)
        typed = await self._passkey(address) if self._passkey is not None else None
        if typed is None or not 0 <= typed <= 999_999:
            raise DBusError(REJECTED, "no passkey entered")
        return typed

    @dbus_method()
    def DisplayPasskey(
        self, device: DBusObjectPath, passkey: DBusUInt32, entered: DBusUInt16
    ) -> None:
        self.displayed.append((self._ours(device), passkey))

    @dbus_method()
    async def RequestConfirmation(self, device: DBusObjectPath, passkey: DBusUInt32) -> None:
        address = self._ours(device)
        if self._confirm is None or not await self._confirm(address, passkey):
            raise DBusError(REJECTED, "numeric comparison not confirmed")

    @dbus_method()
    def RequestAuthorization(self, device: DBusObjectPath) -> None:
        self._ours(device)  # Just Works for the device being paired, nobody else

    @dbus_method()
    def AuthorizeService(self, device: DBusObjectPath, uuid: DBusStr) -> None:
        self._ours(device)

    @dbus_method()
    def Cancel(self) -> None:
        self.cancelled = True


async def _manager(bus: AgentBus, member: str, signature: str, body: list[Any]) -> None:
    reply = await bus.call(
        Message(
            destination="org.bluez",
            path="/org/bluez",
            interface="org.bluez.AgentManager1",
            member=member,
            signature=signature,
            body=body,
        )
    )
    if reply is not None and reply.message_type == MessageType.ERROR:
        detail = reply.body[0] if reply.body else ""
        raise BleError(f"BlueZ refused {member}: {reply.error_name} {detail}".rstrip())


@asynccontextmanager
async def pairing_window(
    bus: AgentBus,
    address: str,
    *,
    passkey: PasskeyProvider | None = None,
    confirm: Confirmer | None = None,
    path: str = AGENT_PATH,
) -> AsyncIterator[PairingAgent]:
    """Register an agent for `address` as BlueZ's default agent for the block's duration."""
    agent = PairingAgent(address, passkey=passkey, confirm=confirm)
    bus.export(path, agent)
    try:
        await _manager(bus, "RegisterAgent", "os", [path, CAPABILITY])
        try:
            await _manager(bus, "RequestDefaultAgent", "o", [path])
            yield agent
        finally:
            await _manager(bus, "UnregisterAgent", "o", [path])
    finally:
        bus.unexport(path, agent)
