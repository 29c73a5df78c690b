"""The `device_drivers` health simulators behind each backend: the glucose meter's RACP
transfer, its attribute security and its exact ATT codes, over a real stack and the fake."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakGATTProtocolError, BleakGATTProtocolErrorCode
from bleak.uuids import normalize_uuid_16

from device_drivers.glucose import GlucoseMeasurement, GlucoseMeasurementContext, Meal
from device_drivers.racp import OpCode, Racp, ResponseCode
from device_drivers.simulators.glucose_meter import CONTEXT, MEASUREMENT, RACP, GlucoseMeter
from tests.ble_conformance.world import ConformanceWorld

# Every backend answers within milliseconds; this only turns a hang into a failure.
EVENT_TIMEOUT_S = 5.0
METER = "C0:00:00:00:00:03"
PASSKEY = 246810


def _clock() -> datetime:
    return datetime(2025, 1, 1, 7, 30)


def _meter(records: int) -> GlucoseMeter:
    meter = GlucoseMeter(METER, "Meter", _clock, next_sequence_number=1)
    for n in range(records):
        # Every other record carries a meal context, sent right after its measurement.
        context = GlucoseMeasurementContext(0, meal=Meal.FASTING) if n % 2 else None
        meter.measure(Decimal("0.00095") + Decimal(n) / 100000, context=context)
    return meter


async def _found(world: ConformanceWorld) -> BLEDevice:
    device = await BleakScanner.find_device_by_address(
        METER, timeout=EVENT_TIMEOUT_S, backend=world.scanner_backend
    )
    assert device is not None
    return device


class _Collector:
    """What the gateway does with a transfer: a record counts once it is complete (its
    context arrived when the measurement announced one); the cursor is the last such."""

    def __init__(self) -> None:
        self.complete: list[int] = []
        self.pending: GlucoseMeasurement | None = None
        self.response: asyncio.Future[Racp] = asyncio.get_running_loop().create_future()

    def on_value(self, characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        uuid = characteristic.uuid
        if uuid == normalize_uuid_16(MEASUREMENT):
            measurement = GlucoseMeasurement.from_bytes(bytes(data))
            if measurement.context_follows:
                self.pending = measurement
            else:
                self.complete.append(measurement.sequence_number)
        elif uuid == normalize_uuid_16(CONTEXT):
            context = GlucoseMeasurementContext.from_bytes(bytes(data))
            assert self.pending is not None
            assert context.sequence_number == self.pending.sequence_number
            self.complete.append(context.sequence_number)
            self.pending = None
        elif uuid == normalize_uuid_16(RACP) and not self.response.done():
            self.response.set_result(Racp.from_bytes(bytes(data)))

    async def fetch_from(self, client: BleakClient, sequence_number: int) -> None:
        for uuid in (MEASUREMENT, CONTEXT, RACP):
            await client.start_notify(normalize_uuid_16(uuid), self.on_value)
        await client.write_gatt_char(
            normalize_uuid_16(RACP), bytes(Racp.report_records_from(sequence_number)), True
        )


async def test_a_glucose_transfer_cut_mid_racp_resumes_at_the_cursor(
    world: ConformanceWorld,
) -> None:
    meter = _meter(6)  # sequence numbers 1..6; 2, 4, 6 carry a context
    await world.add_device(meter, passkey=PASSKEY)
    world.set_agent_passkey(PASSKEY)
    # Values: 1, 2, ctx2, 3, 4 | lost before ctx4 arrives
    world.drop_link_after(METER, 5)
    lost = asyncio.Event()
    first = _Collector()
    client = BleakClient(
        await _found(world),
        disconnected_callback=lambda _c: lost.set(),
        pair=True,
        backend=world.client_backend,
        timeout=EVENT_TIMEOUT_S,
    )
    async with client:
        await first.fetch_from(client, 1)
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            await lost.wait()
    assert first.complete == [1, 2, 3]
    assert not first.response.done(), "the procedure cannot have ended"
    cursor = first.complete[-1]  # committed: record 4 waits for its context

    again = _Collector()
    async with BleakClient(
        await _found(world), backend=world.client_backend, timeout=EVENT_TIMEOUT_S
    ) as client:
        await again.fetch_from(client, cursor + 1)
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            response = await again.response
    assert response == Racp.response(OpCode.REPORT_STORED_RECORDS, ResponseCode.SUCCESS)
    assert again.complete == [4, 5, 6]
    assert [r.sequence_number for r in meter.records] == [1, 2, 3, 4, 5, 6], "never deleted"


async def test_glucose_characteristics_refuse_an_unencrypted_link(world: ConformanceWorld) -> None:
    await world.add_device(_meter(1))
    async with BleakClient(
        await _found(world), backend=world.client_backend, timeout=EVENT_TIMEOUT_S
    ) as client:
        for uuid in (MEASUREMENT, RACP):
            with pytest.raises(BleakGATTProtocolError) as refused:
                await client.start_notify(normalize_uuid_16(uuid), lambda _c, _d: None)
            assert refused.value.code is BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION
        with pytest.raises(BleakGATTProtocolError) as refused:
            await client.write_gatt_char(
                normalize_uuid_16(RACP), bytes(Racp.report_all_records()), True
            )
        assert refused.value.code is BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION
        assert not await world.bonded(METER)


async def test_racp_without_its_indications_enabled_answers_the_gls_code(
    world: ConformanceWorld,
) -> None:
    await world.add_device(_meter(1))
    async with BleakClient(
        await _found(world), pair=True, backend=world.client_backend, timeout=EVENT_TIMEOUT_S
    ) as client:
        with pytest.raises(BleakGATTProtocolError) as refused:
            await client.write_gatt_char(
                normalize_uuid_16(RACP), bytes(Racp.report_all_records()), True
            )
    # GLS 1.0's "Client Characteristic Configuration Descriptor improperly configured".
    assert refused.value.code == 0x81
