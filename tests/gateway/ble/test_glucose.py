"""Glucose meter sessions: RACP ">= cursor + 1", context joined, batches with their cursor,
resume after disconnects, no records found, corrupt packets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from device_drivers.glucose import GlucoseMeasurement, GlucoseMeasurementContext
from device_drivers.simulators.glucose_meter import GlucoseMeter
from gateway.ble.simulated import World
from tests.gateway.ble.conftest import enroll, local_clock, until


def meter_with(world: World, n: int, **radio: Any) -> GlucoseMeter:
    meter = GlucoseMeter(address="C0:11:22:33:44:55", name="meter", clock=local_clock)
    for i in range(n):
        meter.measure(Decimal("0.000" + str(50 + i % 50)))
    world.add(meter, **radio)
    return meter


async def test_500_records_across_three_disconnects(
    world: World, store: Any, run_central: Any
) -> None:
    meter = meter_with(world, 500, disconnect_after=150)
    await enroll(store, meter.address, "glucose")
    async with run_central() as central:
        await until(lambda: store.cursors.get(meter.address) == 499, within=30)
        await until(lambda: central.devices[meter.address].sessions >= 1)
    seqs = [r.sequence_number() for r in store.readings]
    assert seqs == list(range(500))
    assert world.peripheral(meter.address).connects == 4  # three forced disconnects


async def test_context_is_joined_and_second_session_finds_nothing(
    world: World, store: Any, run_central: Any
) -> None:
    meter = GlucoseMeter(address="C0:11:22:33:44:56", name="meter", clock=local_clock)
    meter.measure(
        Decimal("0.00085"), context=GlucoseMeasurementContext(0, hba1c_pct=Decimal("6.1"))
    )
    meter.measure(Decimal("0.00090"))
    world.add(meter)
    await enroll(store, meter.address, "glucose")
    async with run_central() as central:
        await until(lambda: central.devices[meter.address].sessions == 1)
        meter.measure(Decimal("0.00100"))
        world.wake(meter.address)
        await until(lambda: central.devices[meter.address].sessions == 2)
    assert [r.sequence_number() for r in store.readings] == [0, 1, 2]
    first = store.readings[0]
    assert first.context is not None
    assert GlucoseMeasurementContext.from_bytes(first.context).sequence_number == 0
    assert store.readings[1].context is None
    assert store.cursors[meter.address] == 2
    assert isinstance(first.measurement(), GlucoseMeasurement)


async def test_corrupt_record_becomes_an_event_and_the_rest_flows(
    world: World, store: Any, run_central: Any
) -> None:
    meter = GlucoseMeter(
        address="C0:11:22:33:44:57", name="meter", clock=local_clock, corrupt_every=3
    )
    for _ in range(7):  # the 3rd and 6th values sent go out truncated
        meter.measure(Decimal("0.00070"))
    world.add(meter)
    await enroll(store, meter.address, "glucose")
    async with run_central() as central:
        await until(lambda: central.devices[meter.address].sessions == 1)
    bad = store.events_of("malformed_value")
    assert len(bad) == 2
    assert bad[0]["characteristic"] == "2A18"
    assert bad[0]["length"] == len(meter.records[2].measurement[:1])  # the bytes stay out
    assert set(bad[0]) == {
        "device",
        "characteristic",
        "length",
        "offset",
        "error",
        "reason",
        "record",
    }
    # ...of the event: they are kept sealed, each named by its event (LESSONS L8.2)
    kept = await store.store.malformed()
    assert [k.id for k in kept] == [e["record"] for e in bad]
    assert [k.value for k in kept] == [meter.records[2].measurement[:1]] * 2
    assert [r.sequence_number() for r in store.readings] == [0, 1, 3, 4, 6]
    assert store.cursors[meter.address] == 6


async def test_no_records_found_is_a_clean_session(
    world: World, store: Any, run_central: Any
) -> None:
    meter = meter_with(world, 3)
    await enroll(store, meter.address, "glucose")
    await store.add([], cursor=(meter.address, 2))  # everything already fetched by an earlier run
    async with run_central() as central:
        await until(lambda: central.devices[meter.address].sessions == 1)
    assert store.readings == []
    assert store.cursors[meter.address] == 2
    assert not meter.procedure_running


async def test_a_malformed_last_record_is_passed_once_its_bytes_are_kept(
    world: World, store: Any, run_central: Any
) -> None:
    """Its number follows the last one: the cursor passes it (its bytes are kept sealed), so
    the next connection neither fetches nor reports it again."""
    meter = GlucoseMeter(address="C0:11:22:33:44:58", name="meter", clock=local_clock)
    meter.measure(Decimal("0.00070"))
    meter.measure(Decimal("0.00071"))
    # seq 2, flags announcing a time offset and a concentration that never come
    meter.add_raw(bytes([0x03, 0x02, 0x00]) + bytes.fromhex("ea070b1c0f1e00"))
    world.add(meter)
    await enroll(store, meter.address, "glucose")
    async with run_central() as central:
        await until(lambda: central.devices[meter.address].sessions == 1)
        assert store.cursors[meter.address] == 2
        meter.measure(Decimal("0.00072"))  # seq 3: news, so it connects again
        world.wake(meter.address)
        await until(lambda: central.devices[meter.address].sessions == 2)
    assert len(store.events_of("malformed_value")) == 1  # not again at the second connection
    assert [r.sequence_number() for r in store.readings] == [0, 1, 3]
    assert len(await store.store.malformed()) == 1


async def test_a_malformed_record_whose_number_jumps_does_not_move_the_cursor(
    world: World, store: Any, run_central: Any
) -> None:
    """A damaged number (here 0x7F00 after 1) must not move the cursor past records still to
    fetch: the cursor stays at the last one committed."""
    meter = GlucoseMeter(address="C0:11:22:33:44:59", name="meter", clock=local_clock)
    meter.measure(Decimal("0.00070"))
    meter.measure(Decimal("0.00071"))
    meter.add_raw(bytes([0x03, 0x00, 0x7F]) + bytes.fromhex("ea070b1c0f1e00"))
    world.add(meter)
    await enroll(store, meter.address, "glucose")
    async with run_central() as central:
        await until(lambda: central.devices[meter.address].sessions == 1)
    assert store.cursors[meter.address] == 1


async def test_after_65535_a_malformed_record_0_is_passed_too(
    world: World, store: Any, run_central: Any
) -> None:
    meter = GlucoseMeter(
        address="C0:11:22:33:44:5A", name="meter", clock=local_clock, next_sequence_number=65534
    )
    meter.measure(Decimal("0.00070"))  # 65534
    meter.measure(Decimal("0.00071"))  # 65535
    meter.add_raw(bytes([0x03, 0x00, 0x00]) + bytes.fromhex("ea070b1c0f1e00"))  # 0, malformed
    world.add(meter)
    await enroll(store, meter.address, "glucose")
    async with run_central() as central:
        await until(lambda: central.devices[meter.address].sessions == 1)
    assert store.cursors[meter.address] == 0  # the numbers wrap after 65535
