"""bench/ble.py's raw bleak clients work against the simulated backend, with tiny counts.
Nothing here looks at a duration: the bench measures speed, tests check behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ble


async def test_raw_client_receives_each_round_measurement(tmp_path: Path) -> None:
    # raw_advert_to_value also checks the cuff holds nothing once the rounds are over
    assert len(await ble.raw_advert_to_value(tmp_path, rounds=3)) == 3


async def test_raw_client_fetches_every_record_through_racp(tmp_path: Path) -> None:
    # raw_glucose_rate checks the records arrived in the meter's order and the RACP succeeded
    await ble.raw_glucose_rate(tmp_path, records=12)


async def test_raw_idle_runs_the_world_with_a_scanner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ble, "SETTLE_S", 0.0)
    assert isinstance(await ble.raw_idle_cpu(tmp_path, window_s=0.01), float)
