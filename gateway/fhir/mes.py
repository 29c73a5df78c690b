"""Stored readings → ANS "Mesures de santé" (MES) transaction Bundles: a second destination
profile of the mapper (notes/FHIR.md section 14), built from the same drafts as the PHD Bundle
(`observations.map_measurement`) and never changing what `render_bundle` sends.

What MES gets, one Bundle per Observation (profile `mesures-bundle-flux-alimentation`): the
PhdDevice entry first, then the Observation; a blood pressure and its pulse rate go out as two
Bundles, as do a weight and its height. Sent: the BP panel (`mesures-fr-observation-bp`), pulse
rate (`-heartrate`), body weight in kg (`-body-weight`), body height in cm (`-bodyheight`), blood
glucose in mg/dL (`mesures-observation-glucose`).

Rules applied (from FHIR.md and the guide's FSH, `ansforge/IG-fhir-mesures-de-sante`):
- `meta.profile` = the MES profile on every Observation, PhdDevice on the Device.
- `subject.identifier` from the context: for MES, `FhirContext.patient_system` / `_value` must
  be the patient's MES identifier (OID system + IDPE; the system is to be confirmed with ANS).
  It is not checked here: the context is the same object for both destinations.
- The Device has an `id` (the uuid of its fullUrl) and `ifNoneExist` on its SYSID
  (`urn:oid:...2680`); `Observation.device.reference` is ``Device/<that id>``. Identifier types
  use the PHD STU1 ContinuaDeviceIdentifiers URL (MES depends on PHD 1.0.0).
- category `vital-signs` only, without a display (the profiles pattern-match a display of
  exactly "vital-signs"; none is allowed, and it is what the ANS examples send).
- Observation identifier and fullUrl exactly as in the PHD Bundle (`observation_identifier`,
  `_urn`): stable across resends even though MES does no server-side dedup (see below).
- effectiveDateTime is the PHD one (`effective_time`, corrected to UTC); a reading for which
  `needs_trusted_clock` is true must be held back by the uplink exactly as for PHD.

Left out, silently, when the reading still yields an Observation (documented, not reported):
BMI (MES computes it and refuses it), measurement status bits, glucose sample location and
context observations, a mean arterial pressure that is a special value, an Observation MES
refuses while another of the same reading goes (a BP panel whose systolic is a special value
still sends its pulse), the gateway's PhgDevice, the gateway-device extension and the
coincident-timestamp Observation (a MES Bundle holds one Observation and at most one Device;
the corrected time stays in effectiveDateTime).

Refused: a reading that yields nothing sendable is a `NotForDestination` naming its store id (no
value): a body-composition record (0x2A9C: body fat has no MES profile, and its optional weight
and height would duplicate the weight scale's, which MES cannot dedup), an interstitial-fluid
glucose (MES takes interstitial glucose as a multi-day summary, not a spot reading), a main value
that is a special value (MES answers 422 to an Observation without a value: systolic or diastolic,
pulse, weight, height, glucose). A device with no DIS system id is `DeviceNotIdentified`: MES keys
devices on an OID identifier and a Bluetooth address has none, so nothing of that device can go
until its system id is registered: keep those readings. Decoding errors and control-solution
tests are the same `MappingError`s as for PHD.

Choices where FHIR.md and the guide disagree or the guide is open:
- Glucose code: NOS `2345-7` (J154's only blood-glucose code, whatever the sample type) first,
  then the same code under `http://loinc.org`, then the meter's MDC code: J154 is extensible and
  the PHD mdc-1 rule wants an MDC coding.
- Glucose in mmol/L is converted to mg/dL with 18.0156 (M = 180.156 g/mol), rounded to the
  reading's significant digits but never coarser than 1 mg/dL; pounds and inches are converted
  to kg and cm (exact factors, same rounding). Each converted value keeps the device's value and
  its original code in `mesures-original-data` (the 3.1.x extension; renamed on the guide's
  development branch: re-check on upgrade). kPa blood pressure arrives already in mm[Hg] from
  the PHD drafts (rounded to 0.1), without that extension.
- Moment of measurement (J157, NOS LOINC system), always sent on glucose: BLE meal preprandial
  → 88365-2, postprandial → 16915-1, fasting → 53049-3; casual, bedtime or no context → LA46-8
  ("other"). `mesures-number-of-days` is never sent.
- Glucose goes in the plain `mesures-bundle-flux-alimentation` Bundle, not the biology Bundle
  with a DiagnosticReport that newer builds of the guide describe (open question in FHIR.md).
- No `ifNoneExist` on the Observation: MES documents none and creates the Observation again on
  a resend, so the uplink's store and acknowledgement are what prevent duplicates there.
- `phd` category, `meta.source` and the gateway-device extension are not sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from device_drivers.reading import Reading
from gateway.fhir import codes
from gateway.fhir.bundle import _drafts, _if_none_exist, _urn, observation_identifier
from gateway.fhir.codes import Unit
from gateway.fhir.context import BundleItem, FhirContext
from gateway.fhir.devices import DeviceIdentity, phd_device, phd_identity
from gateway.fhir.elements import convert
from gateway.fhir.errors import DeviceNotIdentified, MappingError, NotForDestination
from gateway.fhir.observations import Draft
from gateway.fhir.serialize import json_string, to_json
from gateway.fhir.timing import effective_time, fhir_datetime

__all__ = ["render_mes"]

JsonObject = dict[str, Any]

_BODY_COMPOSITION: Final = 0x2A9C
_INTERSTITIAL: Final = codes.GLUCOSE_BY_TYPE[9].mdc
_CONTROL: Final = codes.GLUCOSE_BY_TYPE[codes.GLUCOSE_CONTROL_SOLUTION_TYPE].mdc
_BLOOD_GLUCOSE: Final = frozenset(
    {g.mdc for g in codes.GLUCOSE_BY_TYPE.values()} - {_INTERSTITIAL, _CONTROL}
    | {codes.GLUCOSE_GENERIC.mdc}
)
_PROFILES: Final = {
    codes.BP_PANEL.mdc: codes.MES_PROFILE_BP,
    codes.PULSE_RATE.mdc: codes.MES_PROFILE_HEARTRATE,
    codes.BODY_WEIGHT.mdc: codes.MES_PROFILE_BODY_WEIGHT,
    codes.BODY_HEIGHT.mdc: codes.MES_PROFILE_BODY_HEIGHT,
    **dict.fromkeys(_BLOOD_GLUCOSE, codes.MES_PROFILE_GLUCOSE),
}
_REQUIRED_COMPONENTS: Final = frozenset({str(codes.BP_SYSTOLIC.mdc), str(codes.BP_DIASTOLIC.mdc)})
_CONVERSIONS: Final[dict[str, tuple[Decimal, Unit]]] = {
    codes.POUND.code: (codes.KG_PER_POUND, codes.KG),
    codes.INCH.code: (codes.CM_PER_INCH, codes.CM),
    codes.MMOL_PER_L.code: (codes.MG_PER_DL_PER_MMOL_PER_L, codes.MG_PER_DL),
}
_VITAL_SIGNS: Final = [
    {"coding": [{"system": codes.OBSERVATION_CATEGORY_SYSTEM, "code": "vital-signs"}]}
]
_SPECIAL: Final = "a special value, and MES refuses an Observation without a value"


def _body(draft: Draft) -> JsonObject:
    """A draft's JSON text as a dict, numbers as exact Decimals."""
    out: JsonObject = json.loads("{" + draft.body + "}", parse_float=Decimal)
    return out


