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

No thread in this process serves the workers: each worker's socket is read by the event loop
(`_Worker`). A `ProcessPoolExecutor` adds two threads (its queue feeder and its result
manager) that compete for the GIL with the loop and the store's thread; measured with
bench/uplink.py and one worker on a 2-core machine also running the broker, the executor
drained 13,624 and 13,971 readings/s, this pool 19,082 and 20,164/s.

The worker dies with the gateway: it asks the kernel for SIGKILL when its parent goes
(`PR_SET_PDEATHSIG`), so a gateway killed with SIGKILL leaves no worker holding its stdout or
its memory, whatever the service manager does.

A worker that dies (killed, out of memory) or stops answering for `RENDER_TIMEOUT_S` is
killed; the calls it held render in this process instead, and so does every call for
`RESPAWN_AFTER_S`, after which a fresh worker starts. Rendering is pure, so either way the
bytes are the same. An error that is not a `MappingError` (a bug) is raised to the caller as
rendering here would raise it.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final

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
# A render of a full payload takes milliseconds; a worker silent this long is stuck (stopped,
# swapping to death): it is killed and the call renders here.
RENDER_TIMEOUT_S: Final = 30.0
JOIN_S: Final = 2.0  # a closed worker's time to exit before it is killed
# After a worker failed, render here this long before starting another: a worker that cannot
# start (a broken install, no memory) must not cost a process spawn per payload.
RESPAWN_AFTER_S: Final = 10.0
_HEADER: Final = struct.Struct("!i")  # multiprocessing.Connection's frame header
_READ_SIZE: Final = 256 * 1024  # a full payload's answer in one read

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


def _serve(conn: Connection, parent: int) -> None:
    """The worker's main: one request at a time, answered in order, until the pipe closes.
    An unexpected error goes back to the caller to raise, as rendering here would."""
    _die_with_parent(parent)
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            rows, ctx, profile = pickle.loads(request)  # noqa: S301 - our own parent's bytes
            answer: tuple[Any, ...] = (True, *_render_rows(rows, ctx, profile))
        except Exception as exc:  # handed to the caller, who raises it
            answer = (False, exc)
        try:
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an exception that does not pickle
            data = pickle.dumps((False, RuntimeError(f"rendering failed: {exc!r}")))
        try:
            conn.send_bytes(data)
        except OSError:
            return


def _errors(skips: Sequence[_Skip]) -> list[MappingError]:
    return [_ERRORS.get(kind, MappingError)(reason, i) for i, reason, kind in skips]


def default_workers(cores: int) -> int:
    """Rendering workers for a machine with `cores` cores: one core stays with the event loop
    and the store's thread. With two cores or fewer there is none to spare: measured on a
    2-core machine also running the broker (bench/uplink.py), rendering in the worker drained
    15,823 readings/s against 17,026/s rendering in place, and doubled the commit-to-PUBACK
    latency (3.47 ms against 1.83 ms at the median). Measured again once rendering cost half
    as much: 14,841-15,032/s in one worker against 20,252-20,900/s in place. With this pool's
    own socket in place of an executor, one worker drained 18,633-18,768/s against
    18,953-19,812/s in place (three runs each, alternating): no gain, one more process. With
    the uplink's network thread, one worker drained 28,116/s against 28,848-29,596/s in place,
    at 47.9 us of the gateway's CPU a reading (worker included) against 33.9-34.8."""
    if cores <= 2:
        return 0
    return min(MAX_WORKERS, cores - 1)


class _WorkerGone(Exception):
    """The worker died, or stopped answering, under a call."""


