"""The BlueZ pairing agent against a fake bus: registration for the window only, answers only
for the device being paired."""

from __future__ import annotations

from typing import Any

import pytest
from dbus_fast import DBusError, Message, MessageType

from gateway.ble.agent import AGENT_PATH, PairingAgent, address_of, pairing_window
from gateway.ble.errors import BleError

DEVICE = "/org/bluez/hci0/dev_C0_11_22_33_44_55"
OTHER = "/org/bluez/hci0/dev_EE_00_00_00_00_09"


class FakeBus:
    def __init__(self, refuse: str | None = None) -> None:
        self.exported: dict[str, Any] = {}
        self.calls: list[tuple[str, list[Any]]] = []
        self.refuse = refuse

    def export(self, path: str, interface: Any) -> None:
        assert path not in self.exported
        self.exported[path] = interface

    def unexport(self, path: str, interface: Any = None) -> None:
        del self.exported[path]

    async def call(self, msg: Message) -> Message:
        assert (msg.destination, msg.path, msg.interface) == (
            "org.bluez",
            "/org/bluez",
            "org.bluez.AgentManager1",
        )
        self.calls.append((msg.member, list(msg.body)))
        msg.serial = len(self.calls)
        if msg.member == self.refuse:
            return Message.new_error(msg, "org.bluez.Error.AlreadyExists", "Already Exists")
        return Message(message_type=MessageType.METHOD_RETURN, reply_serial=msg.serial)


async def call(agent: PairingAgent, member: str, *args: Any) -> Any:
    """Invoke a D-Bus method the way the bus does: the undecorated function (dbus-fast's
    decorator returns a wrapper that discards results), awaited when it is a coroutine."""
    result = getattr(type(agent), member).__wrapped__(agent, *args)
    if hasattr(result, "__await__"):
        result = await result
    return result


def test_dbus_signatures() -> None:
    intro = PairingAgent("C0:11:22:33:44:55").introspect()
    sigs = {
        m.name: ("".join(a.signature for a in m.in_args), "".join(a.signature for a in m.out_args))
        for m in intro.methods
    }
    assert intro.name == "org.bluez.Agent1"
    assert sigs == {
        "Release": ("", ""),
        "RequestPinCode": ("o", "s"),
        "DisplayPinCode": ("os", ""),
        "RequestPasskey": ("o", "u"),
        "DisplayPasskey": ("ouq", ""),
        "RequestConfirmation": ("ou", ""),
        "RequestAuthorization": ("o", ""),
        "AuthorizeService": ("os", ""),
        "Cancel": ("", ""),
    }


def test_address_of() -> None:
    assert address_of(DEVICE) == "C0:11:22:33:44:55"
    with pytest.raises(DBusError):
        address_of("/org/bluez/hci0")


async def test_window_registers_then_unregisters() -> None:
    bus = FakeBus()
    async with pairing_window(bus, "c0:11:22:33:44:55") as agent:
        assert bus.exported == {AGENT_PATH: agent}
        assert bus.calls == [
            ("RegisterAgent", [AGENT_PATH, "KeyboardDisplay"]),
            ("RequestDefaultAgent", [AGENT_PATH]),
        ]
    assert bus.exported == {}
    assert bus.calls[-1] == ("UnregisterAgent", [AGENT_PATH])


async def test_window_cleans_up_when_bluez_refuses() -> None:
    bus = FakeBus(refuse="RequestDefaultAgent")
    with pytest.raises(BleError, match="RequestDefaultAgent"):
        async with pairing_window(bus, "C0:11:22:33:44:55"):
            raise AssertionError("not reached")
    assert bus.exported == {}
    assert bus.calls[-1][0] == "UnregisterAgent"


async def test_passkey_for_the_target_only() -> None:
    asked: list[str] = []

    async def typed(address: str) -> int | None:
        asked.append(address)
        return 123456

    agent = PairingAgent("C0:11:22:33:44:55", passkey=typed)
    assert await call(agent, "RequestPasskey", DEVICE) == 123456
    with pytest.raises(DBusError):
        await call(agent, "RequestPasskey", OTHER)
    assert asked == ["C0:11:22:33:44:55"]


async def test_no_passkey_rejects() -> None:
    async def nothing(address: str) -> int | None:
        return None

    with pytest.raises(DBusError):
        await call(PairingAgent("C0:11:22:33:44:55", passkey=nothing), "RequestPasskey", DEVICE)
    with pytest.raises(DBusError):
        await call(PairingAgent("C0:11:22:33:44:55"), "RequestPasskey", DEVICE)


async def test_just_works_and_comparison() -> None:
    async def yes(address: str, number: int) -> bool:
        return number == 42

    agent = PairingAgent("C0:11:22:33:44:55", confirm=yes)
    await call(agent, "RequestAuthorization", DEVICE)
    with pytest.raises(DBusError):
        await call(agent, "RequestAuthorization", OTHER)
    await call(agent, "RequestConfirmation", DEVICE, 42)
    with pytest.raises(DBusError):
        await call(agent, "RequestConfirmation", DEVICE, 41)
    with pytest.raises(DBusError):
        await call(PairingAgent("C0:11:22:33:44:55"), "RequestConfirmation", DEVICE, 42)
    with pytest.raises(DBusError):
        await call(agent, "RequestPinCode", DEVICE)
    await call(agent, "DisplayPasskey", DEVICE, 654321, 0)
    assert agent.displayed == [("C0:11:22:33:44:55", 654321)]
    await call(agent, "Cancel")
    await call(agent, "Release")
    assert agent.cancelled
    assert agent.released
