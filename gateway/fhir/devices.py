"""PhdDevice (a health device) and PhgDevice (this gateway) resources (notes/FHIR.md section 11).

Identifiers are the devices' dedup keys on the server, so they are frozen here:
- PHD: SYSID = the DIS System ID as given in `DeviceInfo.system_id` (upper case, dashed bytes,
  in the order the registry stores it), and BTMAC = the identity address. The conditional-create
  key, and the device part of every Observation identifier, is the SYSID when known, else the
  BT address (16 or 12 hex digits, no dashes).
- PHG: the gateway's SYSID when known, and always its gateway id as `urn:carebox:gateway:<id>`,
  which is its conditional-create key (and names its fullUrl) whether or not it has a SYSID:
  see `phg_identity`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from gateway.fhir import codes
from gateway.fhir.codes import Code
from gateway.fhir.context import GATEWAY_ID_SYSTEM, DeviceInfo, GatewayInfo
from gateway.fhir.elements import mdc_concept

__all__ = ["DeviceIdentity", "phd_device", "phd_identity", "phg_device", "phg_identity"]

JsonObject = dict[str, Any]

_ALL_SPECIALIZATIONS = sorted(c.mdc for c in codes.SPECIALIZATION_BY_CHARACTERISTIC.values())


def _digits(text: str) -> str:
    return re.sub(r"[^0-9A-Fa-f]", "", text).upper()


def _dashed(digits: str) -> str:
    return "-".join(digits[i : i + 2] for i in range(0, len(digits), 2))


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """A Device's identifiers, the one used for conditional create, and the dedup part."""

    identifiers: tuple[JsonObject, ...]
    key_system: str
    key_value: str
    dedup_part: str


def _identifier(type_code: str, system: str, value: str) -> JsonObject:
    return {
        "type": {"coding": [{"system": codes.CONTINUA_DEVICE_IDENTIFIERS, "code": type_code}]},
        "system": system,
        "value": value,
    }


def phd_identity(info: DeviceInfo) -> DeviceIdentity:
    address = _digits(info.address)
    btmac = _identifier("BTMAC", codes.BTMAC_SYSTEM, _dashed(address))
    if info.system_id is None:
        return DeviceIdentity((btmac,), codes.BTMAC_SYSTEM, _dashed(address), address)
    sysid = _digits(info.system_id)
    return DeviceIdentity(
        (_identifier("SYSID", codes.SYSID_SYSTEM, _dashed(sysid)), btmac),
        codes.SYSID_SYSTEM,
        _dashed(sysid),
        sysid,
    )


def phg_identity(gateway_id: str, info: GatewayInfo) -> DeviceIdentity:
    """The PhgDevice's identifiers (its SYSID first when known, then its gateway id), keyed on
    the gateway id either way. Why not on the SYSID, as a PhdDevice is: gateways sent Bundles
    before they had a SYSID, and the server matches `ifNoneExist` on the one identifier it
    names; keyed on a newly added SYSID, the next Bundle would create a second Device for the
    same gateway. The gateway id is the gateway's MQTT identity too, so it does not change."""
    own = {"system": GATEWAY_ID_SYSTEM, "value": f"urn:carebox:gateway:{gateway_id}"}
    identifiers: tuple[JsonObject, ...] = (own,)
    if info.system_id is not None:
        sysid = _dashed(_digits(info.system_id))
        identifiers = (_identifier("SYSID", codes.SYSID_SYSTEM, sysid), own)
    return DeviceIdentity(identifiers, own["system"], own["value"], gateway_id)


_UNKNOWN: Final[JsonObject] = {
    "extension": [{"url": codes.DATA_ABSENT_EXTENSION, "valueCode": "unknown"}]
}


def _required(device: JsonObject, name: str, value: str | None) -> None:
    if value:
        device[name] = value
    else:
        device["_" + name] = _UNKNOWN


def _version(code: Code, value: str) -> JsonObject:
    return {"type": mdc_concept(code.mdc, code.reference_id), "value": value}


def _time_sync(method: Code | codes.TimeSync) -> JsonObject:
    value = method.mdc if isinstance(method, Code) else method.value
    return {
        "type": mdc_concept(codes.TIME_SYNC_PROTOCOL.mdc, codes.TIME_SYNC_PROTOCOL.reference_id),
        "valueCode": [mdc_concept(value)],
    }


def phd_device(info: DeviceInfo, characteristics: Iterable[int]) -> JsonObject:
    """The PhdDevice of `info`; `characteristics` (the readings' kinds) pick its specializations."""
    identity = phd_identity(info)
    device: JsonObject = {
        "resourceType": "Device",
        "meta": {"profile": [codes.PROFILE_PHD_DEVICE]},
        "identifier": list(identity.identifiers),
    }
    # PhdDevice requires a manufacturer and a model number; a device whose Device Information
    # lacks them says so with a data-absent-reason rather than an invented name.
    _required(device, "manufacturer", info.manufacturer)
    if info.serial:
        device["serialNumber"] = info.serial
    _required(device, "modelNumber", info.model)
    device["type"] = mdc_concept(codes.MDS_SIMPLE.mdc, codes.MDS_SIMPLE.reference_id)
    kinds = sorted(
        {
            codes.SPECIALIZATION_BY_CHARACTERISTIC.get(c, codes.SPECIALIZATION_GENERIC).mdc
            for c in characteristics
        }
    ) or [codes.SPECIALIZATION_GENERIC.mdc]
    # "version" is the specialization standard's version, 1 for every BLE profile mapped "as if".
    device["specialization"] = [{"systemType": mdc_concept(k), "version": "1"} for k in kinds]
    versions = [
        _version(code, value)
        for code, value in (
            (codes.VERSION_HW, info.hardware),
            (codes.VERSION_SW, info.software),
            (codes.VERSION_FW, info.firmware),
        )
        if value
    ]
    if not versions:  # and at least one typed version: the firmware's, unknown
        fw = mdc_concept(codes.VERSION_FW.mdc, codes.VERSION_FW.reference_id)
        versions = [{"type": fw, "_value": _UNKNOWN}]
    device["version"] = versions
    # BLE devices have no time synchronization of their own.
    device["property"] = [_time_sync(codes.TIME_SYNC_NONE)]
    return device


def phg_device(gateway_id: str, info: GatewayInfo) -> JsonObject:
    identity = phg_identity(gateway_id, info)
    return {
        "resourceType": "Device",
        "meta": {"profile": [codes.PROFILE_PHG_DEVICE]},
        "identifier": list(identity.identifiers),
        "manufacturer": info.manufacturer,
        "modelNumber": info.model,
        "type": mdc_concept(codes.MDS_AHD.mdc, codes.MDS_AHD.reference_id),
        # The gateway speaks every specialization the mapping knows.
        "specialization": [
            {"systemType": mdc_concept(k), "version": "1"} for k in _ALL_SPECIALIZATIONS
        ],
        "version": [_version(codes.VERSION_SW, info.software_version)],
        "property": [_time_sync(info.time_sync)],
    }
