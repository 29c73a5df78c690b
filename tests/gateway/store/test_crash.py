"""SIGKILL a writer at random points: every batch whose add returned survives, none is half
written, and the cursor names exactly the last committed batch (LESSONS L2.2, L2.7)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

import pytest

from gateway.store import Store
from tests.gateway.store.crash_writer import BATCH, batch
from tests.gateway.store.factories import DEVICE

REPO = Path(__file__).resolve().parents[3]
LINE_TIMEOUT_S = 60.0  # a writer's first batch waits for its interpreter to start on a busy box


async def _kill_writer_once(state_dir: Path, first: int, rng: random.Random) -> int:
    """Start a writer, let it commit a random number of batches, SIGKILL it a random moment
    later; return the last batch it reported committed (first - 1 if none)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.gateway.store.crash_writer",
        str(state_dir),
        str(first),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    reported = first - 1
    try:
        for _ in range(rng.randint(1, 12)):
            line = await asyncio.wait_for(proc.stdout.readline(), LINE_TIMEOUT_S)
            assert line, "writer died before it was killed"
            reported = int(line)
        await asyncio.sleep(rng.random() * 0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        rest = await proc.stdout.read()
        await proc.wait()
    for line in rest.split():
        reported = int(line)  # acknowledged to the writer before the kill landed
    return reported


async def _check(state_dir: Path, reported: int) -> int:
    """Reopen and verify; return the committed batch number the next writer continues from."""
    async with await Store.open(state_dir, min_free_mb=0) as store:
        cursor = await store.cursor(DEVICE)
        assert cursor is not None
        assert cursor >= reported, "a batch whose add returned is missing"
        depth = (await store.stats()).queue_depth
        for number in (cursor, cursor - 1, 0):
            if number >= 0:
                # re-adding a committed batch adds nothing (stored or delivered = tombstone)
                await store.add(batch(number))
                assert (await store.stats()).queue_depth == depth, f"batch {number} incomplete"
        # the batch after the cursor was never committed: all of it is new, not half of it
        await store.add(batch(cursor + 1))
        assert (await store.stats()).queue_depth == depth + BATCH
        await store.add([], cursor=(DEVICE, cursor + 1))
        # everything still opens (no torn record)
        leased = await store.lease(100_000)
        assert (await store.stats()).quarantined == 0
        await store.release([s.id for s in leased])
        return cursor + 2


async def _rounds(tmp_path: Path, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    state_dir = tmp_path / "state"
    first = 0
    for n in range(rounds):
        reported = await _kill_writer_once(state_dir, first, rng)
        try:
            first = await _check(state_dir, reported)
        except AssertionError as exc:
            raise AssertionError(f"round {n} of seed {seed}: {exc}") from exc


async def test_sigkill_writer_10_rounds(tmp_path: Path) -> None:
    await _rounds(tmp_path, 10, seed=20260301)


@pytest.mark.chaos
@pytest.mark.timeout(1800)
async def test_sigkill_writer_200_rounds(tmp_path: Path) -> None:
    await _rounds(tmp_path, 200, seed=int.from_bytes(os.urandom(4), "big"))
