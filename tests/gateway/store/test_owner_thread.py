"""The store's owner thread: jobs in order on one thread of its own, errors to the awaiter,
cancellation honoured, nothing raised into a loop that moved on or closed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from gateway.store.owner_thread import OwnerThread


class _Stop(BaseException):
    """Not an Exception: it must reach the awaiter all the same."""


@pytest.fixture
def owner() -> Iterator[OwnerThread]:
    o = OwnerThread("carebox-store-test")
    yield o
    o.close()
    o.join(5)


async def test_jobs_run_in_order_on_their_own_thread(owner: OwnerThread) -> None:
    seen: list[tuple[int, str]] = []

    def job(n: int) -> int:
        seen.append((n, threading.current_thread().name))
        return n * n

    results = await asyncio.gather(*(owner.run(lambda n=n: job(n)) for n in range(20)))
    assert results == [n * n for n in range(20)]
    assert seen == [(n, "carebox-store-test") for n in range(20)]


async def test_errors_reach_the_awaiter(owner: OwnerThread) -> None:
    def fail() -> None:
        raise ValueError("disk says no")

    def stop() -> None:
        raise _Stop

    with pytest.raises(ValueError, match="disk says no"):
        await owner.run(fail)
    with pytest.raises(_Stop):
        await owner.run(stop)
    assert await owner.run(lambda: "still serving") == "still serving"


async def test_cancelled_jobs_never_start_and_late_results_are_dropped(
    owner: OwnerThread,
) -> None:
    errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    started, gate = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocked() -> str:
        started.set()
        gate.wait(5)
        ran.append("blocked")
        return "late"

    first = owner.run(blocked)
    second = owner.run(lambda: ran.append("second"))
    assert await asyncio.to_thread(started.wait, 5)
    first.cancel()  # already running: it finishes, its result has nowhere to go
    second.cancel()  # not started: skipped
    gate.set()
    assert await owner.run(lambda: "after") == "after"
    await asyncio.sleep(0)  # let any late callback run
    assert ran == ["blocked"]
    assert errors == []


async def test_close_finishes_queued_jobs_then_refuses(owner: OwnerThread) -> None:
    queued = owner.run(lambda: "queued before close")
    owner.close()
    assert await queued == "queued before close"
    with pytest.raises(RuntimeError, match="closed"):
        owner.run(lambda: None)
    owner.join(5)
    assert not owner._thread.is_alive()


def test_a_job_outliving_its_loop_raises_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    hooked: list[object] = []
    monkeypatch.setattr(threading, "excepthook", hooked.append)
    owner = OwnerThread("carebox-store-test")
    gate = threading.Event()

    async def submit_and_leave() -> None:
        owner.run(lambda: gate.wait(5))

    asyncio.run(submit_and_leave())  # the loop closes with the job still running
    gate.set()
    owner.close()
    owner.join(5)
    assert not owner._thread.is_alive()
    assert hooked == []
