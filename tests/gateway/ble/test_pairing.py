"""The simulated backend's pairing, through bleak's public API as provisioning will call it:
Just Works bonds, a device that refuses pairing answers as BlueZ does, `unpair()` forgets the
bond (BlueZ `RemoveDevice`), and the bond store survives a new world (a service restart)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import BleakDBusError, BleakGATTProtocolError

from device_drivers.simulators.blood_pressure_monitor import BloodPressureMonitor
from gateway.ble import uuids
from gateway.ble.simulated import World

SCAN_TIMEOUT_S = 5.0
ADDRESS = "C0:B9:00:00:00:77"


def _cuff() -> BloodPressureMonitor:
    """A cuff holding one measurement, so it advertises (a sleeping cuff stays silent)."""
    cuff = BloodPressureMonitor(address=ADDRESS, name="cuff", clock=datetime.now)
    cuff.add(bytes.fromhex("00780050006400"))
    return cuff


async def _found(world: World) -> BLEDevice:
    scanner, _ = world.backend()
    device = await BleakScanner.find_device_by_address(
        ADDRESS, timeout=SCAN_TIMEOUT_S, backend=scanner
    )
    assert device is not None
    return device


def _world(tmp_path: Path) -> World:
    return World(state_dir=tmp_path / "state", advert_interval_s=0.005, connect_timeout_s=0.05)


@contextlib.asynccontextmanager
async def _running(world: World) -> AsyncIterator[None]:
    """The world's advertisers for the duration of a block."""
    task = asyncio.create_task(world.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_just_works_pairing_bonds_and_unpair_forgets(tmp_path: Path) -> None:
    world = _world(tmp_path)
    world.add(_cuff(), bonded=False)
    async with _running(world):
        world.wake(ADDRESS)
        device = await _found(world)
        _, client_cls = world.backend()
        async with BleakClient(device, backend=client_cls) as client:
            # Before pairing the measurement's CCCD refuses an unencrypted link.
            with pytest.raises(BleakGATTProtocolError):
                await client.start_notify(uuids.uuid128(0x2A35), lambda *_: None)
            await client.pair()
            assert world.bonds.has(ADDRESS)
            await client.start_notify(uuids.uuid128(0x2A35), lambda *_: None)
            await client.unpair()
        assert not world.bonds.has(ADDRESS)
        assert not client.is_connected


async def test_a_device_that_refuses_pairing_answers_like_bluez(tmp_path: Path) -> None:
    world = _world(tmp_path)
    world.add(_cuff(), bonded=False, refuse_pairing=True)
    async with _running(world):
        world.wake(ADDRESS)
        device = await _found(world)
        _, client_cls = world.backend()
        async with BleakClient(device, backend=client_cls) as client:
            with pytest.raises(BleakDBusError) as info:
                await client.pair()
        assert info.value.dbus_error == "org.bluez.Error.AuthenticationRejected"
        assert not world.bonds.has(ADDRESS)


async def test_bonds_survive_a_restart(tmp_path: Path) -> None:
    first = _world(tmp_path)
    first.add(_cuff(), bonded=True)
    assert first.bonds.has(ADDRESS)
    again = _world(tmp_path)  # the same state directory: the bond file is read back
    assert again.bonds.has(ADDRESS)
    assert oct((tmp_path / "state" / "simulated-bonds.json").stat().st_mode & 0o777) == "0o600"
