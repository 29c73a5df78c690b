"""Fixtures: a simulated world, a store, and devices in one line each.

async def test_x(world, store, run_central, add_cuff): ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from device_drivers.simulators.blood_pressure_monitor import BloodPressureMonitor
from device_drivers.simulators.glucose_meter import GlucoseMeter
from device_drivers.simulators.weight_scale import WeightScale
from gateway.ble.central import Central
from gateway.ble.session import SessionTimings
from gateway.ble.simulated import World
from tests.gateway.ble.fakes import RecordingStore, device_record, recording_store

FAST = SessionTimings(linger_s=0.05, record_gap_s=1.0, racp_batch=100)


class _Config:
    backend = "simulated"
    adapter = "hci0"


@pytest.fixture
def world(tmp_path: Path) -> World:
    """A world with short advertising intervals and bursts, so tests stay fast."""
    return World(
        state_dir=tmp_path / "state",
        advert_interval_s=0.005,
        burst_s=5.0,
        connect_timeout_s=0.02,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RecordingStore]:
    """The real encrypted store, recording the central's calls for the assertions."""
    async with recording_store(tmp_path) as s:
        yield s


async def enroll(store: Any, address: str, kind: str, name: str = "dev") -> None:
    await store.upsert_device(device_record(address, kind, name))


@pytest.fixture
async def monitor(world: World, store: Any) -> BloodPressureMonitor:
    """A paired blood-pressure monitor, in the registry, holding nothing yet."""
    bpm = BloodPressureMonitor(address="C0:B9:00:00:00:01", name="cuff", clock=local_clock)
    world.add(bpm)
    await enroll(store, bpm.address, "blood_pressure", bpm.name)
    return bpm


@pytest.fixture
async def scale(world: World, store: Any) -> WeightScale:
    """A paired weight scale, in the registry, holding nothing yet."""
    ws = WeightScale(address="C0:5C:00:00:00:01", name="scale", clock=local_clock)
    world.add(ws)
    await enroll(store, ws.address, "weight_scale", ws.name)
    return ws


@pytest.fixture
async def meter(world: World, store: Any) -> GlucoseMeter:
    """A paired glucose meter, in the registry, holding no records yet."""
    gm = GlucoseMeter(address="C0:61:00:00:00:01", name="meter", clock=local_clock)
    world.add(gm)
    await enroll(store, gm.address, "glucose", gm.name)
    return gm


@pytest.fixture
def run_central(
    world: World, store: Any, tmp_path: Path
) -> Callable[..., contextlib.AbstractAsyncContextManager[Central]]:
    @contextlib.asynccontextmanager
    async def running(
        *, clock_trusted: bool = True, timings: SessionTimings = FAST, **kw: Any
    ) -> AsyncIterator[Central]:
        central = Central(
            store,
            _Config(),
            clock_trusted=lambda: clock_trusted,
            state_dir=tmp_path / "state",
            world=world,
            timings=timings,
            **kw,
        )
        task = asyncio.create_task(central.run(), name="carebox.ble.test-central")
        try:
            yield central
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return running


async def until(predicate: Callable[[], bool], *, within: float = 10.0) -> None:
    """Wait for a condition the simulated world will make true (bounded; a test that never
    gets there fails instead of hanging)."""

    def holds() -> bool:
        try:
            return predicate()
        except KeyError:  # the central has not registered the device yet
            return False

    async with asyncio.timeout(within):
        while not holds():  # noqa: ASYNC110 - watching a simulated world from outside it
            await asyncio.sleep(0.005)


def local_clock() -> datetime:
    return datetime(2024, 1, 2, 3, 4, 5)