def _quantity(value: Decimal | int, unit: Unit) -> JsonObject:
    return {"value": value, "unit": unit.display, "system": codes.UCUM, "code": unit.code}


def _converted(body: JsonObject) -> JsonObject | None:
    """Put `body`'s valueQuantity in the unit MES fixes; the original-data extension when the
    unit changed, else None."""
    original = body["valueQuantity"]
    conversion = _CONVERSIONS.get(original["code"])
    if conversion is None:
        return None
    factor, unit = conversion
    value = original["value"]
    body["valueQuantity"] = _quantity(convert(Decimal(value), factor), unit)
    return {
        "url": codes.MES_ORIGINAL_DATA_EXTENSION,
        "extension": [
            {"url": "has-been-converted", "valueBoolean": True},
            {"url": "original-code", "valueCodeableConcept": body["code"]},
            {"url": "original-value", "valueQuantity": original},
        ],
    }


def _moment(drafts: Sequence[Draft]) -> JsonObject:
    code = codes.MES_MOMENT_OTHER
    for draft in drafts:
        if draft.type_code == codes.CONTEXT_MEAL.mdc:
            meal = int(_body(draft)["valueCodeableConcept"]["coding"][0]["code"])
            code = codes.MES_MOMENT_BY_MEAL.get(meal, codes.MES_MOMENT_OTHER)
    return {
        "url": codes.MES_MOMENT_EXTENSION,
        "valueCodeableConcept": {"coding": [{"system": codes.NOS_LOINC, "code": code}]},
    }


