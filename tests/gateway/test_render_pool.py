"""RenderPool: readings leased sealed, opened and rendered in the worker, give the very bytes
the store's own lease and rendering here give; readings left out are named the same way; a
record failing its tag comes back by id; the clock's refusals come through; a changed context
reaches the worker; a killed or stuck worker is replaced without losing the call; and no worker
outlives a SIGKILLed gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from device_drivers.blood_pressure import BloodPressureMeasurement, PressureUnit
from device_drivers.glucose import GlucoseType
from device_drivers.reading import Reading
from device_drivers.weight_scale import WeightMeasurement, WeightUnit
from gateway.fhir import DeviceNotIdentified, FhirContext, MappingError, NotAPatientResult
from gateway.receipt_time import ClockNotTrusted, ClockNow
from gateway.render_pool import (
    Payloads,
    RenderPool,
    default_workers,
    render_here,
    render_sealed_here,
)
from gateway.store import Store
from gateway.store.sealed import Opener, SealedReading, as_rows
from tests.gateway.fhir.conftest import BP_ADDRESS, RECEIVED, item, make_context
from tests.gateway.fhir.test_glucose import glucose

ROOT = Path(__file__).resolve().parents[2]
EXIT_WAIT_S = 10.0  # a SIGKILLed parent's worker gets its own SIGKILL at once; slack for CI


def _bp(n: int) -> Reading:
    value = BloodPressureMeasurement(
        unit=PressureUnit.KPA if n % 2 else PressureUnit.MMHG,
        systolic=Decimal(110 + n),
        diastolic=Decimal(70 + n % 9),
        mean_arterial_pressure=Decimal(90),
        pulse_rate=Decimal(60 + n % 7),
    )
    return item(value, received=RECEIVED + timedelta(minutes=n)).reading


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "state", min_free_mb=0)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def ctx() -> FhirContext:
    return make_context()


async def _sealed(store: Store, readings: Sequence[Reading]) -> list[SealedReading]:
    """`readings` committed, then leased back still sealed, in their order (the leases end at
    once: a test may lease them again)."""
    ids = await store.add(readings)
    by_id = {s.id: s for s in await store.lease_sealed(10_000, lease_s=0.0)}
    return [by_id[i] for i in ids]


def _here(
    items: Sequence[SealedReading], ctx: FhirContext, profile: str = "phd"
) -> tuple[Payloads, list[MappingError]]:
    """What opening and rendering in this process gives."""
    rows, keys = as_rows(items)
    payload, skipped, _ = render_sealed_here(
        Opener(), rows, keys, ctx, ClockNow.read(True), profile=profile
    )
    return payload, skipped


async def _render(
    pool: RenderPool, items: Sequence[SealedReading], ctx: FhirContext, profile: str = "phd"
) -> Payloads:
    return (await pool.render_sealed(items, ctx, ClockNow.read(True), profile)).payload


async def _expected(store: Store, ctx: FhirContext) -> bytes:
    """What the in-place path sends: the store's own lease, rendered here."""
    await store.release([r.id for r in await store.lease(1000, lease_s=0.0)])
    payload, _ = render_here(await store.lease(1000, lease_s=0.0), ctx)
    assert isinstance(payload, bytes)
    return payload


async def test_the_worker_sends_what_the_in_place_path_sends(
    pool: RenderPool, store: Store, ctx: FhirContext
) -> None:
    bad = Reading(BP_ADDRESS, 0x2A35, b"\x00\x01", RECEIVED, clock_trusted=True)
    ids = await store.add([*(_bp(n) for n in range(20)), bad])
    sealed = await store.lease_sealed(100, lease_s=0.0)  # expires at once: leased again below
    rendered = await pool.render_sealed(sealed, ctx, ClockNow.read(True))
    assert pool.worker_pids()  # a worker did it
    assert rendered.payload == await _expected(store, ctx)
    assert b'"resourceType":"Observation"' in rendered.payload
    assert [e.item_id for e in rendered.skipped] == [ids[-1]]
    assert [(e.item_id, e.reason, type(e)) for e in rendered.skipped] == [
        (e.item_id, e.reason, type(e)) for e in _here(sealed, ctx)[1]
    ]
    assert rendered.tampered == []
    here = await RenderPool(workers=0).render_sealed(sealed, ctx, ClockNow.read(True))
    assert here.payload == rendered.payload


