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
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final
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
from gateway.fhir.timing import corrected_time, fhir_datetime

__all__ = ["build_bundle", "observation_identifier", "render_bundle"]

_log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from _hashlib import HASH

    # (identifier prefix, SHA-1 of the fullUrl's name up to the timestamp, then the text
    # around the variable parts; see `_Shared._template`)
    _Template = tuple[str, HASH, str, str, str, str, str, str]
    _TemplateKey = tuple[str, str, int, str, bool, str | None, bool]

JsonObject = dict[str, Any]

_NAMESPACE: Final = uuid.UUID("772e90e4-3145-43a0-97a6-85ed5063143f")
"""Namespace of every fullUrl and coincident-timestamp identifier: frozen, changing it changes
every resent Bundle."""

_CONTEXT_CHARACTERISTIC: Final = 0x2A34


_NAMESPACE_BYTES: Final = _NAMESPACE.bytes


def _urn(kind: str, key: str) -> str:
    """``urn:uuid:`` + the UUIDv5 of ``kind|key`` (RFC 4122 section 4.3), as `uuid.uuid5`
    computes it, without building UUID objects."""
    # SHA-1 is what UUIDv5 is defined with; it names, it protects nothing.
    name = _NAMESPACE_BYTES + f"{kind}|{key}".encode()
    return _uuid_urn(hashlib.sha1(name, usedforsecurity=False).hexdigest())


_OBSERVATION_NAME: Final = _NAMESPACE_BYTES + b"observation|"

# The variant nibble: the top two bits of octet 8 set to 10.
_VARIANT: Final = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _uuid_urn(sha1_hex: str) -> str:
    """The UUIDv5 urn of a SHA-1 (hex): its first 16 octets with the version nibble 5 and
    the variant bits, edited in the text rather than in a bytearray."""
    h = sha1_hex
    return f"urn:uuid:{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


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


# Per mapped reading: the item, its device's (info, identity), its drafts, and its effective
# time and correction (`timing.corrected_time`). Plain tuples: one per reading on the drain path.
_Mapped = tuple[
    BundleItem, tuple[DeviceInfo, DeviceIdentity], list[Draft], datetime, timedelta | None
]


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


def _drafts(
    item: BundleItem, resolutions: tuple[int | None, int | None] = (None, None)
) -> tuple[list[Draft], datetime | None]:
    """The reading's Observation drafts and its device time (naive local, None if none).
    `resolutions`: its device's (`DeviceInfo.resolutions`)."""
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
    drafts = map_measurement(
        reading.characteristic, measurement, _decode_context(item), resolutions
    )
    return drafts, Reading.timestamp_of(measurement)


def _map(
    items: Sequence[BundleItem], ctx: FhirContext, skipped: list[MappingError] | None
) -> list[_Mapped]:
    """The readings that map, in order, with what their Observations are rendered from."""
    mapped: list[_Mapped] = []
    infos: dict[str, tuple[DeviceInfo, DeviceIdentity]] = {}  # per address: looked up once
    tz = ctx.tz
    for item in items:
        reading = item.reading
        address = reading.device
        known = infos.get(address)
        if known is None:
            info = ctx.device(address)
            known = infos[address] = (info, phd_identity(info))
        try:
            drafts, local = _drafts(item, known[0].resolutions)
            at, correction = corrected_time(reading, tz, local)
        except MappingError as exc:
            error = exc.for_item(item.id)
            if skipped is None:
                raise error from None
            skipped.append(error)
            continue
        mapped.append((item, known, drafts, at, correction))
    return mapped


