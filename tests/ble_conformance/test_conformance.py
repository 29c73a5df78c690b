"""What a real BLE stack does and the simulated backend must do the same way.

Each test runs once per backend (`world` fixture). Only bleak's public API touches the devices;
the world puts simulators on the air and injects radio faults."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakGATTProtocolError, BleakGATTProtocolErrorCode
from bleak.uuids import normalize_uuid_16

from tests.ble_conformance.probes import (
    BLOOD_PRESSURE,
    BP_FEATURE,
    BP_MEASUREMENT,
    GLUCOSE_MEASUREMENT,
    RACP,
    RACP_SUCCESS,
    ProbeCuff,
    ProbeMeter,
    racp_report_from,
    racp_response,
    record_sequence,
)
from tests.ble_conformance.world import ConformanceWorld

# Every backend answers within milliseconds; this only bounds a hang so that a broken
# backend fails the test instead of stalling the run.
EVENT_TIMEOUT_S = 5.0

CUFF = "C0:00:00:00:00:01"
METER = "C0:00:00:00:00:02"
PASSKEY = 123456


def _clock() -> datetime:
    return datetime(2025, 1, 1, 8, 0)


async def _found(world: ConformanceWorld, address: str) -> BLEDevice:
    device = await BleakScanner.find_device_by_address(
        address, timeout=EVENT_TIMEOUT_S, backend=world.scanner_backend
    )
    assert device is not None, f"{address} not seen advertising"
    return device


class _Link:
    """A client plus what it received, and its disconnection as an awaitable."""

    def __init__(self, world: ConformanceWorld, device: BLEDevice, *, pair: bool = False) -> None:
        self.lost = asyncio.Event()
        self.values: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.client = BleakClient(
            device,
            disconnected_callback=lambda _client: self.lost.set(),
            backend=world.client_backend,
            pair=pair,
            timeout=EVENT_TIMEOUT_S,
        )

    def on_value(self, characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        self.values.put_nowait((characteristic.uuid, bytes(data)))

    async def subscribe(self, uuid: int) -> None:
        await self.client.start_notify(normalize_uuid_16(uuid), self.on_value)

    async def next_value(self) -> tuple[str, bytes]:
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            return await self.values.get()

    async def values_until(self, done: Callable[[str, bytes], bool]) -> list[tuple[str, bytes]]:
        received: list[tuple[str, bytes]] = []
        while not received or not done(*received[-1]):
            received.append(await self.next_value())
        return received

    async def round_trip(self) -> None:
        """A GATT read: ATT is ordered, so whatever the device sent before its answer has
        been delivered when this returns."""
        await self.client.read_gatt_char(normalize_uuid_16(BP_FEATURE))

    async def wait_lost(self) -> None:
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            await self.lost.wait()


async def test_service_filter_matches_128_bit_uuids_only(world: ConformanceWorld) -> None:
    await world.add_device(ProbeCuff(CUFF, "Cuff", _clock, stored=[b"\x00bp"]))
    await world.add_device(ProbeMeter(METER, "Meter", _clock, records=1))
    everyone: set[str] = set()
    filtered: set[str] = set()
    short: set[str] = set()
    seen_both = asyncio.Event()

    def on_any(device: BLEDevice, _adv: AdvertisementData) -> None:
        everyone.add(device.address)
        if everyone >= {CUFF, METER}:
            seen_both.set()

    def collect(into: set[str]) -> Callable[[BLEDevice, AdvertisementData], None]:
        return lambda device, _adv: into.add(device.address)

    async with (
        BleakScanner(collect(short), ["1810"], backend=world.scanner_backend),
        BleakScanner(
            collect(filtered), [normalize_uuid_16(BLOOD_PRESSURE)], backend=world.scanner_backend
        ),
        BleakScanner(on_any, backend=world.scanner_backend),
    ):
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            await seen_both.wait()
    assert filtered == {CUFF}
    assert short == set(), "a 16-bit UUID string never matches (BLE.md §5.1)"


async def test_subscribe_before_pairing_fails_and_leaves_no_stale_subscriber(
    world: ConformanceWorld,
) -> None:
    cuff = ProbeCuff(CUFF, "Cuff", _clock, stored=[b"\x00first", b"\x00second"])
    await world.add_device(cuff)
    link = _Link(world, await _found(world, CUFF))
    async with link.client:
        with pytest.raises(BleakGATTProtocolError) as refused:
            await link.subscribe(BP_MEASUREMENT)
        assert refused.value.code is BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION
        assert not await world.bonded(CUFF)
        await link.client.pair()
        assert await world.bonded(CUFF)
        await link.subscribe(BP_MEASUREMENT)
        received = [await link.next_value(), await link.next_value()]
        await link.round_trip()
        assert link.values.empty(), "a value was delivered twice"
    assert [value for _uuid, value in received] == [b"\x00first", b"\x00second"]
    assert cuff.stored == []


# Known drift, kept visible (strict: the test fails once the simulated backend conforms):
async def test_indication_forgotten_only_after_its_confirmation(world: ConformanceWorld) -> None:
    cuff = ProbeCuff(CUFF, "Cuff", _clock, stored=[b"\x00first", b"\x00second"])
    await world.add_device(cuff)
    world.drop_link_after(CUFF, 1)
    link = _Link(world, await _found(world, CUFF), pair=True)
    async with link.client:
        await link.subscribe(BP_MEASUREMENT)
        assert await link.next_value() == (normalize_uuid_16(BP_MEASUREMENT), b"\x00first")
        await link.wait_lost()
    assert cuff.stored == [b"\x00first", b"\x00second"], "forgotten without a confirmation"
    assert cuff.advertising()

    again = _Link(world, await _found(world, CUFF))
    async with again.client:
        await again.subscribe(BP_MEASUREMENT)
        received = [await again.next_value(), await again.next_value()]
        await again.round_trip()
    assert [value for _uuid, value in received] == [b"\x00first", b"\x00second"]
    assert cuff.stored == []
    assert not cuff.advertising()


async def test_passkey_pairing_bonds_with_the_right_passkey(world: ConformanceWorld) -> None:
    cuff = ProbeCuff(CUFF, "Cuff", _clock, stored=[b"\x00bp"])
    await world.add_device(cuff, passkey=PASSKEY)
    world.set_agent_passkey(PASSKEY)
    link = _Link(world, await _found(world, CUFF), pair=True)
    async with link.client:
        assert await world.bonded(CUFF)
        await link.subscribe(BP_MEASUREMENT)
        assert await link.next_value() == (normalize_uuid_16(BP_MEASUREMENT), b"\x00bp")


async def test_passkey_pairing_fails_with_a_wrong_passkey(world: ConformanceWorld) -> None:
    await world.add_device(ProbeCuff(CUFF, "Cuff", _clock, stored=[b"\x00bp"]), passkey=PASSKEY)
    world.set_agent_passkey(PASSKEY + 1)
    link = _Link(world, await _found(world, CUFF), pair=True)
    with pytest.raises(BleakDBusError) as failed:
        await link.client.connect()
    assert failed.value.dbus_error == "org.bluez.Error.AuthenticationFailed"
    assert not link.client.is_connected
    assert not await world.bonded(CUFF)


async def test_reconnection_uses_the_stored_bond(world: ConformanceWorld) -> None:
    cuff = ProbeCuff(CUFF, "Cuff", _clock, stored=[b"\x00first"])
    await world.add_device(cuff, passkey=PASSKEY)
    world.set_agent_passkey(PASSKEY)
    link = _Link(world, await _found(world, CUFF), pair=True)
    async with link.client:
        await link.subscribe(BP_MEASUREMENT)
        await link.next_value()
        await link.round_trip()
    # Nobody is there to type a passkey now: a second pairing would fail.
    world.set_agent_passkey(None)
    cuff.stored.append(b"\x00second")
    await world.wake(CUFF)
    again = _Link(world, await _found(world, CUFF))
    async with again.client:
        await again.subscribe(BP_MEASUREMENT)
        assert await again.next_value() == (normalize_uuid_16(BP_MEASUREMENT), b"\x00second")
    assert await world.bonded(CUFF)


async def test_records_after_a_link_lost_mid_racp_are_fetched_next_time(
    world: ConformanceWorld,
) -> None:
    meter = ProbeMeter(METER, "Meter", _clock, records=5)
    await world.add_device(meter, passkey=PASSKEY)
    world.set_agent_passkey(PASSKEY)
    world.drop_link_after(METER, 2)
    link = _Link(world, await _found(world, METER), pair=True)
    async with link.client:
        await link.subscribe(GLUCOSE_MEASUREMENT)
        await link.subscribe(RACP)
        await link.client.write_gatt_char(normalize_uuid_16(RACP), racp_report_from(1), True)
        await link.wait_lost()
    first = []
    while not link.values.empty():
        first.append(record_sequence(link.values.get_nowait()[1]))
    assert first == [1, 2]
    cursor = max(first)  # what the gateway committed

    again = _Link(world, await _found(world, METER))
    async with again.client:
        await again.subscribe(GLUCOSE_MEASUREMENT)
        await again.subscribe(RACP)
        await again.client.write_gatt_char(
            normalize_uuid_16(RACP), racp_report_from(cursor + 1), True
        )
        received = await again.values_until(lambda uuid, _v: uuid == normalize_uuid_16(RACP))
    *records, (_uuid, response) = received
    assert response == racp_response(RACP_SUCCESS)
    assert [record_sequence(value) for _uuid, value in records] == [3, 4, 5]
    assert {uuid for uuid, _v in records} == {normalize_uuid_16(GLUCOSE_MEASUREMENT)}


async def test_values_longer_than_the_mtu_allows_arrive_truncated(world: ConformanceWorld) -> None:
    long_value = bytes(range(30))
    cuff = ProbeCuff(CUFF, "Cuff", _clock, stored=[long_value])
    await world.add_device(cuff, mtu=23)
    link = _Link(world, await _found(world, CUFF), pair=True)
    async with link.client:
        assert link.client.mtu_size == 23
        await link.subscribe(BP_MEASUREMENT)
        _uuid, value = await link.next_value()
    # ATT_MTU - 3 octets fit a notification or indication; the rest is silently cut.
    assert value == long_value[:20]