async def test_a_record_failing_its_tag_comes_back_by_id(
    pool: RenderPool, store: Store, ctx: FhirContext, tmp_path: Path
) -> None:
    ids = await store.add([_bp(n) for n in range(3)])
    conn = sqlite3.connect(tmp_path / "state" / "store.db", isolation_level=None)
    try:
        seq, blob = conn.execute(
            "SELECT seq, payload FROM outbox ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        flipped = bytearray(blob)
        flipped[40] ^= 0x01
        conn.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (bytes(flipped), seq))
    finally:
        conn.close()
    sealed = await store.lease_sealed(10, lease_s=0.0)
    rendered = await pool.render_sealed(sealed, ctx, ClockNow.read(True))
    assert [i for i, _ in rendered.tampered] == [ids[2]]
    assert rendered.skipped == []
    await store.quarantine_leased(rendered.tampered)
    assert (await store.stats()).quarantined == 1
    left = await store.lease(10)
    assert [r.id for r in left] == ids[:2]
    assert rendered.payload == render_here(left, ctx)[0]  # the two that open


async def test_the_clock_refusal_comes_through_the_worker(
    pool: RenderPool, store: Store, ctx: FhirContext
) -> None:
    value = bytes(WeightMeasurement(unit=WeightUnit.SI, weight=Decimal("71.5")))
    wrong = datetime(1970, 1, 1, 0, 5, tzinfo=UTC)
    untrusted = Reading(BP_ADDRESS, 0x2A9D, value, wrong, False, None, None, "f" * 32, 1)
    await store.add([untrusted])
    sealed = await store.lease_sealed(10)
    with pytest.raises(ClockNotTrusted):
        await pool.render_sealed(sealed, ctx, ClockNow.read(False))
    assert pool.worker_pids()  # raised in the worker, which still serves


async def test_a_changed_context_reaches_the_worker(
    pool: RenderPool, store: Store, ctx: FhirContext
) -> None:
    await store.add([_bp(n) for n in range(3)])
    sealed = await store.lease_sealed(10, lease_s=0.0)
    first = await pool.render_sealed(sealed, ctx, ClockNow.read(True))
    again = await pool.render_sealed(sealed, ctx, ClockNow.read(True))  # context not resent
    assert again.payload == first.payload
    other = make_context(patient_value="777777")
    moved = await pool.render_sealed(sealed, other, ClockNow.read(True))
    assert b"777777" in moved.payload
    assert b"777777" not in first.payload
    assert moved.payload == await _expected(store, other)


async def test_a_killed_worker_fails_over_to_opening_here(
    pool: RenderPool, store: Store, ctx: FhirContext
) -> None:
    await store.add([_bp(n) for n in range(5)])
    sealed = await store.lease_sealed(10)
    first = await pool.render_sealed(sealed, ctx, ClockNow.read(True))
    (worker,) = pool.worker_pids()
    os.kill(worker, signal.SIGKILL)
    _wait_gone(worker)
    again = await pool.render_sealed(sealed, ctx, ClockNow.read(True))
    assert again.payload == first.payload
    assert pool.worker_pids() == []


async def test_a_control_solution_comes_back_as_not_a_patient_result(
    pool: RenderPool, store: Store, ctx: FhirContext
) -> None:
    control = item(glucose(type=GlucoseType.CONTROL_SOLUTION)).reading
    items = await _sealed(store, [control, _bp(1)])
    rendered = await pool.render_sealed(items, ctx, ClockNow.read(True))
    assert [(e.item_id, type(e)) for e in rendered.skipped] == [(items[0].id, NotAPatientResult)]


async def test_a_killed_worker_is_replaced_and_the_call_still_answers(
    pool: RenderPool, store: Store, ctx: FhirContext
) -> None:
    items = await _sealed(store, [_bp(n) for n in range(3)])
    first = await _render(pool, items, ctx)
    (worker,) = pool.worker_pids()
    os.kill(worker, signal.SIGKILL)
    _wait_gone(worker)
    again = await _render(pool, items, ctx)  # opened and rendered here: the worker broke
    assert again == first
    assert pool.worker_pids() == []
    third = await _render(pool, items, ctx)  # and a fresh worker serves the next call
    assert third == first
    (fresh,) = pool.worker_pids()
    assert fresh != worker


async def test_a_worker_killed_mid_render_fails_over_to_rendering_here(
    store: Store, ctx: FhirContext
) -> None:
    pool = RenderPool(workers=1, respawn_after_s=60.0)
    try:
        items = await _sealed(store, [_bp(n) for n in range(60)])
        expected, _ = _here(items, ctx)
        await _render(pool, items[:1], ctx)  # the worker is up
        (worker,) = pool.worker_pids()
        calls = [asyncio.ensure_future(_render(pool, items, ctx)) for _ in range(4)]
        await asyncio.sleep(0)  # the requests are out
        os.kill(worker, signal.SIGKILL)
        assert await asyncio.gather(*calls) == [expected] * 4
        # resting after the failure: rendered here, no new process per payload
        assert await _render(pool, items, ctx) == expected
        assert pool.worker_pids() == []
    finally:
        pool.close()


