"""MQTT 3.1.1 fallback, against a minimal TLS broker that only speaks 3.1.1 (mosquitto speaks
both, so it cannot play this part)."""

from __future__ import annotations

import asyncio
import ssl

from gateway.uplink.service import Uplink
from tests.fixtures.outbox import MemoryOutbox, json_mapper
from tests.fixtures.pki import TestPki

from .test_uplink import FAST, eventually, readings, running, settings


class Broker311:
    """Answers a CONNECT of protocol level 5 as a 3.1.1 broker does (return code 1,
    unacceptable protocol version, then close), accepts level 4, PUBACKs QoS 1.
    `speaks_v5`: accepts level 5 too. `closes_first`: closes that many CONNECTs unanswered
    first, whatever their level (a load balancer whose broker is restarting)."""

    def __init__(self, *, speaks_v5: bool = False, closes_first: int = 0) -> None:
        self.levels: list[int] = []
        self.publishes = 0
        self.speaks_v5 = speaks_v5
        self.closes_first = closes_first

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = (await reader.readexactly(1))[0]
                length, mult = 0, 1
                while True:
                    b = (await reader.readexactly(1))[0]
                    length += (b & 0x7F) * mult
                    mult *= 128
                    if not b & 0x80:
                        break
                body = await reader.readexactly(length)
                kind = header >> 4
                if kind == 1:  # CONNECT: 00 04 'MQTT' level
                    level = body[6]
                    self.levels.append(level)
                    if len(self.levels) <= self.closes_first:
                        break
                    if level == 5 and self.speaks_v5:
                        writer.write(bytes([0x20, 3, 0, 0, 0]))  # success, no properties
                    else:
                        writer.write(bytes([0x20, 2, 0, 0 if level == 4 else 1]))
                    await writer.drain()
                    if level not in (4, 5) or (level == 5 and not self.speaks_v5):
                        break
                elif kind == 3:  # PUBLISH
                    topic_len = int.from_bytes(body[:2], "big")
                    if (header >> 1) & 3:
                        pid = body[2 + topic_len : 4 + topic_len]
                        writer.write(b"\x40\x02" + pid)
                        await writer.drain()
                    if body[2 : 2 + topic_len].endswith(b"/observations"):
                        self.publishes += 1
                elif kind == 12:  # PINGREQ
                    writer.write(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


async def serve_fake(fake: Broker311, pki: TestPki) -> tuple[asyncio.Server, int]:
    """`fake` on a free loopback port with the broker's certificate, requiring the client's."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.dev.ca.cert_path))
    ctx.load_cert_chain(str(pki.dev.server.cert_path), str(pki.dev.server.key_path))
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0, ssl=ctx)
    return server, server.sockets[0].getsockname()[1]


async def test_falls_back_to_mqtt_311(pki: TestPki) -> None:
    fake = Broker311()
    server, port = await serve_fake(fake, pki)
    outbox = MemoryOutbox()
    outbox.add(*readings(30))
    uplink = Uplink(
        settings(pki, port), outbox, json_mapper, version="t", max_readings=10, backoff=FAST
    )
    try:
        async with running(uplink):
            await eventually(lambda: not outbox.waiting, within=20)
            assert uplink.state.protocol == "3.1.1"
    finally:
        server.close()
        await server.wait_closed()
    assert fake.levels[:2] == [5, 4]
    assert fake.publishes == 3
    assert len(outbox.acked) == 30
