"""Blood-pressure monitor and weight scale sessions over the simulated backend, with the real
simulators: stored-measurement indications, clock offset and write, DIS cache, security,
duplicates after a re-send, corrupt packets, faults."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal
from typing import Any

from device_drivers.blood_pressure import BloodPressureMeasurement
from device_drivers.simulators.blood_pressure_monitor import BloodPressureMonitor
from device_drivers.simulators.weight_scale import WeightScale
from device_drivers.weight_scale import WeightMeasurement
from gateway.ble.session import scale_resolutions
from gateway.ble.simulated import World, faults
from tests.gateway.ble.conftest import until


def bp(systolic: int, minute: int) -> BloodPressureMeasurement:
    return BloodPressureMeasurement(
        systolic=Decimal(systolic),
        diastolic=Decimal(80),
        mean_arterial_pressure=Decimal(95),
        timestamp=datetime(2024, 1, 2, 8, minute),
    )


async def test_monitor_session(
    world: World, store: Any, run_central: Any, monitor: BloodPressureMonitor
) -> None:
    monitor.add(bp(121, 1))
    monitor.add(bp(132, 2))
    world.wake(monitor.address)
    async with run_central() as central:
        await until(lambda: central.devices[monitor.address].sessions == 1)
    assert [r.measurement().systolic for r in store.readings] == [Decimal(121), Decimal(132)]
    assert monitor.stored() == []  # confirmed, so forgotten
    (clock_set,) = store.events_of("device_clock_set")
    assert clock_set["device"] == monitor.address
    assert abs(clock_set["residual_s"]) < 2  # the device clock now follows the gateway's
    assert all(r.device_clock_offset_s == clock_set["residual_s"] for r in store.readings)
    assert all(r.clock_trusted for r in store.readings)
    # the row `carebox status` reads: the DIS cache kept the contact and the battery
    (row,) = await store.devices()
    assert row.manufacturer == monitor.manufacturer  # DIS read once, cached
    contact = central.devices[monitor.address].last_contact
    assert contact is not None
    assert row.last_contact == contact.replace(microsecond=contact.microsecond // 1000 * 1000)
    assert row.battery == monitor.battery_level
    assert store.device_information[monitor.address]["manufacturer"] == monitor.manufacturer


async def test_untrusted_clock_is_never_written(
    world: World, store: Any, run_central: Any, monitor: BloodPressureMonitor
) -> None:
    monitor.add(bp(118, 3))
    world.wake(monitor.address)
    async with run_central(clock_trusted=False) as central:
        await until(lambda: central.devices[monitor.address].sessions == 1)
    assert store.events_of("device_clock_set") == []
    (reading,) = store.readings
    assert not reading.clock_trusted
    assert reading.device_clock_offset_s is not None  # read, not written
    # kept to date it once the clock is trusted (L7.2)
    assert (reading.boot_id, reading.monotonic_ns) != (None, None)
    assert reading.monotonic_ns is not None
    assert reading.monotonic_ns <= time.monotonic_ns()
    assert monitor.device_time() == monitor.clock()  # untouched


async def test_resend_after_lost_confirmation_is_no_duplicate(
    world: World, store: Any, run_central: Any, monitor: BloodPressureMonitor
) -> None:
    monitor.add(bp(140, 4))
    world.peripheral(monitor.address).lost_confirmations = 1
    world.wake(monitor.address)
    async with run_central() as central:
        await until(lambda: central.devices[monitor.address].sessions == 2)
    assert world.peripheral(monitor.address).connects == 2  # it was indicated twice
    assert len(store.readings) == 1


async def test_corrupt_packet_is_an_event_and_the_session_goes_on(
    world: World, store: Any, run_central: Any, monitor: BloodPressureMonitor
) -> None:
    monitor.corrupt_every = 2
    for minute in range(4):
        monitor.add(bp(120 + minute, minute))
    world.wake(monitor.address)
    async with run_central() as central:
        await until(lambda: central.devices[monitor.address].sessions == 1)
    assert [e["characteristic"] for e in store.events_of("malformed_value")] == ["2A35", "2A35"]
    assert [r.measurement().systolic for r in store.readings] == [Decimal(120), Decimal(122)]


async def test_monitor_without_bond_on_its_side_needs_repairing(
    world: World, store: Any, run_central: Any, monitor: BloodPressureMonitor
) -> None:
    monitor.add(bp(125, 5))
    world.forget_device_bond(monitor.address)
    world.wake(monitor.address)
    async with run_central() as central:
        await until(lambda: central.devices[monitor.address].last_error is not None)
    assert store.readings == []
    assert "needs_repairing" in central.devices[monitor.address].last_error


async def test_connect_faults_are_retried_in_the_burst(
    world: World, store: Any, run_central: Any, monitor: BloodPressureMonitor
) -> None:
    monitor.add(bp(119, 6))
    world.inject_connect_failure(
        monitor.address, faults.connection_abort(), faults.in_progress(), faults.timeout()
    )
    world.wake(monitor.address)
    async with run_central() as central:
        await until(lambda: len(store.readings) == 1, within=15)
        assert central.arbiter.connect_attempts == 4
    assert world.peripheral(monitor.address).connects == 1


async def test_scale_session(
    world: World, store: Any, run_central: Any, scale: WeightScale
) -> None:
    scale.add(WeightMeasurement(weight=Decimal("72.5")))  # no timestamp: receive time
    world.wake(scale.address)
    async with run_central() as central:
        await until(lambda: central.devices[scale.address].sessions == 1)
    (reading,) = store.readings
    assert reading.measurement().weight == Decimal("72.5")
    assert reading.device_timestamp() is None  # identity and FHIR fall back to received_at
    # the scale's Weight Scale Feature resolutions, kept with its Device Information
    (row,) = await store.devices()
    features = scale.features
    assert (row.weight_resolution, row.height_resolution) == (
        str(int(features.weight_measurement_resolution)),
        str(int(features.height_measurement_resolution)),
    )
    assert row.weight_resolution == "4"  # the simulator's 0.05 kg / 0.1 lb


def test_a_feature_that_is_absent_or_malformed_states_no_resolution() -> None:
    unspecified = {"weight_resolution": "0", "height_resolution": "0"}
    assert scale_resolutions(None) == unspecified
    assert scale_resolutions(b"\x01") == unspecified  # 1 octet of a u32
    assert scale_resolutions((3 << 3 | 2 << 7).to_bytes(4, "little")) == {
        "weight_resolution": "3",
        "height_resolution": "2",
    }


async def test_bond_store_survives_a_new_world(world: World, tmp_path: Any) -> None:
    again = World(state_dir=tmp_path / "state")
    assert not again.bonds.has("C0:B9:00:00:00:01")
    p = world.add(BloodPressureMonitor(address="C0:B9:00:00:00:02", name="c", clock=datetime.now))
    assert World(state_dir=tmp_path / "state").bonds.has(p.address)
    assert oct((tmp_path / "state" / "simulated-bonds.json").stat().st_mode & 0o777) == "0o600"
