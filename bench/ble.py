"""BLE benchmark over the simulated backend (issue 4).

Figures:
- advert_to_commit_p50_ms / _p99_ms: a monitor takes a measurement and starts advertising
  -> the reading is committed by the central (store add returned);
- glucose_records_per_s: a meter with 1,000 stored records, fetched through RACP and committed;
- idle_cpu_s_per_h: process CPU per hour with five paired devices asleep, over a minute.
The store here is an in-memory one (the BLE layer's own cost; the store has its own bench).
Targets: p99 <= 250 ms, >= 500 records/s, <= 36 CPU s/h; each `*_ratio` is figure / limit.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from device_drivers.blood_pressure import BloodPressureMeasurement
from device_drivers.simulators.blood_pressure_monitor import BloodPressureMonitor
from device_drivers.simulators.glucose_meter import GlucoseMeter
from gateway.ble import Central, SessionTimings
from gateway.ble.simulated import World
from gateway.store import Store
from tests.gateway.ble.fakes import RecordingStore, device_record, recording_store

ROUNDS = 40
IDLE_S = 60.0


class _Config:
    backend = "simulated"
    adapter = "hci0"


class TimedStore(RecordingStore):
    """The real store; `committed` is set when a commit returned (durable)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.committed: asyncio.Event = asyncio.Event()

    async def add(self, readings: Any, *, cursor: Any = None) -> list[str]:
        out = await super().add(readings, cursor=cursor)
        self.committed.set()
        return out


def local() -> datetime:
    return datetime.now()


async def advert_to_commit(state: Path) -> list[float]:
    world = World(state_dir=state / "a", advert_interval_s=0.1)  # 100 ms: a cuff's interval
    cuff = BloodPressureMonitor(address="C0:B9:00:00:00:01", name="cuff", clock=local)
    world.add(cuff)
    store = TimedStore(await Store.open(state / "a" / "store", min_free_mb=0))
    await store.upsert_device(device_record(cuff.address, "blood_pressure", "cuff"))
    central = Central(
        store,
        _Config(),
        clock_trusted=lambda: True,
        state_dir=state / "a",
        world=world,
        timings=SessionTimings(linger_s=0.05),
    )
    task = asyncio.create_task(central.run())
    out = []
    try:
        await asyncio.sleep(0.2)
        for i in range(ROUNDS):
            store.committed.clear()
            cuff.add(
                BloodPressureMeasurement(
                    systolic=Decimal(110 + i % 40),
                    diastolic=Decimal(80),
                    mean_arterial_pressure=Decimal(90),
                    timestamp=datetime(2024, 1, 1, 8, i % 60, i // 60),
                )
            )
            start = time.perf_counter()
            world.wake(cuff.address)
            await asyncio.wait_for(store.committed.wait(), 10)
            out.append((time.perf_counter() - start) * 1000)
            while world.peripheral(cuff.address).link is not None:  # noqa: ASYNC110 - bench watches from outside
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.store.close()
    return out


async def glucose_rate(state: Path) -> float:
    world = World(state_dir=state / "g")
    meter = GlucoseMeter(address="C0:61:00:00:00:01", name="meter", clock=local)
    for i in range(1000):
        meter.measure(Decimal("0.000") + Decimal(50 + i % 50) / Decimal(100000))
    world.add(meter)
    async with recording_store(state / "g") as store:
        await store.upsert_device(device_record(meter.address, "glucose", "meter"))
        return await _glucose_rate(store, meter, world, state)


async def _glucose_rate(store: RecordingStore, meter: Any, world: World, state: Path) -> float:
    central = Central(
        store, _Config(), clock_trusted=lambda: True, state_dir=state / "g", world=world
    )
    task = asyncio.create_task(central.run())
    try:
        while not world.peripheral(meter.address).connects:  # noqa: ASYNC110 - bench watches from outside
            await asyncio.sleep(0.001)
        start = time.perf_counter()
        while store.cursors.get(meter.address) != 999:  # noqa: ASYNC110 - bench watches from outside
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - start
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(store.readings) == 1000
    return 1000 / elapsed


async def idle_cpu(state: Path) -> float:
    world = World(state_dir=state / "i")
    async with recording_store(state / "i") as store:
        for n in range(5):
            dev = BloodPressureMonitor(address=f"C0:B9:00:00:01:0{n}", name="cuff", clock=local)
            world.add(dev)
            await store.upsert_device(device_record(dev.address, "blood_pressure", "cuff"))
        return await _idle_cpu(store, world, state)


async def _idle_cpu(store: RecordingStore, world: World, state: Path) -> float:
    central = Central(
        store, _Config(), clock_trusted=lambda: True, state_dir=state / "i", world=world
    )
    task = asyncio.create_task(central.run())
    try:
        await asyncio.sleep(1.0)
        cpu0 = time.process_time()
        await asyncio.sleep(IDLE_S)
        cpu = time.process_time() - cpu0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return cpu * 3600 / IDLE_S


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        lat = sorted(await advert_to_commit(state))
        rate = await glucose_rate(state)
        idle = await idle_cpu(state)
    p50 = lat[len(lat) // 2]
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"advert->commit over {len(lat)} rounds: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"glucose: {rate:.0f} records/s; idle: {idle:.2f} CPU s/h")
    print(
        json.dumps(
            {
                "bench": "ble",
                "advert_to_commit_p50_ms": round(p50, 2),
                "advert_to_commit_p99_ms": round(p99, 2),
                "advert_to_commit_p99_ratio": round(p99 / 250, 3),
                "glucose_records_per_s": round(rate, 1),
                "glucose_records_per_s_ratio": round(rate / 500, 3),
                "idle_cpu_s_per_h": round(idle, 3),
                "idle_cpu_s_per_h_ratio": round(idle / 36, 4),
                "rounds": len(lat),
                "idle_window_s": IDLE_S,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
