"""Glucose 0x2A18 (+ context 0x2A34) → glucose, sample location, sensor status, context
observations (FHIR.md sections 3, 6, 8)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

import device_drivers.glucose as glucose_codecs
from device_drivers.glucose import (
    CarbohydrateId,
    ConcentrationUnit,
    GlucoseMeasurement,
    GlucoseMeasurementContext,
    GlucoseType,
    Health,
    Meal,
    SampleLocation,
    SensorStatus,
)
from gateway.fhir import FhirContext, MappingError, NotAPatientResult, build_bundle, bundle_to_json
from tests.gateway.fhir.conftest import GLUCOSE_ADDRESS, by_mdc, codings, item, parse, resources

MDC = "urn:iso:std:iso:11073:10101"
LOINC = "http://loinc.org"
BASE = datetime(2026, 3, 9, 7, 15, 0)


def glucose(**kw: object) -> GlucoseMeasurement:
    args: dict[str, object] = {
        "sequence_number": 7,
        "base_time": BASE,
        "time_offset": None,
        "concentration": Decimal("95E-5"),
        "concentration_unit": ConcentrationUnit.KG_PER_L,
        "type": GlucoseType.CAPILLARY_WHOLE_BLOOD,
        "sample_location": SampleLocation.FINGER,
        "sensor_status": None,
        "context_follows": False,
    }
    args.update(kw)
    return GlucoseMeasurement(**args)  # type: ignore[arg-type]


def one(value: GlucoseMeasurement, ctx: FhirContext, context: bytes | None = None) -> dict:
    return parse(build_bundle([item(value, address=GLUCOSE_ADDRESS, context=context)], ctx))


def test_kg_per_l_becomes_mg_per_dl_keeping_the_mantissa(ctx: FhirContext) -> None:
    built = build_bundle([item(glucose(), address=GLUCOSE_ADDRESS)], ctx)
    assert '"value":95,' in bundle_to_json(built).decode()
    obs = by_mdc(parse(built), 160184)
    assert codings(obs["code"]) == {(MDC, "160184"), (LOINC, "2339-0")}
    q = obs["valueQuantity"]
    assert (q["code"], q["system"]) == ("mg/dL", "http://unitsofmeasure.org")
    # Glucose is not an R4 vital sign: `phd` only (MES adds `vital-signs`, test_mes.py).
    assert [c["coding"][0]["code"] for c in obs["category"]] == ["phd"]


def test_mol_per_l_becomes_mmol_per_l(ctx: FhirContext) -> None:
    value = glucose(
        concentration=Decimal("55E-4"),
        concentration_unit=ConcentrationUnit.MOL_PER_L,
        type=GlucoseType.CAPILLARY_PLASMA,
    )
    built = build_bundle([item(value, address=GLUCOSE_ADDRESS)], ctx)
    assert '"value":5.5,' in bundle_to_json(built).decode()
    obs = by_mdc(parse(built), 160188)
    assert codings(obs["code"]) == {(MDC, "160188"), (LOINC, "14749-6")}
    assert obs["valueQuantity"]["code"] == "mmol/L"


@pytest.mark.parametrize(
    ("kind", "mdc", "loinc_mass"),
    [
        (GlucoseType.VENOUS_WHOLE_BLOOD, 160192, "2339-0"),
        (GlucoseType.VENOUS_PLASMA, 160196, "2345-7"),
        (GlucoseType.ARTERIAL_WHOLE_BLOOD, 160200, "2339-0"),
        (GlucoseType.ARTERIAL_PLASMA, 160204, "2345-7"),
        (GlucoseType.UNDETERMINED_WHOLE_BLOOD, 160364, "2339-0"),
        (GlucoseType.UNDETERMINED_PLASMA, 160368, "2345-7"),
        (GlucoseType.INTERSTITIAL_FLUID, 160212, "99504-3"),
        (GlucoseType(0), 160020, "2339-0"),  # reserved: generic glucose
    ],
)
def test_code_by_sample_type(
    ctx: FhirContext, kind: GlucoseType, mdc: int, loinc_mass: str
) -> None:
    obs = by_mdc(one(glucose(type=kind), ctx), mdc)
    assert codings(obs["code"]) == {(MDC, str(mdc)), (LOINC, loinc_mass)}


def test_sample_location_observation(ctx: FhirContext) -> None:
    bundle = one(glucose(sample_location=SampleLocation.EARLOBE), ctx)
    location = by_mdc(bundle, 8417844)
    assert location["valueCodeableConcept"]["coding"] == [{"system": MDC, "code": "8417856"}]
    glucose_url = next(
        e["fullUrl"] for e in bundle["entry"] if e["resource"] is by_mdc(bundle, 160184)
    )
    assert location["derivedFrom"] == [{"reference": glucose_url}]
    absent = one(glucose(sample_location=SampleLocation.NOT_AVAILABLE), ctx)
    assert [r["code"]["coding"][0]["code"] for r in resources(absent)] == ["160184"]


@pytest.mark.parametrize(
    "value",
    [
        glucose(type=GlucoseType.CONTROL_SOLUTION),
        glucose(sample_location=SampleLocation.CONTROL_SOLUTION),
    ],
)
def test_control_solution_is_never_a_patient_result(ctx: FhirContext, value: object) -> None:
    control = item(value, address=GLUCOSE_ADDRESS, item_id="ctl-1")
    patient = item(glucose(sequence_number=8), address=GLUCOSE_ADDRESS)
    skipped: list[MappingError] = []
    bundle = parse(build_bundle([control, patient], ctx, skipped))
    assert [(type(e), e.item_id) for e in skipped] == [(NotAPatientResult, "ctl-1")]
    assert len(resources(bundle)) == 2  # the patient's glucose and its location only


def test_sensor_status_bits_by_meaning_time_fault_not_a_bit(ctx: FhirContext) -> None:
    status = (
        SensorStatus.DEVICE_BATTERY_LOW | SensorStatus.RESULT_TOO_HIGH | SensorStatus.TIME_FAULT
    )
    bits = by_mdc(one(glucose(sensor_status=status), ctx), 8417752)
    assert {c["code"]["coding"][0]["code"] for c in bits["component"]} == {
        "8417752.0",
        "8417752.5",
    }
    assert all(c["valueBoolean"] is True for c in bits["component"])


def test_context_observations(ctx: FhirContext) -> None:
    context = GlucoseMeasurementContext(
        sequence_number=7,
        carbohydrate_id=CarbohydrateId.BREAKFAST,
        carbohydrate_kg=Decimal("0.050"),
        meal=Meal.PREPRANDIAL,
        tester=glucose_codecs.Tester.SELF,
        health=Health.NO_HEALTH_ISSUES,
        hba1c_pct=Decimal("6.1"),
    )
    bundle = one(glucose(context_follows=True), ctx, bytes(context))
    assert by_mdc(bundle, 8417864)["valueCodeableConcept"]["coding"][0]["code"] == "8417868"
    assert by_mdc(bundle, 8417884)["valueCodeableConcept"]["coding"][0]["code"] == "8417888"
    assert by_mdc(bundle, 8417820)["valueCodeableConcept"]["coding"][0]["code"] == "8417840"
    carbs = by_mdc(bundle, 8417768)["valueQuantity"]
    assert (str(carbs["value"]), carbs["code"]) == ("50", "g")
    hba1c = by_mdc(bundle, 160220)["valueQuantity"]
    assert (str(hba1c["value"]), hba1c["code"]) == ("6.1", "%")
    # Neither the glucose nor its location and context are vital signs: `phd` only.
    for obs in resources(bundle):
        assert [c["coding"][0]["code"] for c in obs["category"]] == ["phd"]


def test_bedtime_meal_is_omitted_not_guessed(ctx: FhirContext) -> None:
    context = GlucoseMeasurementContext(sequence_number=7, meal=Meal.BEDTIME)
    bundle = one(glucose(context_follows=True), ctx, bytes(context))
    assert all(r["code"]["coding"][0]["code"] != "8417864" for r in resources(bundle))


def test_malformed_context_keeps_the_glucose(ctx: FhirContext) -> None:
    bundle = one(glucose(context_follows=True), ctx, b"\x02")
    assert [r["code"]["coding"][0]["code"] for r in resources(bundle)] == ["160184", "8417844"]


def test_time_offset_is_part_of_the_device_time(ctx: FhirContext) -> None:
    # 07:15 + 90 min, Paris in winter (UTC+1): 07:45 UTC.
    obs = by_mdc(one(glucose(time_offset=90), ctx), 160184)
    assert obs["effectiveDateTime"] == "2026-03-09T07:45:00+00:00"


def test_a_device_time_past_year_9999_maps_on_the_receive_time(ctx: FhirContext) -> None:
    # a meter clock at 9999-12-31T23:59 plus 60 min: no such time, the receive time stands in
    late = glucose(base_time=datetime(9999, 12, 31, 23, 59), time_offset=60)
    obs = by_mdc(one(late, ctx), 160184)
    assert obs["effectiveDateTime"] == "2026-03-10T09:00:30+00:00"  # conftest.RECEIVED
