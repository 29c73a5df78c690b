"""`RenderPool`: FHIR Bundles rendered in a worker process, off the uplink's event loop.

Why: rendering is a large step per reading (~10 µs of CPU for a blood-pressure reading's two
Observations, ~3.7 KB of JSON, bench/render.py), while the event loop also runs paho's socket and
the store's results. In a worker process the rendering of the next payloads overlaps publishing
the current one (the uplink keeps `MAP_AHEAD` payloads mapping), on another core. A machine
with no core to spare renders in place (`default_workers`).

What crosses the process boundary is plain data: one tuple per reading (`_row`), the
`FhirContext` (frozen, picklable) and the profile name; back come the payload bytes (one PHD IG
Bundle, or one ANS MES Bundle per Observation) and, per reading left out, its store id, reason
and error class (never a value). The worker is spawned, not forked: the gateway's process
holds threads (the store's, paho's connect) that a fork would copy mid-flight.

The worker dies with the gateway: it asks the kernel for SIGKILL when its parent goes
(`PR_SET_PDEATHSIG`), so a gateway killed with SIGKILL leaves no worker holding its stdout or
its memory, whatever the service manager does.

A worker that dies (killed, out of memory) breaks the pool: that call renders in this process
instead, and the next call starts a fresh worker. Rendering is pure, so either way the bytes
are the same.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from device_drivers.reading import Reading
from gateway.fhir import (
    BundleItem,
    DeviceNotIdentified,
    FhirContext,
    MappingError,
    NotAPatientResult,
    NotForDestination,
    render_bundle,
    render_mes,
)

__all__ = ["RenderPool", "default_workers", "render_here"]

log = logging.getLogger(__name__)

MAX_WORKERS: Final = 2  # the uplink keeps at most MAP_AHEAD + 1 renders going

_Row = tuple[str, str, int, bytes, datetime, bool, bytes | None, float | None, str]
_Skip = tuple[str, str, str]  # (store id, reason, the MappingError subclass's name)
Payloads = bytes | list[bytes]


@dataclass(frozen=True, slots=True)
class _Item:
    id: str
    reading: Reading
    phd_timestamp: str


def _row(item: BundleItem) -> _Row:
    r = item.reading
    return (
        item.id,
        r.device,
        r.characteristic,
        r.value,
        r.received_at,
        r.clock_trusted,
        r.context,
        r.device_clock_offset_s,
        item.phd_timestamp,
    )


_PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """Worker initializer: SIGKILL this worker when the gateway process ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("rendering worker: prctl failed (errno %d)", ctypes.get_errno())
    if os.getppid() != parent:  # the gateway died before the request took effect
        os._exit(0)


_ERRORS: Final[dict[str, type[MappingError]]] = {
    t.__name__: t for t in (MappingError, NotAPatientResult, NotForDestination, DeviceNotIdentified)
}


def render_here(
    items: Sequence[BundleItem], ctx: FhirContext, profile: str = "phd"
) -> tuple[Payloads, list[MappingError]]:
    """The same as `RenderPool.render`, in this process. `profile`: "phd" (one PHD IG Bundle)
    or "ans-mes" (one ANS MES Bundle per Observation)."""
    skipped: list[MappingError] = []
    if profile == "ans-mes":
        return render_mes(items, ctx, skipped), skipped
    return render_bundle(items, ctx, skipped), skipped


def _render_rows(
    rows: Sequence[_Row], ctx: FhirContext, profile: str
) -> tuple[Payloads, list[_Skip]]:
    """Runs in the worker."""
    items = [_Item(row[0], Reading(*row[1:8]), row[8]) for row in rows]
    payload, skipped = render_here(items, ctx, profile)
    return payload, [(e.item_id, e.reason, type(e).__name__) for e in skipped]


def _errors(skips: Sequence[_Skip]) -> list[MappingError]:
    return [_ERRORS.get(kind, MappingError)(reason, i) for i, reason, kind in skips]


def default_workers(cores: int) -> int:
    """Rendering workers for a machine with `cores` cores: one core stays with the event loop
    and the store's thread. With two cores or fewer there is none to spare: measured on a
    2-core machine also running the broker (bench/uplink.py), rendering in the worker drained
    15,823 readings/s against 17,026/s rendering in place, and doubled the commit-to-PUBACK
    latency (3.47 ms against 1.83 ms at the median). Measured again once rendering cost half
    as much: 14,841-15,032/s in one worker against 20,252-20,900/s in place."""
    if cores <= 2:
        return 0
    return min(MAX_WORKERS, cores - 1)


class RenderPool:
    """Renders transaction Bundles in `workers` spawned processes (started on first use), or
    in this process when `workers` is 0 (the default on machines of two cores or fewer, see
    `default_workers`). `close()` stops them."""

    def __init__(self, workers: int | None = None) -> None:
        self._workers = default_workers(os.cpu_count() or 1) if workers is None else workers
        self._executor: ProcessPoolExecutor | None = None

    @property
    def workers(self) -> int:
        """Worker processes used (0: rendering runs in this process)."""
        return self._workers

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_die_with_parent,
                initargs=(os.getpid(),),
            )
        return self._executor

    async def render(
        self, items: Sequence[BundleItem], ctx: FhirContext, profile: str = "phd"
    ) -> tuple[Payloads, list[MappingError]]:
        """`(payload(s), readings left out)` for `items`: `render_here` in a worker."""
        if not self._workers:
            return render_here(items, ctx, profile)
        rows = [_row(i) for i in items]
        loop = asyncio.get_running_loop()
        try:
            payload, skips = await loop.run_in_executor(
                self._pool(), _render_rows, rows, ctx, profile
            )
        except BrokenProcessPool:
            log.warning("the rendering worker stopped; rendering here and starting a new one")
            self._drop()
            return render_here(items, ctx, profile)
        return payload, _errors(skips)

    def _drop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def close(self) -> None:
        """Stop the workers (a render under way is abandoned; its readings stay leased)."""
        self._drop()