class _Worker:
    """One spawned rendering process and the socket to it, read on the event loop (no thread
    in this process: each would compete for the GIL with the loop and the store's thread).
    Requests are answered in the order sent, so each answer resolves the oldest waiter.

    The socket is read with `add_reader` into one buffer and cut into frames there: an answer
    (~110 KB for a full payload) is copied once off the socket, not through a stream's layers.
    Requests are a few KB and the worker reads them at once; a socket too full to take one
    means the worker stopped reading, and it is given up."""

    def __init__(self, process: BaseProcess, sock: socket.socket) -> None:
        self.process = process
        self._sock = sock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = bytearray()
        self._waiting: deque[asyncio.Future[tuple[Any, ...]]] = deque()
        self.gone = False

    @classmethod
    def spawn(cls) -> _Worker:
        mp = multiprocessing.get_context("spawn")
        here, there = mp.Pipe()  # duplex: a Unix socket pair
        process = mp.Process(
            target=_serve, args=(there, os.getpid()), name="carebox-render", daemon=True
        )
        process.start()
        there.close()
        sock = socket.socket(fileno=os.dup(here.fileno()))
        here.close()
        sock.setblocking(False)
        return cls(process, sock)

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def _on_readable(self) -> None:
        buf = self._buf
        try:
            while True:
                chunk = self._sock.recv(_READ_SIZE)
                if not chunk:
                    self._fail()
                    return
                buf += chunk
                if len(chunk) < _READ_SIZE:
                    break
        except BlockingIOError:
            pass
        except OSError:
            self._fail()
            return
        start = 0
        while len(buf) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buf, start)
            end = start + _HEADER.size + size
            if size < 0 or len(buf) < end:
                break
            with memoryview(buf) as view:
                try:
                    answer = pickle.loads(view[start + _HEADER.size : end])  # noqa: S301 - ours
                except Exception:  # a garbled frame: nothing after it can be trusted
                    answer = None
            if answer is None or not self._waiting:
                self._fail()
                return
            start = end
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(answer)
        if start:
            del buf[:start]

    def _fail(self) -> None:
        if not self.gone and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
        self.gone = True
        waiting, self._waiting = self._waiting, deque()
        for fut in waiting:
            if not fut.done():
                fut.set_exception(_WorkerGone("the rendering worker stopped"))

    def call(self, request: bytes) -> asyncio.Future[tuple[Any, ...]]:
        """Send `request`; the future resolves with the worker's answer to it."""
        if self.gone:
            raise _WorkerGone("the rendering worker stopped")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._sock.fileno(), self._on_readable)
        try:
            self._sock.sendall(_HEADER.pack(len(request)) + request)
        except OSError as exc:  # full (the worker stopped reading) or closed: either way, gone
            self._fail()
            raise _WorkerGone("the rendering worker stopped reading") from exc
        fut: asyncio.Future[tuple[Any, ...]] = self._loop.create_future()
        self._waiting.append(fut)
        return fut

    def close(self, *, kill: bool = False) -> None:
        """Close the socket (the worker's next read ends it), then make sure it is gone.
        `kill`: at once, for a worker that may be stuck (no wait on the event loop)."""
        if not self.gone and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sock.fileno())
        self.gone = True
        self._sock.close()
        self._fail()
        if not kill:
            self.process.join(JOIN_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(JOIN_S)


class RenderPool:
    """Renders transaction Bundles in `workers` spawned processes (started on first use), or
    in this process when `workers` is 0 (the default on machines of two cores or fewer, see
    `default_workers`). `close()` stops them."""

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout_s: float = RENDER_TIMEOUT_S,
        respawn_after_s: float = RESPAWN_AFTER_S,
    ) -> None:
        self._workers = default_workers(os.cpu_count() or 1) if workers is None else workers
        self._timeout_s = timeout_s
        self._respawn_after_s = respawn_after_s
        self._live: list[_Worker] = []
        self._resting_until = 0.0  # monotonic: no new worker before this

    @property
    def workers(self) -> int:
        """Worker processes used (0: rendering runs in this process)."""
        return self._workers

    def worker_pids(self) -> list[int]:
        """The process ids of the workers running now (none until the first render)."""
        return [w.process.pid for w in self._live if w.process.pid is not None and not w.gone]

    def _worker(self) -> _Worker | None:
        """The least busy live worker, starting one while fewer than `workers` run (none
        while resting after a failure: the caller renders here)."""
        for w in [w for w in self._live if w.gone]:
            self._live.remove(w)
            w.close(kill=True)
        idle = min(self._live, key=lambda w: w.pending, default=None)
        if (
            len(self._live) < self._workers
            and (idle is None or idle.pending)
            and time.monotonic() >= self._resting_until
        ):
            idle = _Worker.spawn()
            self._live.append(idle)
        return idle

    async def render(
        self, items: Sequence[BundleItem], ctx: FhirContext, profile: str = "phd"
    ) -> tuple[Payloads, list[MappingError]]:
        """`(payload(s), readings left out)` for `items`: `render_here` in a worker."""
        if not self._workers:
            return render_here(items, ctx, profile)
        worker = self._worker()
        if worker is None:
            return render_here(items, ctx, profile)
        request = pickle.dumps(
            ([_row(i) for i in items], ctx, profile), protocol=pickle.HIGHEST_PROTOCOL
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                answer = await worker.call(request)
        except (_WorkerGone, TimeoutError) as exc:
            why = "stopped" if isinstance(exc, _WorkerGone) else "stopped answering"
            log.warning(
                "the rendering worker %s; rendering here, a new one in %.0f s",
                why,
                self._respawn_after_s,
            )
            if worker in self._live:
                self._live.remove(worker)
            worker.close(kill=True)
            self._resting_until = time.monotonic() + self._respawn_after_s
            return render_here(items, ctx, profile)
        if not answer[0]:
            raise answer[1]
        payload, skips = answer[1], answer[2]
        return payload, _errors(skips)

    def close(self) -> None:
        """Stop the workers (a render under way is abandoned; its readings stay leased)."""
        live, self._live = self._live, []
        for w in live:
            w.close()
