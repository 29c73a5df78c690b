"""The demo's home: a config file as a technician would write it (with `[[simulator]]` tables),
and the simulated world built from it, counting what each device produced."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from gateway.ble.simulated.build import simulator_from_spec
from gateway.ble.simulated.world import World
from gateway.config import Config
from gateway.uplink.devpki import DevPki

CUFF: Final = "C0:DE:00:00:01:01"
METER: Final = "C0:DE:00:00:02:02"
SCALE: Final = "C0:DE:00:00:03:03"
STRANGER: Final = "C0:DE:00:00:09:09"
CUFF_READINGS: Final = 8
METER_RECORDS: Final = 60
SCALE_READINGS: Final = 6
SEED: Final = 20261128  # the same demo every run


def _stamp(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat()


def write_config(root: Path, *, broker_url: str, pki: DevPki, gateway_id: str) -> Path:
    """carebox.toml for the demo; readings use the decoded-JSON field names of the contract."""
    rng = random.Random(SEED)  # noqa: S311 - plausible values, not secrets
    now = datetime.now().astimezone().replace(tzinfo=None)  # devices keep naive local time
    lines = [
        f'gateway_id = "{gateway_id}"',
        f'state_dir = "{root / "state"}"',
        "",
        "[patient]",
        'system = "urn:oid:1.2.250.1.213.1.4.8"',
        'value = "1800599123456"',
        "",
        "[ble]",
        'backend = "simulated"',
        "",
        "[upstream]",
        f'url = "{broker_url}"',
        f'ca = "{pki.ca.cert_path}"',
        f'cert = "{pki.client.cert_path}"',
        f'key = "{pki.client.key_path}"',
        "",
        "[clock]",
        'source = "system"  # containers and CI never report NTP sync (DESIGN.md)',
        "",
    ]

    def device(
        kind: str, address: str, name: str, *, paired: bool = True, interval_s: float | None = None
    ) -> None:
        lines.extend(
            ["[[simulator]]", f'kind = "{kind}"', f'address = "{address}"', f'name = "{name}"']
        )
        if not paired:
            lines.append("paired = false")
        if interval_s is not None:
            lines.append(f"interval_s = {interval_s}")

    device("blood_pressure", CUFF, "Cuff (living room)", interval_s=2.0)
    for i in range(CUFF_READINGS):
        sys_, dia = rng.randint(112, 148), rng.randint(68, 94)
        lines.append(
            f'[[simulator.readings]]\nunit = "mmHg"\nsystolic = {sys_}\ndiastolic = {dia}\n'
            f"mean_arterial_pressure = {round((sys_ + 2 * dia) / 3)}\n"
            f"timestamp = {_stamp(now - timedelta(minutes=CUFF_READINGS - i))}\n"
            f"pulse_rate = {rng.randint(58, 92)}\nuser_id = 1"
        )
    device("glucose", METER, "Glucose meter")
    for i in range(METER_RECORDS):
        mg_dl = rng.randint(72, 190)
        lines.append(
            f"[[simulator.readings]]\nsequence_number = {i + 1}\n"
            f"base_time = {_stamp(now - timedelta(hours=METER_RECORDS - i))}\n"
            f'time_offset = 0\nconcentration = "{mg_dl / 100000:.5f}"\n'
            'concentration_unit = "kg/L"\ntype = 1\nsample_location = 1'
        )
    device("weight_scale", SCALE, "Scale (bathroom)", interval_s=3.0)
    for i in range(SCALE_READINGS):
        kg = 80.0 - i * 0.35 + rng.randint(0, 20) * 0.005
        lines.append(
            f'[[simulator.readings]]\nunit = "SI"\nweight = "{kg:.3f}"\n'
            f"timestamp = {_stamp(now - timedelta(days=SCALE_READINGS - i))}\nuser_id = 1"
        )
    device("blood_pressure", STRANGER, "Neighbour's cuff", paired=False, interval_s=4.0)
    lines.append(
        f'[[simulator.readings]]\nunit = "mmHg"\nsystolic = 131\ndiastolic = 85\n'
        f"mean_arterial_pressure = 100\ntimestamp = {_stamp(now)}"
    )
    path = root / "carebox.toml"
    path.write_text("\n".join(line for line in lines if line) + "\n")
    return path


@dataclass
class Producer:
    address: str
    name: str
    kind: str
    paired: bool
    total: int
    taken: int = 0


@dataclass
class Scenario:
    world: World
    producers: dict[str, Producer] = field(default_factory=dict)
    stranger_address: str = STRANGER

    @classmethod
    def build(cls, config: Config) -> Scenario:
        world = World(state_dir=config.state_dir)
        scenario = cls(world)
        for spec in config.simulators:
            sim, pending = simulator_from_spec(spec)
            world.add(
                sim,
                bonded=spec.paired,
                refuse_pairing=spec.refuse_pairing,
                disconnect_after=spec.disconnect_after,
            )
            stored = len(getattr(sim, "records", ()))
            producer = Producer(
                spec.address,
                spec.name,
                spec.kind,
                spec.paired,
                total=stored + len(pending),
                taken=stored,
            )
            scenario.producers[spec.address] = producer
            if pending:
                world.add_schedule(scenario._schedule(sim, pending, spec.interval_s, producer))
        return scenario

    def _schedule(
        self, sim: Any, pending: list[object], interval_s: float, producer: Producer
    ) -> Any:
        world = self.world

        async def take() -> None:
            for i, value in enumerate(pending):
                if i:
                    await asyncio.sleep(interval_s)
                sim.add(value)
                producer.taken += 1
                world.wake(sim.address)

        return take

    def produced(self) -> int:
        """Readings the patient's (paired) devices have taken so far."""
        return sum(p.taken for p in self.producers.values() if p.paired)

    def finished(self) -> bool:
        return all(p.taken == p.total for p in self.producers.values())

    def stranger_connected(self) -> bool:
        return self.world.peripheral(self.stranger_address).connects > 0