def _glucose_code(mdc: JsonObject) -> JsonObject:
    return {
        "coding": [
            {"system": codes.NOS_LOINC, "code": codes.MES_GLUCOSE_LOINC},
            {"system": codes.LOINC, "code": codes.MES_GLUCOSE_LOINC},
            mdc,
        ]
    }


def _observation_parts(
    draft: Draft, drafts: Sequence[Draft]
) -> tuple[list[JsonObject], JsonObject]:
    """(extensions, code + value members) of one sendable draft; NotForDestination if MES
    refuses it."""
    body = _body(draft)
    extensions: list[JsonObject] = []
    if "dataAbsentReason" in body:
        raise NotForDestination(f"MDC {draft.type_code} is {_SPECIAL}")
    if draft.type_code == codes.BP_PANEL.mdc:
        kept = []
        for component in body["component"]:
            code = component["code"]["coding"][0]["code"]
            if "dataAbsentReason" in component:
                if code in _REQUIRED_COMPONENTS:
                    raise NotForDestination(f"blood pressure component {code} is {_SPECIAL}")
                continue  # the mean pressure is optional in MES
            kept.append(component)
        body["component"] = kept
        return extensions, body
    if draft.type_code in _BLOOD_GLUCOSE:
        extensions.append(_moment(drafts))
        original = _converted(body)
        body["code"] = _glucose_code(body["code"]["coding"][0])
    else:
        original = _converted(body)
    if original is not None:
        extensions.append(original)
    return extensions, body


_STU1: Final = codes.CONTINUA_DEVICE_IDENTIFIERS_STU1


def _device(identity: DeviceIdentity, resource: JsonObject, device_id: str) -> JsonObject:
    """The PhdDevice as MES wants it: an `id`, STU1 identifier types."""
    identifiers = [
        {**i, "type": {"coding": [{**i["type"]["coding"][0], "system": _STU1}]}}
        for i in identity.identifiers
    ]
    return {"resourceType": "Device", "id": device_id, **resource, "identifier": identifiers}


def _sendable(
    item: BundleItem, resolutions: tuple[int | None, int | None]
) -> tuple[list[Draft], list[Draft]]:
    """(all drafts, the drafts MES takes) of `item`; MappingError if none."""
    reading = item.reading
    if reading.characteristic == _BODY_COMPOSITION:
        raise NotForDestination(
            "body composition record: MES has no profile for body fat and takes weight and "
            "height from the weight scale measurement only"
        )
    drafts, _ = _drafts(item, resolutions)
    if any(d.type_code == _INTERSTITIAL for d in drafts):
        raise NotForDestination(
            "interstitial glucose: MES takes it as a multi-day summary, not a spot reading"
        )
    return drafts, [d for d in drafts if d.type_code in _PROFILES]


_HEAD: Final = (
    b'{"resourceType":"Bundle","meta":{"profile":['
    + json_string(codes.MES_PROFILE_BUNDLE).encode()
    + b']},"type":"transaction","entry":['
)
_TAIL: Final = b"]}"


@dataclass(frozen=True, slots=True)
class _Device:
    """A PhdDevice as every Bundle of one call carries it: rendered once."""

    identity: DeviceIdentity
    id: str
    entry: bytes


