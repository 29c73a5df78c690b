"""Stored readings → one FHIR R4 transaction Bundle (notes/FHIR.md sections 5, 9, 10, 12).

Invariants:
- Same input, same bytes: every fullUrl is a UUIDv5 of what the resource is (an Observation's
  dedup identifier, a Device's identifier), no clock or random value is read, entries keep the
  input order. A resend after a lost ack is byte-identical.
- Every Observation is a conditional create on its PHD dedup identifier
  ``<device>-<patient value>-<patient system>-<MDC type>-<phd_timestamp>``, the timestamp part
  being the one stored at capture, never recomputed. Devices are conditional creates on their
  SYSID (else BT address / gateway id). Two Observations with the same identifier in one Bundle
  would make the transaction fail: the later one is left out (it is the same measurement, e.g.
  the weight a body-composition scale sends in both 0x2A9D and 0x2A9C).
- A reading that cannot be mapped never breaks the Bundle: it is left out and reported as a
  `MappingError` naming the stored id (no health value, no bytes).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote

from device_drivers.codec import decode
from device_drivers.errors import MalformedValue, UnknownCharacteristic
from device_drivers.reading import MEASUREMENT_CHARACTERISTICS, Reading
from gateway.fhir import codes, fast_paths
from gateway.fhir.context import BundleItem, DeviceInfo, FhirContext, GatewayInfo
from gateway.fhir.devices import DeviceIdentity, phd_device, phd_identity, phg_device, phg_identity
from gateway.fhir.elements import coded
from gateway.fhir.errors import MappingError
from gateway.fhir.observations import Draft, map_measurement
from gateway.fhir.serialize import bundle_to_json, json_string, to_json
from gateway.fhir.timing import Effective, effective_time, fhir_datetime

__all__ = ["build_bundle", "observation_identifier", "render_bundle"]

_log = logging.getLogger(__name__)

JsonObject = dict[str, Any]

_NAMESPACE: Final = uuid.UUID("772e90e4-3145-43a0-97a6-85ed5063143f")
"""Namespace of every fullUrl and coincident-timestamp identifier: frozen, changing it changes
every resent Bundle."""

_CONTEXT_CHARACTERISTIC: Final = 0x2A34


_NAMESPACE_BYTES: Final = _NAMESPACE.bytes


def _urn(kind: str, key: str) -> str:
    """``urn:uuid:`` + the UUIDv5 of ``kind|key`` (RFC 4122 section 4.3), as `uuid.uuid5`
    computes it, without building UUID objects: two per reading on the drain path."""
    name = _NAMESPACE_BYTES + f"{kind}|{key}".encode()
    # SHA-1 is what UUIDv5 is defined with; it names, it protects nothing.
    digest = bytearray(hashlib.sha1(name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@functools.lru_cache(maxsize=256)
def _encoded(text: str) -> str:
    return quote(text, safe="")


def _if_none_exist(system: str, value: str) -> str:
    # `+` in a value would read as a space, `:` and `|` are reserved: encode both parts. Only
    # the trailing timestamp changes from one observation of a device to the next, and digits
    # need no encoding: the rest is encoded once and remembered.
    head, dash, tail = value.rpartition("-")
    encoded = _encoded(head + dash) + tail if tail.isdigit() else _encoded(value)
    return f"identifier={_encoded(system)}|{encoded}"


def observation_identifier(
    device: DeviceIdentity, ctx: FhirContext, type_code: int, phd_timestamp: str
) -> str:
    """The PHD dedup identifier value (FHIR.md section 10, the Carebox rule)."""
    return (
        f"{device.dedup_part}-{ctx.patient_value}-{ctx.patient_system}-{type_code}-{phd_timestamp}"
    )


@dataclass(frozen=True, slots=True)
class _Mapped:
    item: BundleItem
    info: DeviceInfo
    device: DeviceIdentity
    drafts: list[Draft]
    effective: Effective


def _decode_context(item: BundleItem) -> object | None:
    reading = item.reading
    if reading.characteristic != 0x2A18 or reading.context is None:
        return None
    try:
        return decode(_CONTEXT_CHARACTERISTIC, reading.context)
    except (MalformedValue, UnknownCharacteristic):
        # The glucose value stands on its own; the context is only its annotation.
        _log.warning("reading %s: glucose context does not decode, sent without it", item.id)
        return None


def _drafts(item: BundleItem) -> tuple[list[Draft], datetime | None]:
    """The reading's Observation drafts and its device time (naive local, None if none)."""
    reading = item.reading
    if reading.characteristic == 0x2A35:
        fast = fast_paths.blood_pressure(reading.value)
        if fast is not None:
            return fast
    if reading.characteristic not in MEASUREMENT_CHARACTERISTICS:
        raise MappingError(f"characteristic {reading.characteristic:04X} is not a measurement")
    try:
        measurement = reading.measurement()
    except MalformedValue as exc:
        raise MappingError(
            f"{reading.characteristic:04X} value does not decode "
            f"(offset {exc.offset} of {len(reading.value)} octets)"
        ) from None
    except UnknownCharacteristic:
        raise MappingError(f"no decoder for {reading.characteristic:04X}") from None
    drafts = map_measurement(reading.characteristic, measurement, _decode_context(item))
    return drafts, Reading.timestamp_of(measurement)


