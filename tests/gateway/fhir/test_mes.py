"""`render_mes`, the ANS "Mesures de santé" destination (FHIR.md section 14, gateway/fhir/mes.py):
every Bundle valid FHIR (fhir.resources R4B) and checked rule by rule against the MES profiles,
on hand-made readings and on generated readings of every kind."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import pytest
from fhir.resources.R4B.bundle import Bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_drivers.blood_pressure import MeasurementStatus, PressureUnit
from device_drivers.body_composition import BodyCompositionMeasurement
from device_drivers.glucose import (
    ConcentrationUnit,
    GlucoseMeasurementContext,
    GlucoseType,
    Meal,
)
from device_drivers.ieee11073 import Special
from device_drivers.weight_scale import WeightMeasurement, WeightUnit
from gateway.fhir import (
    DeviceInfo,
    DeviceNotIdentified,
    FhirContext,
    MappingError,
    NotAPatientResult,
    NotForDestination,
    build_bundle,
    render_mes,
)
from gateway.fhir.bundle import _urn
from gateway.fhir.elements import convert
from tests.gateway.fhir.conftest import (
    BP_ADDRESS,
    GLUCOSE_ADDRESS,
    PATIENT_SYSTEM,
    PATIENT_VALUE,
    SCALE_ADDRESS,
    Item,
    codings,
    item,
    make_context,
    resources,
)
from tests.gateway.fhir.test_blood_pressure import bp
from tests.gateway.fhir.test_glucose import glucose
from tests.gateway.fhir.test_render import items

MES = "https://interop.esante.gouv.fr/ig/fhir/mesures/StructureDefinition/"
NOS_LOINC = "https://mos.esante.gouv.fr/NOS/TRE_A04-Loinc/FHIR/TRE-A04-Loinc"
LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
SYSID = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
STU1_IDENTIFIER_TYPES = "http://hl7.org/fhir/uv/phd/CodeSystem/ContinuaDeviceIdentifiers"
PHD_ID = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdBaseObservation"
MOMENT = MES + "mesures-moment-of-measurement"
ORIGINAL = MES + "mesures-original-data"
J157 = {"88365-2", "16915-1", "53049-3", "LA11865-5", "LA46-8"}
STAMP = datetime(2026, 3, 10, 7, 30, 5)
UNREGISTERED = "AA:BB:CC:DD:EE:FF"  # the third address `items()` draws

# profile → (LOINC code, UCUM unit of the value or of every component)
PROFILES = {
    MES + "mesures-fr-observation-bp": ("85354-9", "mm[Hg]"),
    MES + "mesures-fr-observation-heartrate": ("8867-4", "/min"),
    MES + "mesures-fr-observation-body-weight": ("29463-7", "kg"),
    MES + "mesures-fr-observation-bodyheight": ("8302-2", "cm"),
    MES + "mesures-observation-glucose": ("2345-7", "mg/dL"),
}


def mes_context(**overrides: Any) -> FhirContext:
    """Every device known with a system id, as MES needs."""
    devices = {
        BP_ADDRESS: make_context().devices[BP_ADDRESS],
        GLUCOSE_ADDRESS: DeviceInfo(
            address=GLUCOSE_ADDRESS, manufacturer="Roche", system_id="00-60-19-FF-FE-AA-BB-CC"
        ),
        SCALE_ADDRESS: DeviceInfo(
            address=SCALE_ADDRESS, manufacturer="A&D", system_id="E00102FFFE030405"
        ),
        UNREGISTERED: DeviceInfo(address=UNREGISTERED, system_id="AABBCCFFFEDDEEFF"),
    }
    return make_context(devices=devices, **overrides)


@pytest.fixture
def ctx() -> FhirContext:
    return mes_context()


def check(raw: bytes, ctx: FhirContext) -> dict[str, Any]:
    """Validate one MES Bundle (R4B structure + every MES rule mes.py applies); return it with
    exact Decimals."""
    Bundle.model_validate_json(raw)
    bundle: dict[str, Any] = json.loads(raw, parse_float=Decimal)
    assert bundle["type"] == "transaction"
    assert bundle["meta"]["profile"] == [MES + "mesures-bundle-flux-alimentation"]
    entries = bundle["entry"]
    kinds = [e["resource"]["resourceType"] for e in entries]
    assert kinds == ["Device", "Observation"]  # one Observation, its one PhdDevice
    device_entry, obs_entry = entries
    device, obs = device_entry["resource"], obs_entry["resource"]
    for entry in entries:
        assert entry["request"]["method"] == "POST"
        assert entry["request"]["url"] == entry["resource"]["resourceType"]
        assert entry["fullUrl"] == f"urn:uuid:{entry['resource']['id']}"

    # Device: PhdDevice, conditional create on the OID system id, STU1 identifier types.
    assert device["meta"]["profile"] == ["http://hl7.org/fhir/uv/phd/StructureDefinition/PhdDevice"]
    condition = device_entry["request"]["ifNoneExist"]
    system, _, value = unquote(condition.removeprefix("identifier=")).partition("|")
    assert system == SYSID
    assert system.startswith("urn:oid:")
    assert (system, value) in [(i["system"], i["value"]) for i in device["identifier"]]
    assert {i["type"]["coding"][0]["system"] for i in device["identifier"]} == {
        STU1_IDENTIFIER_TYPES
    }
    assert obs["device"] == {"reference": f"Device/{device['id']}"}

    # Observation: MES profile, vital-signs only, subject by identifier, stable identifier.
    (profile,) = obs["meta"]["profile"]
    loinc, unit = PROFILES[profile]
    assert (LOINC, loinc) in codings(obs["code"])
    assert any(c["system"] == MDC for c in obs["code"]["coding"])
    assert obs["category"] == [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                     "code": "vital-signs"}]}
    ]  # fmt: skip
    assert obs["subject"] == {
        "identifier": {"system": ctx.patient_system, "value": ctx.patient_value}
    }
    assert obs["status"] == "final"
    (identifier,) = obs["identifier"]
    assert identifier["system"] == PHD_ID
    assert obs_entry["fullUrl"] == _urn("observation", identifier["value"])
    assert "ifNoneExist" not in obs_entry["request"]
    assert "T" in obs["effectiveDateTime"]
    text = raw.decode()
    for absent in ("dataAbsentReason", "derivedFrom", "PhgDevice", "observation-gatewayDevice"):
        assert absent not in text
    assert "PhdObservationCategories" not in text
    assert "mesures-number-of-days" not in text

    quantities = [c["valueQuantity"] for c in obs.get("component", [])]
    if "valueQuantity" in obs:
        quantities.append(obs["valueQuantity"])
    assert quantities
    for q in quantities:
        assert (q["system"], q["code"]) == (UCUM, unit)
        assert isinstance(q["value"], Decimal | int)

    extensions = {e["url"]: e for e in obs.get("extension", [])}
    if profile.endswith("glucose"):
        assert (NOS_LOINC, "2345-7") in codings(obs["code"])
        assert obs["code"]["coding"][0] == {"system": NOS_LOINC, "code": "2345-7"}
        (coding,) = extensions.pop(MOMENT)["valueCodeableConcept"]["coding"]
        assert coding["system"] == NOS_LOINC
        assert coding["code"] in J157
    else:
        assert MOMENT not in extensions
    if ORIGINAL in extensions:
        parts = {e["url"]: e for e in extensions.pop(ORIGINAL)["extension"]}
        assert parts["has-been-converted"]["valueBoolean"] is True
        assert parts["original-value"]["valueQuantity"]["code"] != unit
        assert parts["original-code"]["valueCodeableConcept"]["coding"]
    assert not extensions
    return bundle


def mes(
    values: list[Item], ctx: FhirContext, skipped: list[MappingError] | None = None
) -> list[dict[str, Any]]:
    return [check(raw, ctx) for raw in render_mes(values, ctx, skipped)]


def observation(bundle: dict[str, Any]) -> dict[str, Any]:
    (obs,) = resources(bundle)
    return obs


def profile_of(bundle: dict[str, Any]) -> str:
    (profile,) = observation(bundle)["meta"]["profile"]
    return str(profile.removeprefix(MES))


def value(bundle: dict[str, Any]) -> tuple[str, str]:
    q = observation(bundle)["valueQuantity"]
    return str(q["value"]), q["code"]


# --- blood pressure ---------------------------------------------------------------------------
def test_bp_and_its_pulse_go_in_two_bundles(ctx: FhirContext) -> None:
    status = MeasurementStatus(body_movement=True, irregular_pulse=True)
    panel, pulse = mes([item(bp(measurement_status=status))], ctx)
    assert profile_of(panel) == "mesures-fr-observation-bp"
    assert profile_of(pulse) == "mesures-fr-observation-heartrate"
    components = {
        c["code"]["coding"][1]["code"]: str(c["valueQuantity"]["value"])
        for c in observation(panel)["component"]
    }
    assert components == {"8480-6": "121", "8462-4": "79", "8478-0": "93"}
    assert value(pulse) == ("64", "/min")
    # the status bits have no MES profile: not sent, and the reading is not reported
    assert all("8410608" not in json.dumps(b, default=str) for b in (panel, pulse))


def test_bp_identifiers_and_times_are_the_phd_ones(ctx: FhirContext) -> None:
    reading = item(bp(), offset=-42.0)
    phd = {
        r["identifier"][0]["value"]: r["effectiveDateTime"]
        for r in resources(build_bundle([reading], ctx))
        if r.get("identifier", [{}])[0].get("system") == PHD_ID
    }
    sent = mes([reading], ctx)
    assert {
        observation(b)["identifier"][0]["value"]: observation(b)["effectiveDateTime"] for b in sent
    } == phd
    # the corrected time goes out, the coincident-timestamp Observation does not
    assert all(len(b["entry"]) == 2 for b in sent)


def test_kpa_arrives_in_mm_hg(ctx: FhirContext) -> None:
    value = bp(
        unit=PressureUnit.KPA,
        systolic=Decimal("16.0"),
        diastolic=Decimal("10.5"),
        mean_arterial_pressure=Decimal("12.3"),
        pulse_rate=None,
    )
    (panel,) = mes([item(value)], ctx)
    assert [str(c["valueQuantity"]["value"]) for c in observation(panel)["component"]] == [
        "120.0",
        "78.8",
        "92.3",
    ]


def test_special_mean_pressure_is_left_out_of_the_panel(ctx: FhirContext) -> None:
    (panel, _pulse) = mes([item(bp(mean_arterial_pressure=Special.NAN))], ctx)
    assert [c["code"]["coding"][1]["code"] for c in observation(panel)["component"]] == [
        "8480-6",
        "8462-4",
    ]


def test_special_systolic_refuses_the_panel_but_sends_the_pulse(ctx: FhirContext) -> None:
    skipped: list[MappingError] = []
    (pulse,) = mes([item(bp(systolic=Special.NRES))], ctx, skipped)
    assert profile_of(pulse) == "mesures-fr-observation-heartrate"
    assert skipped == []


def test_reading_with_only_special_values_is_not_for_mes(ctx: FhirContext) -> None:
    skipped: list[MappingError] = []
    reading = item(bp(diastolic=Special.POSITIVE_INFINITY, pulse_rate=None), item_id="bp-9")
    assert render_mes([reading], ctx, skipped) == []
    (error,) = skipped
    assert isinstance(error, NotForDestination)
    assert error.item_id == "bp-9"
    assert "bp-9" in str(error)
    assert "special value" in str(error)
    for number in ("121", "93"):
        assert number not in str(error)  # names the reading, never a value
    with pytest.raises(NotForDestination, match="bp-9"):
        render_mes([reading], ctx)


# --- weight scale and body composition ----------------------------------------------------------
def test_weight_and_height_in_two_bundles_bmi_never(ctx: FhirContext) -> None:
    reading = WeightMeasurement(
        unit=WeightUnit.SI,
        weight=Decimal("72.350"),
        timestamp=STAMP,
        bmi=Decimal("23.6"),
        height=Decimal("1.751"),
    )
    weight, height = mes([item(reading, address=SCALE_ADDRESS)], ctx)
    assert profile_of(weight) == "mesures-fr-observation-body-weight"
    assert value(weight) == ("72.350", "kg")
    assert profile_of(height) == "mesures-fr-observation-bodyheight"
    assert value(height) == ("175.1", "cm")
    for bundle in (weight, height):
        assert "39156-5" not in json.dumps(bundle, default=str)  # BMI: MES computes it, refuses it
        assert "extension" not in observation(bundle)  # no unit conversion


def test_imperial_is_converted_keeping_the_original(ctx: FhirContext) -> None:
    reading = WeightMeasurement(
        unit=WeightUnit.IMPERIAL,
        weight=Decimal("160.50"),
        bmi=Decimal("23.7"),
        height=Decimal("69.0"),
    )
    weight, height = mes([item(reading, address=SCALE_ADDRESS)], ctx)
    assert value(weight) == ("72.802", "kg")  # 72.8015754 to the 5 digits the scale gave
    assert value(height) == ("175", "cm")  # 175.26 to 3 digits
    for bundle, original in ((weight, ("160.50", "[lb_av]")), (height, ("69.0", "[in_i]"))):
        (extension,) = observation(bundle)["extension"]
        parts = {e["url"]: e for e in extension["extension"]}
        q = parts["original-value"]["valueQuantity"]
        assert (str(q["value"]), q["code"]) == original
        assert parts["original-code"]["valueCodeableConcept"] == observation(bundle)["code"]


def test_special_weight_is_not_for_mes(ctx: FhirContext) -> None:
    reading = WeightMeasurement(unit=WeightUnit.SI, weight=Special.NAN, timestamp=STAMP)
    skipped: list[MappingError] = []
    assert render_mes([item(reading, address=SCALE_ADDRESS, item_id="w-1")], ctx, skipped) == []
    assert [(type(e), e.item_id) for e in skipped] == [(NotForDestination, "w-1")]


def test_body_composition_is_not_for_mes(ctx: FhirContext) -> None:
    reading = BodyCompositionMeasurement(
        unit=WeightUnit.SI, body_fat_pct=Decimal("21.4"), weight=Decimal("72.350")
    )
    skipped: list[MappingError] = []
    assert render_mes([item(reading, address=SCALE_ADDRESS, item_id="bc-1")], ctx, skipped) == []
    (error,) = skipped
    assert isinstance(error, NotForDestination)
    assert "body composition" in str(error)
    assert "21.4" not in str(error)


# --- glucose ------------------------------------------------------------------------------------
def one_glucose(ctx: FhirContext, context: bytes | None = None, **kw: object) -> dict[str, Any]:
    (bundle,) = mes([item(glucose(**kw), address=GLUCOSE_ADDRESS, context=context)], ctx)
    return observation(bundle)


def test_glucose_in_mg_per_dl_with_nos_and_loinc_codes(ctx: FhirContext) -> None:
    obs = one_glucose(ctx)
    assert obs["meta"]["profile"] == [MES + "mesures-observation-glucose"]
    assert codings(obs["code"]) == {(NOS_LOINC, "2345-7"), (LOINC, "2345-7"), (MDC, "160184")}
    assert (str(obs["valueQuantity"]["value"]), obs["valueQuantity"]["code"]) == ("95", "mg/dL")
    # no meal context: the moment is "other"
    (moment,) = obs["extension"]
    assert moment == {
        "url": MOMENT,
        "valueCodeableConcept": {"coding": [{"system": NOS_LOINC, "code": "LA46-8"}]},
    }


@pytest.mark.parametrize(
    ("meal", "moment"),
    [
        (Meal.PREPRANDIAL, "88365-2"),
        (Meal.POSTPRANDIAL, "16915-1"),
        (Meal.FASTING, "53049-3"),
        (Meal.CASUAL, "LA46-8"),
        (Meal.BEDTIME, "LA46-8"),
    ],
)
def test_meal_context_gives_the_moment_of_measurement(
    ctx: FhirContext, meal: Meal, moment: str
) -> None:
    context = bytes(GlucoseMeasurementContext(sequence_number=7, meal=meal))
    obs = one_glucose(ctx, context, context_follows=True)
    assert obs["extension"][0]["url"] == MOMENT
    assert obs["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == moment


def test_mmol_per_l_is_converted_to_mg_per_dl_keeping_the_original(ctx: FhirContext) -> None:
    obs = one_glucose(
        ctx,
        concentration=Decimal("55E-4"),
        concentration_unit=ConcentrationUnit.MOL_PER_L,
        type=GlucoseType.CAPILLARY_PLASMA,
    )
    # 5.5 mmol/L × 18.0156 = 99.09 mg/dL, to the reading's 2 digits
    assert (str(obs["valueQuantity"]["value"]), obs["valueQuantity"]["code"]) == ("99", "mg/dL")
    assert codings(obs["code"]) == {(NOS_LOINC, "2345-7"), (LOINC, "2345-7"), (MDC, "160188")}
    moment, original = obs["extension"]
    assert moment["url"] == MOMENT
    assert original["url"] == ORIGINAL
    parts = {e["url"]: e for e in original["extension"]}
    q = parts["original-value"]["valueQuantity"]
    assert (str(q["value"]), q["code"], q["system"]) == ("5.5", "mmol/L", UCUM)
    assert (LOINC, "14749-6") in codings(parts["original-code"]["valueCodeableConcept"])


def test_interstitial_and_control_solution_are_refused(ctx: FhirContext) -> None:
    skipped: list[MappingError] = []
    values = [
        item(glucose(type=GlucoseType.INTERSTITIAL_FLUID), address=GLUCOSE_ADDRESS, item_id="i"),
        item(glucose(type=GlucoseType.CONTROL_SOLUTION), address=GLUCOSE_ADDRESS, item_id="c"),
    ]
    assert render_mes(values, ctx, skipped) == []
    assert [(type(e), e.item_id) for e in skipped] == [
        (NotForDestination, "i"),
        (NotAPatientResult, "c"),
    ]


def test_special_glucose_is_refused(ctx: FhirContext) -> None:
    skipped: list[MappingError] = []
    reading = item(glucose(concentration=Special.NAN), address=GLUCOSE_ADDRESS, item_id="g")
    assert render_mes([reading], ctx, skipped) == []
    assert [type(e) for e in skipped] == [NotForDestination]


# --- devices, subject, ordering ----------------------------------------------------------------
def test_device_without_system_id_cannot_be_sent() -> None:
    ctx = make_context()  # the glucose meter is registered without a system id
    skipped: list[MappingError] = []
    sent = render_mes(
        [item(bp()), item(glucose(), address=GLUCOSE_ADDRESS, item_id="g-1")], ctx, skipped
    )
    assert len(sent) == 2  # the BP monitor has one: its panel and pulse go
    (error,) = skipped
    assert isinstance(error, DeviceNotIdentified)
    assert not isinstance(error, NotForDestination)  # to be kept, not acknowledged as refused
    assert error.item_id == "g-1"
    assert "system id" in str(error)
    assert GLUCOSE_ADDRESS in str(error)


def test_subject_is_the_patient_identifier(ctx: FhirContext) -> None:
    (_, pulse) = mes([item(bp())], ctx)
    subject = observation(pulse)["subject"]
    assert subject == {"identifier": {"system": PATIENT_SYSTEM, "value": PATIENT_VALUE}}


def test_device_is_the_same_resource_in_every_bundle(ctx: FhirContext) -> None:
    first, second = mes([item(bp())], ctx)
    assert first["entry"][0] == second["entry"][0]
    device = first["entry"][0]["resource"]
    assert (SYSID, "71-10-00-FE-FF-5F-49-B0") in [
        (i["system"], i["value"]) for i in device["identifier"]
    ]


def test_order_determinism_and_in_call_dedup(ctx: FhirContext) -> None:
    scale = item(
        WeightMeasurement(unit=WeightUnit.SI, weight=Decimal("70.0")), address=SCALE_ADDRESS
    )
    sugar = item(glucose(), address=GLUCOSE_ADDRESS)
    pressure = item(bp(pulse_rate=None))
    values = [scale, sugar, pressure, sugar]  # the glucose twice: sent once
    sent = render_mes(values, ctx)
    assert [profile_of(check(raw, ctx)) for raw in sent] == [
        "mesures-fr-observation-body-weight",
        "mesures-observation-glucose",
        "mesures-fr-observation-bp",
    ]
    assert render_mes(values, ctx) == sent


# --- generated readings of every kind ------------------------------------------------------------
GENERATED = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@GENERATED
@given(st.lists(items(), min_size=1, max_size=4), st.booleans())
def test_generated_readings_give_valid_mes_bundles(batch: list[Item], known: bool) -> None:
    # known: every device has a system id; else only the BP monitor does (conftest context).
    ctx = mes_context() if known else make_context(patient_value='ü "x"+|:')
    skipped: list[MappingError] = []
    sent = render_mes(batch, ctx, skipped)
    for raw in sent:
        check(raw, ctx)
    assert {e.item_id for e in skipped} <= {i.id for i in batch}
    assert all(not isinstance(e, DeviceNotIdentified) for e in skipped) or not known
    assert render_mes(batch, ctx, []) == sent  # same input, same bytes
    observations = [observation(json.loads(raw))["identifier"][0]["value"] for raw in sent]
    assert len(observations) == len(set(observations))
    try:
        assert render_mes(batch, ctx) == sent
    except MappingError as exc:
        assert skipped
        assert exc.item_id in {e.item_id for e in skipped}


@pytest.mark.parametrize(
    ("value", "factor", "expected"),
    [
        ("5.5", "18.0156", "99"),  # 2 digits, never coarser than units
        ("0.9", "18.0156", "16"),  # 1 digit would be 2E+1: kept to units instead
        ("12.34", "18.0156", "222.3"),
        ("160.50", "0.45359237", "72.802"),
        ("69.0", "2.54", "175"),
        ("0.00", "0.45359237", "0.00"),  # zero keeps its decimals
    ],
)
def test_unit_conversion_keeps_the_significant_digits(
    value: str, factor: str, expected: str
) -> None:
    assert str(convert(Decimal(value), Decimal(factor))) == expected
