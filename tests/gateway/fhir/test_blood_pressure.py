"""Blood pressure 0x2A35 → BP panel, pulse rate, measurement-status bits (FHIR.md 2, 6, 7, 8)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from device_drivers.blood_pressure import (
    BloodPressureMeasurement,
    MeasurementStatus,
    PressureUnit,
    PulseRateRange,
)
from device_drivers.ieee11073 import Special
from gateway.fhir import FhirContext, build_bundle, bundle_to_json
from tests.gateway.fhir.conftest import by_mdc, codings, item, parse, resources

MDC = "urn:iso:std:iso:11073:10101"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
STAMP = datetime(2026, 3, 10, 9, 58, 0)


def bp(**kw: object) -> BloodPressureMeasurement:
    args: dict[str, object] = {
        "unit": PressureUnit.MMHG,
        "systolic": Decimal(121),
        "diastolic": Decimal(79),
        "mean_arterial_pressure": Decimal(93),
        "timestamp": STAMP,
        "pulse_rate": Decimal(64),
    }
    args.update(kw)
    return BloodPressureMeasurement(**args)  # type: ignore[arg-type]


def component(obs: dict, code: int) -> dict:
    (found,) = [c for c in obs["component"] if (MDC, str(code)) in codings(c["code"])]
    return found


def test_panel_components_and_pulse_codes(ctx: FhirContext) -> None:
    bundle = parse(build_bundle([item(bp())], ctx))
    panel = by_mdc(bundle, 150020)
    assert codings(panel["code"]) == {(MDC, "150020"), (LOINC, "85354-9")}
    assert "valueQuantity" not in panel
    categories = {c["coding"][0]["code"] for c in panel["category"]}
    assert categories == {"phd", "vital-signs"}
    assert panel["meta"]["profile"] == [
        "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdCompoundNumericObservation"
    ]
    expected = {150021: ("8480-6", 121), 150022: ("8462-4", 79), 150023: ("8478-0", 93)}
    for mdc, (loinc, value) in expected.items():
        c = component(panel, mdc)
        assert (LOINC, loinc) in codings(c["code"])
        q = c["valueQuantity"]
        assert (q["system"], q["code"], q["value"]) == (UCUM, "mm[Hg]", value)
    pulse = by_mdc(bundle, 149546)
    assert codings(pulse["code"]) == {(MDC, "149546"), (LOINC, "8867-4")}
    assert pulse["valueQuantity"]["code"] == "/min"
    assert pulse["valueQuantity"]["value"] == 64
    assert "derivedFrom" not in pulse  # its own Observation, not a component


def test_kpa_converted_to_mmhg_exactly_rounded(ctx: FhirContext) -> None:
    # 16.0 kPa = 120.0102... mm[Hg]; 10.6 kPa = 79.506...; 12.4 kPa = 93.007...
    ctx_bundle = build_bundle(
        [
            item(
                bp(
                    unit=PressureUnit.KPA,
                    systolic=Decimal("16.0"),
                    diastolic=Decimal("10.6"),
                    mean_arterial_pressure=Decimal("12.4"),
                )
            )
        ],
        ctx,
    )
    raw = bundle_to_json(ctx_bundle).decode()
    bundle = parse(ctx_bundle)
    panel = by_mdc(bundle, 150020)
    values = {mdc: component(panel, mdc)["valueQuantity"] for mdc in (150021, 150022, 150023)}
    assert {m: str(q["value"]) for m, q in values.items()} == {
        150021: "120.0",
        150022: "79.5",
        150023: "93.0",
    }
    assert all(q["code"] == "mm[Hg]" for q in values.values())
    assert '"value":120.0,' in raw  # the trailing zero is precision, kept on the wire


def test_special_component_gets_its_own_absent_reason(ctx: FhirContext) -> None:
    bundle = parse(build_bundle([item(bp(mean_arterial_pressure=Special.NAN))], ctx))
    panel = by_mdc(bundle, 150020)
    mean = component(panel, 150023)
    assert "valueQuantity" not in mean
    assert mean["dataAbsentReason"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
        "code": "not-a-number",
    }
    assert "dataAbsentReason" not in panel
    assert component(panel, 150021)["valueQuantity"]["value"] == 121


def test_pulse_specials(ctx: FhirContext) -> None:
    for special, reason in (
        (Special.NRES, "error"),
        (Special.POSITIVE_INFINITY, "positive-infinity"),
        (Special.NEGATIVE_INFINITY, "negative-infinity"),
    ):
        pulse = by_mdc(parse(build_bundle([item(bp(pulse_rate=special))], ctx)), 149546)
        assert pulse["dataAbsentReason"]["coding"][0]["code"] == reason
        assert "valueQuantity" not in pulse


def test_status_bits_observation_reports_set_bits_by_meaning(ctx: FhirContext) -> None:
    status = MeasurementStatus(
        body_movement=True,
        irregular_pulse=True,
        improper_position=True,
        pulse_rate_range=PulseRateRange.BELOW,
    )
    bundle = parse(build_bundle([item(bp(measurement_status=status))], ctx))
    bits = by_mdc(bundle, 8410608)
    assert bits["meta"]["profile"][0].endswith("PhdBitsEnumerationObservation")
    assert "valueQuantity" not in bits
    got = {
        (c["code"]["coding"][0]["system"], c["code"]["coding"][0]["code"]): c["valueBoolean"]
        for c in bits["component"]
    }
    asn1 = "http://terminology.hl7.org/CodeSystem/ASN1ToHL7"
    assert got == {
        (asn1, "8410608.0"): True,
        (asn1, "8410608.2"): True,
        (asn1, "8410608.4"): True,
        (asn1, "8410608.5"): True,
    }
    panel_url = next(
        e["fullUrl"] for e in bundle["entry"] if e["resource"] is by_mdc(bundle, 150020)
    )
    assert bits["derivedFrom"] == [{"reference": panel_url}]
    assert [c["coding"][0]["code"] for c in bits["category"]] == ["phd"]


def test_pulse_above_range_and_no_bits_set(ctx: FhirContext) -> None:
    above = MeasurementStatus(pulse_rate_range=PulseRateRange.ABOVE, cuff_too_loose=True)
    bits = by_mdc(parse(build_bundle([item(bp(measurement_status=above))], ctx)), 8410608)
    assert {c["code"]["coding"][0]["code"] for c in bits["component"]} == {
        "8410608.1",
        "8410608.3",
    }
    clear = parse(build_bundle([item(bp(measurement_status=MeasurementStatus()))], ctx))
    assert len(resources(clear)) == 2  # panel and pulse, no empty bits observation


def test_without_pulse_no_pulse_observation(ctx: FhirContext) -> None:
    bundle = parse(build_bundle([item(bp(pulse_rate=None))], ctx))
    assert [r["code"]["coding"][0]["code"] for r in resources(bundle)] == ["150020"]
