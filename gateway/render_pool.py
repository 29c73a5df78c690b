"""`RenderPool`: FHIR Bundles rendered in a worker process, off the uplink's event loop.

Why: rendering is a large step per reading (~10 µs of CPU for a blood-pressure reading's two
Observations, ~3.7 KB of JSON, bench/render.py), while the event loop also runs paho's socket and
the store's results. In a worker process the rendering of the next payloads overlaps publishing
the current one (the uplink keeps `MAP_AHEAD` payloads mapping), on another core. A machine
of one core renders in place (`default_workers`).

`render_sealed` takes readings the store leased still sealed (gateway/store/sealed.py): the
worker opens them too, and dates them on the clock view it is given (`ClockNow`,
receipt_time.ready_to_render), so the gateway's process, whose threads share one GIL, neither
decrypts nor renders. Without a worker, the uplink's readings are opened by the store's lease
and rendered with `render_here`.

What crosses the process boundary is plain data: per reading a sealed row and, once per
request, the data keys those rows name, the `FhirContext` (frozen, picklable;
sent again only when it changed) and the profile name; back come the payload bytes (one PHD IG
Bundle, or one ANS MES Bundle per Observation), per reading left out its store id, reason and
error class, and per sealed row that failed its tag its id and reason (never a value). The data
keys travel only over the socket pair to the worker this process spawned, and live in its
memory as they do in the store's. The worker is spawned, not forked: the gateway's process
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final

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
from gateway.receipt_time import ClockNow, ready_to_render
from gateway.store.records import from_us, to_us
from gateway.store.sealed import Opener, SealedReading, SealedRow, as_rows

__all__ = ["RenderPool", "Rendered", "default_workers", "render_here", "render_sealed_here"]

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
# Socket buffers (the kernel caps them at net.core.[rw]mem_max): room for a few answers, so the
# worker writes a ~110 KB payload in one go and the loop reads it in one wake-up, not in
# pieces as a default ~200 KB buffer lets through.
_SOCKET_BUFFER: Final = 1024 * 1024

_Skip = tuple[str, str, str]  # (store id, reason, the MappingError subclass's name)
_Tampered = list[tuple[str, str]]  # (store id, reason) of sealed rows that did not open
Payloads = bytes | list[bytes]


@dataclass(frozen=True, slots=True)
class Rendered:
    """What `RenderPool.render_sealed` gives back: the payload(s), the readings left out
    (`MappingError`s naming them) and (id, reason) of the sealed rows that failed their tag
    (for `Store.quarantine_leased`)."""

    payload: Payloads
    skipped: list[MappingError]
    tampered: _Tampered


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


def render_sealed_here(
    opener: Opener,
    rows: Sequence[SealedRow],
    keys: Mapping[int, bytes],
    ctx: FhirContext,
    clock: ClockNow,
    *,
    profile: str = "phd",
) -> tuple[Payloads, list[MappingError], _Tampered]:
    """Sealed rows opened (`opener`), made ready on `clock` (receipt_time.ready_to_render:
    may raise `ClockNotTrusted` or `ReceiveTimeUnknown` for the uplink to hold them) and
    rendered: what the worker does with a sealed request, and this process without one."""
    items, tampered = opener.open(rows, keys)
    payload, skipped = render_here(ready_to_render(items, clock), ctx, profile)
    return payload, skipped, tampered


def _skips(skipped: Sequence[MappingError]) -> list[_Skip]:
    return [(e.item_id, e.reason, type(e).__name__) for e in skipped]


def _answer(request: tuple[Any, ...], state: _WorkerState) -> tuple[Any, ...]:
    """Runs in the worker: (True, payload, skips, tampered) for one request."""
    ctx, profile, (trusted, boot, now_us, monotonic_ns), keys, rows = request
    if ctx is not None:
        state.ctx = ctx
    if state.ctx is None:
        raise RuntimeError("a request came before any rendering context")
    now = None if now_us is None else from_us(now_us)
    clock = ClockNow(trusted, boot, now, monotonic_ns)
    payload, skipped, tampered = render_sealed_here(
        state.opener, rows, keys, state.ctx, clock, profile=profile
    )
    return True, payload, _skips(skipped), tampered


@dataclass(slots=True)
class _WorkerState:
    """What a worker keeps between requests: the last rendering context it was sent (sent
    again only when it changes: a context pickles slowly) and its `Opener`."""

    ctx: FhirContext | None = None
    opener: Opener = field(default_factory=Opener)


def _serve(conn: Connection, parent: int) -> None:
    """The worker's main: one request at a time, answered in order, until the pipe closes.
    An unexpected error goes back to the caller to raise, as rendering here would."""
    _die_with_parent(parent)
    _grow_buffers(conn.fileno())
    state = _WorkerState()
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            answer = _answer(pickle.loads(request), state)  # noqa: S301 - our parent's bytes
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


def _grow_buffers(fd: int) -> None:
    with socket.socket(fileno=os.dup(fd)) as sock:  # the options are the socket's, not the fd's
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)


def _errors(skips: Sequence[_Skip]) -> list[MappingError]:
    return [_ERRORS.get(kind, MappingError)(reason, i) for i, reason, kind in skips]


def default_workers(cores: int) -> int:
    """Rendering workers for a machine with `cores` cores: one core stays with the event loop,
    the store's thread and the network thread; a machine of one core renders in place.

    With a worker the uplink's leases stay sealed: the worker opens and renders them, so the
    gateway's process neither decrypts nor renders (gateway/store/sealed.py). Measured on a
    2-core machine also running the broker (bench/uplink.py, three runs each, alternating):
    one worker drained 33,872-35,922 readings/s against 32,861-33,371/s in place, at 40.9-43.5
    us of CPU a reading (worker included) against 30.3-30.6, commit-to-PUBACK p99 2.98-4.22 ms
    against 2.55-3.87: a little faster, with the second core's help, and the event loop (which
    also serves the BLE sessions) free of rendering. Before the leases stayed sealed a worker
    gained nothing on 2 cores (28,116/s against 28,848-29,596/s in place): it received
    readings the store's thread had opened, and the process holding the GIL still paid."""
    if cores <= 1:
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
        self.ctx: FhirContext | None = None  # the last context sent (see `_WorkerState`)

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
        _grow_buffers(sock.fileno())
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
        self._opener = Opener()  # for sealed readings rendered here

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

    async def render_sealed(
        self,
        items: Sequence[SealedReading],
        ctx: FhirContext,
        clock: ClockNow,
        profile: str = "phd",
    ) -> Rendered:
        """Sealed leased readings opened, made ready on `clock` and rendered
        (`render_sealed_here`), in a worker: the gateway's process neither opens nor renders
        them. `ClockNotTrusted` / `ReceiveTimeUnknown` are raised as rendering here would."""
        rows, keys = as_rows(items)
        worker = self._worker() if self._workers else None
        answer = None
        if worker is not None:
            # the clock as plain values: a slots dataclass, and a datetime's UTC zone, pickle
            # through copyreg, slowly
            now_us = None if clock.now is None else to_us(clock.now)
            clock_fields = (clock.trusted, clock.boot, now_us, clock.monotonic_ns)
            answer = await self._call(worker, ctx, (profile, clock_fields, keys, rows))
        if answer is None:
            payload, skipped, tampered = render_sealed_here(
                self._opener, rows, keys, ctx, clock, profile=profile
            )
            return Rendered(payload, skipped, tampered)
        return Rendered(answer[1], _errors(answer[2]), answer[3])

    async def _call(
        self, worker: _Worker, ctx: FhirContext, body: tuple[Any, ...]
    ) -> tuple[Any, ...] | None:
        """The worker's answer to `body` (profile, clock, keys, rows) with `ctx`, None when the
        worker is gone or stuck (then the caller renders here); an error the worker raised is
        raised."""
        sent_ctx = None if worker.ctx == ctx else ctx
        request = pickle.dumps((sent_ctx, *body), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            async with asyncio.timeout(self._timeout_s):
                future = worker.call(request)
                worker.ctx = ctx
                answer = await future
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
            return None
        if not answer[0]:
            raise answer[1]
        return answer

    def close(self) -> None:
        """Stop the workers (a render under way is abandoned; its readings stay leased)."""
        live, self._live = self._live, []
        for w in live:
            w.close()
