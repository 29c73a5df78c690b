"""Bundle shape: transaction, conditional creates, dedup identifiers, Devices, determinism,
time correction with the coincident timestamp, and readings that do not map (FHIR.md 5, 9-12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import unquote

import pytest
from fhir.resources.R4B.device import Device

from device_drivers.blood_pressure import BloodPressureMeasurement, PressureUnit
from device_drivers.reading import Reading
from gateway.fhir import (
    DeviceInfo,
    FhirContext,
    GatewayInfo,
    MappingError,
    build_bundle,
    bundle_to_json,
    needs_trusted_clock,
)
from tests.gateway.fhir.conftest import (
    BP_ADDRESS,
    GLUCOSE_ADDRESS,
    PATIENT_SYSTEM,
    PATIENT_VALUE,
    RECEIVED,
    by_mdc,
    item,
    make_context,
    parse,
    raw_item,
    resources,
)

PHD_ID = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdBaseObservation"
CONTINUA_IDS = "http://terminology.hl7.org/CodeSystem/ContinuaDeviceIdentifiers"
STAMP = datetime(2026, 3, 10, 9, 58, 0)
# Seconds from 2000-01-01T00:00:00 to 2026-03-10T09:58:00 (device local time as sent).
STAMP_PART = str(int((STAMP - datetime(2000, 1, 1)).total_seconds()))


def bp(stamp: datetime | None = STAMP, systolic: int = 121) -> BloodPressureMeasurement:
    return BloodPressureMeasurement(
        unit=PressureUnit.MMHG,
        systolic=Decimal(systolic),
        diastolic=Decimal(79),
        mean_arterial_pressure=Decimal(93),
        timestamp=stamp,
        pulse_rate=Decimal(64),
    )


def entries(bundle: dict, kind: str) -> list[dict]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_transaction_with_conditional_creates_everywhere(ctx: FhirContext) -> None:
    bundle = parse(build_bundle([item(bp())], ctx))
    assert bundle["type"] == "transaction"
    for entry in bundle["entry"]:
        assert entry["fullUrl"].startswith("urn:uuid:")
        request = entry["request"]
        assert request["method"] == "POST"
        assert request["url"] == entry["resource"]["resourceType"]
        assert request["ifNoneExist"].startswith("identifier=")
    for entry in entries(bundle, "Observation"):
        obs = entry["resource"]
        (identifier,) = obs["identifier"]
        assert identifier["system"] == PHD_ID
        system, value = entry["request"]["ifNoneExist"].removeprefix("identifier=").split("|")
        assert (unquote(system), unquote(value)) == (PHD_ID, identifier["value"])
        assert ":" not in value  # percent-encoded
        assert obs["subject"] == {"identifier": {"system": PATIENT_SYSTEM, "value": PATIENT_VALUE}}
        assert obs["status"] == "final"


def test_dedup_identifier_follows_the_carebox_rule(ctx: FhirContext) -> None:
    stored = item(bp())
    assert stored.phd_timestamp == STAMP_PART
    bundle = parse(build_bundle([stored], ctx))
    panel = by_mdc(bundle, 150020)
    pulse = by_mdc(bundle, 149546)
    prefix = f"711000FEFF5F49B0-{PATIENT_VALUE}-{PATIENT_SYSTEM}"
    assert panel["identifier"][0]["value"] == f"{prefix}-150020-{STAMP_PART}"
    assert pulse["identifier"][0]["value"] == f"{prefix}-149546-{STAMP_PART}"


def test_identifier_uses_the_stored_timestamp_part_verbatim(ctx: FhirContext) -> None:
    stored = item(bp())
    frozen = type(stored)(stored.id, stored.reading, "12345")
    panel = by_mdc(parse(build_bundle([frozen], ctx)), 150020)
    assert panel["identifier"][0]["value"].endswith("-150020-12345")


def test_device_without_system_id_is_keyed_by_bt_address(ctx: FhirContext) -> None:
    bundle = parse(build_bundle([item(bp(), address=GLUCOSE_ADDRESS)], ctx))
    panel = by_mdc(bundle, 150020)
    assert panel["identifier"][0]["value"].startswith(f"D0AABBCCDDEE-{PATIENT_VALUE}-")
    (phd,) = [
        e for e in entries(bundle, "Device") if "PhdDevice" in e["resource"]["meta"]["profile"][0]
    ]
    assert phd["resource"]["identifier"] == [
        {
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/ContinuaDeviceIdentifiers",
                        "code": "BTMAC",
                    }
                ]
            },
            "system": "http://hl7.org/fhir/sid/eui-48/bluetooth",
            "value": "D0-AA-BB-CC-DD-EE",
        }
    ]
    assert unquote(phd["request"]["ifNoneExist"]) == (
        "identifier=http://hl7.org/fhir/sid/eui-48/bluetooth|D0-AA-BB-CC-DD-EE"
    )


def test_phd_and_phg_devices(ctx: FhirContext) -> None:
    bundle = parse(build_bundle([item(bp())], ctx))
    devices = {
        e["resource"]["meta"]["profile"][0].rsplit("/", 1)[1]: e for e in entries(bundle, "Device")
    }
    phd, phg = devices["PhdDevice"], devices["PhgDevice"]
    device = phd["resource"]
    assert [(i["type"]["coding"][0]["code"], i["value"]) for i in device["identifier"]] == [
        ("SYSID", "71-10-00-FE-FF-5F-49-B0"),
        ("BTMAC", "C0-11-22-33-44-55"),
    ]
    assert device["identifier"][0]["system"] == "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
    assert (device["manufacturer"], device["modelNumber"], device["serialNumber"]) == (
        "OMRON HEALTHCARE",
        "BP7150",
        "20150200002A",
    )
    assert device["type"]["coding"][0]["code"] == "65573"
    assert [s["systemType"]["coding"][0]["code"] for s in device["specialization"]] == ["528391"]
    assert {v["type"]["coding"][0]["code"]: v["value"] for v in device["version"]} == {
        "531974": "A",
        "531975": "4.5",
        "531976": "1.2.3",
    }
    gateway = phg["resource"]
    assert gateway["type"]["coding"][0]["code"] == "531981"
    assert [(i.get("type"), i["system"], i["value"]) for i in gateway["identifier"]] == [
        (
            {"coding": [{"system": CONTINUA_IDS, "code": "SYSID"}]},
            "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680",
            "B8-27-EB-FF-FE-12-34-56",
        ),
        (None, "urn:ietf:rfc:3986", "urn:carebox:gateway:cbx-0001"),
    ]
    assert gateway["property"][0]["valueCode"][0]["coding"][0]["code"] == "532228"
    for obs in resources(bundle):
        assert obs["device"] == {"reference": phd["fullUrl"]}
        (ext,) = [e for e in obs["extension"] if e["url"].endswith("observation-gatewayDevice")]
        assert ext["valueReference"] == {"reference": phg["fullUrl"]}


def test_the_gateway_device_is_keyed_on_its_gateway_id_with_or_without_a_sysid(
    ctx: FhirContext,
) -> None:
    """Adding a SYSID to a gateway that sent Bundles without one must not make the server
    create a second Device for it: same conditional create, same fullUrl."""

    def gateway_entry(context: FhirContext) -> dict:
        devices = entries(parse(build_bundle([item(bp())], context)), "Device")
        (phg,) = [e for e in devices if e["resource"]["meta"]["profile"][0].endswith("PhgDevice")]
        return phg

    with_sysid = gateway_entry(ctx)
    without = gateway_entry(make_context(gateway_info=GatewayInfo(software_version="0.1.0")))
    assert with_sysid["fullUrl"] == without["fullUrl"]
    assert with_sysid["request"] == without["request"]
    assert unquote(without["request"]["ifNoneExist"]) == (
        "identifier=urn:ietf:rfc:3986|urn:carebox:gateway:cbx-0001"
    )
    assert [i["value"] for i in without["resource"]["identifier"]] == [
        "urn:carebox:gateway:cbx-0001"
    ]


def test_same_input_same_bytes_and_ids_stable_across_bundles(ctx: FhirContext) -> None:
    first, second = item(bp()), item(bp(STAMP + timedelta(minutes=5), systolic=130))
    once = bundle_to_json(build_bundle([first, second], ctx))
    assert once == bundle_to_json(build_bundle([first, second], make_context()))
    alone = parse(build_bundle([second], ctx))
    together = parse(build_bundle([first, second], ctx))
    url_alone = {
        e["resource"].get("identifier", [{}])[0].get("value"): e["fullUrl"] for e in alone["entry"]
    }
    url_together = {
        e["resource"].get("identifier", [{}])[0].get("value"): e["fullUrl"]
        for e in together["entry"]
    }
    for key, url in url_alone.items():
        assert url_together[key] == url


def test_malformed_reading_is_skipped_not_fatal(ctx: FhirContext) -> None:
    good = item(bp())
    bad = raw_item(0x2A35, bytes.fromhex("1e7900"), item_id="bad-1")
    skipped: list[MappingError] = []
    bundle = parse(build_bundle([bad, good], ctx, skipped))
    assert len(resources(bundle)) == 2
    (error,) = skipped
    assert error.item_id == "bad-1"
    assert "1e7900" not in str(error).lower()  # no bytes, so no health value, in the error
    with pytest.raises(MappingError) as raised:
        build_bundle([good, bad], ctx)
    assert raised.value.item_id == "bad-1"


def test_not_a_measurement_and_all_skipped(ctx: FhirContext) -> None:
    skipped: list[MappingError] = []
    bundle = build_bundle([raw_item(0x2A36, bytes(7), "cuff-1")], ctx, skipped)
    assert bundle == {"resourceType": "Bundle", "type": "transaction"}
    assert [e.item_id for e in skipped] == ["cuff-1"]


def test_local_time_read_in_gateway_zone_without_correction(ctx: FhirContext) -> None:
    panel = by_mdc(parse(build_bundle([item(bp())], ctx)), 150020)
    assert panel["effectiveDateTime"] == "2026-03-10T08:58:00+00:00"  # Paris is UTC+1 in March
    assert all("CoincidentTimeStamp" not in e["url"] for e in panel["extension"])


def test_correction_and_coincident_timestamp(ctx: FhirContext) -> None:
    # The device clock runs 125.4 s ahead of the gateway's: its stamp is moved back 125 s.
    readings = [item(bp(), offset=125.4), item(bp(STAMP + timedelta(minutes=1)), offset=125.4)]
    bundle = parse(build_bundle(readings, ctx))
    coincident = [r for r in resources(bundle) if r["code"]["coding"][0]["code"] == "67975"]
    assert len(coincident) == 1  # one per device connection
    ct = coincident[0]
    ct_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is ct)
    panels = [r for r in resources(bundle) if r["code"]["coding"][0]["code"] == "150020"]
    assert [p["effectiveDateTime"] for p in panels] == [
        "2026-03-10T08:55:55+00:00",
        "2026-03-10T08:56:55+00:00",
    ]
    for p in panels:
        (ext,) = [e for e in p["extension"] if e["url"].endswith("CoincidentTimeStampReference")]
        assert ext["valueReference"] == {"reference": ct_url}
        # the dedup identifier keeps the device's own, uncorrected stamp
    assert panels[0]["identifier"][0]["value"].endswith(f"-{STAMP_PART}")
    # At gateway time RECEIVED (09:00:30 UTC) the device clock read 10:02:35 Paris time.
    assert ct["effectiveDateTime"] == "2026-03-10T09:00:30+00:00"
    assert ct["valueDateTime"] == "2026-03-10T10:02:35+01:00"
    assert ct["subject"]["reference"].startswith("urn:uuid:")
    assert "performer" not in ct
    assert "derivedFrom" not in ct
    assert ct["identifier"][0]["system"] == "urn:ietf:rfc:3986"


def test_the_device_clock_in_the_coincident_timestamp_is_whole_seconds(ctx: FhirContext) -> None:
    # received at 09:00:30.25: the gateway's time keeps its quarter second, the device's
    # clock (1 s resolution) shows none it never had
    at = RECEIVED + timedelta(microseconds=250000)
    bundle = parse(build_bundle([item(bp(), offset=125.4, received=at)], ctx))
    (ct,) = [r for r in resources(bundle) if r["code"]["coding"][0]["code"] == "67975"]
    assert ct["effectiveDateTime"] == "2026-03-10T09:00:30.25+00:00"
    assert ct["valueDateTime"] == "2026-03-10T10:02:35+01:00"


def test_readings_without_device_time_in_one_second_all_go(ctx: FhirContext) -> None:
    # a cuff with no clock sends its stored readings in one burst: each its own Observation
    burst = [
        item(bp(systolic=120 + n, stamp=None), received=RECEIVED + timedelta(microseconds=n))
        for n in range(3)
    ]
    bundle = parse(build_bundle(burst, ctx))
    panels = [r for r in resources(bundle) if r["code"]["coding"][0]["code"] == "150020"]
    assert len(panels) == 3
    assert len({p["identifier"][0]["value"] for p in panels}) == 3
    assert panels[0]["identifier"][0]["value"].endswith("-826448430.000000")


def test_no_device_time_uses_receive_time(ctx: FhirContext) -> None:
    stored = item(bp(stamp=None), received=RECEIVED + timedelta(microseconds=250000))
    panel = by_mdc(parse(build_bundle([stored], ctx)), 150020)
    assert panel["effectiveDateTime"] == "2026-03-10T09:00:30.25+00:00"


def test_needs_trusted_clock() -> None:
    stamped = item(bp()).reading
    assert not needs_trusted_clock(stamped)  # device time alone
    assert needs_trusted_clock(item(bp(), offset=3.0).reading)  # corrected against our clock
    assert needs_trusted_clock(item(bp(stamp=None)).reading)  # receive time
    assert needs_trusted_clock(Reading(BP_ADDRESS, 0x2A35, b"\x00", RECEIVED, False))


def test_a_device_without_device_information_still_has_what_phddevice_requires() -> None:
    # PhdDevice: manufacturer 1.., modelNumber 1.., version MDCType 1..*: unknown, said so
    ctx = make_context(devices={BP_ADDRESS: DeviceInfo(address=BP_ADDRESS)})
    bundle = parse(build_bundle([item(bp())], ctx))
    (device,) = [
        d for d in resources(bundle, "Device") if d["meta"]["profile"][0].endswith("PhdDevice")
    ]
    unknown = {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "unknown",
            }
        ]
    }
    assert "manufacturer" not in device
    assert "modelNumber" not in device
    assert device["_manufacturer"] == unknown
    assert device["_modelNumber"] == unknown
    (version,) = device["version"]
    assert version["type"]["coding"][0]["code"] == "531976"  # firmware
    assert version["_value"] == unknown
    assert "value" not in version
    Device.model_validate(device)  # the FHIR library reads it as a valid Device


def test_device_addresses_match_in_any_case() -> None:
    ctx = make_context(devices={BP_ADDRESS.lower(): DeviceInfo(address=BP_ADDRESS, model="X")})
    bundle = parse(build_bundle([item(bp())], ctx))
    models = [d.get("modelNumber") for d in resources(bundle, "Device")]
    assert "X" in models


def test_context_rejects_bad_identifiers() -> None:
    with pytest.raises(ValueError, match="system_id"):
        DeviceInfo(address=BP_ADDRESS, system_id="1234")
    with pytest.raises(ValueError, match="patient"):
        make_context(patient_value="")


def test_serializer_writes_decimals_exactly() -> None:
    data = {"a": Decimal("1.2E+3"), "b": Decimal("71.0"), "c": [Decimal("-0.050"), "é", None, True]}
    assert bundle_to_json(data) == '{"a":1200,"b":71.0,"c":[-0.050,"é",null,true]}'.encode()
    with pytest.raises(ValueError, match="finite"):
        bundle_to_json({"x": Decimal("NaN")})
    with pytest.raises(TypeError):
        bundle_to_json({"x": object()})
    # A string that looks like the fast path's marker falls back to the exact writer.
    tricky = {"s": "\x000", "n": Decimal("2.50")}
    assert bundle_to_json(tricky) == b'{"s":"\\u00000","n":2.50}'


def test_received_at_zone_does_not_matter(ctx: FhirContext) -> None:
    paris = RECEIVED.astimezone(UTC).replace(tzinfo=UTC)
    a = bundle_to_json(build_bundle([item(bp(stamp=None), received=paris)], ctx))
    b = bundle_to_json(build_bundle([item(bp(stamp=None), received=paris.astimezone(ctx.tz))], ctx))
    assert a == b


@pytest.mark.parametrize(
    ("stamp", "offset"),
    [
        (datetime(9999, 12, 31, 23, 0), -1e6),  # corrected time past year 9999
        (datetime(9999, 12, 31, 23, 30), 0.0),  # local 23:30 in Paris is fine, UTC too
    ],
)
def test_device_time_out_of_range_is_skipped_not_fatal(
    ctx: FhirContext, stamp: datetime, offset: float
) -> None:
    odd = item(bp(stamp), offset=offset, item_id="odd-1")
    good = item(bp(systolic=130), item_id="good-1")
    skipped: list[MappingError] = []
    bundle = parse(build_bundle([odd, good], ctx, skipped))
    sent = {r["identifier"][0]["value"] for r in resources(bundle) if "identifier" in r}
    assert any(v.endswith(STAMP_PART) for v in sent)
    if offset:
        assert [(e.item_id, e.reason) for e in skipped] == [
            ("odd-1", "device time out of range once corrected by its clock offset")
        ]
    else:
        assert skipped == []
