"""`carebox demo`: the whole pipeline on this machine, with nothing but the README's command.

A temporary state directory, a throwaway CA and certificates, a local mosquitto with mutual
TLS, a simulated blood-pressure monitor, glucose meter (with stored records) and scale (and a
stranger that must never be connected) through the simulated bleak backend, the real service
(`gateway.service.Service`: store, BLE central, FHIR, uplink), a scripted broker outage and
its recovery, and a live view. The last line is counted at the broker by an independent
subscriber: ``demo: produced N, delivered N, lost 0, duplicates 0``; exit 0 only if nothing
was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gateway.config import load_config
from gateway.demo.observer import Observer
from gateway.demo.scenario import Scenario, write_config
from gateway.demo.view import View
from gateway.service import Service
from gateway.uplink.broker import LocalBroker
from gateway.uplink.devpki import make_dev_pki

DEFAULT_DURATION_S: Final = 90.0  # the scenario normally completes in well under a minute
OUTAGE_AT_S: Final = 6.0  # the broker dies while readings are flowing...
OUTAGE_S: Final = 10.0  # ...and stays away long enough for readings to pile up in the store
TICK_S: Final = 0.25  # view refresh and completion check
SETTLE_S: Final = 2.0  # after the counts match, wait for late duplicates before judging
GATEWAY_ID: Final = "cbx-demo"


@dataclass
class Outage:
    broker: LocalBroker
    began: float | None = None
    ended: float | None = None
    log: list[str] = field(default_factory=list)

    def step(self, elapsed: float) -> None:
        if self.began is None and elapsed >= OUTAGE_AT_S:
            self.broker.stop()
            self.began = elapsed
            self.log.append(f"{elapsed:5.1f}s broker stopped (outage begins)")
        elif self.began is not None and self.ended is None and elapsed >= self.began + OUTAGE_S:
            self.broker.start()
            self.ended = elapsed
            self.log.append(f"{elapsed:5.1f}s broker back (outage over)")

    @property
    def over(self) -> bool:
        return self.ended is not None

    @property
    def state(self) -> str:
        if self.began is None:
            return "up"
        return "up (recovered)" if self.over else "DOWN (outage)"


def run_demo(duration: float | None = None) -> int:
    try:
        return asyncio.run(_demo(DEFAULT_DURATION_S if duration is None else duration))
    except KeyboardInterrupt:
        return 130


async def _demo(duration: float) -> int:
    with tempfile.TemporaryDirectory(prefix="carebox-demo-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o700)
        pki = await asyncio.to_thread(make_dev_pki, root / "pki", gateway_id=GATEWAY_ID)
        broker = LocalBroker(pki, root / "broker", persistence=True)
        await asyncio.to_thread(broker.start)
        observer: Observer | None = None
        try:
            config_path = write_config(root, broker_url=broker.url, pki=pki, gateway_id=GATEWAY_ID)
            config = load_config(config_path)
            scenario = Scenario.build(config)
            observer = Observer(broker, pki, f"{config.upstream.topic_prefix}/{GATEWAY_ID}/#")
            await asyncio.to_thread(observer.start)
            service = Service(config, world=scenario.world)
            outage = Outage(broker)
            view = View(scenario, service, observer, outage, interactive=sys.stdout.isatty())
            verdict = await _drive(
                service,
                scenario=scenario,
                observer=observer,
                outage=outage,
                view=view,
                duration=duration,
            )
        finally:
            if observer is not None:
                observer.stop()
            broker.stop()
    return verdict


async def _drive(
    service: Service,
    *,
    scenario: Scenario,
    observer: Observer,
    outage: Outage,
    view: View,
    duration: float,
) -> int:
    task = asyncio.create_task(service.run(), name="carebox.demo.service")
    start = time.monotonic()
    matched_at: float | None = None
    with view:
        while True:
            await asyncio.sleep(TICK_S)
            elapsed = time.monotonic() - start
            await asyncio.to_thread(outage.step, elapsed)
            await view.refresh(elapsed)
            if task.done():
                break
            complete = (
                outage.over and scenario.finished() and observer.delivered() >= scenario.produced()
            )
            if complete:
                matched_at = matched_at or elapsed
                if elapsed - matched_at >= SETTLE_S:
                    break
            else:
                matched_at = None
            if elapsed >= duration:
                break
    service.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await task  # a failure of the service itself surfaces here, as a one-line error
    produced = scenario.produced()
    delivered_ids = observer.delivered()
    duplicates = max(0, delivered_ids - produced)
    delivered = delivered_ids - duplicates
    lost = produced - delivered
    for line in outage.log:
        print(f"demo: {line}")
    stranger = "WAS CONNECTED" if scenario.stranger_connected() else "was never connected"
    print(f"demo: stranger {scenario.stranger_address} advertised and {stranger}")
    print(
        f"demo: {observer.resent()} record(s) re-sent with their same identifier "
        "(a lost PUBACK; the backend's ifNoneExist drops them)"
    )
    print(f"demo: produced {produced}, delivered {delivered}, lost {lost}, duplicates {duplicates}")
    ok = lost == 0 and duplicates == 0 and not scenario.stranger_connected()
    return 0 if ok else 1
