"""The uplink against a real mosquitto over mutual TLS, counted at the broker."""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.uplink.backoff import Backoff
from gateway.uplink.broker import free_port
from gateway.uplink.client import classify
from gateway.uplink.config import UplinkSettings
from gateway.uplink.devpki import Issued
from gateway.uplink.errors import (
    ClientCertificateRejected,
    NetworkUnreachable,
    NotTls,
    ServerCertificateUntrusted,
    UplinkConfigError,
)
from gateway.uplink.service import EventKind, Uplink
from tests.fixtures.mosquitto import LocalBroker, Subscriber
from tests.fixtures.outbox import Item, MemoryOutbox, ids_in, json_mapper
from tests.fixtures.pki import TestPki
from tests.fixtures.tcp_proxy import TcpProxy

DRAIN_TIMEOUT_S = 60.0  # thousands of readings drain in well under a second; CI is shared
FAST = Backoff(minimum_s=0.05, maximum_s=0.5)  # tests must not wait minutes between attempts


def settings(
    pki: TestPki,
    port: int,
    *,
    host: str = "localhost",
    client: Issued | None = None,
    ca: Path | None = None,
    keepalive_s: int = 10,
) -> UplinkSettings:
    c = client or pki.dev.client
    return UplinkSettings(
        url=f"mqtts://{host}:{port}",
        ca=ca or pki.dev.ca.cert_path,
        cert=c.cert_path,
        key=c.key_path,
        gateway_id="cbx-test",
        keepalive_s=keepalive_s,
    )


def readings(n: int, start: int = 0) -> list[Item]:
    return [Item(f"r{i:06d}", bytes([i % 256]) * 200) for i in range(start, start + n)]