def _coincident_key(device: DeviceIdentity, correction: timedelta) -> str:
    return f"{device.dedup_part}|{int(correction.total_seconds())}"


@dataclass(frozen=True, slots=True)
class _Planned:
    """One Observation to send: its draft and everything shared it is rendered with."""

    draft: Draft
    identifier: str
    effective_at: str
    device_url: str
    coincident_url: str | None
    derived_from: tuple[str, ...]


def _plan(
    items: Sequence[BundleItem], ctx: FhirContext, skipped: list[MappingError] | None
) -> tuple[list[JsonObject | bytes], list[_Planned], str] | None:
    """What the Bundle holds: the Device and coincident-timestamp entries (dicts, a few per
    Bundle) and the Observations (rendered straight to JSON, the bulk), in order. None when no
    reading maps."""
    mapped: list[_Mapped] = []
    infos: dict[str, tuple[DeviceInfo, DeviceIdentity]] = {}  # per address: looked up once
    for item in items:
        try:
            drafts, local = _drafts(item)
            effective = effective_time(item.reading, ctx.tz, local)
        except MappingError as exc:
            error = exc.for_item(item.id)
            if skipped is None:
                raise error from None
            skipped.append(error)
            continue
        address = item.reading.device
        known = infos.get(address)
        if known is None:
            info = ctx.device(address)
            known = infos[address] = (info, phd_identity(info))
        mapped.append(_Mapped(item, known[0], known[1], drafts, effective))
    if not mapped:
        return None

    gateway_url, gateway_json = _gateway_entry(ctx.gateway_id, ctx.gateway_info)
    entries: list[JsonObject | bytes] = [gateway_json]

    # PHD devices in order of first appearance, with the kinds of reading they sent.
    devices: dict[str, tuple[DeviceInfo, DeviceIdentity, set[int]]] = {}
    # One coincident timestamp per (device, correction): per connection, as the IG wants; its
    # gateway time is the earliest receive time among those readings (any is a true pair).
    coincident: dict[str, tuple[DeviceIdentity, timedelta, datetime]] = {}
    for m in mapped:
        key = m.device.dedup_part
        seen_device = devices.get(key)
        if seen_device is None:
            seen_device = devices[key] = (m.info, m.device, set())
        seen_device[2].add(m.item.reading.characteristic)
        if m.effective.correction is not None:
            ck = _coincident_key(m.device, m.effective.correction)
            received = m.item.reading.received_at.astimezone(UTC)
            if ck not in coincident or received < coincident[ck][2]:
                coincident[ck] = (m.device, m.effective.correction, received)

    device_urls: dict[str, str] = {}
    for key, (info, _, kinds) in devices.items():
        device_urls[key], device_json = _device_entry(info, frozenset(kinds))
        entries.append(device_json)

    coincident_urls: dict[str, str] = {}
    for ck, (identity, correction, received) in coincident.items():
        ct_key = f"{ck}|{fhir_datetime(received)}"
        url = _urn("coincident", ct_key)
        coincident_urls[ck] = url
        resource = _coincident(
            correction,
            received,
            ctx=ctx,
            device_url=device_urls[identity.dedup_part],
            gateway_url=gateway_url,
        )
        resource["identifier"] = [{"system": codes.URI_SYSTEM, "value": _urn("ct-id", ct_key)}]
        entries.append(
            {
                "fullUrl": url,
                "resource": resource,
                "request": {
                    "method": "POST",
                    "url": "Observation",
                    "ifNoneExist": _if_none_exist(codes.URI_SYSTEM, _urn("ct-id", ct_key)),
                },
            }
        )

    planned: list[_Planned] = []
    seen: set[str] = set()
    for m in mapped:
        device_url = device_urls[m.device.dedup_part]
        ct_url = None
        if m.effective.correction is not None:
            ct_url = coincident_urls[_coincident_key(m.device, m.effective.correction)]
        effective_at = fhir_datetime(m.effective.at)
        stamp = m.item.phd_timestamp
        for draft in m.drafts:
            value = observation_identifier(m.device, ctx, draft.type_code, stamp)
            if value in seen:
                continue
            seen.add(value)
            derived: tuple[str, ...] = ()
            if draft.derived_from:
                derived = tuple(
                    _urn("observation", observation_identifier(m.device, ctx, t, stamp))
                    for t in draft.derived_from
                )
            planned.append(_Planned(draft, value, effective_at, device_url, ct_url, derived))
    return entries, planned, gateway_url