class _Call:
    """What one `render_mes` call shares between readings: devices and identifiers seen."""

    def __init__(self, ctx: FhirContext) -> None:
        self.ctx = ctx
        self.seen: set[str] = set()
        # per (address, kind): the device, or why it cannot be sent (a reason, raised afresh)
        self._devices: dict[tuple[str, int], _Device | str] = {}
        self._subject = {"identifier": {"system": ctx.patient_system, "value": ctx.patient_value}}

    def device(self, reading: Reading) -> _Device:
        key = (reading.device, reading.characteristic)
        found = self._devices.get(key)
        if found is None:
            found = self._devices[key] = self._device(reading)
        if isinstance(found, str):
            raise DeviceNotIdentified(found)
        return found

    def _device(self, reading: Reading) -> _Device | str:
        info = self.ctx.device(reading.device)
        if info.system_id is None:
            return (
                f"device {reading.device} has no DIS system id: MES identifies devices by an "
                "OID identifier (SYSID); register the device's system id to send its readings"
            )
        identity = phd_identity(info)
        url = _urn("device", f"{identity.key_system}|{identity.key_value}")
        device_id = url.removeprefix("urn:uuid:")
        entry = {
            "fullUrl": url,
            "resource": _device(identity, phd_device(info, (reading.characteristic,)), device_id),
            "request": {
                "method": "POST",
                "url": "Device",
                "ifNoneExist": _if_none_exist(identity.key_system, identity.key_value),
            },
        }
        return _Device(identity, device_id, to_json(entry))

    def render(self, item: BundleItem) -> list[bytes]:
        """The MES Bundles of one reading (none when all were already rendered in this call)."""
        drafts, sendable = _sendable(item, self.ctx.device(item.reading.device).resolutions)
        if not sendable:
            raise NotForDestination("nothing in this reading has a MES profile")
        reading = item.reading
        device = self.device(reading)
        effective = fhir_datetime(effective_time(reading, self.ctx.tz).at)
        out: list[bytes] = []
        refused: NotForDestination | None = None
        for draft in sendable:
            try:
                extensions, body = _observation_parts(draft, drafts)
            except NotForDestination as exc:
                refused = refused or exc
                continue
            identifier = observation_identifier(
                device.identity, self.ctx, draft.type_code, item.phd_timestamp
            )
            if identifier in self.seen:
                continue  # the same measurement twice in one call: sent once
            self.seen.add(identifier)
            url = _urn("observation", identifier)
            observation: JsonObject = {
                "resourceType": "Observation",
                "id": url.removeprefix("urn:uuid:"),
                "meta": {"profile": [_PROFILES[draft.type_code]]},
            }
            if extensions:
                observation["extension"] = extensions
            observation |= {
                "identifier": [{"system": codes.PHD_IDENTIFIER_SYSTEM, "value": identifier}],
                "status": "final",
                "category": _VITAL_SIGNS,
                "code": body.pop("code"),
                "subject": self._subject,
                "effectiveDateTime": effective,
                **body,
                "device": {"reference": f"Device/{device.id}"},
            }
            entry = {
                "fullUrl": url,
                "resource": observation,
                "request": {"method": "POST", "url": "Observation"},
            }
            out.append(b"".join((_HEAD, device.entry, b",", to_json(entry), _TAIL)))
        if not out and refused is not None:
            raise refused
        return out


def render_mes(
    items: Sequence[BundleItem],
    ctx: FhirContext,
    skipped: list[MappingError] | None = None,
) -> list[bytes]:
    """One MES transaction Bundle (UTF-8 JSON) per Observation MES takes from `items`, in input
    order; same input, same bytes.

    A reading that yields nothing sendable (see the module docstring) is appended to `skipped`
    as a `MappingError` naming its store id (`NotForDestination`, `DeviceNotIdentified`, or the
    decoding error), or raised when `skipped` is None, like `render_bundle`.
    """
    out: list[bytes] = []
    call = _Call(ctx)
    for item in items:
        try:
            out.extend(call.render(item))
        except MappingError as exc:
            error = exc.for_item(item.id)
            if skipped is None:
                raise error from None
            skipped.append(error)
    return out
