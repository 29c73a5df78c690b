"""`[[simulator]]` tables -> a world the Central runs, including a stranger."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.ble.backend import load_backend
from gateway.ble.errors import BackendLoadError, BleError
from gateway.ble.simulated import build_world
from gateway.config import SimulatorConfig
from tests.gateway.ble.conftest import FAST, enroll, until


async def test_tables_become_devices_and_readings(tmp_path: Path, store: Any) -> None:
    from gateway.ble.central import Central

    sims = (
        SimulatorConfig(
            kind="blood_pressure",
            address="C0:00:00:00:00:0A",
            name="cuff",
            readings=(
                {
                    "unit": "mmHg",
                    "systolic": 121,
                    "diastolic": 79,
                    "mean_arterial_pressure": 93,
                    "timestamp": "2024-03-01T08:00:00",
                },
            ),
            raw=("02780050006000e8070102030405",),
            interval_s=0.01,
        ),
        SimulatorConfig(
            kind="glucose",
            address="C0:00:00:00:00:0B",
            name="meter",
            readings=(
                {
                    "sequence_number": 0,
                    "base_time": "2024-03-01T07:00:00",
                    "concentration": "0.00091",
                    "concentration_unit": "kg/L",
                    "type": 1,
                    "sample_location": 1,
                },
            ),
        ),
        SimulatorConfig(
            kind="weight_scale",
            address="EE:00:00:00:00:0C",
            name="scale",
            paired=False,
            raw=("00c35e",),
        ),
    )
    world = build_world(sims, state_dir=tmp_path, advert_interval_s=0.005)

    class Cfg:
        backend = "simulated"
        adapter = "hci0"

    central = Central(
        store,
        Cfg(),
        clock_trusted=lambda: True,
        state_dir=tmp_path,
        simulators=sims,
        world=world,
        timings=FAST,
    )
    for sim in sims:  # the Central enrolls paired simulators itself with the real store
        if sim.paired:
            await enroll(store, sim.address, sim.kind, sim.name)
    task = asyncio.create_task(central.run())
    try:
        await until(lambda: len(store.readings) == 3 or task.done(), within=10)
        if task.done():
            task.result()
        await until(lambda: bool(store.events_of("stranger_device")))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert {r.device for r in store.readings} == {"C0:00:00:00:00:0A", "C0:00:00:00:00:0B"}
    assert world.peripheral("EE:00:00:00:00:0C").connect_attempts == 0


def test_backend_specs() -> None:
    assert load_backend("bluez").client is None
    with pytest.raises(BackendLoadError, match="needs a simulated world"):
        load_backend("simulated")
    with pytest.raises(BackendLoadError, match="expected"):
        load_backend("nonsense")
    with pytest.raises(BackendLoadError, match="cannot import"):
        load_backend("no_such_module_xyz:Client")
    with pytest.raises(BackendLoadError, match="not a bleak"):
        load_backend("pathlib:Path")
    b = load_backend("gateway.ble.simulated.backend:SimClient")
    assert b.client is not None
    assert b.client.__name__ == "SimClient"


@pytest.mark.parametrize(
    ("kind", "reading", "words"),
    [
        (
            "glucose",
            {
                "sequence_number": 1,
                "base_time": "2024-03-01T07:00:00",
                "concentration": "0.00091",
                "concentration_unit": "kg/L",
                "type": 1,
                "sample_location": 1,
                "context": {"tester": 1},  # without health: the two go together
            },
            "tester, health",
        ),
        ("blood_pressure", {"unit": "mmHg", "systolic": 121}, "diastolic"),
    ],
)
def test_a_reading_the_codec_refuses_names_its_table_and_position(
    tmp_path: Path, kind: str, reading: dict[str, object], words: str
) -> None:
    good = {"unit": "mmHg", "systolic": 120, "diastolic": 80, "mean_arterial_pressure": 93}
    readings = (reading,) if kind == "glucose" else (good, reading)
    sim = SimulatorConfig(kind=kind, address="C0:00:00:00:00:0C", name="bad", readings=readings)
    with pytest.raises(BleError) as caught:
        build_world([sim], state_dir=tmp_path / "world")
    message = str(caught.value)
    position = 1 if kind == "glucose" else 2
    assert message.startswith(f"[[simulator]] C0:00:00:00:00:0C ({kind}) reading {position}: ")
    assert words in message
    assert "\n" not in message
