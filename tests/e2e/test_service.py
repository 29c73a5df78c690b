"""The service as systemd runs it: `carebox run` in a subprocess with simulated devices and a
real mosquitto over mutual TLS; readings counted at the broker by an independent subscriber."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from gateway.demo.observer import primary_identifiers
from gateway.store import Store
from tests.fixtures.mosquitto import LocalBroker, Subscriber, start_broker
from tests.fixtures.pki import TestPki, make_test_pki

METER_RECORDS: Final = 300
CUFF_READINGS: Final = 3
DELIVERY_TIMEOUT_S: Final = 90.0  # a loaded 2-core CI machine; loopback delivery takes < 5 s
STOP_TIMEOUT_S: Final = 10.0  # systemd's default TimeoutStopSec: SIGTERM must end within it


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return make_test_pki(tmp_path / "pki", gateway_id="cbx-e2e")


@pytest.fixture
def broker(pki: TestPki, tmp_path: Path) -> Iterator[LocalBroker]:
    b = start_broker(pki.dev, tmp_path / "broker")
    yield b
    b.stop()


@pytest.fixture
def subscriber(broker: LocalBroker, pki: TestPki) -> Iterator[Subscriber]:
    s = Subscriber(broker, pki.dev, topic="carebox/v1/+/observations").start()
    yield s
    s.stop()


def _gateway_lines(tmp_path: Path, broker: LocalBroker, pki: TestPki) -> list[str]:
    """The config up to its simulators: the broker over mTLS, a trusted clock."""
    dev = pki.dev
    return [
        'gateway_id = "cbx-e2e"',
        f'state_dir = "{tmp_path / "state"}"',
        "[patient]",
        'system = "urn:oid:1.2.250.1.213.1.4.8"',
        'value = "424242"',
        "[ble]",
        'backend = "simulated"',
        "[upstream]",
        f'url = "{broker.url}"',
        f'ca = "{dev.ca.cert_path}"',
        f'cert = "{dev.client.cert_path}"',
        f'key = "{dev.client.key_path}"',
        "[clock]",
        'source = "system"',
    ]


def _config(tmp_path: Path, broker: LocalBroker, pki: TestPki) -> Path:
    lines = [
        *_gateway_lines(tmp_path, broker, pki),
        "[[simulator]]",
        'kind = "glucose"',
        'address = "C0:E2:00:00:00:02"',
    ]
    for i in range(METER_RECORDS):
        day, minute = divmod(i, 1440)
        lines += [
            "[[simulator.readings]]",
            f"sequence_number = {i}",
            f"base_time = 2026-10-{1 + day:02d}T{minute // 60:02d}:{minute % 60:02d}:00",
            f'concentration = "0.00{100 + i % 90}"',
            'concentration_unit = "kg/L"',
            "type = 1",
            "sample_location = 1",
        ]
    lines += [
        "[[simulator]]",
        'kind = "blood_pressure"',
        'address = "C0:E2:00:00:00:01"',
        "interval_s = 0.5",
    ]
    for i in range(CUFF_READINGS):
        lines += [
            "[[simulator.readings]]",
            f"systolic = 12{i}",
            "diastolic = 80",
            "mean_arterial_pressure = 93",
            f"timestamp = 2026-11-20T08:0{i}:00",
        ]
    lines += [
        "[[simulator]]",
        'kind = "blood_pressure"',
        'address = "C0:E2:00:00:00:99"',
        "paired = false",
        "[[simulator.readings]]",
        "systolic = 150",
        "diastolic = 95",
        "mean_arterial_pressure = 113",
        "timestamp = 2026-11-20T09:00:00",
    ]
    path = tmp_path / "carebox.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _delivered(sub: Subscriber) -> set[str]:
    return _identifiers_since(sub, 0)


def _identifiers_since(sub: Subscriber, first_message: int) -> set[str]:
    """The readings' identifiers in the observations received from message `first_message` on."""
    ids: set[str] = set()
    for msg in sub.on("observations")[first_message:]:
        ids.update(primary_identifiers(json.loads(msg.payload)))
    return ids


def _status(config: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "status", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    doc: dict[str, object] = json.loads(done.stdout)
    return doc


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=STOP_TIMEOUT_S)
    return proc.returncode, out.decode(errors="replace")


