"""`Uplink`: drains the store's outbox to the broker, reconnecting forever.

One connection at a time; per connection a session:
1. publish the retained `status` (online); its PUBACK proves the link and resets the backoff;
2. publish the store's events not yet published (`events` topic);
3. drain: lease up to `lease_batch` readings (the next lease runs on the store's thread while
   this one goes out), cut them into payloads of at most `max_readings` readings and
   `max_bytes` (cut by the bytes per reading the last payloads took; a payload still too big is
   split in halves), map them (`MAP_AHEAD` payloads at a time when the mapper is async, e.g. a
   worker process), publish QoS 1, and keep up to `max_inflight` messages in flight.
   A message's readings are acked in the store only on that message's PUBACK (acks are
   coalesced by one acker task, so a fast link costs few store round trips). Readings leased
   but not yet published when the connection drops are released at once.
4. when the queue is empty: publish status, wait for `wake()` (the orchestrator calls it
   after each commit) or `IDLE_RECHECK_S`.

In-flight at a disconnect: every future fails with `ConnectionLost` and its readings are
released at once (not left to lease expiry), so the next session leases them again, oldest
first, with the same identifiers. A crash instead leaves them leased until the store's lease
expires (`LEASE_S`), then they come back the same way.

A reading the mapper cannot map (say it needs a trusted clock) is left leased: it returns
after `LEASE_S` and is tried again, so it neither blocks the queue nor spins.

Between attempts: `Backoff` per failure class. While the last failure was the network (no
TCP answer), a TCP probe every `PROBE_INTERVAL_S` notices the broker becoming reachable again
and retries at once ("promptly when the network returns"); a broker that answered and said
not now (busy, quota, closed before CONNACK) is given the whole delay. `wake()` also cuts a
wait short (the orchestrator calls it when the clock becomes trusted or the network changes).
A refusal (certificate, ACL, clock, a publish the broker refused) is recorded as a store event
once per distinct error; a handshake cut without a word is one only once it repeats
(`HANDSHAKE_CUTS_TO_REFUSAL`): a broker restarting behind its proxy looks the same at first.
A session lost after connecting backs off too, from the minimum once the link proved good (a
reading delivered, or nothing to deliver): a broker that drops the box at its first message
is not hammered.

The broker's own limits, from its MQTT 5 CONNACK, are kept to: payloads stay under its Maximum
Packet Size (a reading still too big alone is held with an event: resent, it would only drop
the connection again), the in-flight window under its Receive Maximum, and a broker that keeps
no retained messages gets its status and will unretained (an event says so). A closed MQTT 5
CONNECT makes the next attempt 3.1.1, that once; only a broker that says it does not speak 5
keeps the box on 3.1.1.

At start and once a day, a client certificate or CA that ends within `cert_expiry.WARN_DAYS`
is recorded as an event (`cert_expiry.py`), weeks before the broker starts refusing the box.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from gateway.uplink import cert_expiry
from gateway.uplink.backoff import Backoff
from gateway.uplink.client import (
    CONNECT_TIMEOUT_S,
    MqttConnection,
    Protocol,
    ProtocolUnsupported,
)
from gateway.uplink.config import UplinkSettings
from gateway.uplink.errors import (
    BrokerRejected,
    BrokerUnavailable,
    ConnectFailed,
    ConnectionLost,
    FailureKind,
    HandshakeCut,
    NetworkUnreachable,
    NotConnected,
    PublishRejected,
    RetainUnsupported,
    UplinkConfigError,
)
from gateway.uplink.outbox import Identified, Outbox

__all__ = ["EventKind", "Uplink", "UplinkState"]

log = logging.getLogger(__name__)

LEASE_S: Final = 300.0  # > the longest a message can stay in flight (keepalive x 2 + connect)
IDLE_RECHECK_S: Final = 30.0  # safety net if a wake() is missed; an idle box wakes rarely
PROBE_INTERVAL_S: Final = 2.0  # cost: one TCP SYN per interval while the broker is unreachable
PROBE_TIMEOUT_S: Final = 2.0
STATUS_INTERVAL_S: Final = 10.0  # while draining a backlog, status at most this often
EVENTS_BATCH: Final = 100
MAX_READINGS: Final = 100  # PERFORMANCE.md: 100 readings per message is where batching pays
MAP_AHEAD: Final = 4  # payloads mapped ahead of publishing, for a mapper that runs elsewhere
LEASE_BATCH: Final = 500  # per store round trip; a few messages' worth, mapped as they go out
MAX_BYTES: Final = 128 * 1024  # fits AWS IoT Core's 128 KB message limit
FILL: Final = 0.9  # aim a little under MAX_BYTES: Bundles of the same size vary a little
MAX_INFLIGHT: Final = 20  # tens, not thousands: paho rescans its list on every PUBACK
# A broker's Maximum Packet Size bounds the whole PUBLISH: fixed header (5), topic (2 + its
# length), packet id (2) and the MQTT 5 properties we send (none: their length, 1), rounded up.
PUBLISH_OVERHEAD: Final = 16
# The same cut handshake this many times in a row is a refusal (an event): a plaintext port
# more likely than a broker still restarting behind its proxy.
HANDSHAKE_CUTS_TO_REFUSAL: Final = 3
# A publish the broker refuses for a while, not for good: back off gently, no refusal event.
_TRANSIENT_PUBLISH_CODES: Final = frozenset({0x91, 0x97})  # packet id in use, quota exceeded


class EventKind:
    """Kinds of events the uplink records in the store."""

    REFUSED = "uplink.refused"  # TLS, certificate, ACL: someone must act
    CLOCK = "clock.not_synchronized"  # a TLS validity failure while the clock is untrusted
    HELD = "uplink.mapping_failed"  # a reading that could not be mapped, held back
    CERT_EXPIRING = "uplink.certificate_expiring"  # within cert_expiry.WARN_DAYS: re-enroll
    CERT_EXPIRED = "uplink.certificate_expired"  # the broker refuses the box until re-enrolled
    TOO_LARGE = "uplink.payload_too_large"  # one reading over the broker's packet size: held
    NO_RETAIN = "uplink.retain_unavailable"  # the broker keeps no retained status: sent plain


@dataclass(frozen=True, slots=True)
class UplinkState:
    """For `carebox status`: no health values."""

    connected: bool
    protocol: str | None
    last_sync: datetime | None
    """The last delivery: a reading's PUBACK, or the queue found empty while connected (not
    merely a connection: readings may be waiting, held back for the clock, say)."""
    last_error: str | None
    error_layer: str | None
    in_flight: int


T = TypeVar("T", bound=Identified)

Payloads = bytes | Sequence[bytes]
"""What a mapper returns for a cut of readings: one message, or several (a destination that
takes one resource per message); the readings are acked once all of them are PUBACKed."""


class _Refused(Exception):
    """A publish the broker refused, as the connection failure it ends the session with."""

    def __init__(self, failure: ConnectFailed) -> None:
        super().__init__(str(failure))
        self.failure = failure


@dataclass(slots=True)
class _Group:
    """The messages carrying one cut of readings. `sealed`: no more will be published."""

    ids: list[str]
    pending: int = 0
    failed: bool = False
    sealed: bool = False
    settled: bool = False


class Uplink(Generic[T]):
    def __init__(
        self,
        settings: UplinkSettings,
        outbox: Outbox[T],
        mapper: Callable[[Sequence[T]], Payloads | Awaitable[Payloads]],
        *,
        version: str,
        clock_trusted: Callable[[], bool] = lambda: True,
        max_readings: int = MAX_READINGS,
        lease_batch: int = LEASE_BATCH,
        max_bytes: int = MAX_BYTES,
        max_inflight: int = MAX_INFLIGHT,
        backoff: Backoff | None = None,
        events_cursor: Path | None = None,
        on_delivered: Callable[[Sequence[str]], None] | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self._outbox = outbox
        self._mapper = mapper
        self._version = version
        self._clock_trusted = clock_trusted
        self._max_readings = max_readings
        self._lease_batch = max(lease_batch, max_readings)
        self._max_bytes = max_bytes
        self._max_inflight = max_inflight
        self._backoff = backoff or Backoff()
        self._cursor_path = events_cursor
        self._on_delivered = on_delivered
        self._connect_timeout_s = connect_timeout_s
        self._protocol = Protocol.V5  # 3.1.1 once a broker said it does not speak 5
        self._v311_once = False  # a broker closed an MQTT 5 CONNECT: 3.1.1 next, this once
        self._retain = True  # False once the broker said it keeps no retained message
        self._refused: ConnectFailed | None = None  # a publish refused in this session
        self._broker_max: int | None = None  # the broker's largest payload, this session
        self._session_max_bytes = max_bytes
        self._failed_text: str | None = None  # the last failure, and how many times in a row
        self._failed_times = 0
        self._wake = asyncio.Event()
        self._conn: MqttConnection | None = None
        self._in_flight: set[str] = set()
        self._to_ack: list[str] = []
        self._to_release: list[str] = []
        self._store_work = asyncio.Event()
        self._settled = asyncio.Event()  # a publish in flight completed or failed
        self._held: set[str] = set()
        self._last_sync: datetime | None = None
        self._last_error: ConnectFailed | None = None
        self._recorded_error: str | None = None
        self._events_after = 0
        self.messages_published = 0
        self._bytes_per_reading: float | None = None

    # --- public -------------------------------------------------------------------------------

    def wake(self) -> None:
        """New readings committed, or the network or clock changed: look again now."""
        self._wake.set()

    def retry_held(self) -> None:
        """What the mapper held back (say, waiting for a trusted clock) is leased again now,
        not when its lease runs out; call it when the cause is gone."""
        back = [i for i in self._held if i not in self._in_flight]
        self._held.clear()
        if back:
            self._to_release.extend(back)
            self._store_work.set()
        self.wake()

    @property
    def state(self) -> UplinkState:
        conn = self._conn
        err = self._last_error
        return UplinkState(
            connected=conn is not None and conn.is_open,
            protocol=None if conn is None else ("5" if conn.protocol is Protocol.V5 else "3.1.1"),
            last_sync=self._last_sync,
            last_error=None if err is None else str(err),
            error_layer=None if err is None else err.layer,
            in_flight=len(self._in_flight),
        )

    async def run(self) -> None:
        """Forever (until cancelled): connect, drain, reconnect. Configuration errors raise."""
        if self._cursor_path is not None:
            self._events_after = await asyncio.to_thread(self._load_cursor)
        # Before the first attempt: an expired certificate is then named before the refusal.
        trusted = await self._check_certificates()
        writer = asyncio.create_task(self._store_writer(), name="carebox.uplink.acks")
        watch = asyncio.create_task(self._watch_certificates(trusted), name="carebox.uplink.certs")
        try:
            await self._connect_loop()
        finally:
            for task in (watch, writer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._flush_store()

    # --- certificate expiry (cert_expiry.py) --------------------------------------------------

    async def _watch_certificates(self, checked: bool) -> None:
        """Daily after a check; every `UNTRUSTED_RECHECK_S` while the clock cannot count days.
        A check that fails (the store refusing its event, say) is logged and tried again: the
        watch must outlive it, and must never end the uplink."""
        while True:
            await asyncio.sleep(
                cert_expiry.CHECK_INTERVAL_S if checked else cert_expiry.UNTRUSTED_RECHECK_S
            )
            try:
                checked = await self._check_certificates()
            except Exception as exc:  # a watch, not a part of delivery
                log.warning("uplink: certificate check failed (%s); trying again later", exc)
                checked = False

    async def _check_certificates(self) -> bool:
        """An event and a warning per certificate that ends soon or has ended; False when the
        clock is not trusted (nothing checked)."""
        if not self._clock_trusted():
            return False
        files = [
            (cert_expiry.Certificate.CLIENT, self.settings.cert),
            (cert_expiry.Certificate.CA, self.settings.ca),
        ]
        for expiry in await asyncio.to_thread(cert_expiry.expiring, files, datetime.now(UTC)):
            log.warning("uplink: %s", expiry.message())
            await self._outbox.record_event(
                EventKind.CERT_EXPIRED if expiry.expired else EventKind.CERT_EXPIRING,
                certificate=expiry.certificate.value,
                path=str(expiry.path),
                not_after=expiry.not_after.isoformat(),
                days_left=expiry.days_left,
            )
        return True

    # --- connection loop ----------------------------------------------------------------------

    async def _connect_loop(self) -> None:
        while True:
            # The will says what the box held when it connected: a fleet reading a dead box's
            # status still sees how much waits there.
            stats = await self._stats()
            will = (self.settings.topic("status"), self._status_json("offline", *stats))
            protocol = Protocol.V311 if self._v311_once else self._protocol
            self._v311_once = False
            try:
                conn = await MqttConnection.open(
                    self.settings,
                    protocol=protocol,
                    will=will,
                    retain=self._retain,
                    clock_trusted=self._clock_trusted(),
                    max_inflight=self._max_inflight,
                    connect_timeout_s=self._connect_timeout_s,
                )
            except UplinkConfigError:
                raise
            except ProtocolUnsupported as exc:
                if exc.explicit:
                    log.warning("uplink: %s; using MQTT 3.1.1", exc)
                    self._protocol = Protocol.V311
                    continue
                # A broker going away does this too: 3.1.1 this once, MQTT 5 again next time.
                log.warning("uplink: %s; trying MQTT 3.1.1", exc)
                self._v311_once = True
                continue
            except RetainUnsupported as exc:
                if self._retain:
                    await self._no_retain(str(exc))
                    continue
                await self._failed(BrokerRejected(f"{exc}, and refused this box without it"))
                continue
            except ConnectFailed as exc:
                await self._failed(exc)
                continue
            self._conn = conn
            failure: ConnectFailed | None = None
            try:
                await self._session(conn)
            except (ConnectionLost, NotConnected) as exc:
                log.warning("uplink: %s", exc)
                # what `carebox status` shows until the next attempt says more
                self._last_error = NetworkUnreachable(f"{exc}; reconnecting")
            except _Refused as refused:
                failure = refused.failure
            finally:
                await self._end_session(conn)
            if failure is not None:
                await self._failed(failure, reconnecting=False)
            else:
                # Lost after connecting: the broker was there, so no TCP probe; and a session
                # that never delivered (a broker dropping the box at its first message) backs
                # off like any failure instead of reconnecting in a loop.
                delay = self._backoff.next_delay(FailureKind.TRANSIENT)
                log.info("uplink: reconnecting in %.1f s", delay)
                await self._pause(delay, probe=False)

    async def _no_retain(self, why: str) -> None:
        self._retain = False
        log.warning("uplink: %s", why)
        await self._outbox.record_event(EventKind.NO_RETAIN, error=why)

    async def _failed(self, exc: ConnectFailed, *, reconnecting: bool = True) -> None:
        self._last_error = exc
        text = str(exc)
        self._failed_times = self._failed_times + 1 if text == self._failed_text else 1
        self._failed_text = text
        delay = self._backoff.next_delay(exc.kind)
        log.warning("uplink: %s (next attempt in %.1f s)", exc, delay)
        refusal = exc.kind is FailureKind.REJECTED or (
            isinstance(exc, HandshakeCut) and self._failed_times >= HANDSHAKE_CUTS_TO_REFUSAL
        )
        if refusal and text != self._recorded_error:
            self._recorded_error = text
            kind = EventKind.CLOCK if exc.layer == "clock" else EventKind.REFUSED
            await self._outbox.record_event(kind, layer=exc.layer, error=text)
        # Only a network that did not answer is probed: a broker that answered and said no
        # (busy, not authorized) is given its whole delay.
        await self._pause(delay, probe=type(exc) is NetworkUnreachable and reconnecting)

    async def _pause(self, delay: float, *, probe: bool) -> None:
        """Wait `delay`, cut short by wake() or, when probing, by the broker's port starting
        to accept TCP after being unreachable."""
        self._wake.clear()
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            step = min(left, PROBE_INTERVAL_S) if probe else left
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(step):
                    await self._wake.wait()
                    return
            if probe and await self._reachable():
                return

    async def _reachable(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                _, writer = await asyncio.open_connection(self.settings.host, self.settings.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def _end_session(self, conn: MqttConnection) -> None:
        await asyncio.sleep(0)  # let the failed futures' callbacks queue their releases
        if conn.is_open:
            stats = await self._stats()
            await conn.close(
                final=(self.settings.topic("status"), self._status_json("offline", *stats)),
                retain=self._retain,
            )
        await asyncio.sleep(0)
        self._conn = None
        await self._flush_store()

    # --- one session --------------------------------------------------------------------------

    async def _session(self, conn: MqttConnection) -> None:
        self._refused = None
        limits = conn.limits
        if not limits.retain_available and self._retain:
            await self._no_retain("the broker keeps no retained messages: status goes unretained")
        elif limits.retain_available and not self._retain and conn.protocol is Protocol.V5:
            self._retain = True  # it keeps them again (reconfigured, or another broker)
        topic = self.settings.topic("observations")
        self._broker_max = (
            None
            if limits.maximum_packet_size is None
            else limits.maximum_packet_size - PUBLISH_OVERHEAD - len(topic.encode())
        )
        self._session_max_bytes = (
            self._max_bytes
            if self._broker_max is None
            else max(1, min(self._max_bytes, self._broker_max))
        )
        await self._status_and_events(conn)
        await self._drain(conn)

    async def _status_and_events(self, conn: MqttConnection) -> None:
        """Status, then the events not yet published; an empty queue once both went through
        proves the link (only then: a broker refusing the events alone is refused once, not
        at every reconnect)."""
        empty = await self._publish_status(conn, "online")
        self._failed_text = None
        await self._publish_events(conn)
        if empty:
            self._proved()

    def _window(self, conn: MqttConnection) -> int:
        """Publishes in flight at most: ours, under the broker's Receive Maximum with a place
        left for a status publish."""
        receive = conn.limits.receive_maximum
        return (
            self._max_inflight if receive is None else max(1, min(self._max_inflight, receive - 1))
        )

    def _proved(self) -> None:
        """The link delivers (an observation's PUBACK, or nothing left to send): the next
        failure starts its backoff from the minimum again, and a refusal is news again."""
        self._backoff.reset()
        self._last_error = None
        self._recorded_error = None

    async def _drain(self, conn: MqttConnection) -> None:
        window = asyncio.Semaphore(self._window(conn))
        last_status = time.monotonic()
        topic = self.settings.topic("observations")
        # The next lease runs on the store's thread while this one is mapped and published.
        ahead: asyncio.Future[Sequence[T]] | None = None
        unsent: dict[str, None] = {}  # leased, not yet handed to the connection
        try:
            while True:
                if ahead is None:
                    self._wake.clear()
                    ahead = self._lease()
                await self._until(conn, asyncio.shield(ahead))
                leased, ahead = ahead.result(), None
                fresh = [r for r in leased if r.id not in self._in_flight]
                if not fresh:
                    await self._until(conn, self._idle())
                    if self._refused is not None:
                        raise _Refused(self._refused)
                    if not self._in_flight:
                        await self._status_and_events(conn)
                        last_status = time.monotonic()
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(IDLE_RECHECK_S):
                                await self._until(conn, self._wake.wait())
                    continue
                if len(leased) >= self._lease_batch:  # more waiting: fetch it meanwhile
                    self._wake.clear()
                    ahead = self._lease()
                unsent = dict.fromkeys(r.id for r in fresh)
                async with contextlib.aclosing(self._payloads(fresh)) as payloads:
                    async for ids, parts in payloads:
                        group = _Group(ids)
                        for i in ids:
                            del unsent[i]
                        self._in_flight.update(ids)
                        try:
                            for part in parts:
                                await self._slot(conn, window)
                                fut = conn.publish(topic, part)
                                self.messages_published += 1
                                group.pending += 1
                                done = functools.partial(
                                    self._on_done, group=group, window=window, topic=topic
                                )
                                fut.add_done_callback(done)
                        except BaseException:
                            group.failed = True  # the rest was never sent: all of it again
                            raise
                        finally:
                            group.sealed = True
                            self._settle(group)
                if time.monotonic() - last_status > STATUS_INTERVAL_S:
                    last_status = time.monotonic()
                    stats = await self._stats()
                    status_topic = self.settings.topic("status")
                    fut = conn.publish(
                        status_topic, self._status_json("online", *stats), retain=self._retain
                    )
                    # not waited for: a refusal ends the session at the next publish
                    fut.add_done_callback(functools.partial(self._on_status, topic=status_topic))
        finally:
            # What was leased but not yet published goes back at once too; a reading held
            # back by the mapper stays leased (it comes back after LEASE_S, see above).
            back = [i for i in unsent if i not in self._held]
            if back:
                self._to_release.extend(back)
                self._store_work.set()
            if ahead is not None:
                # A lease still under way when the session ends hands its readings back at
                # once, so the next session sends them (not after LEASE_S).
                ahead.add_done_callback(self._release_unsent)

    def _lease(self) -> asyncio.Future[Sequence[T]]:
        return asyncio.ensure_future(self._outbox.lease(self._lease_batch, lease_s=LEASE_S))

    def _release_unsent(self, fut: asyncio.Future[Sequence[T]]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        ids = [r.id for r in fut.result() if r.id not in self._in_flight]
        if ids:
            self._to_release.extend(ids)
            self._store_work.set()

    async def _idle(self) -> None:
        """Nothing fresh to send: wait for what is in flight to settle, so that the status
        published next says the queue is empty only once it is."""
        while self._in_flight:
            self._settled.clear()
            await self._settled.wait()

    async def _until(self, conn: MqttConnection, aw: Any) -> None:
        """Await `aw`, or raise ConnectionLost if the connection goes first."""
        task = asyncio.ensure_future(aw)
        if not task.done():
            await asyncio.wait({task, conn.closed}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            raise conn.closed.result()
        task.result()
        if conn.closed.done():
            raise conn.closed.result()

    async def _slot(self, conn: MqttConnection, window: asyncio.Semaphore) -> None:
        """A place in the in-flight window, or ConnectionLost if the connection goes first
        (`_Refused` once the broker refused a publish of this session)."""
        if self._refused is not None:
            raise _Refused(self._refused)
        if window.locked():
            await self._until(conn, window.acquire())
            return
        # A free place is taken at once: no task and no wait for it (~12 us a payload).
        await window.acquire()
        if conn.closed.done():
            raise conn.closed.result()

    def _on_done(
        self, fut: asyncio.Future[None], group: _Group, window: asyncio.Semaphore, topic: str
    ) -> None:
        window.release()
        group.pending -= 1
        if fut.cancelled() or fut.exception() is not None:
            group.failed = True
            exc = None if fut.cancelled() else fut.exception()
            if isinstance(exc, PublishRejected) and self._refused is None:
                self._refused = self._refusal(exc, topic)
        else:
            self._proved()
            self._last_sync = datetime.now(UTC)
        self._settle(group)

    def _on_status(self, fut: asyncio.Future[None], topic: str) -> None:
        exc = None if fut.cancelled() else fut.exception()  # retrieved: never "unretrieved"
        if isinstance(exc, PublishRejected) and self._refused is None:
            self._refused = self._refusal(exc, topic)

    def _refusal(self, exc: PublishRejected, topic: str) -> ConnectFailed:
        """A refused publish as the failure that ends the session: for good (not authorized
        on the topic, a payload the broker will not take) or for a while (quota)."""
        where = f"{self.settings.host}:{self.settings.port}"
        text = str(exc).removeprefix("broker refused the publish ")
        if exc.code in _TRANSIENT_PUBLISH_CODES:
            return BrokerUnavailable(f"broker {where} refused a publish on {topic} {text}")
        return BrokerRejected(
            f"broker {where} refused a publish on {topic} {text}: check the broker's ACL for "
            "this gateway's certificate"
        )

    def _settle(self, group: _Group) -> None:
        """Once every message of `group` is answered: its readings are acked (all PUBACKed)
        or released (any one failed or was never sent)."""
        if not group.sealed or group.pending or group.settled:
            return
        group.settled = True
        self._in_flight.difference_update(group.ids)
        self._settled.set()
        if group.failed:
            self._to_release.extend(group.ids)
        else:
            self._to_ack.extend(group.ids)
            if self._on_delivered is not None:
                self._on_delivered(group.ids)
        self._store_work.set()

    def _chunks(self, items: Sequence[T]) -> Iterator[Sequence[T]]:
        """Cuts of at most `max_readings` readings sized to `max_bytes` by the bytes per reading
        the last payloads took (so a batch is mapped once, not re-mapped at every halving).
        Lazy: each cut uses the latest figure."""
        start = 0
        while start < len(items):
            per = self._bytes_per_reading
            size = self._max_readings
            if per is not None:
                size = max(1, min(size, int(self._session_max_bytes * FILL // per)))
            yield items[start : start + size]
            start += size

    def _start_map(self, items: Sequence[T]) -> asyncio.Future[Payloads]:
        """The mapper's payload for `items` as a future: an async mapper (say, one rendering in
        a worker process) runs concurrently; a plain function runs here and now."""
        try:
            result = self._mapper(items)
        except Exception as exc:  # the mapper's own failure: handled where it is awaited
            failed: asyncio.Future[Payloads] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed
        if inspect.isawaitable(result):
            return asyncio.ensure_future(result)
        done: asyncio.Future[Payloads] = asyncio.get_running_loop().create_future()
        done.set_result(result)
        return done

    async def _payloads(
        self, items: Sequence[T]
    ) -> AsyncGenerator[tuple[list[str], list[bytes]], None]:
        """(ids, payload) for `items`, in order, with up to `MAP_AHEAD` payloads being mapped
        while the caller publishes: a mapping worker never waits for the network."""
        queue: deque[tuple[Sequence[T], asyncio.Future[Payloads]]] = deque()
        try:
            for chunk in self._chunks(items):
                queue.append((chunk, self._start_map(chunk)))
                if len(queue) > MAP_AHEAD:
                    for out in await self._finish(*queue.popleft()):
                        yield out
            while queue:
                for out in await self._finish(*queue.popleft()):
                    yield out
        finally:
            for _, fut in queue:
                fut.cancel()

    async def _finish(
        self, items: Sequence[T], fut: asyncio.Future[Payloads]
    ) -> list[tuple[list[str], list[bytes]]]:
        """(ids, payloads) cuts whose payloads are each at most `max_bytes` (a single reading
        may exceed it: sent alone); a reading that cannot be mapped alone is held back."""
        try:
            result: Payloads | None = await fut
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(items) == 1:
                self._hold(items[0].id, EventKind.HELD, error=type(exc).__name__)
                return []
            result = None
        if result is not None:
            parts = [result] if isinstance(result, bytes) else list(result)
            self._bytes_per_reading = sum(map(len, parts)) / len(items)
            if all(len(p) <= self._session_max_bytes for p in parts):
                return [([i.id for i in items], parts)]
            if len(items) == 1:
                largest = max(map(len, parts))
                if self._broker_max is not None and largest > self._broker_max:
                    # the broker would drop the connection at it, every time it is resent
                    self._hold(
                        items[0].id,
                        EventKind.TOO_LARGE,
                        octets=largest,
                        broker_maximum=self._broker_max,
                    )
                    return []
                return [([items[0].id], parts)]  # over our own size only: sent alone
        half = len(items) // 2
        first = await self._finish(items[:half], self._start_map(items[:half]))
        return first + await self._finish(items[half:], self._start_map(items[half:]))

    def _hold(self, reading_id: str, kind: str, **detail: str | int) -> None:
        if reading_id in self._held:
            return
        self._held.add(reading_id)
        log.warning("uplink: reading %s held back: %s %s", reading_id, kind, detail)
        task = asyncio.get_running_loop().create_task(
            self._outbox.record_event(kind, reading=reading_id, **detail)
        )
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # --- store writes (one task: acks coalesce under load) ------------------------------------

    async def _store_writer(self) -> None:
        while True:
            await self._store_work.wait()
            self._store_work.clear()
            await self._flush_store()

    async def _flush_store(self) -> None:
        while self._to_ack or self._to_release:
            acks, self._to_ack = self._to_ack, []
            releases, self._to_release = self._to_release, []
            if acks:
                await self._outbox.ack(acks)
            if releases:
                await self._outbox.release(releases)

    # --- status and events --------------------------------------------------------------------

    async def _stats(self) -> tuple[int | None, float | None]:
        stats = await self._outbox.stats()
        oldest = stats.oldest_waiting
        age = None if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        return stats.queue_depth, age

    def _status_json(self, state: str, depth: int | None, age: float | None) -> bytes:
        body = {
            "state": state,
            "queue_depth": depth,
            "oldest_waiting_s": None if age is None else round(age, 1),
            "version": self._version,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    async def _publish_status(self, conn: MqttConnection, state: str) -> bool:
        """Publish the retained status; True when it said the queue is empty."""
        stats = await self._stats()
        topic = self.settings.topic("status")
        fut = conn.publish(topic, self._status_json(state, *stats), retain=self._retain)
        try:
            await self._until(conn, fut)
        except PublishRejected as exc:
            raise _Refused(self._refusal(exc, topic)) from None
        if stats[0] == 0:
            # upstream has everything: in sync now, though no reading needed to go (not merely
            # a lease that found nothing yet: a cut released by the last session may still be
            # on its way back to the queue)
            self._last_sync = datetime.now(UTC)
            return True
        return False

    async def _publish_events(self, conn: MqttConnection) -> None:
        while True:
            events = await self._outbox.events(after=self._events_after, limit=EVENTS_BATCH)
            if not events:
                return
            futures: list[asyncio.Future[None]] = []
            window = self._window(conn)
            for ev in events:
                body = {
                    "id": ev.id,
                    "at": ev.at.isoformat(),
                    "kind": ev.kind,
                    "detail": dict(ev.detail),
                }
                payload = json.dumps(body, separators=(",", ":"), default=str).encode()
                if len(futures) >= window:  # under the broker's Receive Maximum
                    await self._events_acked(conn, futures)
                    futures = []
                futures.append(conn.publish(self.settings.topic("events"), payload))
            await self._events_acked(conn, futures)
            self._events_after = max(ev.id for ev in events)
            if self._cursor_path is not None:
                await asyncio.to_thread(self._save_cursor, self._events_after)

    async def _events_acked(
        self, conn: MqttConnection, futures: list[asyncio.Future[None]]
    ) -> None:
        if futures:
            try:
                await self._until(conn, asyncio.gather(*futures))
            except PublishRejected as exc:
                raise _Refused(self._refusal(exc, self.settings.topic("events"))) from None

    def _load_cursor(self) -> int:
        assert self._cursor_path is not None
        try:
            return int(self._cursor_path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            return 0  # a torn write: republishing events is harmless (they carry their ids)

    def _save_cursor(self, value: int) -> None:
        assert self._cursor_path is not None
        tmp = self._cursor_path.with_suffix(".tmp")
        tmp.write_text(str(value))
        tmp.chmod(0o600)
        tmp.replace(self._cursor_path)
