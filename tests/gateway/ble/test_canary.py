"""Pins the bleak base-class surface the simulated backend implements (BLE.md section 1-3):
a bleak upgrade that moves it fails here, loudly, before anything subtler breaks."""

from __future__ import annotations

import inspect

import bleak
from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from gateway.ble.simulated import SimClient, SimScanner, World


def test_bleak_minor_is_the_pinned_one() -> None:
    from importlib.metadata import version

    assert version("bleak").startswith("3.1.")
    assert hasattr(bleak, "BleakScanner")


def test_abstract_members_are_the_ones_we_implement() -> None:
    assert BaseBleakClient.__abstractmethods__ == frozenset(
        {
            "mtu_size",
            "connect",
            "disconnect",
            "pair",
            "unpair",
            "is_connected",
            "read_gatt_char",
            "read_gatt_descriptor",
            "write_gatt_char",
            "write_gatt_descriptor",
            "start_notify",
            "stop_notify",
        }
    )
    assert BaseBleakScanner.__abstractmethods__ == frozenset({"start", "stop"})
    scanner, client = World().backend()
    assert not inspect.isabstract(scanner)
    assert not inspect.isabstract(client)
    assert issubclass(client, SimClient)
    assert issubclass(scanner, SimScanner)


def test_signatures_we_rely_on() -> None:
    def params(fn: object) -> list[str]:
        return list(inspect.signature(fn).parameters)  # type: ignore[arg-type]

    assert params(BaseBleakClient.__init__) == [
        "self",
        "address_or_ble_device",
        "disconnected_callback",
        "timeout",
        "kwargs",
    ]
    assert params(BaseBleakClient.connect) == ["self", "pair", "kwargs"]
    assert params(BaseBleakClient.read_gatt_char)[:2] == ["self", "characteristic"]
    assert "use_cached" in params(BaseBleakClient.read_gatt_char)
    assert params(BaseBleakClient.write_gatt_char) == ["self", "characteristic", "data", "response"]
    assert params(BaseBleakClient.start_notify) == ["self", "characteristic", "callback", "kwargs"]
    assert params(BaseBleakScanner.__init__) == ["self", "detection_callback", "service_uuids"]
    assert params(BaseBleakScanner.create_or_update_device) == [
        "self",
        "key",
        "address",
        "name",
        "details",
        "adv",
    ]
    for name in ("is_allowed_uuid", "call_detection_callbacks", "register_detection_callback"):
        assert callable(getattr(BaseBleakScanner, name))
    # BaseBleakClient.name is not abstract but BleakClient.name calls it: we implement it.
    assert "name" in SimClient.__dict__
    assert "backend" in inspect.signature(bleak.BleakClient.__init__).parameters
    assert "backend" in inspect.signature(bleak.BleakScanner.__init__).parameters
