"""`[[simulator]]` tables (DESIGN.md "Simulated devices") -> a populated `World`.

- blood_pressure / weight_scale: the measurements are taken one by one, `interval_s` apart
  (the first at start), each followed by the advertising burst of a device that just measured;
- glucose: the measurements are the records the meter holds from the start, served through
  its RACP by sequence number; a reading table may carry its Measurement Context as a
  ``context`` sub-table (2A34 field names);
- `readings` are tables in the contract's decoded-JSON field names, encoded by the codecs;
  `raw` are hex strings sent as they are;
- `paired = false` makes a stranger: advertising, never bonded, never in the registry;
- faults: `disconnect_after` (values per link), `corrupt_every` (n-th value truncated),
  `refuse_pairing`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from device_drivers.errors import DeviceDriverError
from device_drivers.simulators.base import SimulatedDevice
from gateway.ble.errors import BleError
from gateway.ble.ports import SimulatorSpec
from gateway.ble.simulated.world import World

__all__ = ["build_world", "simulator_from_spec"]


def _local_now() -> datetime:
    # A device clock is naive local time; the simulated devices share the host's.
    return datetime.now().astimezone().replace(tzinfo=None)


def build_world(
    simulators: Sequence[SimulatorSpec],
    *,
    state_dir: Path | None,
    clock: Callable[[], datetime] = _local_now,
    **world_options: Any,
) -> World:
    """A world holding one peripheral per table; `world_options` go to `World`."""
    world = World(state_dir=state_dir, **world_options)
    for spec in simulators:
        device, pending = simulator_from_spec(spec, clock=clock)
        world.add(
            device,
            bonded=spec.paired,
            refuse_pairing=spec.refuse_pairing,
            disconnect_after=spec.disconnect_after,
        )
        if pending:
            world.add_schedule(_one_by_one(world, device, pending, spec.interval_s))
    return world


def simulator_from_spec(
    spec: SimulatorSpec, *, clock: Callable[[], datetime] = _local_now
) -> tuple[SimulatedDevice, list[object]]:
    """The simulator for one table, and the measurements still to be taken over time (empty
    for a glucose meter, whose records are all stored at once)."""
    corrupt = spec.corrupt_every or 0
    values: list[object] = [bytes.fromhex(h) for h in spec.raw]
    if spec.kind == "blood_pressure":
        from device_drivers.blood_pressure import BloodPressureMeasurement
        from device_drivers.codec import from_json
        from device_drivers.simulators.blood_pressure_monitor import BloodPressureMonitor

        values += _built(spec, lambda r: from_json(BloodPressureMeasurement, dict(r)))
        bpm = BloodPressureMonitor(
            address=spec.address, name=spec.name, clock=clock, corrupt_every=corrupt
        )
        return bpm, values
    if spec.kind == "weight_scale":
        from device_drivers.body_composition import BodyCompositionMeasurement
        from device_drivers.codec import from_json
        from device_drivers.simulators.weight_scale import WeightScale
        from device_drivers.weight_scale import WeightMeasurement

        def measurement(r: Mapping[str, object]) -> object:
            codec: Any = BodyCompositionMeasurement if "body_fat_pct" in r else WeightMeasurement
            return from_json(codec, dict(r))

        values += _built(spec, measurement)
        scale = WeightScale(
            address=spec.address, name=spec.name, clock=clock, corrupt_every=corrupt
        )
        return scale, values
    if spec.kind == "glucose":
        from device_drivers.simulators.glucose_meter import GlucoseMeter

        meter = GlucoseMeter(
            address=spec.address, name=spec.name, clock=clock, corrupt_every=corrupt
        )
        for raw in values:
            assert isinstance(raw, bytes)
            meter.add_raw(raw)
        _built(spec, lambda r: meter_record(meter, r))
        return meter, []
    raise BleError(
        f'[[simulator]] {spec.address}: kind "{spec.kind}" is not one of '
        '"blood_pressure", "glucose", "weight_scale"'
    )


def _built(spec: SimulatorSpec, build: Callable[[Mapping[str, object]], object]) -> list[object]:
    """`build` of each of the table's readings; a reading the codec refuses is a config error
    that says which table and which reading."""
    out = []
    for position, reading in enumerate(spec.readings, start=1):
        try:
            out.append(build(reading))
        except (DeviceDriverError, ValueError, TypeError, KeyError) as exc:
            raise BleError(
                f"[[simulator]] {spec.address} ({spec.kind}) reading {position}: {exc}"
            ) from None
    return out


def meter_record(meter: Any, table: Mapping[str, object]) -> None:
    from device_drivers.codec import from_json
    from device_drivers.glucose import GlucoseMeasurement, GlucoseMeasurementContext

    fields = {k: v for k, v in table.items() if k != "context"}
    context = table.get("context")
    fields.setdefault("sequence_number", 0)
    measurement = from_json(GlucoseMeasurement, fields)
    ctx = None
    if isinstance(context, Mapping):
        ctx_fields = dict(context)
        ctx_fields.setdefault("sequence_number", 0)
        ctx = from_json(GlucoseMeasurementContext, ctx_fields)
    meter.add_record(measurement, ctx)


def _one_by_one(
    world: World, device: SimulatedDevice, pending: list[object], interval_s: float
) -> Callable[[], Any]:
    async def take() -> None:
        for i, value in enumerate(pending):
            if i:
                await asyncio.sleep(interval_s)
            device.add(value)  # type: ignore[attr-defined]
            world.wake(device.address)

    return take
