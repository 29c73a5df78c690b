"""The uplink against brokers that set limits of their own, as the brokers a box meets do (a
managed broker's packet size, no retained messages, an ACL, a small receive window) and a
broker that drops the box or goes away behind a proxy: each delivered under the limit, or
refused with one clear error and an event, and never a reconnect loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.uplink.backoff import Backoff
from gateway.uplink.client import MqttConnection
from gateway.uplink.service import EventKind, Uplink
from tests.fixtures.mosquitto import LocalBroker, Subscriber, start_broker
from tests.fixtures.outbox import Item, MemoryOutbox, json_mapper
from tests.fixtures.pki import TestPki
from tests.fixtures.tcp_proxy import TcpProxy

from .test_protocol_fallback import Broker311, serve_fake
from .test_uplink import FAST, delivered, eventually, readings, running, settings

OBSERVATIONS = "carebox/v1/cbx-test/observations"


@pytest.fixture
def limited(pki: TestPki, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalBroker]:
    """A mosquitto with the options the test names (`@pytest.mark.parametrize` indirect)."""
    broker = start_broker(pki.dev, tmp_path / "limited", options=tuple(request.param))
    yield broker
    broker.stop()


def _acl(tmp_path: Path, *gateway_lines: str) -> str:
    path = tmp_path / "acl"
    lines = ["user test-subscriber", "topic read #", "user cbx-test", *gateway_lines]
    path.write_text("\n".join(lines) + "\n")
    return f"acl_file {path}"


def connects(broker: LocalBroker) -> int:
    """Connections the broker accepted from the gateway, from its log."""
    text = broker.log_path.read_text(errors="replace")
    return sum(
        1 for line in text.splitlines() if "New client connected" in line and "cbx-test" in line
    )


@pytest.mark.parametrize("limited", [["max_packet_size 8000"]], indirect=True)
async def test_the_broker_packet_size_is_kept_and_a_reading_over_it_is_held(
    limited: LocalBroker, pki: TestPki
) -> None:
    subscriber = Subscriber(limited, pki.dev).start()
    try:
        outbox = MemoryOutbox()
        outbox.add(*readings(200))  # ~430 octets each as the test mapper writes them
        outbox.add(Item("huge", b"\x01" * 6000))  # ~12 KB alone: over the broker's 8000
        uplink = Uplink(settings(pki, limited.tls_port), outbox, json_mapper, version="t")
        async with running(uplink):
            await eventually(lambda: len(delivered(subscriber)) == 200)
            await eventually(lambda: bool(outbox.event_log))
            await asyncio.sleep(0.3)
        assert set(delivered(subscriber)) == {r.id for r in readings(200)}
        assert all(len(m.payload) <= 8000 for m in subscriber.on("observations"))
        assert connects(limited) == 1  # never dropped for a packet too large
        (event,) = outbox.event_log
        assert event.kind == EventKind.TOO_LARGE
        assert event.detail["reading"] == "huge"
        assert event.detail["octets"] > event.detail["broker_maximum"]
        assert "huge" in outbox.waiting  # held, not lost
    finally:
        subscriber.stop()


@pytest.mark.parametrize("limited", [["retain_available false"]], indirect=True)
async def test_a_broker_without_retained_messages_still_gets_every_reading(
    limited: LocalBroker, pki: TestPki
) -> None:
    subscriber = Subscriber(limited, pki.dev).start()
    try:
        outbox = MemoryOutbox()
        outbox.add(*readings(50))
        uplink = Uplink(settings(pki, limited.tls_port), outbox, json_mapper, version="t")
        async with running(uplink):
            await eventually(lambda: len(delivered(subscriber)) == 50)
        assert [e.kind for e in outbox.event_log] == [EventKind.NO_RETAIN]
        assert "retained" in outbox.event_log[0].detail["error"]
        assert subscriber.on("status")  # still published, unretained: a retained one would
        assert connects(limited) == 1  # have had mosquitto drop the connection
    finally:
        subscriber.stop()


@pytest.mark.parametrize(
    ("allowed", "refused_topic"),
    [
        (
            ("topic write carebox/v1/cbx-test/status", "topic write carebox/v1/cbx-test/events"),
            "observations",
        ),
        (("topic read nothing/#",), "status"),
    ],
    ids=["observations", "everything"],
)
async def test_a_publish_refused_by_the_acl_is_a_clear_error_and_an_event(
    pki: TestPki, tmp_path: Path, allowed: tuple[str, ...], refused_topic: str
) -> None:
    broker = start_broker(pki.dev, tmp_path / "acl-broker", options=(_acl(tmp_path, *allowed),))
    try:
        outbox = MemoryOutbox()
        outbox.add(*readings(100))
        uplink = Uplink(
            settings(pki, broker.tls_port),
            outbox,
            json_mapper,
            version="t",
            backoff=Backoff(1.0, 3600.0),
        )
        async with running(uplink):
            await eventually(lambda: bool(outbox.event_log), within=20)
            await asyncio.sleep(0.5)  # a refusal backs off to the maximum: no second attempt
            state = uplink.state
        assert not state.connected
        assert state.error_layer == "broker"
        assert state.last_error is not None
        assert f"refused a publish on carebox/v1/cbx-test/{refused_topic}" in state.last_error
        assert "Not authorized" in state.last_error
        assert "ACL" in state.last_error
        assert [e.kind for e in outbox.event_log] == [EventKind.REFUSED]
        assert outbox.event_log[0].detail == {"layer": "broker", "error": state.last_error}
        assert len(outbox.waiting) == 100  # nothing acked that the broker did not take
        assert not outbox.acked
        assert connects(broker) == 1
    finally:
        broker.stop()


@pytest.mark.parametrize("limited", [["max_inflight_messages 5"]], indirect=True)
async def test_the_broker_receive_maximum_bounds_what_is_in_flight(
    limited: LocalBroker, pki: TestPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    peak = 0
    publish = MqttConnection.publish

    def counting(
        self: MqttConnection, topic: str, payload: bytes, *, retain: bool = False
    ) -> asyncio.Future[None]:
        nonlocal peak
        fut = publish(self, topic, payload, retain=retain)
        peak = max(peak, self.in_flight)
        return fut

    monkeypatch.setattr(MqttConnection, "publish", counting)
    proxy = TcpProxy(limited.tls_port)
    try:
        outbox = MemoryOutbox()
        outbox.add(*readings(2000))
        for n in range(30):  # published at connect: under the same bound
            await outbox.record_event("store.quota", used_pct=n)
        uplink = Uplink(
            settings(pki, proxy.port), outbox, json_mapper, version="t", max_readings=10
        )
        async with running(uplink):
            await eventually(lambda: len(outbox.acked) >= 100)
            proxy.blackhole()  # no PUBACK comes back: the window fills up to its bound
            await asyncio.sleep(0.5)
            proxy.forward()
            await eventually(lambda: not outbox.waiting)
    finally:
        proxy.close()
    assert 1 < peak <= 5  # mosquitto's CONNACK says Receive Maximum 5; ours is 20


async def test_a_broker_dropping_the_box_at_its_first_message_is_not_hammered(
    broker: LocalBroker, pki: TestPki
) -> None:
    proxy = TcpProxy(broker.tls_port)
    proxy.cut_after(20_000)  # past the handshake, CONNECT and status; not past a Bundle
    try:
        outbox = MemoryOutbox()
        outbox.add(*readings(500))
        uplink = Uplink(settings(pki, proxy.port), outbox, json_mapper, version="t", backoff=FAST)
        async with running(uplink):
            await asyncio.sleep(3.0)
        # FAST doubles from 0.05 s to 0.5 s: a dozen attempts in 3 s, not thousands
        assert 2 <= proxy.connections <= 15
        assert not outbox.acked
        assert len(outbox.waiting) == 500
    finally:
        proxy.close()


async def test_a_broker_gone_behind_its_proxy_is_retried_not_refused(
    broker: LocalBroker, subscriber: Subscriber, pki: TestPki
) -> None:
    """A proxy (or load balancer) accepts TCP and cuts the handshake while the broker behind
    it restarts: not a plaintext port; the box comes back as soon as the broker does."""
    proxy = TcpProxy(broker.tls_port)
    try:
        outbox = MemoryOutbox()
        outbox.add(*readings(10))
        uplink = Uplink(settings(pki, proxy.port), outbox, json_mapper, version="t")
        async with running(uplink):
            await eventually(lambda: len(delivered(subscriber)) == 10)
            await asyncio.to_thread(broker.kill)
            await eventually(lambda: uplink.state.error_layer == "tls", within=20)
            outbox.add(*readings(10, start=10))
            await asyncio.to_thread(broker.start)
            subscriber.stop()
            late = await asyncio.to_thread(Subscriber(broker, pki.dev, name="late").start)
            try:
                await eventually(lambda: not outbox.waiting, within=20)
                await eventually(lambda: len(delivered(late)) == 10)
            finally:
                late.stop()
        assert EventKind.REFUSED not in {e.kind for e in outbox.event_log}
    finally:
        proxy.close()


async def test_the_will_says_how_much_waits(
    broker: LocalBroker, subscriber: Subscriber, pki: TestPki
) -> None:
    proxy = TcpProxy(broker.tls_port)
    try:
        outbox = MemoryOutbox()
        outbox.add(*readings(7))
        # a mapper that never finishes: the readings stay waiting while the box is online
        never: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def stuck(_items: object) -> bytes:
            return await never

        uplink = Uplink(
            settings(pki, proxy.port), outbox, stuck, version="t", backoff=Backoff(60, 60)
        )
        async with running(uplink):
            await eventually(lambda: uplink.state.connected)
            proxy.refuse()  # the box vanishes without a DISCONNECT: the broker sends its will
            await eventually(
                lambda: any(b'"state":"offline"' in m.payload for m in subscriber.on("status"))
            )
        (will,) = [m for m in subscriber.on("status") if b'"state":"offline"' in m.payload]
        assert b'"queue_depth":7' in will.payload
        late = await asyncio.to_thread(Subscriber(broker, pki.dev, name="late").start)
        try:  # and it is what the broker keeps for whoever looks later
            await eventually(lambda: bool(late.on("status")), within=5)
            assert late.on("status")[-1].retain
            assert late.on("status")[-1].payload == will.payload
        finally:
            late.stop()
    finally:
        proxy.close()


async def test_an_mqtt5_connect_closed_unanswered_does_not_give_up_mqtt5(pki: TestPki) -> None:
    """A TLS load balancer whose broker is restarting closes every CONNECT: the box tries 3.1.1
    that once, and MQTT 5 again when it reconnects."""
    fake = Broker311(speaks_v5=True, closes_first=2)
    server, port = await serve_fake(fake, pki)
    outbox = MemoryOutbox()
    outbox.add(*readings(30))
    uplink = Uplink(settings(pki, port), outbox, json_mapper, version="t", backoff=FAST)
    try:
        async with running(uplink):
            await eventually(lambda: not outbox.waiting, within=20)
            assert uplink.state.protocol == "5"
    finally:
        server.close()
        await server.wait_closed()
    assert fake.levels[:3] == [5, 4, 5]  # closed, closed, then MQTT 5 answered


async def test_events_refused_alone_are_one_refusal_not_one_per_reconnect(
    pki: TestPki, tmp_path: Path
) -> None:
    """Status goes through and the queue is empty, but the events topic is refused: the
    refusal is recorded once, however often the box reconnects."""
    allowed = (
        "topic write carebox/v1/cbx-test/status",
        "topic write carebox/v1/cbx-test/observations",
    )
    broker = start_broker(pki.dev, tmp_path / "acl-broker", options=(_acl(tmp_path, *allowed),))
    try:
        outbox = MemoryOutbox()
        await outbox.record_event("store.quota", used_pct=91)
        uplink = Uplink(
            settings(pki, broker.tls_port),
            outbox,
            json_mapper,
            version="t",
            backoff=Backoff(0.05, 0.2),  # a refusal waits the maximum: 0.2 s here
        )
        async with running(uplink):
            await eventually(lambda: connects(broker) >= 4, within=20)
        refusals = [e for e in outbox.event_log if e.kind == EventKind.REFUSED]
        assert len(refusals) == 1
        assert "carebox/v1/cbx-test/events" in refusals[0].detail["error"]
    finally:
        broker.stop()
