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
    MedicationId,
    MedicationUnit,
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


# The IG's ASN1ToHL7 code system (HL7 PHD IG, CodeSystem.ASN1ToHL7.fsh), by BLE bit meaning.
IG_SENSOR_BITS = {
    SensorStatus.DEVICE_BATTERY_LOW: ("8417752.0", "device-battery-low"),
    SensorStatus.SENSOR_MALFUNCTION: ("8417752.1", "sensor-malfunction"),
    SensorStatus.SAMPLE_SIZE_INSUFFICIENT: ("8417752.2", "sensor-sample-size-insufficient"),
    SensorStatus.STRIP_INSERTION_ERROR: ("8417752.3", "sensor-strip-insertion"),
    SensorStatus.STRIP_TYPE_INCORRECT: ("8417752.4", "sensor-strip-type-incorrect"),
    SensorStatus.RESULT_TOO_HIGH: ("8417752.5", "sensor-result-too-high"),
    SensorStatus.RESULT_TOO_LOW: ("8417752.6", "sensor-result-too-low"),
    SensorStatus.TEMPERATURE_TOO_HIGH: ("8417752.7", "sensor-temp-too-high"),
    SensorStatus.TEMPERATURE_TOO_LOW: ("8417752.8", "sensor-temp-too-low"),
    SensorStatus.READ_INTERRUPTED: ("8417752.9", "sensor-read-interrupt"),
    SensorStatus.GENERAL_DEVICE_FAULT: ("8417752.10", "device-gen-fault"),
}


@pytest.mark.parametrize("bit", list(IG_SENSOR_BITS), ids=lambda b: b.name)
def test_each_sensor_status_bit_has_the_ig_code_and_display(ctx: FhirContext, bit: int) -> None:
    bits = by_mdc(one(glucose(sensor_status=bit), ctx), 8417752)
    (component,) = bits["component"]
    (coding,) = component["code"]["coding"]
    assert coding["system"] == "http://terminology.hl7.org/CodeSystem/ASN1ToHL7"
    assert (coding["code"], coding["display"]) == IG_SENSOR_BITS[bit]


def test_a_test_without_a_result_is_sent_as_not_performed_with_its_status(
    ctx: FhirContext,
) -> None:
    # flags bit 1 clear: no concentration, type or location; the sensor status says why
    record = glucose(
        concentration=None,
        concentration_unit=None,
        type=None,
        sample_location=None,
        sensor_status=SensorStatus.SAMPLE_SIZE_INSUFFICIENT,
    )
    skipped: list[MappingError] = []
    bundle = parse(build_bundle([item(record, address=GLUCOSE_ADDRESS)], ctx, skipped))
    assert skipped == []
    obs = by_mdc(bundle, 160020)  # generic glucose: the meter did not say the sample type
    assert "valueQuantity" not in obs
    assert obs["dataAbsentReason"]["coding"] == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
            "code": "not-performed",
        }
    ]
    (bit,) = by_mdc(bundle, 8417752)["component"]
    assert bit["code"]["coding"][0]["code"] == "8417752.2"
    assert obs["effectiveDateTime"] == "2026-03-09T06:15:00+00:00"


def test_two_records_at_the_same_wall_time_both_go(ctx: FhirContext) -> None:
    """A meter's clock turned back an hour (winter time, the offset field -60): two records
    that read 07:15 both arrive whole, as two Observations each (the IG's identifier carries
    the reported offset)."""
    summer = glucose(sequence_number=8, sample_location=SampleLocation.FINGER)
    winter = glucose(
        sequence_number=9,
        base_time=BASE.replace(hour=8),
        time_offset=-60,
        sample_location=SampleLocation.ALTERNATE_SITE_TEST,
    )
    items = [
        item(summer, address=GLUCOSE_ADDRESS, item_id="a"),
        item(winter, address=GLUCOSE_ADDRESS, item_id="b"),
    ]
    bundle = parse(build_bundle(items, ctx))
    locations = [
        r["valueCodeableConcept"]["coding"][0]["code"]
        for r in resources(bundle)
        if r["code"]["coding"][0]["code"] == "8417844"
    ]
    assert sorted(locations) == ["8417848", "8417852"]  # finger and alternate site
    glucoses = [r for r in resources(bundle) if r["code"]["coding"][0]["code"] == "160184"]
    assert len(glucoses) == 2
    assert {g["effectiveDateTime"] for g in glucoses} == {"2026-03-09T06:15:00+00:00"}
    assert len({g["identifier"][0]["value"] for g in glucoses}) == 2


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