def _plan(
    mapped: list[_Mapped], ctx: FhirContext
) -> tuple[list[bytes], str, dict[str, str], dict[tuple[str, timedelta], str]]:
    """The Device and coincident-timestamp entries (a few per Bundle), the gateway's fullUrl,
    and the fullUrls the Observations point at: per device (its dedup part), and per (device,
    correction)."""
    gateway_url, gateway_json = _gateway_entry(ctx.gateway_id, ctx.gateway_info)
    entries: list[bytes] = [gateway_json]

    # PHD devices in order of first appearance, with the kinds of reading they sent.
    devices: dict[str, tuple[DeviceInfo, set[int]]] = {}
    # One coincident timestamp per (device, correction): per connection, as the IG wants; its
    # gateway time is the earliest receive time among those readings (any is a true pair).
    coincident: dict[tuple[str, timedelta], tuple[DeviceIdentity, datetime]] = {}
    for item, (info, device), _, _, correction in mapped:
        key = device.dedup_part
        seen_device = devices.get(key)
        if seen_device is None:
            seen_device = devices[key] = (info, set())
        seen_device[1].add(item.reading.characteristic)
        if correction is not None:
            ck = (key, correction)
            received = item.reading.received_at.astimezone(UTC)
            earliest = coincident.get(ck)
            if earliest is None or received < earliest[1]:
                coincident[ck] = (device, received)

    device_urls: dict[str, str] = {}
    for key, (info, kinds) in devices.items():
        device_urls[key], device_json = _device_entry(info, frozenset(kinds))
        entries.append(device_json)

    coincident_urls: dict[tuple[str, timedelta], str] = {}
    for ck, (identity, received) in coincident.items():
        key, correction = ck
        ct_key = f"{key}|{int(correction.total_seconds())}|{fhir_datetime(received)}"
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
        entry = {
            "fullUrl": url,
            "resource": resource,
            "request": {
                "method": "POST",
                "url": "Observation",
                "ifNoneExist": _if_none_exist(codes.URI_SYSTEM, _urn("ct-id", ct_key)),
            },
        }
        entries.append(bundle_to_json(entry))
    return entries, gateway_url, device_urls, coincident_urls


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
    mapped = _map(items, ctx, skipped)
    if not mapped:
        return _EMPTY
    entries, gateway_url, device_urls, coincident_urls = _plan(mapped, ctx)
    shared = _shared(ctx.patient_system, ctx.patient_value, gateway_url)
    # One encode for all the Observations: their text is nearly all of the Bundle.
    observations = shared.observations(mapped, ctx, device_urls, coincident_urls)
    if observations:
        entries.append(observations.encode())
    return b"".join((_HEAD, b",".join(entries), _TAIL))


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


# Each series' templates are kept across Bundles; past this many (a registry of many devices,
# or many clock corrections, each with its own coincident url) they are dropped and rebuilt.
_MAX_TEMPLATES: Final = 1024


@functools.lru_cache(maxsize=16)
def _shared(patient_system: str, patient_value: str, gateway_url: str) -> _Shared:
    return _Shared(patient_system, patient_value, gateway_url)


