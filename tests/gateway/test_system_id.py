"""The gateway's system id: derived from a MAC by inserting FF-FE, chosen once, kept in the state
directory and read back whatever the machine's MACs become; a random one when there is no MAC;
never a reason for the service to stop. And the service's Bundles carry it on the PhgDevice."""

from __future__ import annotations

import json
import logging
import re
import stat
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote

import pytest
from fhir.resources.R4B.bundle import Bundle

from device_drivers.reading import Reading
from device_drivers.weight_scale import WeightMeasurement, WeightUnit
from gateway.clock import ClockTrust
from gateway.config import load_config
from gateway.fhir import render_bundle
from gateway.service import Service
from gateway.system_id import SYSTEM_ID_FILE, derive_system_id, gateway_system_id
from tests.gateway.fhir.conftest import RECEIVED, Item

SYSID_SYSTEM = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
EUI64 = re.compile(r"[0-9A-F]{2}(-[0-9A-F]{2}){7}")


def fake_sys(
    root: Path, *, bluetooth: dict[str, str] | None = None, net: dict[str, tuple[str, bool]]
) -> Path:
    """A /sys with these adapters (name: address) and interfaces (name: (address, physical))."""
    for name, address in (bluetooth or {}).items():
        adapter = root / "class" / "bluetooth" / name
        adapter.mkdir(parents=True)
        (adapter / "address").write_text(address + "\n")
    (root / "class" / "net").mkdir(parents=True, exist_ok=True)
    for name, (address, physical) in net.items():
        interface = root / "class" / "net" / name
        interface.mkdir()
        (interface / "address").write_text(address + "\n")
        if physical:
            (interface / "device").mkdir()
    return root


PI_NET = {
    "lo": ("00:00:00:00:00:00", False),
    "docker0": ("02:42:ac:11:00:01", False),
    "wlan0": ("b8:27:eb:aa:bb:cc", True),
    "eth0": ("b8:27:eb:12:34:56", True),
}


def test_a_known_mac_gives_a_known_eui64(tmp_path: Path) -> None:
    # OUI first, FF-FE in the middle: the byte order of health devices' derived ids.
    system_id, source = derive_system_id("hci0", fake_sys(tmp_path, net=PI_NET))
    assert system_id == "B8-27-EB-FF-FE-12-34-56"
    assert source == "network interface eth0 b8:27:eb:12:34:56"  # sorted by name: eth0 first


def test_the_configured_adapter_comes_first(tmp_path: Path) -> None:
    root = fake_sys(
        tmp_path,
        bluetooth={"hci0": "DC:A6:32:00:00:01", "hci1": "DC:A6:32:0A:0B:0C"},
        net=PI_NET,
    )
    assert derive_system_id("hci1", root)[0] == "DC-A6-32-FF-FE-0A-0B-0C"
    assert derive_system_id("hci7", root)[0] == "B8-27-EB-FF-FE-12-34-56"  # no such adapter


@pytest.mark.parametrize(
    "address",
    [
        "00:00:00:00:00:00",  # none
        "02:fc:00:00:00:01",  # locally administered: a VM's NIC, shared between machines
        "01:00:5e:00:00:01",  # a group address
        "ff:ff:ff:ff:ff:ff",
        "not a mac",
    ],
)
def test_addresses_that_are_not_this_box_s_own_are_skipped(tmp_path: Path, address: str) -> None:
    root = fake_sys(
        tmp_path,
        bluetooth={"hci0": address},
        net={"eth0": (address, True), "wlan0": ("e4:5f:01:01:02:03", True)},
    )
    assert derive_system_id("hci0", root)[0] == "E4-5F-01-FF-FE-01-02-03"


