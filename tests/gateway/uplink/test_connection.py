"""`MqttConnection` on its own, against a real mosquitto over mutual TLS: what the socket
will not take at once is written when it can take it; the network thread hands every result
to the loop and is gone, with its socket, once `closed` is done."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.uplink import client as client_module
from gateway.uplink.client import MqttConnection
from gateway.uplink.errors import ConnectionLost, NotConnected
from tests.fixtures.mosquitto import LocalBroker
from tests.fixtures.pki import TestPki
from tests.fixtures.tcp_proxy import TcpProxy

from .test_uplink import settings

MESSAGES = 16
MESSAGE_BYTES = 1024 * 1024  # 16 MiB in all: more than loopback's socket buffers hold
PUBACK_WAIT_S = 10.0  # well under the 60 s keepalive, whose PINGREQ would also write


async def test_publishes_the_socket_could_not_take_go_out_once_it_can(
    pki: TestPki, proxy: TcpProxy
) -> None:
    conn = await MqttConnection.open(
        settings(pki, proxy.port, keepalive_s=60), max_inflight=MESSAGES
    )
    try:
        proxy.blackhole()  # the proxy stops reading: the socket's buffers fill up
        acks = [conn.publish(f"t/big/{i}", bytes([i]) * MESSAGE_BYTES) for i in range(MESSAGES)]
        for _ in range(100):
            await asyncio.sleep(0.02)
            if conn._client.want_write():
                break
        assert conn._client.want_write()  # bytes wait for the socket, none were dropped
        assert not any(a.done() for a in acks)
        proxy.forward()  # no publish, no keepalive due: only the socket's readiness writes
        async with asyncio.timeout(PUBACK_WAIT_S):
            await asyncio.gather(*acks)
        assert not conn._client.want_write()
    finally:
        await conn.close()


def _ended(conn: MqttConnection) -> bool:
    """The network thread has ended and the connection's socket is closed."""
    assert conn._thread is not None
    assert conn._sock is not None
    return not conn._thread.is_alive() and conn._sock.fileno() == -1


async def test_pubacks_complete_their_futures_on_the_loop_thread(
    pki: TestPki, broker: LocalBroker
) -> None:
    conn = await MqttConnection.open(settings(pki, broker.tls_port))
    seen: set[int] = set()
    try:
        acks = [conn.publish(f"t/small/{i}", b"x" * 100) for i in range(200)]
        for a in acks:
            a.add_done_callback(lambda _f: seen.add(threading.get_ident()))
        async with asyncio.timeout(PUBACK_WAIT_S):
            await asyncio.gather(*acks)
    finally:
        await conn.close()
    assert seen == {threading.get_ident()}
    assert conn.in_flight == 0


async def test_close_ends_the_network_thread_and_closes_the_socket(
    pki: TestPki, broker: LocalBroker
) -> None:
    conn = await MqttConnection.open(settings(pki, broker.tls_port))
    assert conn._thread is not None
    assert conn._thread.is_alive()
    await conn.close(final=("t/status", b"offline"))
    assert conn.closed.done()
    assert not conn.is_open
    assert _ended(conn)
    with pytest.raises(NotConnected):
        conn.publish("t/late", b"x")


async def test_a_lost_link_fails_what_is_in_flight_and_ends_the_thread(
    pki: TestPki, proxy: TcpProxy
) -> None:
    conn = await MqttConnection.open(settings(pki, proxy.port))
    try:
        proxy.blackhole()  # no PUBACK can come back
        acks = [conn.publish(f"t/lost/{i}", b"x" * 100) for i in range(10)]
        await asyncio.sleep(0.1)
        proxy.refuse()  # then the link is reset
        async with asyncio.timeout(PUBACK_WAIT_S):
            lost = await conn.closed
        assert isinstance(lost, ConnectionLost)
        assert _ended(conn)
        for a in acks:
            with pytest.raises(ConnectionLost):
                await a
    finally:
        await conn.close()
        proxy.forward()  # the proxy's pumps held in the partition end on the closed sockets


async def test_close_on_a_stalled_link_aborts_without_waiting_for_it(
    pki: TestPki, proxy: TcpProxy
) -> None:
    """A DISCONNECT that cannot leave (the socket full, the peer silent): the thread is
    stopped, it closes the socket, and nothing waits for the broker."""
    conn = await MqttConnection.open(
        settings(pki, proxy.port, keepalive_s=60), max_inflight=MESSAGES
    )
    proxy.blackhole()
    try:
        acks = [conn.publish(f"t/big/{i}", bytes([i]) * MESSAGE_BYTES) for i in range(MESSAGES)]
        for _ in range(100):
            await asyncio.sleep(0.02)
            if conn._client.want_write():
                break
        assert conn._client.want_write()
        async with asyncio.timeout(PUBACK_WAIT_S):
            await conn.close()
    finally:
        await conn.close()
        proxy.forward()
    assert _ended(conn)
    for a in acks:
        with pytest.raises(ConnectionLost):
            await a


async def test_the_loop_thread_never_touches_the_tls_socket(
    pki: TestPki, broker: LocalBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenSSL forbids one SSL object in two threads at once: after the handshake (the
    connect thread) every send and receive is the network thread's, publishes and the
    DISCONNECT included. A paho that wrote from the publishing thread would show here."""
    users: list[str] = []
    cls = client_module._ObservedSSLSocket
    for name in ("send", "recv", "pending"):
        method = getattr(cls, name)

        def spy(self: object, *args: object, _method: object = method) -> object:
            users.append(threading.current_thread().name)
            return _method(self, *args)  # type: ignore[operator]

        monkeypatch.setattr(cls, name, spy)
    conn = await MqttConnection.open(settings(pki, broker.tls_port))
    acks = [conn.publish(f"t/who/{i}", b"x" * 5000) for i in range(50)]
    async with asyncio.timeout(PUBACK_WAIT_S):
        await asyncio.gather(*acks)
    await conn.close(final=("t/status", b"offline"))
    assert "carebox.uplink.network" in users
    assert threading.current_thread().name not in users
