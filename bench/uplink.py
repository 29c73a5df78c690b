"""Bench: drain 100,000 waiting readings to a local mosquitto over mutual TLS, against raw
paho-mqtt on the same broker in the same run.

    .venv/bin/python bench/uplink.py [--workers N]

Figures (last line, one JSON object):
- drain_per_s: readings leased, mapped, published, PUBACKed and acked per second;
- raw_per_message_per_s: raw paho (its own network thread), one QoS 1 message per reading of
  the gateway's mean bytes per reading, max inflight 20;
- raw_same_bundles_per_s: raw paho publishing the very payloads the gateway sent (readings/s);
- commit_to_puback_p50_ms / _p99_ms: a reading committed while the uplink is online and idle
  -> its PUBACK;
- drain_cpu_us_per_reading: the gateway's CPU during the drain (its process, all threads,
  and its rendering workers if any), per reading; render_cpu_us_per_reading: the part of it
  rendering the same Bundles alone takes (with workers, opening the sealed readings too: the
  worker does both);
  broker_cpu_us_per_reading: mosquitto's CPU during the drain; machine_busy_pct: the share of
  all the machine's cores busy during the drain (/proc/stat), and cores;
- raw_same_bundles_cpu_us_per_reading: raw paho's process CPU (all threads) replaying the
  Bundles, and broker_cpu_same_bundles_us_per_reading: mosquitto's meanwhile;
- cpu_ceiling_per_s: cores / (drain CPU + broker CPU per reading), the drain rate no
  scheduling could beat on this machine with this much work per reading.

What drains is the gateway's own path: readings committed in the real encrypted store
(`gateway.store`), leased, rendered to FHIR transaction Bundles by `gateway.fhir`, published,
PUBACKed and acked in the store. Wired as the service wires it: with a rendering worker
(`gateway.render_pool`) the leases stay sealed and the worker opens and renders them; without
one, the store's thread opens them and the event loop renders.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device_drivers.reading import Reading  # noqa: E402
from gateway import __version__  # noqa: E402
from gateway.fhir import FhirContext  # noqa: E402
from gateway.receipt_time import ClockNow  # noqa: E402
from gateway.render_pool import RenderPool, render_here, render_sealed_here  # noqa: E402
from gateway.store import Store, StoredReading  # noqa: E402
from gateway.store.sealed import Opener, SealedReading, as_rows  # noqa: E402
from gateway.uplink.broker import LocalBroker  # noqa: E402
from gateway.uplink.config import UplinkSettings  # noqa: E402
from gateway.uplink.devpki import make_dev_pki  # noqa: E402
from gateway.uplink.service import Uplink  # noqa: E402

N_DRAIN = 100_000
N_RAW_PER_MESSAGE = 20_000  # ~2-3 s at the per-message rate: enough for a stable rate
N_LATENCY = 300
RAW_INFLIGHT = 20
ADD_BATCH = 1_000
CUFF = "C0:11:22:33:44:55"
RECEIVED = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TIMEOUT_S = 600.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process `pid` (/proc; 0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def raw_publish(
    broker: LocalBroker, pki_dir: Path, payloads: list[bytes], ca: Path
) -> tuple[float, float, float]:
    """(seconds, this process's CPU seconds, the broker's CPU seconds) for raw paho to
    publish `payloads` at QoS 1 and receive every PUBACK."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(pki_dir / "raw.pem"), str(pki_dir / "raw.key"))
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="raw", protocol=paho.MQTTv5)
    client.tls_set_context(ctx)
    client.max_inflight_messages_set(RAW_INFLIGHT)
    client.max_queued_messages_set(0)
    done = threading.Event()
    connected = threading.Event()
    acked = 0

    def on_publish(*_a: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(payloads):
            done.set()

    client.on_publish = on_publish
    client.on_connect = lambda *_a: connected.set()
    client.connect("localhost", broker.tls_port, keepalive=60)
    client.loop_start()
    connected.wait(10)
    cpu0, broker0 = _cpu_s(), _process_cpu_s(broker.pid)
    start = time.perf_counter()
    for p in payloads:
        client.publish("bench/raw/observations", p, qos=1)
    if not done.wait(TIMEOUT_S):
        raise RuntimeError("raw publish did not complete")
    elapsed = time.perf_counter() - start
    cpu, broker_cpu = _cpu_s() - cpu0, _process_cpu_s(broker.pid) - broker0
    client.disconnect()
    client.loop_stop()
    return elapsed, cpu, broker_cpu


def bp_reading(n: int) -> Reading:
    """A cuff reading with its own device timestamp (distinct identity and PHD identifier)."""
    stamp = datetime(2020, 1, 1) + timedelta(minutes=n)
    value = bytes([0x06, 120 + n % 60, 0, 80 + n % 30, 0, 95, 0])
    value += stamp.year.to_bytes(2, "little") + bytes(
        [stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second]
    )
    value += (60 + n % 40).to_bytes(2, "little")
    return Reading(CUFF, 0x2A35, value, RECEIVED, clock_trusted=True)


async def main(workers: int | None = None) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="carebox-bench-"))
    try:
        return await _bench(tmp, workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the store, the broker's files, the PKI


async def _bench(tmp: Path, workers: int | None) -> dict[str, object]:
    pki = make_dev_pki(tmp / "pki", gateway_id="cbx-bench")
    pki.client_for("raw")
    broker = LocalBroker(pki, tmp / "broker")
    broker.start()
    store = await Store.open(tmp / "state", min_free_mb=0)
    renderer = RenderPool(workers)
    try:
        for start_n in range(0, N_DRAIN, ADD_BATCH):
            await store.add([bp_reading(n) for n in range(start_n, start_n + ADD_BATCH)])
        ctx = FhirContext(
            gateway_id="cbx-bench",
            patient_system="urn:oid:1.2.250.1.213.1.4.8",
            patient_value="424242",
            tz=ZoneInfo("Europe/Paris"),
        )
        sent: list[tuple[int, bytes]] = []  # the drain's payloads, for the raw replay
        recording = True
        sent_items: list[Sequence[StoredReading]] = []
        sent_sealed: list[Sequence[SealedReading]] = []
        # As the service wires it: with a rendering worker, leases stay sealed and the worker
        # opens them (gateway/store/sealed.py); without, the store's thread opens them.
        sealed = renderer.workers > 0

        async def mapper(items: Sequence[StoredReading]) -> bytes:
            payload, _ = render_here(items, ctx)  # as the service's in-place mapper does
            assert isinstance(payload, bytes)  # one PHD IG Bundle
            if recording:
                sent.append((len(items), payload))
                sent_items.append(items)
            return payload

        async def sealed_mapper(items: Sequence[SealedReading]) -> bytes:
            rendered = await renderer.render_sealed(items, ctx, ClockNow.read(True))
            payload = rendered.payload
            assert isinstance(payload, bytes)  # one PHD IG Bundle
            if recording:
                sent.append((len(items), payload))
                sent_sealed.append(items)
            return payload

        committed: dict[str, float] = {}
        latencies: list[float] = []
        delivered = 0
        all_delivered = asyncio.Event()

        def on_delivered(ids: Sequence[str]) -> None:
            nonlocal delivered
            now = time.perf_counter()
            delivered += len(ids)
            if delivered >= N_DRAIN:
                all_delivered.set()
            latencies.extend(now - committed.pop(i) for i in ids if i in committed)

        settings = UplinkSettings(
            url=broker.url,
            ca=pki.ca.cert_path,
            cert=pki.client.cert_path,
            key=pki.client.key_path,
            gateway_id="cbx-bench",
        )
        uplink: Uplink[Any] = Uplink(
            settings,
            store.sealed() if sealed else store,
            sealed_mapper if sealed else mapper,
            version=__version__,
            on_delivered=on_delivered,
        )
        cpu_start, broker_start, ticks_start = (
            _cpu_s(),
            _process_cpu_s(broker.pid),
            _machine_ticks(),
        )
        # rendering workers are the gateway's too (getrusage counts only this process)
        workers_start = {pid: _process_cpu_s(pid) for pid in renderer.worker_pids()}
        start = time.perf_counter()
        task = asyncio.create_task(uplink.run())
        async with asyncio.timeout(TIMEOUT_S):
            await all_delivered.wait()
            # ...and acknowledged in the store (the uplink coalesces its acks).
            while (await store.stats()).queue_depth:  # noqa: ASYNC110 - the bench watches
                await asyncio.sleep(0.001)
        drain_s = time.perf_counter() - start
        drain_cpu_s = _cpu_s() - cpu_start
        drain_cpu_s += sum(
            _process_cpu_s(pid) - workers_start.get(pid, 0.0) for pid in renderer.worker_pids()
        )
        broker_cpu_s = _process_cpu_s(broker.pid) - broker_start
        ticks_end = _machine_ticks()
        busy_pct = 100 * (ticks_end[0] - ticks_start[0]) / max(1, ticks_end[1] - ticks_start[1])
        recording = False
        # Where the drain's CPU goes: the same Bundles rendered again, alone (sealed ones opened
        # too, as the worker does).
        t0 = time.process_time()
        for chunk in sent_items:
            render_here(chunk, ctx)
        opener = Opener()
        for sealed_chunk in sent_sealed:
            rows, keys = as_rows(sealed_chunk)
            render_sealed_here(opener, rows, keys, ctx, ClockNow.read(True))
        render_cpu_s = time.process_time() - t0

        # Latency: one reading at a time, committed while online and idle.
        await asyncio.sleep(0.2)
        for i in range(N_LATENCY):
            t0 = time.perf_counter()
            (rid,) = await store.add([bp_reading(N_DRAIN + i)])
            committed[rid] = t0
            uplink.wake()
            async with asyncio.timeout(10):
                while rid in committed:  # noqa: ASYNC110
                    await asyncio.sleep(0.0005)
            await asyncio.sleep(0.005)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

        drain_readings = sum(n for n, _ in sent)
        drain_payloads = [p for _, p in sent]
        bytes_per_reading = round(sum(len(p) for p in drain_payloads) / drain_readings)
        per_message = [b"x" * bytes_per_reading] * N_RAW_PER_MESSAGE
        raw_pm_s, _, _ = await asyncio.to_thread(
            raw_publish, broker, pki.directory, per_message, pki.ca.cert_path
        )
        raw_b_s, raw_b_cpu_s, raw_b_broker_s = await asyncio.to_thread(
            raw_publish, broker, pki.directory, drain_payloads, pki.ca.cert_path
        )
        cores = os.cpu_count() or 1
        pipeline_cpu_us = (drain_cpu_s + broker_cpu_s) / N_DRAIN * 1e6
        drain_per_s = N_DRAIN / drain_s
        raw_per_message_per_s = N_RAW_PER_MESSAGE / raw_pm_s
        raw_same_bundles_per_s = drain_readings / raw_b_s
        lat_ms = sorted(x * 1000 for x in latencies)
        return {
            "bench": "uplink",
            "store": "gateway.store (encrypted SQLite)",
            "mapper": "gateway.fhir transaction Bundles",
            "render_workers": renderer.workers,
            "readings": N_DRAIN,
            "messages": len(drain_payloads),
            "bytes_per_reading": bytes_per_reading,
            "drain_s": round(drain_s, 3),
            "drain_per_s": round(drain_per_s),
            "raw_per_message_per_s": round(raw_per_message_per_s),
            "raw_same_bundles_per_s": round(raw_same_bundles_per_s),
            "drain_vs_per_message_ratio": round(drain_per_s / raw_per_message_per_s, 2),
            "drain_vs_same_bundles_ratio": round(drain_per_s / raw_same_bundles_per_s, 2),
            "commit_to_puback_p50_ms": round(statistics.median(lat_ms), 2),
            "commit_to_puback_p99_ms": round(lat_ms[int(len(lat_ms) * 0.99) - 1], 2),
            # the gateway process's CPU during the drain (all its threads; a rendering worker's
            # own CPU is not in it), and the part of it rendering alone takes
            "drain_cpu_us_per_reading": round(drain_cpu_s / N_DRAIN * 1e6, 1),
            "render_cpu_us_per_reading": round(render_cpu_s / drain_readings * 1e6, 1),
            "broker_cpu_us_per_reading": round(broker_cpu_s / N_DRAIN * 1e6, 1),
            "machine_busy_pct": round(busy_pct, 1),
            "cores": cores,
            "cpu_ceiling_per_s": round(cores * 1e6 / pipeline_cpu_us),
            "raw_same_bundles_cpu_us_per_reading": round(raw_b_cpu_s / drain_readings * 1e6, 1),
            "broker_cpu_same_bundles_us_per_reading": round(
                raw_b_broker_s / drain_readings * 1e6, 1
            ),
            "latency_samples": len(lat_ms),
        }
    finally:
        renderer.close()
        await store.close()
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The uplink drain against raw paho-mqtt.")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="rendering worker processes (default: the gateway's own choice for this machine)",
    )
    result = asyncio.run(main(parser.parse_args().workers))
    print(json.dumps(result))