def test_kept_at_first_start_and_read_back_whatever_the_macs_become(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = gateway_system_id(state, "hci0", fake_sys(tmp_path / "sys1", net=PI_NET))
    assert first == "B8-27-EB-FF-FE-12-34-56"
    path = state / SYSTEM_ID_FILE
    assert path.read_text() == "B8-27-EB-FF-FE-12-34-56\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    # A new Bluetooth dongle and another Ethernet card later: the id stays.
    other = fake_sys(
        tmp_path / "sys2",
        bluetooth={"hci0": "00:1A:7D:DA:71:13"},
        net={"eth0": ("00:e0:4c:68:00:01", True)},
    )
    assert gateway_system_id(state, "hci0", other) == first
    assert [p.name for p in path.parent.iterdir()] == ["system_id"]  # no temporary left


def test_no_mac_at_all_gives_a_random_one_kept_the_same_way(tmp_path: Path) -> None:
    state = tmp_path / "state"
    container = fake_sys(tmp_path / "sys", net={"lo": ("00:00:00:00:00:00", False)})
    first = gateway_system_id(state, "hci0", container)
    assert first is not None
    assert EUI64.fullmatch(first)
    octets = first.split("-")
    assert octets[3:5] == ["FF", "FE"]
    assert int(octets[0], 16) & 0x03 == 0x02  # locally administered, unicast
    assert gateway_system_id(state, "hci0", container) == first
    # Once kept, a MAC appearing later does not replace it either.
    later = fake_sys(tmp_path / "sys2", net=PI_NET)
    assert gateway_system_id(state, "hci0", later) == first
    # Two containers do not share one.
    assert gateway_system_id(tmp_path / "other", "hci0", container) != first


def test_a_damaged_file_is_derived_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    path = state / SYSTEM_ID_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"B8-27-EB-FF\x00\xff")
    with caplog.at_level(logging.WARNING):
        assert gateway_system_id(state, "hci0", fake_sys(tmp_path / "sys", net=PI_NET)) == (
            "B8-27-EB-FF-FE-12-34-56"
        )
    assert "deriving the gateway system id again" in caplog.text
    assert path.read_text() == "B8-27-EB-FF-FE-12-34-56\n"


@pytest.mark.parametrize("broken", ["unreadable", "unwritable"])
def test_a_state_dir_that_cannot_keep_it_gives_none_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, broken: str
) -> None:
    state = tmp_path / "state"
    if broken == "unreadable":  # a file where the state directory should be
        state.write_text("")
    else:  # nothing to read, and nowhere to write: a dangling link
        state.symlink_to(tmp_path / "gone")
    with caplog.at_level(logging.WARNING):
        assert gateway_system_id(state, "hci0", fake_sys(tmp_path / "sys", net=PI_NET)) is None
    assert f"cannot {'read' if broken == 'unreadable' else 'keep it in'}" in caplog.text
    assert "sent without one" in caplog.text


# -- the service's Bundles --------------------------------------------------------------------


def service(tmp_path: Path) -> Service:
    path = tmp_path / "carebox.toml"
    path.write_text(
        'gateway_id = "cbx-sysid"\n'
        f'state_dir = "{tmp_path / "state"}"\n'
        '[patient]\nsystem = "urn:oid:1.2.250.1.213.1.4.8"\nvalue = "424242"\n'
        '[upstream]\nurl = "mqtts://broker.example.org"\n'
        '[clock]\nsource = "system"\ntimezone = "Europe/Paris"\n'
    )
    return Service(load_config(path), clock=ClockTrust("system"))


def phg_device(svc: Service) -> dict:
    value = bytes(WeightMeasurement(unit=WeightUnit.SI, weight=Decimal("71.5")))
    reading = Reading("C0:11:22:33:44:55", 0x2A9D, value, RECEIVED, True)
    raw = render_bundle([Item("r1", reading, reading.phd_timestamp_part())], svc._context())
    Bundle.model_validate_json(raw)
    (phg,) = [
        e
        for e in json.loads(raw)["entry"]
        if e["resource"]["meta"]["profile"] == ["http://hl7.org/fhir/uv/phd/StructureDefinition/PhgDevice"]
    ]  # fmt: skip
    return phg


def test_the_service_bundle_carries_the_kept_sysid_on_its_phg_device(tmp_path: Path) -> None:
    path = tmp_path / "state" / SYSTEM_ID_FILE
    path.parent.mkdir(parents=True)
    path.write_text("B8-27-EB-FF-FE-12-34-56\n")  # kept by an earlier start
    phg = phg_device(service(tmp_path))
    sysid, own = phg["resource"]["identifier"]
    assert sysid == {
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/ContinuaDeviceIdentifiers",
                    "code": "SYSID",
                }
            ]
        },
        "system": SYSID_SYSTEM,
        "value": "B8-27-EB-FF-FE-12-34-56",
    }
    # Still matched on the gateway id, as before it had a SYSID.
    assert own == {"system": "urn:ietf:rfc:3986", "value": "urn:carebox:gateway:cbx-sysid"}
    assert unquote(phg["request"]["ifNoneExist"]) == (
        "identifier=urn:ietf:rfc:3986|urn:carebox:gateway:cbx-sysid"
    )


def test_on_this_machine_the_service_derives_one_and_keeps_it(tmp_path: Path) -> None:
    """Whatever this machine has (a Pi's Ethernet, a laptop's, a container's nothing)."""
    first = phg_device(service(tmp_path))["resource"]["identifier"][0]
    assert first["system"] == SYSID_SYSTEM
    assert EUI64.fullmatch(first["value"])
    assert (tmp_path / "state" / SYSTEM_ID_FILE).read_text() == first["value"] + "\n"
    again = phg_device(service(tmp_path))["resource"]["identifier"][0]
    assert again == first
