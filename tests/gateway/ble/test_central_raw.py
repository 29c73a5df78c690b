"""Central + simulated backend with a raw-bytes cuff (no codec or simulator dependency)."""

from __future__ import annotations

from typing import Any

from gateway.ble.simulated import World, faults
from tests.gateway.ble.conftest import enroll, local_clock, until
from tests.gateway.ble.fakes import RawCuff, bpm_bytes


async def test_cuff_readings_committed_once_each(
    world: World, store: Any, run_central: Any
) -> None:
    cuff = RawCuff(address="C0:00:00:00:00:01", name="cuff", clock=local_clock)
    cuff.stored += [bpm_bytes(120, 1), bpm_bytes(130, 2)]
    world.add(cuff)
    await enroll(store, cuff.address, "blood_pressure")
    async with run_central():
        await until(lambda: len(store.readings) == 2 and not cuff.stored)
    assert [r.value for r in store.readings] == [bpm_bytes(120, 1), bpm_bytes(130, 2)]
    assert all(r.device == cuff.address for r in store.readings)


async def test_stranger_is_never_connected(world: World, store: Any, run_central: Any) -> None:
    stranger = world.add(
        RawCuff(address="EE:00:00:00:00:09", name="cuff", clock=local_clock, stored=[b"\x00"]),
        bonded=False,
    )
    async with run_central():
        await until(lambda: bool(store.events_of("stranger_device")))
        await until(lambda: stranger.device.advertising() and world.monotonic() > 0)
    assert store.events_of("stranger_device") == [
        {"address": "EE:00:00:00:00:09", "services": "00001810-0000-1000-8000-00805f9b34fb"}
    ]
    assert stranger.connect_attempts == 0


async def test_connect_retries_through_bluez_failures(
    world: World, store: Any, run_central: Any
) -> None:
    cuff = RawCuff(address="C0:00:00:00:00:02", name="cuff", clock=local_clock)
    cuff.stored.append(bpm_bytes(111))
    p = world.add(cuff)
    world.inject_connect_failure(cuff.address, faults.connection_abort(), faults.in_progress())
    await enroll(store, cuff.address, "blood_pressure")
    async with run_central():
        await until(lambda: len(store.readings) == 1)
    assert p.connect_attempts == 3


async def test_malformed_value_event_names_the_fault_not_the_bytes(
    world: World, store: Any, run_central: Any
) -> None:
    # flags announce a measurement status that is cut off after 120/80/100 mmHg, pulse 72
    bad = bytes.fromhex("1e780050006400ea070b1c0f1e00480001")
    cuff = RawCuff(address="C0:00:00:00:00:03", name="cuff", clock=local_clock)
    cuff.stored += [bad, bpm_bytes(125, 3)]
    world.add(cuff)
    await enroll(store, cuff.address, "blood_pressure")
    async with run_central():
        await until(lambda: len(store.readings) == 1 and not cuff.stored)
    assert [r.value for r in store.readings] == [bpm_bytes(125, 3)]
    (detail,) = [e.detail for e in await store.store.events() if e.kind == "malformed_value"]
    assert detail == {
        "device": cuff.address,
        "characteristic": "2A35",
        "length": 17,
        "offset": 17,
        "error": "MalformedValue",
        "reason": "measurement_status needs 2 octet(s), 0 left",
        "record": 1,
    }
    # the bytes themselves are kept, sealed, for whoever holds the keys (LESSONS L8.2)
    (kept,) = await store.store.malformed()
    assert (kept.id, kept.device, kept.characteristic, kept.value) == (1, cuff.address, 0x2A35, bad)
