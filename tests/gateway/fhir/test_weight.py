"""Weight scale 0x2A9D and body composition 0x2A9C → weight, height, BMI, body composition
(FHIR.md sections 2, 7, 8)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from device_drivers.body_composition import BodyCompositionMeasurement
from device_drivers.ieee11073 import Special
from device_drivers.weight_scale import WeightMeasurement, WeightUnit
from gateway.fhir import DeviceInfo, FhirContext, build_bundle, bundle_to_json
from tests.gateway.fhir.conftest import (
    SCALE_ADDRESS,
    by_mdc,
    codings,
    item,
    make_context,
    parse,
    resources,
)

MDC = "urn:iso:std:iso:11073:10101"
LOINC = "http://loinc.org"
STAMP = datetime(2026, 3, 10, 7, 30, 5)


def quantity(bundle: dict, code: int) -> tuple[str, str]:
    q = by_mdc(bundle, code)["valueQuantity"]
    assert q["system"] == "http://unitsofmeasure.org"
    return str(q["value"]), q["code"]


def test_si_weight_height_bmi(ctx: FhirContext) -> None:
    value = WeightMeasurement(
        unit=WeightUnit.SI,
        weight=Decimal("72.350"),
        timestamp=STAMP,
        bmi=Decimal("23.6"),
        height=Decimal("1.751"),
    )
    built = build_bundle([item(value, address=SCALE_ADDRESS)], ctx)
    raw = bundle_to_json(built).decode()
    bundle = parse(built)
    assert '"value":72.350,' in raw  # device precision, trailing zero kept
    assert quantity(bundle, 188736) == ("72.350", "kg")
    assert quantity(bundle, 188740) == ("175.1", "cm")  # m → cm, exact
    assert quantity(bundle, 188752) == ("23.6", "kg/m2")
    assert codings(by_mdc(bundle, 188736)["code"]) == {(MDC, "188736"), (LOINC, "29463-7")}
    assert codings(by_mdc(bundle, 188740)["code"]) == {(MDC, "188740"), (LOINC, "8302-2")}
    assert codings(by_mdc(bundle, 188752)["code"]) == {(MDC, "188752"), (LOINC, "39156-5")}
    for code in (188736, 188740, 188752):
        categories = {c["coding"][0]["code"] for c in by_mdc(bundle, code)["category"]}
        assert categories == {"phd", "vital-signs"}
    urls = {e["resource"]["code"]["coding"][0]["code"]: e["fullUrl"] for e in bundle["entry"][2:]}
    assert by_mdc(bundle, 188752)["derivedFrom"] == [
        {"reference": urls["188736"]},
        {"reference": urls["188740"]},
    ]


def test_imperial_units(ctx: FhirContext) -> None:
    value = WeightMeasurement(
        unit=WeightUnit.IMPERIAL,
        weight=Decimal("160.50"),
        bmi=Decimal("23.7"),
        height=Decimal("69.0"),
    )
    bundle = parse(build_bundle([item(value, address=SCALE_ADDRESS)], ctx))
    assert quantity(bundle, 188736) == ("160.50", "[lb_av]")
    assert quantity(bundle, 188740) == ("69.0", "[in_i]")


@pytest.mark.parametrize(
    ("unit", "weight", "height", "codes", "expected"),
    [
        # 0.05 kg / 0.001 m: 72.350 kg -> 72.35; 1.751 m -> 175.1 cm
        (WeightUnit.SI, "72.350", "1.751", (4, 3), (("72.35", "kg"), ("175.1", "cm"))),
        # 0.5 kg / 0.01 m
        (WeightUnit.SI, "72.500", "1.750", (1, 1), (("72.5", "kg"), ("175", "cm"))),
        # 0.1 lb / 0.5 in
        (WeightUnit.IMPERIAL, "160.50", "69.5", (4, 2), (("160.5", "[lb_av]"), ("69.5", "[in_i]"))),
        # 1 lb / 1 in
        (WeightUnit.IMPERIAL, "160.00", "69.0", (1, 1), (("160", "[lb_av]"), ("69", "[in_i]"))),
        # finer than the scale states (310.25 lb on a 0.1 lb scale): every digit it sent
        (
            WeightUnit.IMPERIAL,
            "310.25",
            "69.5",
            (4, 2),
            (("310.25", "[lb_av]"), ("69.5", "[in_i]")),
        ),
        (WeightUnit.SI, "63.455", "1.751", (4, 1), (("63.455", "kg"), ("175.1", "cm"))),
        # not specified, reserved, unknown: the field's own precision
        (WeightUnit.SI, "72.350", "1.751", (0, 0), (("72.350", "kg"), ("175.1", "cm"))),
        (WeightUnit.SI, "72.350", "1.751", (9, 5), (("72.350", "kg"), ("175.1", "cm"))),
        (WeightUnit.SI, "72.350", "1.751", (None, None), (("72.350", "kg"), ("175.1", "cm"))),
    ],
)
def test_the_scale_stated_resolution_sets_the_decimals(
    unit: WeightUnit,
    weight: str,
    height: str,
    codes: tuple[int | None, int | None],
    expected: tuple[tuple[str, str], tuple[str, str]],
) -> None:
    info = DeviceInfo(address=SCALE_ADDRESS, weight_resolution=codes[0], height_resolution=codes[1])
    ctx = make_context(devices={SCALE_ADDRESS: info})
    value = WeightMeasurement(
        unit=unit, weight=Decimal(weight), bmi=Decimal("23.6"), height=Decimal(height)
    )
    bundle = parse(build_bundle([item(value, address=SCALE_ADDRESS)], ctx))
    assert (quantity(bundle, 188736), quantity(bundle, 188740)) == expected
    assert quantity(bundle, 188752) == ("23.6", "kg/m2")  # BMI: its own 0.1 step


def test_unsuccessful_weight_is_absent_not_a_number(ctx: FhirContext) -> None:
    value = WeightMeasurement(unit=WeightUnit.SI, weight=Special.NAN, timestamp=STAMP)
    weight = by_mdc(parse(build_bundle([item(value, address=SCALE_ADDRESS)], ctx)), 188736)
    assert "valueQuantity" not in weight
    assert weight["dataAbsentReason"]["coding"][0]["code"] == "not-a-number"


def test_body_composition(ctx: FhirContext) -> None:
    value = BodyCompositionMeasurement(
        unit=WeightUnit.SI,
        body_fat_pct=Decimal("21.4"),
        timestamp=STAMP,
        basal_metabolism_kj=6900,
        muscle_pct=Decimal("40.1"),
        fat_free_mass=Decimal("56.850"),
        soft_lean_mass=Decimal("52.000"),
        body_water_mass=Decimal("40.200"),
        impedance_ohm=Decimal("480.5"),
        weight=Decimal("72.350"),
    )
    bundle = parse(build_bundle([item(value, address=SCALE_ADDRESS)], ctx))
    assert quantity(bundle, 188748) == ("21.4", "%")
    assert codings(by_mdc(bundle, 188748)["code"]) == {(MDC, "188748"), (LOINC, "41982-0")}
    assert quantity(bundle, 188768) == ("6900", "kJ")
    assert quantity(bundle, 188756) == ("56.850", "kg")
    assert quantity(bundle, 188760) == ("52.000", "kg")
    assert quantity(bundle, 188764) == ("40.200", "kg")
    assert quantity(bundle, 188736) == ("72.350", "kg")
    # muscle % and impedance have no code in the guides: not sent.
    assert len(resources(bundle)) == 6
    # Of these only the body weight is an R4 vital sign; body fat and the other body
    # composition values are not (FHIR.md section 2): `phd` only.
    for obs in resources(bundle):
        categories = [c["coding"][0]["code"] for c in obs["category"]]
        weight = obs["code"]["coding"][0]["code"] == "188736"
        assert categories == (["phd", "vital-signs"] if weight else ["phd"])


def test_body_composition_unsuccessful(ctx: FhirContext) -> None:
    value = BodyCompositionMeasurement(unit=WeightUnit.SI, body_fat_pct=Special.NAN)
    fat = by_mdc(parse(build_bundle([item(value, address=SCALE_ADDRESS)], ctx)), 188748)
    assert fat["dataAbsentReason"]["coding"][0]["code"] == "not-a-number"


def test_same_weight_from_scale_and_body_composition_sent_once(ctx: FhirContext) -> None:
    scale = WeightMeasurement(unit=WeightUnit.SI, weight=Decimal("72.350"), timestamp=STAMP)
    composition = BodyCompositionMeasurement(
        unit=WeightUnit.SI, body_fat_pct=Decimal("21.4"), timestamp=STAMP, weight=Decimal("72.350")
    )
    bundle = parse(
        build_bundle(
            [item(scale, address=SCALE_ADDRESS), item(composition, address=SCALE_ADDRESS)], ctx
        )
    )
    by_mdc(bundle, 188736)  # exactly one weight: one identifier, one conditional create
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(urls) == len(set(urls))
