"""One `world` fixture per backend under test; every test of this package runs on each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.ble_conformance.bumble_world import BumbleWorld
from tests.ble_conformance.simulated_world import SimulatedWorld
from tests.ble_conformance.world import ConformanceWorld


@pytest.fixture(params=["bumble", "simulated"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[ConformanceWorld]:
    if request.param == "bumble":
        bumble_world = BumbleWorld()
        await bumble_world.start()
        try:
            yield bumble_world
        finally:
            await bumble_world.close()
        errors = [e for p in bumble_world.peripherals.values() for e in p.errors]
        assert not errors, f"a bumble peripheral failed: {errors!r}"
    else:
        simulated_world = SimulatedWorld()
        try:
            yield simulated_world
        finally:
            await simulated_world.close()
