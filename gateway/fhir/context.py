"""What the mapping needs besides the readings: who the patient is, which devices and which
gateway took the readings, and the zone device local times are read in."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Protocol

from device_drivers.reading import Reading
from gateway.fhir.codes import TimeSync

__all__ = ["BundleItem", "DeviceInfo", "FhirContext", "GatewayInfo", "eui64_from_mac"]

_HEX16 = re.compile(r"[0-9A-F]{16}")
_MAC = re.compile(r"[0-9A-F]{12}")


def _hex_digits(text: str) -> str:
    return re.sub(r"[^0-9A-Fa-f]", "", text).upper()


def eui64_from_mac(mac: str) -> str:
    """An EUI-64 (16 upper-case hex digits) from a 48-bit MAC by inserting FF-FE in the middle,
    as the PHD IG derives a system id for a device or gateway that has none of its own."""
    digits = _hex_digits(mac)
    if not _MAC.fullmatch(digits):
        raise ValueError(f"{mac!r} is not a 48-bit MAC address; give 12 hex digits")
    return digits[:6] + "FFFE" + digits[6:]


class BundleItem(Protocol):
    """One stored reading to send: the store's `StoredReading` satisfies this.

    `phd_timestamp` is the dedup identifier's timestamp part computed once at capture
    (`Reading.phd_timestamp_part()`); the mapping uses it verbatim and never recomputes it.
    """

    @property
    def id(self) -> str: ...

    @property
    def reading(self) -> Reading: ...

    @property
    def phd_timestamp(self) -> str: ...


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A health device as the gateway knows it (Device Information Service, registry).

    `address` is its identity address; `system_id` the DIS System ID (0x2A23) as 16 hex digits in
    the order the registry stores it (separators ignored). Without a system id the device is
    identified by its Bluetooth address alone, as the PHD IG STU2 allows.
    """

    address: str
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    hardware: str | None = None
    software: str | None = None
    system_id: str | None = None
    # A scale's Weight Scale Feature resolution codes (0x2A9E): the weight and height it sends
    # keep the precision they state (notes/FHIR.md section 8), not the field's finer step
    weight_resolution: int | None = None
    height_resolution: int | None = None

    @property
    def resolutions(self) -> tuple[int | None, int | None]:
        return self.weight_resolution, self.height_resolution

    def __post_init__(self) -> None:
        if not _MAC.fullmatch(_hex_digits(self.address)):
            raise ValueError(f"device address {self.address!r} is not a 48-bit address")
        if self.system_id is not None and not _HEX16.fullmatch(_hex_digits(self.system_id)):
            raise ValueError(f"system_id {self.system_id!r} is not 16 hex digits (EUI-64)")


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    """The gateway as a PhgDevice. `system_id`: 16 hex digits (see `eui64_from_mac`)."""

    system_id: str | None = None
    manufacturer: str = "Carebox"
    model: str = "Carebox gateway"
    software_version: str = "0.1.0"
    time_sync: TimeSync = TimeSync.SNTP_V4_RFC4330

    def __post_init__(self) -> None:
        if self.system_id is not None and not _HEX16.fullmatch(_hex_digits(self.system_id)):
            raise ValueError(f"gateway system_id {self.system_id!r} is not 16 hex digits")


GATEWAY_ID_SYSTEM = "urn:ietf:rfc:3986"
"""The gateway id goes out as a URI (`urn:carebox:gateway:<id>`) under the RFC 3986 system, so
no domain has to be invented for it."""


@dataclass(frozen=True, slots=True)
class FhirContext:
    """Everything but the readings. `devices` maps a device address (any case) to its info;
    `tz` is the gateway's zone, in which device local times are read."""

    gateway_id: str
    patient_system: str
    patient_value: str
    tz: tzinfo
    devices: Mapping[str, DeviceInfo] = field(default_factory=dict)
    gateway_info: GatewayInfo = field(default_factory=GatewayInfo)

    def __post_init__(self) -> None:
        if not self.gateway_id:
            raise ValueError("gateway_id is empty")
        if not self.patient_system or not self.patient_value:
            raise ValueError("the patient identifier needs both a system and a value")

    def device(self, address: str) -> DeviceInfo:
        """The info for `address`, or a bare one (address only) for a device not in the map."""
        wanted = _hex_digits(address)
        for key, info in self.devices.items():
            if _hex_digits(key) == wanted:
                return info
        return DeviceInfo(address=address)
