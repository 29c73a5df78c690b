"""Rendering alone: `render_here` over bench/uplink.py's blood-pressure readings, in Bundles
of the size the drain sends (~31 readings), in this process.

Why beside bench/uplink.py: the drain's figure moves with the broker, TLS and the store; this
one moves with the renderer only, so a change to it shows here first.

Usage: .venv/bin/python bench/render.py   (last line: one JSON object; µs per reading is the
median of the rounds' CPU time)
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.uplink import N_DRAIN, bp_reading  # noqa: E402
from device_drivers.reading import Reading  # noqa: E402
from gateway.fhir import FhirContext  # noqa: E402
from gateway.render_pool import render_here  # noqa: E402

ROUNDS = 7
BUNDLE = 31  # 100,600 readings in 3,212 Bundles in the drain: 31.3 a Bundle


@dataclass(frozen=True, slots=True)
class _Item:
    id: str
    reading: Reading
    phd_timestamp: str


def main() -> dict[str, object]:
    readings = [bp_reading(n) for n in range(N_DRAIN)]
    items = [_Item(str(n), r, r.phd_timestamp_part()) for n, r in enumerate(readings)]
    chunks = [items[i : i + BUNDLE] for i in range(0, len(items), BUNDLE)]
    ctx = FhirContext(
        gateway_id="cbx-bench",
        patient_system="urn:oid:1.2.250.1.213.1.4.8",
        patient_value="424242",
        tz=ZoneInfo("Europe/Paris"),
    )
    rounds = []
    size = 0
    for _ in range(ROUNDS):
        t0 = time.process_time()
        for chunk in chunks:
            payload, _skipped = render_here(chunk, ctx)
            assert isinstance(payload, bytes)
            size += len(payload)
        rounds.append((time.process_time() - t0) / len(items) * 1e6)
    return {
        "bench": "render",
        "readings": len(items),
        "bundles": len(chunks),
        "bytes_per_reading": round(size / ROUNDS / len(items)),
        "rounds_us_per_reading": [round(r, 2) for r in rounds],
        "render_us_per_reading": round(statistics.median(rounds), 2),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
