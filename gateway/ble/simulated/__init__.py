"""The simulated bleak backend: health devices without a radio, on the gateway's own code path.

Layout
    world.py    `World`: peripherals, advertising bursts, links, bond store, fault injection;
                the fixture API is in its docstring
    backend.py  `SimScanner` / `SimClient` (bleak `BaseBleakScanner` / `BaseBleakClient`),
                made per world by `backend_classes(world)` / `world.backend()`
    faults.py   BlueZ-shaped exceptions (connection abort, InProgress, auth, timeouts)
    build.py    `build_world(simulators, state_dir=...)` from `[[simulator]]` tables

Invariants: no globals (two worlds never meet); idle peripherals wait on events; the bond
store is a 0600 file in `state_dir` and survives restarts; the simulators in
`device_drivers.simulators` decide every value, the world only carries them.
"""

from gateway.ble.simulated.backend import SimClient, SimScanner, backend_classes
from gateway.ble.simulated.build import build_world
from gateway.ble.simulated.world import BondStore, Link, Peripheral, World

__all__ = [
    "BondStore",
    "Link",
    "Peripheral",
    "SimClient",
    "SimScanner",
    "World",
    "backend_classes",
    "build_world",
]
