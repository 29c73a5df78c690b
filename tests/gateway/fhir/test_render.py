"""`render_bundle`, the wire form, on generated readings of every kind: valid FHIR (fhir.resources),
identifiers and conditional creates consistent, fullUrls the UUIDv5 of what they name, and the
dict view (`build_bundle`) writing back to the very same bytes."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from fhir.resources.R4B.bundle import Bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_drivers.blood_pressure import BloodPressureMeasurement
from device_drivers.reading import Reading
from gateway.fhir import MappingError, build_bundle, bundle_to_json, render_bundle
from gateway.fhir.bundle import _NAMESPACE, _urn
from tests.device_drivers.test_blood_pressure import pressure_values
from tests.device_drivers.test_body_composition import body_compositions
from tests.device_drivers.test_glucose import contexts, measurements
from tests.device_drivers.test_weight_scale import weight_measurements
from tests.gateway.fhir.conftest import BP_ADDRESS, GLUCOSE_ADDRESS, make_context

PHD_ID = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdBaseObservation"
MDC = "urn:iso:std:iso:11073:10101"
# The MDC codes of the R4 vital signs (profiles bp, heartrate, bodyweight, bodyheight, bmi):
# the only Observations with the `vital-signs` category beside `phd` (FHIR.md sections 2, 4).
VITAL_SIGNS = {"150020", "149546", "188736", "188740", "188752"}
GENERATED = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@dataclass(frozen=True)
class Item:
    id: str
    reading: Reading
    phd_timestamp: str


_VALUES = {
    0x2A35: pressure_values(BloodPressureMeasurement),
    0x2A18: measurements(),
    0x2A9D: weight_measurements(),
    0x2A9C: body_compositions(),
}


@st.composite
def items(draw: st.DrawFn) -> Item:
    kind = draw(st.sampled_from(sorted(_VALUES)))
    value = bytes(draw(_VALUES[kind]))
    context = bytes(draw(contexts())) if kind == 0x2A18 and draw(st.booleans()) else None
    received = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 10**8)))
    offset = draw(st.none() | st.floats(-1e6, 1e6, allow_nan=False))
    address = draw(st.sampled_from([BP_ADDRESS, GLUCOSE_ADDRESS, "AA:BB:CC:DD:EE:FF"]))
    reading = Reading(address, kind, value, received, draw(st.booleans()), context, offset)
    return Item(draw(st.text(min_size=1, max_size=4)), reading, reading.phd_timestamp_part())


@given(st.text(max_size=40), st.text(max_size=60))
def test_urn_is_the_uuid5_of_kind_and_key(kind: str, key: str) -> None:
    assert _urn(kind, key) == f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{kind}|{key}')}"


@GENERATED
@given(st.lists(items(), min_size=1, max_size=5), st.booleans())
def test_generated_bundles_are_valid_consistent_and_stable(
    batch: list[Item], registered: bool
) -> None:
    # An unregistered context also puts JSON- and URL-special characters in the identifiers.
    ctx = make_context() if registered else make_context(devices={}, patient_value='ü "x"+|:')
    skipped: list[MappingError] = []
    raw = render_bundle(batch, ctx, skipped)
    Bundle.model_validate_json(raw)
    bundle: dict[str, Any] = json.loads(raw)
    entries = bundle.get("entry", [])
    assert {e.item_id for e in skipped} <= {i.id for i in batch}  # only its own readings
    for entry in entries:
        resource, request = entry["resource"], entry["request"]
        assert request["method"] == "POST"
        assert request["url"] == resource["resourceType"]
        system, _, value = unquote(request["ifNoneExist"].removeprefix("identifier=")).partition(
            "|"
        )
        identifiers = [(i["system"], i["value"]) for i in resource["identifier"]]
        assert (system, value) in identifiers
        if system == PHD_ID:
            assert entry["fullUrl"] == _urn("observation", value)
    observations = [
        i["value"]
        for e in entries
        for i in e["resource"]["identifier"]
        if e["resource"]["resourceType"] == "Observation" and i["system"] == PHD_ID
    ]
    assert len(observations) == len(set(observations))  # one transaction: no duplicates
    for entry in entries:
        resource = entry["resource"]
        if entry["request"]["ifNoneExist"].startswith(f"identifier={quote(PHD_ID, safe='')}|"):
            (mdc,) = [c["code"] for c in resource["code"]["coding"] if c["system"] == MDC]
            categories = [c["coding"][0]["code"] for c in resource["category"]]
            assert categories == (["phd", "vital-signs"] if mdc in VITAL_SIGNS else ["phd"])
    urls = {e["fullUrl"] for e in entries}
    for entry in entries:
        for ref in entry["resource"].get("derivedFrom", []):
            assert ref["reference"] in urls
    assert bundle_to_json(build_bundle(batch, ctx, [])) == raw
    assert render_bundle(batch, ctx, []) == raw  # same input, same bytes
