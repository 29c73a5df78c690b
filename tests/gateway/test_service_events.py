"""While the clock is not trusted the events topic says so; once it is, what the uplink held
for it goes at once (DESIGN, Config: "carebox status and the events topic say so"). An event
wakes a connected uplink, so it is published at once, not at the next idle recheck."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from gateway.clock import ClockTrust
from gateway.config import load_config
from gateway.service import CLOCK_NOT_TRUSTED, CLOCK_TRUSTED, Service, _WakingStore
from gateway.store import Store
from gateway.uplink.service import EventKind, UplinkState


class _Uplink:
    def __init__(self, *, connected: bool = True) -> None:
        self.retried = 0
        self.woken = 0
        self.state = UplinkState(connected, None, None, None, None, 0)

    def retry_held(self) -> None:
        self.retried += 1

    def wake(self) -> None:
        self.woken += 1


def _service(
    tmp_path: Path, synced: list[bool], source: Literal["auto", "system"] = "auto"
) -> Service:
    path = tmp_path / "carebox.toml"
    path.write_text(
        'gateway_id = "cbx-clock"\n'
        f'state_dir = "{tmp_path / "state"}"\n'
        '[upstream]\nurl = "mqtts://broker.example.org"\n'
        f'[clock]\nsource = "{source}"\n'
    )
    clock = ClockTrust(source, probe=lambda: synced[0], poll_interval_s=0.01)
    return Service(load_config(path), clock=clock)


async def _kinds(store: Store) -> list[str]:
    return [e.kind for e in await store.events()]


async def test_an_untrusted_clock_is_an_event_and_its_trust_another(tmp_path: Path) -> None:
    synced = [False]
    svc = _service(tmp_path, synced)
    svc.store = await Store.open(tmp_path / "state", min_free_mb=0)
    uplink = _Uplink()
    svc.uplink = uplink
    try:
        loop = asyncio.create_task(svc._clock_loop())
        async with asyncio.timeout(5):
            while CLOCK_NOT_TRUSTED not in await _kinds(svc.store):  # noqa: ASYNC110 - the store
                await asyncio.sleep(0.01)
        assert uplink.retried == 0
        assert not loop.done()  # waiting for the clock
        synced[0] = True
        async with asyncio.timeout(5):
            await loop
        assert await _kinds(svc.store) == [CLOCK_NOT_TRUSTED, CLOCK_TRUSTED]
        assert uplink.retried == 1  # what waited for the clock goes now
        (first, _) = await svc.store.events()
        assert dict(first.detail) == {"source": "auto"}
    finally:
        await svc.store.close()


async def test_a_trusted_clock_says_nothing(tmp_path: Path) -> None:
    svc = _service(tmp_path, [False], source="system")
    svc.store = await Store.open(tmp_path / "state", min_free_mb=0)
    try:
        await svc._clock_loop()
        assert await _kinds(svc.store) == []
    finally:
        await svc.store.close()


def test_the_clock_event_is_the_uplinks_own_kind() -> None:
    # one kind on the events topic for "the clock is not trusted", whoever notices it
    assert CLOCK_NOT_TRUSTED == EventKind.CLOCK


async def test_an_event_wakes_a_connected_uplink(tmp_path: Path) -> None:
    svc = _service(tmp_path, [True])
    store = await Store.open(tmp_path / "state", min_free_mb=0)
    try:
        seen = _WakingStore(store, svc)
        svc.uplink = online = _Uplink()
        await seen.record_event("stranger_device", address="C0:E2:00:00:00:99")
        assert online.woken == 1
        svc.uplink = offline = _Uplink(connected=False)  # its own probe notices the broker
        await seen.record_event("stranger_device", address="C0:E2:00:00:00:98")
        assert offline.woken == 0
        assert await _kinds(store) == ["stranger_device", "stranger_device"]
    finally:
        await store.close()