# A Bundle names the same few Devices again and again: their entries are rendered once.
@functools.lru_cache(maxsize=16)
def _gateway_entry(gateway_id: str, info: GatewayInfo) -> tuple[str, bytes]:
    identity = phg_identity(gateway_id, info)
    url = _urn("device", f"{identity.key_system}|{identity.key_value}")
    return url, bundle_to_json(_entry(url, phg_device(gateway_id, info), "Device", identity))


@functools.lru_cache(maxsize=256)
def _device_entry(info: DeviceInfo, kinds: frozenset[int]) -> tuple[str, bytes]:
    identity = phd_identity(info)
    url = _urn("device", f"{identity.key_system}|{identity.key_value}")
    return url, bundle_to_json(_entry(url, phd_device(info, set(kinds)), "Device", identity))


def render_bundle(
    items: Sequence[BundleItem],
    ctx: FhirContext,
    skipped: list[MappingError] | None = None,
) -> bytes:
    """One transaction Bundle for `items` as UTF-8 JSON: what goes on the wire.

    A reading that cannot be mapped (bytes that do not decode, a control-solution test, ...) is
    left out: appended to `skipped` when a list is given, else raised as `MappingError` (with
    `item_id` set) so that nothing is dropped silently. A Bundle whose every reading was skipped
    has no `entry`.

    The Observations, nearly all of a Bundle's bytes, are written as text around their draft's
    body: the elements every Observation shares are rendered once per Bundle, not rebuilt as
    dicts and re-encoded per reading (a Bundle of 30 blood-pressure readings is ~110 KB).
    """
    plan = _plan(items, ctx, skipped)
    if plan is None:
        return _EMPTY
    entries, planned, gateway_url = plan
    parts = [e if isinstance(e, bytes) else bundle_to_json(e) for e in entries]
    shared = _Shared(ctx, gateway_url)
    parts.extend(shared.observation(p) for p in planned)
    return b"".join((_HEAD, b",".join(parts), _TAIL))


def build_bundle(
    items: Sequence[BundleItem],
    ctx: FhirContext,
    skipped: list[MappingError] | None = None,
) -> dict[str, Any]:
    """`render_bundle` read back as a dict (numbers as int or exact Decimal): the same Bundle
    for code that inspects it rather than sends it. `bundle_to_json` writes it back to the same
    bytes."""
    out: dict[str, Any] = json.loads(render_bundle(items, ctx, skipped), parse_float=Decimal)
    return out


_EMPTY: Final = b'{"resourceType":"Bundle","type":"transaction"}'
_HEAD: Final = b'{"resourceType":"Bundle","type":"transaction","entry":['
_TAIL: Final = b"]}"


