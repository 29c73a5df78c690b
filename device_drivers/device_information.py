"""Device Information Service 0x180A and Battery Service 0x180F: what the gateway reads once
per device to build its PHD `Device` (FHIR.md section 11) and to watch its battery.

Characteristics: Manufacturer Name 0x2A29, Model Number 0x2A24, Serial Number 0x2A25,
Hardware Revision 0x2A27, Firmware Revision 0x2A26, Software Revision 0x2A28 (UTF-8 strings,
JSON field `value`), System ID 0x2A23, PnP ID 0x2A50, Battery Level 0x2A19.

Our readings of the specifications:
- Strings (GSS utf8s) carry no terminator and no length; the value is the whole attribute.
  Many devices pad them with NULs or send a C string, so the first NUL ends the string and
  what follows is ignored (the same rule as trailing octets everywhere else). An empty value
  is the empty string. Invalid UTF-8 is `MalformedValue` at the offending octet. A string
  containing NUL cannot be encoded (`UnencodableValue`).
- System ID is a uint40 Manufacturer Identifier then a uint24 Organizationally Unique
  Identifier, little-endian: the 64-bit little-endian number is ``OUI << 40 | manufacturer``.
  DIS's own example: OUI 0x123456 with company-assigned 0x9ABCDE gives the System ID
  0x123456FFFE9ABCDE. `eui64` is that number as 16 upper-case hex digits, the canonical
  EUI-64 order (OUI first), i.e. the eight octets as sent, reversed. The PHD IG's example
  prints the octets in transmission order instead; the FHIR mapping picks one and freezes it
  (it feeds the dedup identifier), `eui64` is ours.
- PnP ID: vendor id source u8 (1 Bluetooth SIG, 2 USB-IF, others reserved and kept), vendor
  id u16, product id u16, product version u16; all seven octets required.
- Battery Level: u8 percent, 0..100; 101..255 are RFU and a device sending one is broken, so
  they are `MalformedValue`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import ClassVar, Final, Self

from device_drivers.codec import ByteReader, ByteWriter, register
from device_drivers.errors import UnencodableValue

__all__ = [
    "STRING_CHARACTERISTICS",
    "BatteryLevel",
    "FirmwareRevisionString",
    "HardwareRevisionString",
    "ManufacturerNameString",
    "ModelNumberString",
    "PnpId",
    "SerialNumberString",
    "SoftwareRevisionString",
    "SystemId",
    "VendorIdSource",
]


@dataclass(frozen=True, slots=True)
class _Utf8String:
    UUID: ClassVar[int]
    value: str

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        raw = bytes(data)
        end = raw.find(b"\x00")
        text = raw if end < 0 else raw[:end]
        try:
            return cls(text.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ByteReader(cls.UUID, raw).error(
                f"invalid UTF-8 ({exc.reason})", exc.start
            ) from None

    def __bytes__(self) -> bytes:
        if "\x00" in self.value:
            raise UnencodableValue(f"{type(self).__name__} cannot carry a NUL character")
        return self.value.encode("utf-8")


@register(0x2A29)
@dataclass(frozen=True, slots=True)
class ManufacturerNameString(_Utf8String):
    pass


@register(0x2A24)
@dataclass(frozen=True, slots=True)
class ModelNumberString(_Utf8String):
    pass


@register(0x2A25)
@dataclass(frozen=True, slots=True)
class SerialNumberString(_Utf8String):
    pass


@register(0x2A27)
@dataclass(frozen=True, slots=True)
class HardwareRevisionString(_Utf8String):
    pass


@register(0x2A26)
@dataclass(frozen=True, slots=True)
class FirmwareRevisionString(_Utf8String):
    pass


@register(0x2A28)
@dataclass(frozen=True, slots=True)
class SoftwareRevisionString(_Utf8String):
    pass


STRING_CHARACTERISTICS: Final[dict[int, type[_Utf8String]]] = {
    cls.UUID: cls
    for cls in (
        ManufacturerNameString,
        ModelNumberString,
        SerialNumberString,
        HardwareRevisionString,
        FirmwareRevisionString,
        SoftwareRevisionString,
    )
}
"""The DIS string characteristics by UUID (all share the `value` field)."""

_BD_ADDR: Final = re.compile(r"^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}$")


@register(0x2A23)
@dataclass(frozen=True, slots=True)
class SystemId:
    """DIS System ID; `eui64` (derived) is the EUI-64 as 16 upper-case hex digits."""

    UUID: ClassVar[int]
    manufacturer_identifier: int
    organizationally_unique_identifier: int
    eui64: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.manufacturer_identifier < 1 << 40:
            raise UnencodableValue(
                f"manufacturer_identifier {self.manufacturer_identifier} is not a uint40"
            )
        if not 0 <= self.organizationally_unique_identifier < 1 << 24:
            raise UnencodableValue(
                f"organizationally_unique_identifier {self.organizationally_unique_identifier}"
                " is not a uint24"
            )
        number = self.organizationally_unique_identifier << 40 | self.manufacturer_identifier
        object.__setattr__(self, "eui64", f"{number:016X}")

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = ByteReader(0x2A23, data)
        manufacturer = r.uint(5, "manufacturer_identifier")
        oui = r.u24("organizationally_unique_identifier")
        return cls(manufacturer, oui)

    def __bytes__(self) -> bytes:
        w = ByteWriter()
        w.uint(self.manufacturer_identifier, 5, "manufacturer_identifier")
        w.u24(self.organizationally_unique_identifier, "organizationally_unique_identifier")
        return bytes(w)

    @classmethod
    def from_eui64(cls, eui64: str) -> Self:
        """From 16 hex digits in canonical order (dashes or colons allowed)."""
        digits = re.sub(r"[-:]", "", eui64)
        if not re.fullmatch(r"[0-9A-Fa-f]{16}", digits):
            raise ValueError(f"{eui64!r} is not an EUI-64 (16 hex digits)")
        number = int(digits, 16)
        return cls(number & ((1 << 40) - 1), number >> 40)

    @classmethod
    def from_bd_addr(cls, address: str) -> Self:
        """The EUI-64 derived from a public Bluetooth address by inserting FF-FE after the
        OUI, as DIS describes and the PHD IG uses for a device without a System ID."""
        if not _BD_ADDR.match(address):
            raise ValueError(f"{address!r} is not a Bluetooth address like C0:11:22:33:44:55")
        octets = bytes.fromhex(address.replace(":", ""))
        oui = int.from_bytes(octets[:3], "big")
        company = int.from_bytes(octets[3:], "big")
        return cls(0xFFFE << 24 | company, oui)


class VendorIdSource(enum.IntEnum):
    """PnP ID vendor id source; other codes are reserved and kept as ``RESERVED_n``."""

    BLUETOOTH_SIG = 1
    USB_IF = 2

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFF:
            member = int.__new__(cls, value)
            member._name_ = f"RESERVED_{value}"
            member._value_ = value
            return member
        return None


@register(0x2A50)
@dataclass(frozen=True, slots=True, kw_only=True)
class PnpId:
    UUID: ClassVar[int]
    vendor_id_source: VendorIdSource
    vendor_id: int
    product_id: int
    product_version: int

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = ByteReader(0x2A50, data)
        return cls(
            vendor_id_source=VendorIdSource(r.u8("vendor_id_source")),
            vendor_id=r.u16("vendor_id"),
            product_id=r.u16("product_id"),
            product_version=r.u16("product_version"),
        )

    def __bytes__(self) -> bytes:
        w = ByteWriter()
        w.u8(int(self.vendor_id_source), "vendor_id_source")
        w.u16(self.vendor_id, "vendor_id")
        w.u16(self.product_id, "product_id")
        w.u16(self.product_version, "product_version")
        return bytes(w)


@register(0x2A19)
@dataclass(frozen=True, slots=True)
class BatteryLevel:
    """Battery Level in percent, 0..100."""

    UUID: ClassVar[int]
    battery_level: int

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = ByteReader(0x2A19, data)
        level = r.u8("battery_level")
        if level > 100:
            raise r.error("battery_level outside 0..100", 0)
        return cls(level)

    def __bytes__(self) -> bytes:
        if not 0 <= self.battery_level <= 100:
            raise UnencodableValue(f"battery_level {self.battery_level} outside 0..100")
        w = ByteWriter()
        w.u8(self.battery_level, "battery_level")
        return bytes(w)
