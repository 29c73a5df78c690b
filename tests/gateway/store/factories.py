"""Readings for the store's tests, built from real characteristic bytes."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

from device_drivers.reading import Reading

DEVICE = "C0:11:22:33:44:55"
RECEIVED = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def current_time(n: int, *, device: str = DEVICE) -> Reading:
    """A Current Time (0x2A2B) value whose timestamp encodes `n` (distinct for n < 10**6)."""
    stamp = datetime(2025, 1, 1) + timedelta(seconds=n)
    value = struct.pack(
        "<HBBBBBBBB",
        stamp.year,
        stamp.month,
        stamp.day,
        stamp.hour,
        stamp.minute,
        stamp.second,
        stamp.isoweekday(),
        0,
        0,
    )
    return Reading(device, 0x2A2B, value, RECEIVED + timedelta(seconds=n), clock_trusted=True)


def sfloat(value: int) -> bytes:
    """An IEEE 11073 SFLOAT with exponent 0."""
    return struct.pack("<H", value & 0x0FFF)


def blood_pressure(
    systolic: int, diastolic: int, pulse: int, *, minute: int = 0, device: str = DEVICE
) -> Reading:
    """A Blood Pressure Measurement (0x2A35) in mmHg with time stamp and pulse rate."""
    flags = 0x02 | 0x04
    stamp = struct.pack("<HBBBBB", 2025, 6, 1, 7, minute, 0)
    mean = (systolic + 2 * diastolic) // 3
    value = (
        bytes([flags]) + sfloat(systolic) + sfloat(diastolic) + sfloat(mean) + stamp + sfloat(pulse)
    )
    return Reading(device, 0x2A35, value, RECEIVED, clock_trusted=True)


def glucose(sequence: int, mg_dl: int, *, device: str = DEVICE) -> Reading:
    """A Glucose Measurement (0x2A18) in kg/L (SFLOAT exponent -5: mg/dL), blood, finger."""
    flags = 0x02  # concentration, type and sample location present; kg/L
    base = struct.pack("<HBBBBB", 2025, 6, 2, 8, 15, 0)
    concentration = struct.pack("<H", (0xB << 12) | mg_dl)  # exponent -5
    value = bytes([flags]) + struct.pack("<H", sequence) + base + concentration + bytes([0x11])
    return Reading(device, 0x2A18, value, RECEIVED, clock_trusted=True)


def weight(kg_times_200: int, *, device: str = DEVICE) -> Reading:
    """A Weight Measurement (0x2A9D) in kg (resolution 5 g) with time stamp."""
    value = (
        bytes([0x02])
        + struct.pack("<H", kg_times_200)
        + struct.pack("<HBBBBB", 2025, 6, 3, 6, 45, 0)
    )
    return Reading(device, 0x2A9D, value, RECEIVED, clock_trusted=True)