class _Shared:
    """The JSON text every Observation of one Bundle shares, rendered once."""

    def __init__(self, ctx: FhirContext, gateway_url: str) -> None:
        gateway_ext = _reference_extension(codes.GATEWAY_DEVICE_EXTENSION, gateway_url)
        self._extension = _json(gateway_ext)
        self._coincident_ext = _json(
            {"url": codes.COINCIDENT_TIMESTAMP_EXTENSION, "valueReference": {"reference": ""}}
        )[:-4]  # ends `"reference":""}}`: the url goes between the quotes
        self._category = {v: _json(_categories(v)) for v in (False, True)}
        self._subject = _json(_subject(ctx))
        phd_system = json_string(codes.PHD_IDENTIFIER_SYSTEM)
        self._identifier_head = '"identifier":[{"system":' + phd_system
        self._profiles: dict[str, str] = {}
        # Per identifier series (device, patient, type: all but the timestamp), the JSON of the
        # identifier value and of its ifNoneExist up to the timestamp, which is digits (a
        # number of seconds) and so the same in JSON and in a URL.
        self._series: dict[str, tuple[str, str]] = {}

    def _identifier_json(self, identifier: str) -> tuple[str, str]:
        """(JSON of the identifier value, JSON of its ifNoneExist)."""
        head, dash, stamp = identifier.rpartition("-")
        if not stamp.isdigit():
            return json_string(identifier), json_string(
                _if_none_exist(codes.PHD_IDENTIFIER_SYSTEM, identifier)
            )
        key = head + dash
        series = self._series.get(key)
        if series is None:
            condition = json_string(_if_none_exist(codes.PHD_IDENTIFIER_SYSTEM, key + "0"))
            series = self._series[key] = (json_string(key)[:-1], condition[:-2])
        return f'{series[0]}{stamp}"', f'{series[1]}{stamp}"'

    def _profile(self, profile: str) -> str:
        text = self._profiles.get(profile)
        if text is None:
            text = self._profiles[profile] = (
                '"resourceType":"Observation","meta":{"profile":[' + json_string(profile) + "]}"
            )
        return text

    def observation(self, p: _Planned) -> bytes:
        identifier, condition = self._identifier_json(p.identifier)
        extension = self._extension
        if p.coincident_url is not None:
            extension += "," + self._coincident_ext + json_string(p.coincident_url) + "}}"
        parts = [
            '{"fullUrl":"',
            _urn("observation", p.identifier),
            '","resource":{',
            self._profile(p.draft.profile),
            ',"extension":[',
            extension,
            "],",
            self._identifier_head,
            ',"value":',
            identifier,
            '}],"status":"final","category":',
            self._category[p.draft.vital_sign],
            ',"subject":',
            self._subject,
            ',"effectiveDateTime":"',
            p.effective_at,
            '","device":{"reference":"',
            p.device_url,
            '"}',
        ]
        if p.draft.body:
            parts += (",", p.draft.body)
        if p.derived_from:
            refs = ",".join('{"reference":"' + url + '"}' for url in p.derived_from)
            parts += (',"derivedFrom":[', refs, "]")
        parts += (
            '},"request":{"method":"POST","url":"Observation","ifNoneExist":',
            condition,
            "}}",
        )
        return "".join(parts).encode("utf-8")


def _json(value: object) -> str:
    return to_json(value).decode("utf-8")


def _entry(url: str, resource: JsonObject, kind: str, identity: DeviceIdentity) -> JsonObject:
    return {
        "fullUrl": url,
        "resource": resource,
        "request": {
            "method": "POST",
            "url": kind,
            "ifNoneExist": _if_none_exist(identity.key_system, identity.key_value),
        },
    }


def _categories(vital_sign: bool) -> list[JsonObject]:
    out = [{"coding": [{"system": codes.PHD_CATEGORY_SYSTEM, "code": "phd"}]}]
    if vital_sign:
        # No display: the ANS profiles pattern-match it and "Vital Signs" breaks them.
        vital = {"system": codes.OBSERVATION_CATEGORY_SYSTEM, "code": "vital-signs"}
        out.append({"coding": [vital]})
    return out


def _subject(ctx: FhirContext) -> JsonObject:
    # A logical reference: the box never creates or looks up Patient resources.
    return {"identifier": {"system": ctx.patient_system, "value": ctx.patient_value}}


def _reference_extension(url: str, target: str) -> JsonObject:
    return {"url": url, "valueReference": {"reference": target}}


def _coincident(
    correction: timedelta,
    gateway_time: datetime,
    *,
    ctx: FhirContext,
    device_url: str,
    gateway_url: str,
) -> JsonObject:
    """PhdCoincidentTimeStampObservation: at gateway time `gateway_time` the device's wall clock
    read `gateway_time + correction`, shown in the gateway's zone the device is assumed in."""
    device_clock = (gateway_time + correction).astimezone(ctx.tz)
    return {
        "resourceType": "Observation",
        "meta": {"profile": [codes.PROFILE_COINCIDENT]},
        "status": "final",
        "code": coded(codes.TIME_ABS),
        "subject": {"reference": device_url},
        "effectiveDateTime": fhir_datetime(gateway_time),
        "device": {"reference": gateway_url},
        "valueDateTime": fhir_datetime(device_clock),
    }