async def test_a_stuck_worker_is_killed_and_the_call_rendered_here(
    store: Store, ctx: FhirContext
) -> None:
    pool = RenderPool(workers=1, timeout_s=0.5, respawn_after_s=0.0)
    try:
        items = await _sealed(store, [_bp(n) for n in range(3)])
        expected, _ = _here(items, ctx)
        await _render(pool, items, ctx)
        (worker,) = pool.worker_pids()
        os.kill(worker, signal.SIGSTOP)  # alive, never answers
        assert await _render(pool, items, ctx) == expected
        _wait_gone(worker)  # killed, not left stopped
        # the next call starts a fresh worker, whose start counts against the timeout: give it
        # a loaded CI machine's time (at 0.5 s it was given up too when the machine was busy)
        pool._timeout_s = EXIT_WAIT_S
        assert await _render(pool, items, ctx) == expected
        (fresh,) = pool.worker_pids()
        assert fresh != worker
    finally:
        pool.close()


async def test_answers_go_to_their_own_calls(
    pool: RenderPool, store: Store, ctx: FhirContext
) -> None:
    every = await _sealed(store, [_bp(n) for n in range(45)])
    batches = [every[k : k + 1 + k % 5] for k in range(0, 40, 3)]
    results = await asyncio.gather(*(_render(pool, b, ctx) for b in batches))
    assert results == [_here(b, ctx)[0] for b in batches]
    assert len(set(pool.worker_pids())) == 1  # one worker answered them all, in order


async def test_an_unexpected_error_in_the_worker_is_raised_to_the_caller(
    pool: RenderPool, store: Store, ctx: FhirContext
) -> None:
    broken = make_context(devices=None)  # a bug's shape: not a MappingError
    items = await _sealed(store, [_bp(1)])
    with pytest.raises(AttributeError):
        _here(items, broken)
    with pytest.raises(AttributeError):
        await _render(pool, items, broken)
    assert await _render(pool, items, ctx) == _here(items, ctx)[0]  # still serving


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + EXIT_WAIT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_no_worker_outlives_a_sigkilled_gateway(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, os, signal, sys
        from pathlib import Path
        from gateway.receipt_time import ClockNow
        from gateway.render_pool import RenderPool
        from gateway.store import Store
        from tests.gateway.fhir.conftest import make_context
        from tests.gateway.test_render_pool import _bp

        async def main():
            store = await Store.open(Path(sys.argv[1]), min_free_mb=0)
            await store.add([_bp(1)])
            pool = RenderPool(workers=1)
            items = await store.lease_sealed(10)
            await pool.render_sealed(items, make_context(), ClockNow.read(True))
            (worker,) = pool.worker_pids()
            print(worker, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "state")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    worker = int(proc.stdout.split()[0])
    deadline = time.monotonic() + EXIT_WAIT_S
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)


async def test_the_ans_mes_profile_renders_the_same_in_the_worker(
    pool: RenderPool, store: Store, ctx: FhirContext
) -> None:
    items = await _sealed(store, [_bp(n) for n in range(4)])
    rendered = await pool.render_sealed(items, ctx, ClockNow.read(True), "ans-mes")
    here, _ = _here(items, ctx, "ans-mes")
    assert isinstance(rendered.payload, list)
    assert rendered.payload == here
    assert len(rendered.payload) == 8  # each cuff reading: pressure and pulse, a Bundle each
    assert rendered.skipped == []


async def test_a_device_without_system_id_comes_back_as_such(
    pool: RenderPool, store: Store
) -> None:
    # MES keys devices on their system id: a device the registry does not know cannot go yet.
    items = await _sealed(store, [_bp(1)])
    rendered = await pool.render_sealed(
        items, make_context(devices={}), ClockNow.read(True), "ans-mes"
    )
    assert [type(e) for e in rendered.skipped] == [DeviceNotIdentified]


def test_a_worker_wherever_there_is_a_second_core() -> None:
    assert [default_workers(n) for n in (1, 2, 3, 4, 8)] == [0, 1, 2, 2, 2]


async def test_no_worker_renders_in_place(store: Store, ctx: FhirContext) -> None:
    pool = RenderPool(workers=0)
    items = await _sealed(store, [_bp(n) for n in range(3)])
    assert await _render(pool, items, ctx) == await _expected(store, ctx)
    assert pool.worker_pids() == []  # no process was started
    pool.close()
