"""Certificates read ahead of their end (cert_expiry.py): which ones are due, and the uplink's
events about them, against a real mosquitto (a certificate that ends in ten days is still
accepted, and said to end)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.status import render
from gateway.uplink import cert_expiry
from gateway.uplink.cert_expiry import Certificate, expiring
from gateway.uplink.service import EventKind, Uplink
from tests.fixtures.mosquitto import LocalBroker, Subscriber
from tests.fixtures.outbox import MemoryOutbox, json_mapper
from tests.fixtures.pki import TestPki
from tests.gateway.uplink.test_uplink import delivered, eventually, readings, running, settings


def test_only_what_ends_within_the_window_or_has_ended(pki: TestPki, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    soon = pki.dev.client_for("soon", not_after=now + timedelta(days=10, hours=1))
    later = pki.dev.client_for("later", not_after=now + timedelta(days=400))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    due = expiring(
        [
            (Certificate.CLIENT, soon.cert_path),
            (Certificate.CLIENT, later.cert_path),
            (Certificate.CLIENT, pki.expired_client.cert_path),  # ended a day ago
            (Certificate.CLIENT, pki.future_client.cert_path),  # valid from tomorrow: the TLS
            # error names that; "29 days left" would mislead
            (Certificate.CA, not_pem),  # the connection attempt names these two
            (Certificate.CA, tmp_path / "missing.pem"),
        ],
        now,
    )
    assert [(e.path, e.days_left, e.expired) for e in due] == [
        (soon.cert_path, 10, False),
        (pki.expired_client.cert_path, -1, True),
    ]
    assert due[0].not_after == soon.cert.not_valid_after_utc
    for e in due:
        line = e.message()
        assert "\n" not in line
        assert str(e.path) in line
        assert "re-enroll" in line
        assert e.not_after.strftime("%Y-%m-%d") in line
    assert "10 days left" in due[0].message()
    assert "expired on" in due[1].message()


def test_the_window_edge(pki: TestPki) -> None:
    now = datetime.now(UTC)
    end = now + timedelta(days=cert_expiry.WARN_DAYS, hours=1)
    edge = [(Certificate.CLIENT, pki.dev.client_for("edge", not_after=end).cert_path)]
    assert expiring(edge, now) == []  # a whole WARN_DAYS left
    (e,) = expiring(edge, now + timedelta(hours=2))
    assert (e.days_left, e.expired) == (cert_expiry.WARN_DAYS - 1, False)


async def test_an_ending_client_certificate_is_an_event_and_still_delivers(
    broker: LocalBroker, subscriber: Subscriber, pki: TestPki
) -> None:
    ending = pki.dev.client_for("cbx-test", not_after=datetime.now(UTC) + timedelta(days=5))
    outbox = MemoryOutbox()
    outbox.add(*readings(20))
    uplink = Uplink(settings(pki, broker.tls_port, client=ending), outbox, json_mapper, version="t")
    async with running(uplink):
        await eventually(lambda: len(delivered(subscriber)) == 20)
        # published upstream too, as every store event is
        await eventually(lambda: bool(subscriber.on("events")))
    (event,) = outbox.event_log
    assert event.kind == EventKind.CERT_EXPIRING
    assert event.detail["certificate"] == "client certificate"
    assert event.detail["days_left"] == 4
    assert event.detail["path"] == str(ending.cert_path)
    assert b"uplink.certificate_expiring" in subscriber.on("events")[0].payload


async def test_nothing_is_said_until_the_clock_can_count_days(
    broker: LocalBroker, pki: TestPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cert_expiry, "UNTRUSTED_RECHECK_S", 0.05)
    trusted = False
    outbox = MemoryOutbox()
    uplink = Uplink(
        settings(pki, broker.tls_port, client=pki.expired_client),
        outbox,
        json_mapper,
        version="t",
        clock_trusted=lambda: trusted,
    )
    async with running(uplink):
        await eventually(lambda: uplink.state.error_layer == "clock", within=20)
        await asyncio.sleep(0.3)  # several rechecks while untrusted
        assert [e.kind for e in outbox.event_log] == [EventKind.CLOCK]
        trusted = True
        await eventually(lambda: EventKind.CERT_EXPIRED in {e.kind for e in outbox.event_log})
        await asyncio.sleep(0.3)  # then daily: once, not at every recheck
    assert [e.kind for e in outbox.event_log].count(EventKind.CERT_EXPIRED) == 1


def test_status_says_when_to_re_enroll() -> None:
    def line(**up: object) -> str:
        doc = {
            "gateway_id": "cbx-1",
            "service_running": False,
            "clock_trusted": None,
            "queue_depth": 0,
            "oldest_waiting_s": None,
            "last_sync": None,
            "upstream": {"connected": False, "last_error": None, **up},
            "devices": [],
        }
        (out,) = [x for x in render(doc).splitlines() if x.startswith("certificate")]
        return out

    at = "2027-01-01T00:00:00+00:00"
    ok = {"certificate_expires": at, "certificate_expired": False}
    assert line(**ok, certificate_days_left=200) == f"certificate    expires {at} (200 days)"
    assert line(**ok, certificate_days_left=12).endswith("(12 days) - re-enroll soon")
    expired = {"certificate_expires": at, "certificate_days_left": -3, "certificate_expired": True}
    assert line(**expired) == f"certificate    EXPIRED on {at}: re-enroll the box"
    missing = {"certificate_expires": None, "certificate_days_left": None}
    assert "not readable" in line(**missing, certificate_expired=None)
