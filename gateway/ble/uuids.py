"""The GATT UUIDs the central uses, as bleak wants them: lowercase 128-bit strings.

A 16-bit string such as ``"1810"`` silently matches nothing in a bleak scanner filter (the
advertised UUIDs are compared as 128-bit strings), so everything here goes through
`normalize_uuid_16` once, and the rest of the package never spells a short form.
"""

from __future__ import annotations

from typing import Final

from bleak.uuids import normalize_uuid_16

__all__ = [
    "BATTERY_LEVEL",
    "BLOOD_PRESSURE_MEASUREMENT",
    "CURRENT_TIME",
    "DEVICE_INFORMATION",
    "GLUCOSE_MEASUREMENT",
    "GLUCOSE_MEASUREMENT_CONTEXT",
    "HEALTH_SERVICES",
    "HEALTH_SERVICE_UUIDS",
    "RACP",
    "WEIGHT_MEASUREMENT",
    "uuid128",
]


def uuid128(short: int) -> str:
    """The bleak form of a 16-bit SIG UUID."""
    return normalize_uuid_16(short)


HEALTH_SERVICES: Final = (0x1810, 0x1808, 0x181D, 0x181B)
"""Blood Pressure, Glucose, Weight Scale, Body Composition: what the scanner listens for."""
HEALTH_SERVICE_UUIDS: Final = tuple(uuid128(u) for u in HEALTH_SERVICES)

BLOOD_PRESSURE_MEASUREMENT: Final = 0x2A35
INTERMEDIATE_CUFF_PRESSURE: Final = 0x2A36
GLUCOSE_MEASUREMENT: Final = 0x2A18
GLUCOSE_MEASUREMENT_CONTEXT: Final = 0x2A34
RACP: Final = 0x2A52
WEIGHT_MEASUREMENT: Final = 0x2A9D
BODY_COMPOSITION_MEASUREMENT: Final = 0x2A9C
CURRENT_TIME: Final = 0x2A2B
BATTERY_LEVEL: Final = 0x2A19

DEVICE_INFORMATION: Final = {
    0x2A29: "manufacturer",
    0x2A24: "model",
    0x2A25: "serial_number",
    0x2A27: "hardware_revision",
    0x2A26: "firmware_revision",
    0x2A28: "software_revision",
    0x2A23: "system_id",
}
"""Device Information characteristics and the name each takes in the device registry."""
