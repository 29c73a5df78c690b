from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from blockbuster import blockbuster_ctx

from gateway.store import Store


class FakeClock:
    """Monotonic time the test moves by hand (leases expire without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def store(state_dir: Path, clock: FakeClock) -> AsyncIterator[Store]:
    """An open store; the store's own code runs under blockbuster, so any blocking call it
    made on the event loop (instead of its owner thread) fails the test."""
    with blockbuster_ctx("gateway.store"):
        s = await Store.open(state_dir, min_free_mb=0, clock=clock)
        try:
            yield s
        finally:
            await s.close()