class _Shared:
    """The JSON text the Observations of one patient and gateway share, rendered once, and per
    Observation series (device, type, profile, coincident timestamp) the text around the few
    parts that change from one Observation to the next: the fullUrl, the identifier's
    timestamp, the effectiveDateTime and the body."""

    def __init__(self, patient_system: str, patient_value: str, gateway_url: str) -> None:
        gateway_ext = _reference_extension(codes.GATEWAY_DEVICE_EXTENSION, gateway_url)
        self._extension = _json(gateway_ext)
        self._coincident_ext = _json(
            {"url": codes.COINCIDENT_TIMESTAMP_EXTENSION, "valueReference": {"reference": ""}}
        )[:-4]  # ends `"reference":""}}`: the url goes between the quotes
        self._category = {v: _json(_categories(v)) for v in (False, True)}
        self._subject = _json(_subject(patient_system, patient_value))
        phd_system = json_string(codes.PHD_IDENTIFIER_SYSTEM)
        self._identifier_head = '"identifier":[{"system":' + phd_system
        self._templates: dict[_TemplateKey, _Template] = {}

    def _template(
        self,
        ctx: FhirContext,
        device: DeviceIdentity,
        device_url: str,
        draft: Draft,
        coincident_url: str | None,
    ) -> _Template:
        """The text around one Observation's variable parts. A draft with a duration
        (`Draft.period_s`) has an `effectivePeriod` whose start is where the other drafts'
        effectiveDateTime goes; its end is written with that start (see `observations`)."""
        # The identifier is this prefix and the timestamp. A timestamp of digits (a number of
        # seconds: nearly always) is the same text in JSON and in a URL, so the JSON of the
        # identifier value and of its ifNoneExist are written up to it once; and the UUIDv5
        # name's SHA-1 is taken up to it once, then copied and finished per Observation.
        prefix = observation_identifier(device, ctx, draft.type_code, "")
        state = hashlib.sha1(_OBSERVATION_NAME + prefix.encode(), usedforsecurity=False)
        condition = json_string(_if_none_exist(codes.PHD_IDENTIFIER_SYSTEM, prefix + "0"))
        extension = self._extension
        if coincident_url is not None:
            extension += "," + self._coincident_ext + json_string(coincident_url) + "}}"
        head = (
            '","resource":{"resourceType":"Observation","meta":{"profile":['
            + json_string(draft.profile)
            + ']},"extension":['
            + extension
            + "],"
            + self._identifier_head
            + ',"value":'
        )
        period = draft.period_s is not None
        mid = (
            '}],"status":"final","category":'
            + self._category[draft.vital_sign]
            + ',"subject":'
            + self._subject
            + (',"effectivePeriod":{"start":"' if period else ',"effectiveDateTime":"')
        )
        dev = ('"}' if period else '"') + ',"device":{"reference":"' + device_url + '"}'
        tail = '},"request":{"method":"POST","url":"Observation","ifNoneExist":'
        return prefix, state, head, json_string(prefix)[:-1], mid, dev, tail, condition[:-2]

    def observations(
        self,
        mapped: list[_Mapped],
        ctx: FhirContext,
        device_urls: dict[str, str],
        coincident_urls: dict[tuple[str, timedelta], str],
    ) -> str:
        """The Observation entries of `mapped`, comma-separated, in order; an identifier
        already written is left out."""
        templates = self._templates
        if len(templates) > _MAX_TEMPLATES:
            templates.clear()
        out: list[str] = []
        seen: set[str] = set()
        for item, (_, device), drafts, at, correction in mapped:
            dedup = device.dedup_part
            device_url = device_urls[dedup]
            ct_url = None if correction is None else coincident_urls[dedup, correction]
            effective_at = fhir_datetime(at)
            stamp = item.phd_timestamp
            digits = stamp.isdigit()
            for draft in drafts:
                key = (
                    device_url,
                    dedup,
                    draft.type_code,
                    draft.profile,
                    draft.vital_sign,
                    ct_url,
                    draft.period_s is not None,
                )
                template = templates.get(key)
                if template is None:
                    template = templates[key] = self._template(
                        ctx, device, device_url, draft, ct_url
                    )
                prefix, state, head, value_head, mid, dev, tail, condition_head = template
                when = effective_at if draft.period_s is None else _period(at, draft.period_s)
                identifier = prefix + stamp
                if identifier in seen:
                    continue
                seen.add(identifier)
                body = draft.body
                rest = "," + body if body else ""
                if draft.derived_from:
                    refs = ",".join(
                        '{"reference":"'
                        + _urn("observation", observation_identifier(device, ctx, t, stamp))
                        + '"}'
                        for t in draft.derived_from
                    )
                    rest += ',"derivedFrom":[' + refs + "]"
                if digits:
                    sha = state.copy()
                    sha.update(stamp.encode())
                    out.append(
                        f'{{"fullUrl":"{_uuid_urn(sha.hexdigest())}{head}{value_head}{stamp}"'
                        f'{mid}{when}{dev}{rest}{tail}{condition_head}{stamp}"}}}}'
                    )
                else:
                    condition = _if_none_exist(codes.PHD_IDENTIFIER_SYSTEM, identifier)
                    out.append(
                        f'{{"fullUrl":"{_urn("observation", identifier)}{head}'
                        f"{json_string(identifier)}{mid}{when}{dev}{rest}{tail}"
                        f"{json_string(condition)}}}}}"
                    )
        return ",".join(out)


def _period(start: datetime, seconds: int) -> str:
    """The text between an effectivePeriod's opening and closing quotes: start, then end."""
    try:
        end = start + timedelta(seconds=seconds)
    except OverflowError:  # a device clock near year 9999: no end exists, a point in time does
        end = start
    return f'{fhir_datetime(start)}","end":"{fhir_datetime(end)}'


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


def _subject(patient_system: str, patient_value: str) -> JsonObject:
    # A logical reference: the box never creates or looks up Patient resources.
    return {"identifier": {"system": patient_system, "value": patient_value}}


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
    # whole seconds: the device's clock shows no more (the gateway's time keeps its own)
    device_clock = (gateway_time + correction).astimezone(ctx.tz).replace(microsecond=0)
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
