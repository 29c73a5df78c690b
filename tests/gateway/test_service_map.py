"""The service's mapper: readings received on an untrusted clock wait while it stays so, and go
out dated on the trusted clock once it is (LESSONS L7.2, L7.3)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from device_drivers.reading import Reading
from device_drivers.weight_scale import WeightMeasurement, WeightUnit
from gateway.clock import ClockTrust
from gateway.config import load_config
from gateway.receipt_time import ClockNotTrusted, ReceiveTimeUnknown, boot_id
from gateway.render_pool import RenderPool
from gateway.service import Service
from gateway.store import Store, StoredReading

WRONG = datetime(1970, 1, 1, 0, 5, tzinfo=UTC)


def service(tmp_path: Path, *, synced: list[bool], workers: int = 0) -> Service:
    """A service whose mapper renders in place (`_map`), or with `workers` (`_map_sealed`)."""
    path = tmp_path / "carebox.toml"
    path.write_text(
        'gateway_id = "cbx-map"\n'
        f'state_dir = "{tmp_path / "state"}"\n'
        '[patient]\nsystem = "urn:oid:1.2.250.1.213.1.4.8"\nvalue = "424242"\n'
        '[upstream]\nurl = "mqtts://broker.example.org"\n'
        '[clock]\ntimezone = "Europe/Paris"\n'
    )
    svc = Service(load_config(path), clock=ClockTrust("auto", probe=lambda: synced[0]))
    svc._renderer = RenderPool(workers)
    return svc


def weighed(*, boot: str | None, monotonic_ns: int) -> StoredReading:
    value = bytes(WeightMeasurement(unit=WeightUnit.SI, weight=Decimal("71.5")))
    reading = Reading(
        "C0:11:22:33:44:55", 0x2A9D, value, WRONG, False, None, None, boot, monotonic_ns
    )
    identity, phd = reading.capture_keys()
    return StoredReading("ab" * 16, reading, phd, WRONG, 1, identity)


def effective(payload: bytes) -> list[str]:
    bundle = json.loads(payload)
    return [
        e["resource"]["effectiveDateTime"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    ]


async def test_held_while_untrusted_then_dated_on_the_trusted_clock(tmp_path: Path) -> None:
    synced = [False]
    svc = service(tmp_path, synced=synced)
    ten_s_ago = time.monotonic_ns() - 10_000_000_000
    item = weighed(boot=boot_id(), monotonic_ns=ten_s_ago)
    with pytest.raises(ClockNotTrusted):
        await svc._map([item])
    synced[0] = True
    before = datetime.now(UTC)
    payload = await svc._map([item])
    assert isinstance(payload, bytes)  # the PHD profile: one Bundle
    (stamp,) = effective(payload)
    at = datetime.fromisoformat(stamp)
    assert before - timedelta(seconds=12) <= at <= before - timedelta(seconds=9)
    assert not stamp.startswith("1970")


async def test_from_an_earlier_boot_without_device_time_it_is_held(tmp_path: Path) -> None:
    svc = service(tmp_path, synced=[True])
    with pytest.raises(ReceiveTimeUnknown):
        await svc._map([weighed(boot="f" * 32, monotonic_ns=1)])


async def test_with_a_worker_held_then_dated_the_same_way(tmp_path: Path) -> None:
    """The sealed path (a rendering worker opens the readings): the same refusal while the
    clock is untrusted, the same dating once it is, and a tampered record quarantined."""
    synced = [False]
    svc = service(tmp_path, synced=synced, workers=1)
    store = await Store.open(tmp_path / "state", min_free_mb=0)
    svc.store = store
    try:
        ten_s_ago = time.monotonic_ns() - 10_000_000_000
        (rid,) = await store.add([weighed(boot=boot_id(), monotonic_ns=ten_s_ago).reading])
        sealed = await store.lease_sealed(10, lease_s=0.0)
        with pytest.raises(ClockNotTrusted):
            await svc._map_sealed(sealed)
        assert svc._renderer.worker_pids()  # refused in the worker
        synced[0] = True
        before = datetime.now(UTC)
        payload = await svc._map_sealed(sealed)
        assert isinstance(payload, bytes)
        (stamp,) = effective(payload)
        at = datetime.fromisoformat(stamp)
        assert before - timedelta(seconds=12) <= at <= before - timedelta(seconds=9)
        in_place = await svc._map(await store.lease(10, lease_s=0.0))
        assert isinstance(in_place, bytes)
        assert effective(in_place)[0][:16] == stamp[:16]  # same minute: both dated now

        # a record failing its tag in the worker: quarantined before its message goes
        tampered = [
            replace(s, row=(*s.row[:4], s.row[4][:-1] + bytes([s.row[4][-1] ^ 1]))) for s in sealed
        ]
        await store.lease_sealed(10, lease_s=60.0)  # held by this process, as the uplink holds it
        out = await svc._map_sealed(tampered)
        assert isinstance(out, bytes)
        assert b'"Observation"' not in out
        stats = await store.stats()
        assert (stats.quarantined, stats.queue_depth) == (1, 0)
        assert [e.detail["row"] for e in await store.events() if e.kind == "tampered_record"]
        assert rid not in {r.id for r in await store.lease(10, lease_s=0.0)}
    finally:
        svc._renderer.close()
        await store.close()


async def test_an_unmappable_reading_is_reported_once(tmp_path: Path) -> None:
    """The uplink maps a cut again when it splits it (too large, or holding a reading back):
    a reading that cannot be mapped is one `reading_unmappable` event, not one per mapping."""
    svc = service(tmp_path, synced=[True])
    store = await Store.open(tmp_path / "state", min_free_mb=0)
    try:
        svc.store = store
        now = datetime.now(UTC)
        reading = Reading("C0:11:22:33:44:55", 0x2A35, b"\x1e", now, True)  # does not decode
        identity, phd = reading.capture_keys()
        cut = [StoredReading("cd" * 16, reading, phd, now, 1, identity)]
        for _ in range(3):
            await svc._map(cut)
        await asyncio.sleep(0.2)  # the events are recorded by tasks of their own
        kinds = [e.kind for e in await store.events()]
        assert kinds.count("reading_unmappable") == 1
    finally:
        await store.close()
