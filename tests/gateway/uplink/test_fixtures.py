"""The test infrastructure itself: a broker that refuses strangers, a proxy that partitions."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from tests.fixtures.mosquitto import LocalBroker, Subscriber
from tests.fixtures.pki import TestPki
from tests.fixtures.tcp_proxy import TcpProxy


def _tls_roundtrip(port: int, ctx: ssl.SSLContext) -> bytes:
    """TLS handshake, a minimal MQTT 3.1.1 CONNECT, and the broker's first bytes."""
    connect = bytes.fromhex("101000044d5154540402003c0004") + b"abcd"
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(connect)
        return tls.recv(4)


def _ctx(pki: TestPki, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.dev.ca.cert_path))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def test_broker_accepts_our_client_certificate(broker: LocalBroker, pki: TestPki) -> None:
    ctx = _ctx(pki, pki.dev.client.cert_path, pki.dev.client.key_path)
    assert _tls_roundtrip(broker.tls_port, ctx) == bytes.fromhex("20020000")


def test_broker_refuses_a_certificate_from_another_ca(broker: LocalBroker, pki: TestPki) -> None:
    ctx = _ctx(pki, pki.foreign_client.cert_path, pki.foreign_client.key_path)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _tls_roundtrip(broker.tls_port, ctx)


def test_key_files_are_private(pki: TestPki) -> None:
    assert pki.dev.client.key_path.stat().st_mode & 0o777 == 0o600
    assert pki.directory.stat().st_mode & 0o777 == 0o700


def test_subscriber_counts_what_reaches_the_broker(
    broker: LocalBroker, subscriber: Subscriber, pki: TestPki
) -> None:
    other = Subscriber(broker, pki.dev, topic="nothing/here", name="publisher").start()
    try:
        assert other._client is not None
        other._client.publish("t/x/observations", b"hello", qos=1).wait_for_publish(5)
    finally:
        other.stop()
    assert subscriber.wait_for(lambda s: len(s.on("observations")) == 1, timeout=5)


def test_proxy_blackhole_holds_bytes_and_forward_delivers_them() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        proxy = TcpProxy(server.getsockname()[1])
        try:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as c:
                peer, _ = server.accept()
                peer.settimeout(0.3)
                proxy.blackhole()
                c.sendall(b"ping")
                with pytest.raises(TimeoutError):
                    peer.recv(4)
                proxy.forward()
                peer.settimeout(5)
                assert peer.recv(4) == b"ping"
                peer.close()
            proxy.refuse()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        finally:
            proxy.close()