def _deliver_then_stop(config: Path, subscriber: Subscriber, expected: int) -> tuple[int, str]:
    """Run the service until `expected` distinct readings reached the broker, then SIGTERM."""
    proc = _start(config)
    try:
        assert subscriber.wait_for(lambda s: len(_delivered(s)) >= expected, DELIVERY_TIMEOUT_S)
    finally:
        code, out = _stop(proc)
    return code, out


def test_sigterm_delivers_everything_and_stops_cleanly(
    tmp_path: Path, broker: LocalBroker, pki: TestPki, subscriber: Subscriber
) -> None:
    config = _config(tmp_path, broker, pki)
    expected = METER_RECORDS + CUFF_READINGS
    code, out = _deliver_then_stop(config, subscriber, expected)
    assert code == 0, out
    assert "Traceback" not in out
    assert len(_delivered(subscriber)) == METER_RECORDS + CUFF_READINGS
    # No health value in the service's log lines (INFO and above reach stdout).
    assert "systolic" not in out
    assert "0.00" not in out

    status = subprocess.run(
        [sys.executable, "-m", "gateway", "status", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(status.stdout)
    assert doc["queue_depth"] == 0
    assert doc["service_running"] is False  # stopped: its status file went with it
    # the test PKI's client certificate: a year (devpki.VALIDITY), read from [upstream] cert
    assert doc["upstream"]["certificate_expired"] is False
    assert 360 <= doc["upstream"]["certificate_days_left"] <= 365
    addresses = {d["address"] for d in doc["devices"]}
    assert addresses == {"C0:E2:00:00:00:01", "C0:E2:00:00:00:02"}  # never the stranger
    assert "systolic" not in status.stdout


def test_sigkill_during_bulk_transfer_loses_nothing(
    tmp_path: Path, broker: LocalBroker, pki: TestPki, subscriber: Subscriber
) -> None:
    config = _config(tmp_path, broker, pki)
    expected = METER_RECORDS + CUFF_READINGS
    for round_ in range(3):
        proc = _start(config)
        # Kill as soon as the first readings reach the broker: mid-transfer or mid-drain.
        subscriber.wait_for(lambda s, r=round_: len(_delivered(s)) > r * 20, DELIVERY_TIMEOUT_S)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=STOP_TIMEOUT_S)
        # its status file stays behind, naming a process that is gone: not running
        assert _status(config)["service_running"] is False
    proc = _start(config)
    try:
        assert subscriber.wait_for(lambda s: len(_delivered(s)) >= expected, DELIVERY_TIMEOUT_S)
        assert _status(config)["service_running"] is True
        time.sleep(0.5)  # let a late duplicate arrive before counting distinct records
    finally:
        code, out = _stop(proc)
    assert code == 0, out
    delivered = _delivered(subscriber)
    assert len(delivered) == expected


@pytest.mark.chaos
@pytest.mark.timeout(1800)
def test_sigkill_at_random_moments_30_rounds(
    tmp_path: Path, broker: LocalBroker, pki: TestPki, subscriber: Subscriber
) -> None:
    """30 gateways SIGKILLed each at a random moment (starting, capturing from the simulated
    devices, delivering, or idle), then one run to the end: the broker holds exactly the
    records of an uninterrupted run, each reading under its one identifier."""
    expected = METER_RECORDS + CUFF_READINGS
    (tmp_path / "clean").mkdir()
    code, out = _deliver_then_stop(_config(tmp_path / "clean", broker, pki), subscriber, expected)
    assert code == 0, out
    clean = _delivered(subscriber)
    assert len(clean) == expected
    first = len(subscriber.on("observations"))

    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    (tmp_path / "killed").mkdir()
    config = _config(tmp_path / "killed", broker, pki)
    for _ in range(30):
        proc = _start(config)
        time.sleep(rng.uniform(0.05, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=STOP_TIMEOUT_S)
    proc = _start(config)
    try:
        subscriber.wait_for(
            lambda s: len(_identifiers_since(s, first)) >= expected, DELIVERY_TIMEOUT_S
        )
        time.sleep(0.5)  # let a late duplicate arrive before counting distinct records
    finally:
        code, out = _stop(proc)
    assert code == 0, out
    assert _identifiers_since(subscriber, first) == clean, f"seed {seed}"


def test_ans_mes_destination_sends_one_observation_per_bundle(
    tmp_path: Path, broker: LocalBroker, pki: TestPki, subscriber: Subscriber
) -> None:
    config = _config(tmp_path, broker, pki)
    config.write_text(
        config.read_text().replace("[upstream]\n", '[upstream]\nfhir_profile = "ans-mes"\n')
    )
    expected = METER_RECORDS + CUFF_READINGS
    code, out = _deliver_then_stop(config, subscriber, expected)
    assert code == 0, out
    assert len(_delivered(subscriber)) == expected
    for msg in subscriber.on("observations"):
        bundle = json.loads(msg.payload)
        kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
        assert kinds == ["Device", "Observation"]
        (profile,) = bundle["entry"][1]["resource"]["meta"]["profile"]
        assert profile.startswith("https://interop.esante.gouv.fr/ig/fhir/mesures/")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(config: Path) -> dict[str, Any] | None:
    """`carebox status --json` (None before the service has made its store)."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "status", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(done.stdout) if done.returncode == 0 else None


def _queue_depth(config: Path) -> int:
    """What `carebox status` says waits (0 before the service has made its store)."""
    doc = _status(config)
    return 0 if doc is None else int(doc["queue_depth"])


def test_a_running_gateways_files_hold_no_health_value(
    tmp_path: Path, broker: LocalBroker, pki: TestPki
) -> None:
    # the broker unreachable: every reading waits in the store, as on a box offline for days
    config = _config(tmp_path, broker, pki)
    config.write_text(config.read_text().replace(broker.url, f"mqtts://localhost:{_closed_port()}"))
    expected = METER_RECORDS + CUFF_READINGS
    proc = _start(config)
    try:
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while _queue_depth(config) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _queue_depth(config) == expected
        # the cuff's values as it sends them: systolic, diastolic and mean SFLOATs in a row
        needles = [bytes([120 + i, 0, 80, 0, 93, 0]) for i in range(CUFF_READINGS)]
        needles += [b"systolic", b"concentration"]
        files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
        assert any(p.name == "store.db-wal" for p in files)  # read while the gateway runs
        for path in files:
            raw = path.read_bytes()
            for needle in needles:
                assert needle not in raw, (path.name, needle)
    finally:
        code, out = _stop(proc)
    assert code == 0, out
    # the needles are what the store holds, once opened with its keys
    values = asyncio.run(_stored_values(tmp_path / "state"))
    assert all(any(n in v for v in values) for n in needles[:CUFF_READINGS])


async def _malformed_values(state_dir: Path) -> dict[int, bytes | None]:
    async with await Store.open(state_dir, min_free_mb=0) as store:
        return {m.id: m.value for m in await store.malformed()}


async def _stored_values(state_dir: Path) -> list[bytes]:
    async with await Store.open(state_dir, min_free_mb=0) as store:
        return [s.reading.value for s in await store.lease(1000)]


# The auditor's cuff value: flags announce a measurement status that is cut off, after
# systolic 120, diastolic 80, mean 100 mmHg, 2026-11-28 15:30:00, pulse 72, user 0; then one
# that decodes (its delivery wakes the uplink, which then publishes the events too).
MALFORMED_CUFF: Final = "1e780050006400ea070b1c0f1e00480001"
CUFF_RAW: Final = (MALFORMED_CUFF, "02820055006400ea070b1c0f2300")
# A glucose record (sequence 1, 0.00187 kg/L at 2026-11-28 07:20) whose sensor status is cut off,
# between two that decode.
METER_RAW: Final = (
    "020000ea070b1c070f005ab011",
    "0a0100ea070b1c071400bbb01101",
    "020200ea070b1c0719005fb011",
)
MALFORMED_METER: Final = METER_RAW[1]


def _malformed_config(tmp_path: Path, broker: LocalBroker, pki: TestPki) -> Path:
    lines = [
        *_gateway_lines(tmp_path, broker, pki),
        "[[simulator]]",
        'kind = "blood_pressure"',
        'address = "C0:E2:00:00:00:0B"',
        "interval_s = 0.5",
        "raw = [" + ", ".join(f'"{h}"' for h in CUFF_RAW) + "]",
        "[[simulator]]",
        'kind = "glucose"',
        'address = "C0:E2:00:00:00:0C"',
        "raw = [" + ", ".join(f'"{h}"' for h in METER_RAW) + "]",
    ]
    path = tmp_path / "carebox.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _events(sub: Subscriber, kind: str) -> list[dict[str, Any]]:
    events = [json.loads(m.payload) for m in sub.on("events")]
    return [e for e in events if e["kind"] == kind]


def _contacts(config: Path) -> dict[str, tuple[bool, int | None]]:
    """Per device in `carebox status`: (has a last contact, battery)."""
    doc = _status(config)
    devices = [] if doc is None else doc["devices"]
    return {d["address"]: (d["last_contact"] is not None, d["battery"]) for d in devices}


def test_malformed_values_leave_no_bytes_in_events_or_files(
    tmp_path: Path, broker: LocalBroker, pki: TestPki
) -> None:
    config = _malformed_config(tmp_path, broker, pki)
    state = tmp_path / "state"
    needles = []
    for value in (MALFORMED_CUFF, MALFORMED_METER):
        raw = bytes.fromhex(value)
        needles += [value.encode(), value.upper().encode(), raw]
    needles += [bytes.fromhex("780050006400"), bytes.fromhex("ea070b1c071400bbb0")]

    def no_needle_in_files() -> None:
        names = []
        for path in state.rglob("store.db*"):
            names.append(path.name)
            data = path.read_bytes()
            for needle in needles:
                assert needle not in data, (path.name, needle)
        assert "store.db" in names

    sub = Subscriber(broker, pki.dev, topic="carebox/v1/#", name="events-watch").start()
    proc = _start(config)
    try:
        assert sub.wait_for(
            lambda s: len(_events(s, "malformed_value")) == 2 and len(_delivered(s)) == 3,
            DELIVERY_TIMEOUT_S,
        )
        # the sessions are over once both devices show a contact (the meter's first and only
        # session: before the fix, never)
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while not all(c for c, _ in _contacts(config).values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        no_needle_in_files()  # WAL and shared memory as the running gateway left them
    finally:
        code, out = _stop(proc)
        sub.stop()
    assert code == 0, out
    no_needle_in_files()  # once checkpointed into store.db
    for message in sub.on("events"):
        for needle in needles:
            assert needle not in message.payload, needle
    assert MALFORMED_CUFF not in out
    assert MALFORMED_METER not in out

    cuff, meter = sorted(
        (e["detail"] for e in _events(sub, "malformed_value")), key=lambda d: str(d["device"])
    )
    records = {cuff.pop("record"): MALFORMED_CUFF, meter.pop("record"): MALFORMED_METER}
    # the bytes are kept sealed in the store (LESSONS L8.2), each named by its event
    kept = asyncio.run(_malformed_values(state))
    assert kept == {record: bytes.fromhex(value) for record, value in records.items()}
    assert cuff == {
        "device": "C0:E2:00:00:00:0B",
        "characteristic": "2A35",
        "length": 17,
        "offset": 17,
        "error": "MalformedValue",
        "reason": "measurement_status needs 2 octet(s), 0 left",
    }
    assert meter == {
        "device": "C0:E2:00:00:00:0C",
        "characteristic": "2A18",
        "length": 14,
        "offset": 13,
        "error": "MalformedValue",
        "reason": "sensor_status needs 2 octet(s), 1 left",
    }

    assert _contacts(config) == {
        "C0:E2:00:00:00:0B": (True, 100),
        "C0:E2:00:00:00:0C": (True, 100),
    }


def test_a_cuff_without_a_clock_delivers_every_reading_of_a_burst(
    tmp_path: Path, broker: LocalBroker, pki: TestPki, subscriber: Subscriber
) -> None:
    """Readings with no device time arrive many to a second: each keeps its own identifier
    (the receive time to the microsecond) and reaches the broker."""
    burst = 12
    lines = [
        *_gateway_lines(tmp_path, broker, pki),
        "[[simulator]]",
        'kind = "blood_pressure"',
        'address = "C0:E2:00:00:00:07"',
        "interval_s = 0.01",
    ]
    for i in range(burst):
        lines += [
            "[[simulator.readings]]",
            f"systolic = {110 + i}",
            "diastolic = 70",
            "mean_arterial_pressure = 85",
        ]
    config = tmp_path / "carebox.toml"
    config.write_text("\n".join(lines) + "\n")
    code, out = _deliver_then_stop(config, subscriber, burst)
    assert code == 0, out
    assert len(_delivered(subscriber)) == burst
    systolics = set()
    for msg in subscriber.on("observations"):
        for entry in json.loads(msg.payload)["entry"]:
            for component in entry["resource"].get("component", []):
                if component["code"]["coding"][0]["code"] == "150021":
                    systolics.add(component["valueQuantity"]["value"])
    assert systolics == set(range(110, 110 + burst))
