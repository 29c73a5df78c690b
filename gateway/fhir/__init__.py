"""Stored readings → FHIR R4 transaction Bundles (HL7 Personal Health Device IG 2.0.0, shaped to
stay compatible with the ANS "Mesures de santé" guide). Rules and sources: notes/FHIR.md.

Layout
    codes.py         code systems, MDC/LOINC codes, UCUM units, status bits: tables only
    context.py       FhirContext, DeviceInfo, GatewayInfo, the BundleItem protocol
    elements.py      CodeableConcept / Quantity / dataAbsentReason builders, unit conversions
    observations.py  one decoded measurement → Observation drafts (body as JSON text)
    timing.py        effectiveDateTime: device local time → UTC, clock-offset correction
    devices.py       PhdDevice and PhgDevice resources and their identifiers
    bundle.py        render_bundle: drafts + shared elements + devices → transaction Bundle
                     as UTF-8 JSON (the wire form); build_bundle: the same read back as a dict
    mes.py           render_mes: the ANS "Mesures de santé" destination profile, built from
                     the same drafts: one transaction Bundle per Observation (+ its PhdDevice)
    serialize.py     to_json / bundle_to_json: exact Decimals, UTF-8
    errors.py        MappingError, NotAPatientResult, NotForDestination, DeviceNotIdentified

Invariants
- Pure: no I/O, no clock, no randomness. Same items and context → byte-identical JSON, so a
  resend after a lost ack carries the same identifiers and fullUrls.
- The dedup identifier's timestamp is the `phd_timestamp` stored at capture, never recomputed;
  the device part is the DIS system id when known, else the BT address. Changing either rule
  breaks dedup of everything already sent.
- Values keep the device's precision (Decimal in, Decimal out); only kPa → mm[Hg] rounds (0.1).
- A reading that does not map is left out of its Bundle with a `MappingError` naming its stored
  id, never a health value; a control-solution glucose test is `NotAPatientResult`.

Destinations
- PHD (`render_bundle`, the default): one Bundle per batch, every Observation the IG defines.
- ANS MES (`render_mes`): a list of Bundles, one per Observation MES takes (BP, pulse, weight in
  kg, height in cm, blood glucose in mg/dL); BMI, status bits, glucose context and body
  composition are left out. A reading with nothing for MES is `NotForDestination` (permanent:
  may be acknowledged for that destination); a device without a DIS system id is
  `DeviceNotIdentified` (a registry gap: keep the reading). MES does no server-side dedup: the
  uplink's acknowledgement is the only guard against a duplicate there. Rules: mes.py.

Gotchas
- Decoded values are read by field name (the contract's "Decoded JSON" names), not by class.
- `needs_trusted_clock`: readings whose time comes from the gateway clock (receive time, or an
  offset correction); the uplink must not send those captured while that clock was untrusted.
- The coincident-timestamp Observation has no identifier in the IG; ours (RFC 3986 system,
  UUIDv5 value) makes its resend harmless too.
"""

from __future__ import annotations

from gateway.fhir.bundle import build_bundle, observation_identifier, render_bundle
from gateway.fhir.codes import TimeSync
from gateway.fhir.context import BundleItem, DeviceInfo, FhirContext, GatewayInfo, eui64_from_mac
from gateway.fhir.errors import (
    DeviceNotIdentified,
    MappingError,
    NotAPatientResult,
    NotForDestination,
)
from gateway.fhir.mes import render_mes
from gateway.fhir.serialize import bundle_to_json
from gateway.fhir.timing import needs_trusted_clock

__all__ = [
    "BundleItem",
    "DeviceInfo",
    "DeviceNotIdentified",
    "FhirContext",
    "GatewayInfo",
    "MappingError",
    "NotAPatientResult",
    "NotForDestination",
    "TimeSync",
    "build_bundle",
    "bundle_to_json",
    "eui64_from_mac",
    "needs_trusted_clock",
    "observation_identifier",
    "render_bundle",
    "render_mes",
]