@pytest.mark.parametrize(
    ("kind", "amount", "unit", "code", "value", "ucum"),
    [
        (MedicationId.RAPID_ACTING_INSULIN, "5E-6", MedicationUnit.KG, 8417800, "5", "mg"),
        (MedicationId.SHORT_ACTING_INSULIN, "1.2E-5", MedicationUnit.KG, 8417804, "12", "mg"),
        (MedicationId.INTERMEDIATE_ACTING_INSULIN, "8E-3", MedicationUnit.L, 8417808, "8", "mL"),
        (MedicationId.LONG_ACTING_INSULIN, "2.5E-3", MedicationUnit.L, 8417812, "2.5", "mL"),
        (MedicationId.PRE_MIXED_INSULIN, "10E-6", MedicationUnit.KG, 8417816, "10", "mg"),
        (9, "3E-6", MedicationUnit.KG, 8417796, "3", "mg"),  # an id without a code
    ],
)
def test_medication_is_coded_by_kind_in_mg_or_ml(
    ctx: FhirContext, kind: int, amount: str, unit: MedicationUnit, code: int, value: str, ucum: str
) -> None:
    context = GlucoseMeasurementContext(
        sequence_number=7,
        medication_id=MedicationId(kind),
        medication=Decimal(amount),
        medication_unit=unit,
    )
    bundle = one(glucose(context_follows=True), ctx, bytes(context))
    obs = by_mdc(bundle, code)
    q = obs["valueQuantity"]
    assert (str(q["value"]), q["unit"], q["code"]) == (value, ucum, ucum)
    assert q["system"] == "http://unitsofmeasure.org"
    assert obs["derivedFrom"] == [{"reference": by_mdc_url(bundle, 160184)}]
    assert obs["effectiveDateTime"] == by_mdc(bundle, 160184)["effectiveDateTime"]


def test_exercise_intensity_over_its_duration(ctx: FhirContext) -> None:
    context = GlucoseMeasurementContext(
        sequence_number=7, exercise_duration_s=1800, exercise_intensity_pct=70
    )
    bundle = one(glucose(context_follows=True), ctx, bytes(context))
    obs = by_mdc(bundle, 8417760)
    q = obs["valueQuantity"]
    assert (q["value"], q["code"]) == (70, "%")
    # the glucose at 07:15 Paris (UTC+1), the exercise's 30 minutes from then
    assert obs["effectivePeriod"] == {
        "start": "2026-03-09T06:15:00+00:00",
        "end": "2026-03-09T06:45:00+00:00",
    }
    assert "effectiveDateTime" not in obs
    assert obs["derivedFrom"] == [{"reference": by_mdc_url(bundle, 160184)}]


def test_an_exercise_overrun_has_no_end(ctx: FhirContext) -> None:
    context = GlucoseMeasurementContext(
        sequence_number=7, exercise_duration_s=0xFFFF, exercise_intensity_pct=40
    )
    obs = by_mdc(one(glucose(context_follows=True), ctx, bytes(context)), 8417760)
    assert obs["effectiveDateTime"] == "2026-03-09T06:15:00+00:00"
    assert "effectivePeriod" not in obs


def by_mdc_url(bundle: dict, code: int) -> str:
    (url,) = [
        e["fullUrl"]
        for e in bundle["entry"]
        if e["resource"].get("code", {}).get("coding", [{}])[0].get("code") == str(code)
    ]
    return str(url)


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
