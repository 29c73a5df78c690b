"""The writer a crash test kills: adds batches (each with its cursor), acks some leased ones,
and prints each batch number once its add returned. Run as
``python -m tests.gateway.store.crash_writer STATE_DIR FIRST_BATCH``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from device_drivers.reading import Reading
from gateway.store import Store
from tests.gateway.store.factories import DEVICE, current_time

BATCH = 7


def batch(number: int) -> list[Reading]:
    return [current_time(number * BATCH + i) for i in range(BATCH)]


async def main(state_dir: Path, first: int) -> None:
    async with await Store.open(state_dir, min_free_mb=0) as store:
        number = first
        while True:
            await store.add(batch(number), cursor=(DEVICE, number))
            print(number, flush=True)
            if number % 3 == 0:
                leased = await store.lease(5)
                await store.ack([s.id for s in leased[:3]])
            number += 1


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
