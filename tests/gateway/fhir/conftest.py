"""Shared builders for the FHIR mapping tests: readings from real codec values, a context, and
a parser that validates every Bundle with the fhir.resources R4B models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.bundle import Bundle

from device_drivers.reading import Reading
from gateway.fhir import DeviceInfo, FhirContext, GatewayInfo, bundle_to_json

PARIS = ZoneInfo("Europe/Paris")
BP_ADDRESS = "C0:11:22:33:44:55"
GLUCOSE_ADDRESS = "D0:AA:BB:CC:DD:EE"
SCALE_ADDRESS = "E0:01:02:03:04:05"
PATIENT_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
PATIENT_VALUE = "123456"
RECEIVED = datetime(2026, 3, 10, 9, 0, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Item:
    """Stands in for the store's StoredReading (the BundleItem protocol)."""

    id: str
    reading: Reading
    phd_timestamp: str


def item(
    value: object,
    *,
    address: str = BP_ADDRESS,
    offset: float | None = None,
    trusted: bool = True,
    context: bytes | None = None,
    received: datetime = RECEIVED,
    item_id: str | None = None,
) -> Item:
    """A stored reading of the codec value `value` (its bytes are what the device sent)."""
    raw = bytes(value)  # type: ignore[call-overload]
    reading = Reading(
        device=address,
        characteristic=type(value).UUID,  # type: ignore[attr-defined]
        value=raw,
        received_at=received,
        clock_trusted=trusted,
        context=context,
        device_clock_offset_s=offset,
    )
    return Item(item_id or reading.identity(), reading, reading.phd_timestamp_part())


def raw_item(characteristic: int, raw: bytes, item_id: str = "bad-1") -> Item:
    reading = Reading(BP_ADDRESS, characteristic, raw, RECEIVED, True)
    return Item(item_id, reading, reading.phd_timestamp_part())


def make_context(**overrides: Any) -> FhirContext:
    args: dict[str, Any] = {
        "gateway_id": "cbx-0001",
        "patient_system": PATIENT_SYSTEM,
        "patient_value": PATIENT_VALUE,
        "tz": PARIS,
        "devices": {
            BP_ADDRESS: DeviceInfo(
                address=BP_ADDRESS,
                manufacturer="OMRON HEALTHCARE",
                model="BP7150",
                serial="20150200002A",
                firmware="1.2.3",
                hardware="A",
                software="4.5",
                system_id="711000FEFF5F49B0",
            ),
            GLUCOSE_ADDRESS.lower(): DeviceInfo(address=GLUCOSE_ADDRESS, manufacturer="Roche"),
        },
        "gateway_info": GatewayInfo(system_id="B827EBFFFE123456", software_version="0.1.0"),
    }
    args.update(overrides)
    return FhirContext(**args)


@pytest.fixture
def ctx() -> FhirContext:
    return make_context()


def parse(bundle: dict[str, Any]) -> dict[str, Any]:
    """Serialise, validate with fhir.resources (R4B), and return the JSON as read back with
    Decimals, so tests see exactly the numbers on the wire."""
    raw = bundle_to_json(bundle)
    Bundle.model_validate_json(raw)
    parsed: dict[str, Any] = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
    return parsed


def resources(bundle: dict[str, Any], kind: str = "Observation") -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == kind]


def by_mdc(bundle: dict[str, Any], code: int) -> dict[str, Any]:
    found = [
        r
        for r in resources(bundle)
        if any(c["code"] == str(code) for c in r["code"]["coding"] if "iso:11073" in c["system"])
    ]
    assert len(found) == 1, f"{len(found)} observations coded {code}"
    return found[0]


def codings(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept["coding"]}
