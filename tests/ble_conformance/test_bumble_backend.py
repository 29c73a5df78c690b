"""The bumble backend's own duties, where bumble does less than BlueZ (BLE.md §10 traps 2, 7)
and that the conformance suite cannot reach through bleak's API alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner
from bleak.exc import BleakGATTProtocolError
from bleak.uuids import normalize_uuid_16
from bumble.device import Connection

from tests.ble_conformance.bumble_backend import _BumbleClient, _BumbleScanner
from tests.ble_conformance.bumble_world import BumbleWorld
from tests.ble_conformance.probes import BP_FEATURE, BP_MEASUREMENT, ProbeCuff

# bumble answers within milliseconds; this only turns a hang into a failure.
EVENT_TIMEOUT_S = 5.0
CUFF = "C0:00:00:00:00:01"


def _clock() -> datetime:
    return datetime(2025, 1, 1, 8, 0)


@pytest.fixture
async def bumble() -> AsyncIterator[BumbleWorld]:
    world = BumbleWorld()
    await world.start()
    try:
        yield world
    finally:
        await world.close()
    assert not [e for p in world.peripherals.values() for e in p.errors]


def test_backend_classes_implement_bleaks_abstract_members() -> None:
    # A bleak minor that adds an abstract member makes these uninstantiable: fail here first.
    assert issubclass(_BumbleScanner, BaseBleakScanner)
    assert issubclass(_BumbleClient, BaseBleakClient)
    assert not _BumbleScanner.__abstractmethods__
    assert not _BumbleClient.__abstractmethods__


async def test_a_security_request_from_an_unbonded_device_starts_pairing(
    bumble: BumbleWorld,
) -> None:
    await bumble.add_device(
        ProbeCuff(CUFF, "Cuff", _clock, stored=[b"\x00bp"]), security_request=True
    )
    paired: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_connection(connection: Connection) -> None:
        connection.once(Connection.EVENT_PAIRING, lambda *_: paired.set_result(None))

    bumble.central.once("connection", on_connection)
    device = await BleakScanner.find_device_by_address(
        CUFF, timeout=EVENT_TIMEOUT_S, backend=bumble.scanner_backend
    )
    assert device is not None
    async with BleakClient(device, backend=bumble.client_backend):
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            await paired
        assert await bumble.bonded(CUFF)


async def test_a_failed_subscribe_writes_no_second_callback(bumble: BumbleWorld) -> None:
    cuff = ProbeCuff(CUFF, "Cuff", _clock, stored=[b"\x00bp"])
    await bumble.add_device(cuff)
    device = await BleakScanner.find_device_by_address(
        CUFF, timeout=EVENT_TIMEOUT_S, backend=bumble.scanner_backend
    )
    assert device is not None
    stale: list[bytes] = []
    fresh: asyncio.Queue[bytes] = asyncio.Queue()

    def stale_callback(_c: BleakGATTCharacteristic, data: bytearray) -> None:
        stale.append(bytes(data))

    async with BleakClient(device, backend=bumble.client_backend) as client:
        with pytest.raises(BleakGATTProtocolError):
            await client.start_notify(normalize_uuid_16(BP_MEASUREMENT), stale_callback)
        await client.pair()
        await client.start_notify(
            normalize_uuid_16(BP_MEASUREMENT), lambda _c, data: fresh.put_nowait(bytes(data))
        )
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            assert await fresh.get() == b"\x00bp"
        await client.read_gatt_char(normalize_uuid_16(BP_FEATURE))
    assert stale == []
    assert fresh.empty()
