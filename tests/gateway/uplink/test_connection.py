"""`MqttConnection` on its own, against a real mosquitto over mutual TLS: what the socket
will not take at once is written when it can take it."""

from __future__ import annotations

import asyncio

from gateway.uplink.client import MqttConnection
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
