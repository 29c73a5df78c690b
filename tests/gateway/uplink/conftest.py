"""Fixtures for the uplink tests: a test PKI, a real mosquitto with mutual TLS, a subscriber
that counts deliveries at the broker, and a blackholing TCP proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.mosquitto import LocalBroker, Subscriber, start_broker
from tests.fixtures.pki import TestPki, make_test_pki
from tests.fixtures.tcp_proxy import TcpProxy


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"), gateway_id="cbx-test")


@pytest.fixture
def broker(pki: TestPki, tmp_path: Path) -> Iterator[LocalBroker]:
    b = start_broker(pki.dev, tmp_path / "broker", plaintext=True)
    yield b
    b.stop()


@pytest.fixture
def subscriber(broker: LocalBroker, pki: TestPki) -> Iterator[Subscriber]:
    s = Subscriber(broker, pki.dev).start()
    yield s
    s.stop()


@pytest.fixture
def proxy(broker: LocalBroker) -> Iterator[TcpProxy]:
    p = TcpProxy(broker.tls_port)
    yield p
    p.close()
