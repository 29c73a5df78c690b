"""RenderPool.render_sealed: readings leased sealed, opened and rendered in the worker, give the
very bytes the store's own lease and rendering here give; a record failing its tag comes back
by id; the clock's refusals come through; a changed context reaches the worker; a killed
worker fails over to opening and rendering here."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from device_drivers.blood_pressure import BloodPressureMeasurement, PressureUnit
from device_drivers.reading import Reading
from device_drivers.weight_scale import WeightMeasurement, WeightUnit
from gateway.fhir import FhirContext
from gateway.receipt_time import ClockNotTrusted, ClockNow
from gateway.render_pool import RenderPool, render_here
from gateway.store import Store
from tests.gateway.fhir.conftest import BP_ADDRESS, RECEIVED, make_context
from tests.gateway.test_render_pool import _wait_gone


def _bp(n: int) -> Reading:
    value = BloodPressureMeasurement(
        unit=PressureUnit.MMHG,
        systolic=Decimal(110 + n),
        diastolic=Decimal(70 + n % 9),
        mean_arterial_pressure=Decimal(90),
        pulse_rate=Decimal(60 + n % 7),
        timestamp=datetime(2026, 3, 1, 8, 0) + timedelta(minutes=n),
    )
    return Reading(BP_ADDRESS, 0x2A35, bytes(value), RECEIVED, clock_trusted=True)


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