@asynccontextmanager
async def running(uplink: Uplink[Item]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(uplink.run())
    try:
        yield task
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def eventually(predicate: Callable[[], bool], within: float = DRAIN_TIMEOUT_S) -> None:
    """Poll: the facts live in other threads (the subscriber) and in the store."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def delivered(sub: Subscriber) -> collections.Counter[str]:
    return collections.Counter(i for m in sub.on("observations") for i in ids_in(m.payload))


async def test_every_reading_delivered_once(
    broker: LocalBroker, subscriber: Subscriber, pki: TestPki
) -> None:
    outbox = MemoryOutbox()
    outbox.add(*readings(2000))
    uplink = Uplink(
        settings(pki, broker.tls_port), outbox, json_mapper, version="t", max_readings=50
    )
    async with running(uplink):
        await eventually(lambda: not outbox.waiting)
        await eventually(lambda: len(delivered(subscriber)) == 2000)
        assert uplink.state.connected
        assert uplink.state.protocol == "5"
        assert uplink.state.last_sync is not None
    counts = delivered(subscriber)
    assert set(counts) == {r.id for r in readings(2000)}
    assert max(counts.values()) == 1
    assert sorted(outbox.acked) == sorted(counts)
    # Bundles of up to 50 readings, one per message.
    assert all(len(ids_in(m.payload)) <= 50 for m in subscriber.on("observations"))
    status = [m for m in subscriber.on("status") if m.payload]
    assert status
    assert b'"state":"online"' in status[0].payload


async def test_size_limit_splits_bundles(
    broker: LocalBroker, subscriber: Subscriber, pki: TestPki
) -> None:
    outbox = MemoryOutbox()
    outbox.add(*readings(100))
    uplink = Uplink(
        settings(pki, broker.tls_port), outbox, json_mapper, version="t", max_bytes=4000
    )
    async with running(uplink):
        await eventually(lambda: len(delivered(subscriber)) == 100)
    assert all(len(m.payload) <= 4000 for m in subscriber.on("observations"))


async def test_broker_killed_and_restarted_mid_drain(
    broker: LocalBroker, subscriber: Subscriber, pki: TestPki, proxy: TcpProxy
) -> None:
    outbox = MemoryOutbox()
    outbox.add(*readings(20000))
    uplink = Uplink(
        settings(pki, proxy.port), outbox, json_mapper, version="t", max_readings=20, backoff=FAST
    )
    async with running(uplink):
        await eventually(lambda: len(outbox.acked) > 2000)
        assert outbox.waiting, "drained before the crash: the test proves nothing"
        # Freeze traffic first, so nothing the broker acked is still on its way to the
        # subscriber when it dies (a broker without persistence loses that by design).
        proxy.blackhole()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(broker.kill)
        proxy.refuse()
        await eventually(lambda: not uplink.state.connected)
        await asyncio.to_thread(broker.start)
        again = await asyncio.to_thread(Subscriber(broker, pki.dev, name="sub2").start)
        try:
            proxy.forward()
            await eventually(lambda: not outbox.waiting)
            await eventually(
                lambda: set(delivered(subscriber) + delivered(again)) >= set(outbox.acked)
            )
            counts = delivered(subscriber) + delivered(again)
        finally:
            again.stop()
    assert set(counts) == {r.id for r in readings(20000)}
    assert outbox.released, "what was in flight at the crash went back to the queue"


async def test_partition_longer_than_keepalive(
    broker: LocalBroker, subscriber: Subscriber, pki: TestPki, proxy: TcpProxy
) -> None:
    outbox = MemoryOutbox()
    outbox.add(*readings(300))
    uplink = Uplink(
        settings(pki, proxy.port, keepalive_s=1),
        outbox,
        json_mapper,
        version="t",
        max_readings=10,
        backoff=FAST,
        connect_timeout_s=1.0,
    )
    async with running(uplink):
        await eventually(lambda: len(outbox.acked) == 300)
        proxy.blackhole()
        outbox.add(*readings(300, start=300))
        uplink.wake()
        # Silence, no reset: only the keepalive can tell the link is dead (~2 x keepalive).
        await eventually(lambda: not uplink.state.connected, within=10)
        assert outbox.waiting, "nothing may be acked while the broker is unreachable"
        await asyncio.sleep(1.5)  # reconnect attempts into the silence time out, bounded
        proxy.forward()
        await eventually(lambda: not outbox.waiting)
        await eventually(lambda: len(delivered(subscriber)) == 600)
    counts = delivered(subscriber)
    assert set(counts) == {r.id for r in readings(600)}  # duplicates only with the same ids


@pytest.mark.parametrize("case", ["wrong_ca", "wrong_host", "expired_client", "plaintext"])
async def test_refused_connection_is_a_clear_error_and_an_event(
    case: str, broker: LocalBroker, pki: TestPki, tmp_path: Path
) -> None:
    expected: type[Exception]
    if case == "wrong_ca":
        s = settings(pki, broker.tls_port, ca=pki.foreign_ca.cert_path)
        expected, words = ServerCertificateUntrusted, "check [upstream] ca"
    elif case == "wrong_host":
        other = LocalBroker(pki.dev, tmp_path / "other", server=pki.wrong_host_server)
        await asyncio.to_thread(other.start)
        s = settings(pki, other.tls_port)
        expected, words = ServerCertificateUntrusted, "host name"
    elif case == "expired_client":
        s = settings(pki, broker.tls_port, client=pki.expired_client)
        expected, words = ClientCertificateRejected, "expired"
    else:
        assert broker.plain_port is not None
        s = settings(pki, broker.plain_port)
        expected, words = NotTls, "plaintext"
    outbox = MemoryOutbox()
    outbox.add(*readings(10))
    # A refusal backs off to the maximum: one attempt in this test, never a spin.
    uplink = Uplink(s, outbox, json_mapper, version="t", backoff=Backoff(1.0, 3600.0))
    try:
        async with running(uplink):
            await eventually(lambda: bool(outbox.event_log), within=20)
            await asyncio.sleep(0.3)
            state = uplink.state
    finally:
        if case == "wrong_host":
            await asyncio.to_thread(other.stop)
    assert not state.connected
    assert state.last_error is not None
    assert words in state.last_error
    assert "\n" not in state.last_error
    refusals = [e for e in outbox.event_log if e.kind == EventKind.REFUSED]
    assert [e.detail["error"] for e in refusals] == [state.last_error]
    if case == "expired_client":  # said before the refusal, with the date (cert_expiry.py)
        assert [e.kind for e in outbox.event_log] == [EventKind.CERT_EXPIRED, EventKind.REFUSED]
        assert outbox.event_log[0].detail["certificate"] == "client certificate"
        assert outbox.event_log[0].detail["days_left"] == -1
    else:
        assert [e.kind for e in outbox.event_log] == [EventKind.REFUSED]
    assert expected.layer == state.error_layer
    assert len(outbox.waiting) == 10  # queue intact
    assert not outbox.acked


async def test_events_published_once_and_status_retained(
    broker: LocalBroker, subscriber: Subscriber, pki: TestPki
) -> None:
    outbox = MemoryOutbox()
    await outbox.record_event("store.tampered_record", record="x1")
    await outbox.record_event("store.quota", used_pct=91)
    uplink = Uplink(settings(pki, broker.tls_port), outbox, json_mapper, version="9.9")
    async with running(uplink):
        await eventually(lambda: len(subscriber.on("events")) == 2)
        outbox.add(*readings(5))
        uplink.wake()
        await eventually(lambda: len(delivered(subscriber)) == 5)
        await asyncio.sleep(0.2)
    assert len(subscriber.on("events")) == 2
    assert b'"kind":"store.tampered_record"' in subscriber.on("events")[0].payload
    # The goodbye: offline, published (retained) before the DISCONNECT.
    await eventually(
        lambda: any(b'"state":"offline"' in m.payload for m in subscriber.on("status")), within=5
    )
    late = await asyncio.to_thread(Subscriber(broker, pki.dev, name="late").start)
    try:
        await eventually(lambda: bool(late.on("status")), within=5)
        retained = late.on("status")[-1]
        assert retained.retain
        assert b'"version":"9.9"' in retained.payload
    finally:
        late.stop()


def test_plaintext_url_refused_by_name(pki: TestPki) -> None:
    with pytest.raises(UplinkConfigError, match=r"plaintext MQTT.*mqtts://"):
        UplinkSettings(
            url="mqtt://broker:1883",
            ca=pki.dev.ca.cert_path,
            cert=pki.dev.client.cert_path,
            key=pki.dev.client.key_path,
            gateway_id="cbx-test",
        )


async def test_validity_failure_with_an_untrusted_clock_says_clock(
    broker: LocalBroker, pki: TestPki
) -> None:
    outbox = MemoryOutbox()
    outbox.add(*readings(3))
    uplink = Uplink(
        settings(pki, broker.tls_port, client=pki.expired_client),
        outbox,
        json_mapper,
        version="t",
        clock_trusted=lambda: False,
        backoff=Backoff(1.0, 3600.0),
    )
    async with running(uplink):
        await eventually(lambda: bool(outbox.event_log), within=20)
    assert uplink.state.error_layer == "clock"
    assert uplink.state.last_error is not None
    assert uplink.state.last_error.startswith("clock not synchronized")
    assert [e.kind for e in outbox.event_log] == [EventKind.CLOCK]
    assert len(outbox.waiting) == 3


async def test_a_reading_that_cannot_be_mapped_is_held_not_lost(
    broker: LocalBroker, subscriber: Subscriber, pki: TestPki
) -> None:
    def picky(items: Sequence[Item]) -> bytes:
        if any(i.id == "r000007" for i in items):
            raise ValueError("needs a trusted clock")
        return json_mapper(items)

    outbox = MemoryOutbox()
    outbox.add(*readings(20))
    uplink = Uplink(settings(pki, broker.tls_port), outbox, picky, version="t")
    async with running(uplink):
        await eventually(lambda: len(outbox.acked) == 19)
        await eventually(lambda: bool(outbox.event_log))
        await asyncio.sleep(0.2)
    assert list(outbox.waiting) == ["r000007"]  # still queued, retried after its lease
    assert "r000007" not in delivered(subscriber)
    assert [e.kind for e in outbox.event_log] == [EventKind.HELD]


def one_message_per_reading(items: Sequence[Item]) -> list[bytes]:
    """A destination that takes one resource per message (ANS MES): several payloads per cut."""
    return [json_mapper([i]) for i in items]


async def test_several_messages_per_cut_all_delivered_then_acked(
    broker: LocalBroker, subscriber: Subscriber, pki: TestPki
) -> None:
    outbox = MemoryOutbox()
    outbox.add(*readings(300))
    uplink = Uplink(settings(pki, broker.tls_port), outbox, one_message_per_reading, version="t")
    async with running(uplink):
        await eventually(lambda: not outbox.waiting)
        await eventually(lambda: len(delivered(subscriber)) == 300)
    assert all(len(ids_in(m.payload)) == 1 for m in subscriber.on("observations"))
    assert sorted(outbox.acked) == sorted(delivered(subscriber))


async def test_a_cut_cut_short_by_a_disconnect_is_released_whole(
    broker: LocalBroker, subscriber: Subscriber, pki: TestPki, proxy: TcpProxy
) -> None:
    outbox = MemoryOutbox()
    outbox.add(*readings(20000))
    uplink = Uplink(
        settings(pki, proxy.port),
        outbox,
        one_message_per_reading,
        version="t",
        max_readings=50,
        backoff=FAST,
    )
    async with running(uplink):
        await eventually(lambda: len(outbox.acked) > 200)
        proxy.refuse()  # cut mid-drain: some cuts half published
        assert outbox.waiting, "drained before the cut: the test proves nothing"
        await eventually(lambda: not uplink.state.connected)
        proxy.forward()
        await eventually(lambda: not outbox.waiting)
        await eventually(lambda: set(delivered(subscriber)) >= set(outbox.acked))
    assert outbox.released, "what was in flight at the cut went back to the queue"
    got = delivered(subscriber)
    assert set(got) == {r.id for r in readings(20000)}
    # a reading acked is one whose every message was PUBACKed; none acked twice
    assert len(outbox.acked) == len(set(outbox.acked)) == 20000


async def test_held_readings_go_at_once_when_their_cause_is_gone(
    broker: LocalBroker, subscriber: Subscriber, pki: TestPki
) -> None:
    """A mapper that cannot map yet (the clock untrusted, say) holds readings for the lease
    (minutes); `retry_held` sends them now. `last_sync` stays unset while nothing went, though
    the connection is up."""
    outbox = MemoryOutbox()
    outbox.add(*readings(30))
    ready = [False]

    def mapper(items: Sequence[Item]) -> bytes:
        if not ready[0]:
            raise RuntimeError("not yet")
        return json_mapper(items)

    uplink = Uplink(settings(pki, broker.tls_port), outbox, mapper, version="t", backoff=FAST)
    async with running(uplink):
        await eventually(lambda: len(outbox.event_log) == 30)  # each held once, with an event
        assert {e.kind for e in outbox.event_log} == {EventKind.HELD}
        assert uplink.state.connected
        assert uplink.state.last_sync is None  # connected is not in sync
        assert not delivered(subscriber)
        ready[0] = True
        uplink.retry_held()
        await eventually(lambda: len(delivered(subscriber)) == 30, within=10.0)
        await eventually(lambda: not outbox.waiting, within=10.0)
        assert uplink.state.last_sync is not None


async def test_status_names_the_failing_layer_dns_or_tcp(pki: TestPki) -> None:
    """LESSONS L9.4: a name that does not resolve says dns, a port nobody listens on says tcp."""
    refused = settings(pki, free_port())
    error = classify(
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"), refused, clock_trusted=True
    )
    assert (error.layer, type(error)) == ("dns", NetworkUnreachable)
    assert "check DNS" in str(error)
    outbox = MemoryOutbox()
    outbox.add(*readings(3))
    uplink = Uplink(refused, outbox, json_mapper, version="t", backoff=Backoff(60, 60))
    async with running(uplink):
        await eventually(lambda: uplink.state.last_error is not None, within=20)
    assert uplink.state.error_layer == "tcp"
    assert "refused the connection" in str(uplink.state.last_error)
    assert outbox.event_log == []  # transient: no refusal event
