"""Protocol knowledge of Carebox, sans I/O: bytes in, typed values out, and back.

Layout
    errors.py          the error tree (rooted in `CareboxError`)
    ieee11073.py       SFLOAT / FLOAT numbers and their special values
    codec.py           byte reader/writer, codec registry, `decode`, the JSON view and its
                       inverse `from_json` (config tables -> typed values; `InvalidField`)
    blood_pressure.py  Blood Pressure 0x1810: 2A35, 2A36, 2A49
    glucose.py         Glucose 0x1808: 2A18, 2A34, 2A51
    racp.py            Record Access Control Point 2A52
    weight_scale.py    Weight Scale 0x181D: 2A9D, 2A9E
    body_composition.py Body Composition 0x181B: 2A9C, 2A9B
    current_time.py    Current Time 0x1805: 2A2B, 2A08
    device_information.py Device Information 0x180A and Battery 0x180F
    reading.py         `Reading`: one captured measurement as the gateway keeps it
    simulators/        sans-I/O models of a monitor, a meter and a scale
                       (blood_pressure_monitor.py also holds `StoringDevice`, the DIS / CTS /
                       battery / indicate-until-confirmed part the monitor and scale share)

Invariants: nothing here does I/O or imports `gateway` or `bleak`; `decode` returns a value
or raises `MalformedValue`, nothing else, whatever the bytes.
"""

from __future__ import annotations

import importlib

from device_drivers.codec import (
    Codec,
    InvalidField,
    codec_for,
    decode,
    from_json,
    registered,
    to_json,
)
from device_drivers.errors import (
    CareboxError,
    DeviceDriverError,
    MalformedValue,
    UnencodableValue,
    UnknownCharacteristic,
)
from device_drivers.ieee11073 import Measure, Special

# Importing a profile module registers its codecs; the list is the set this package speaks.
_PROFILES = (
    "blood_pressure",
    "glucose",
    "racp",
    "weight_scale",
    "body_composition",
    "current_time",
    "device_information",
)
for _name in _PROFILES:
    try:
        importlib.import_module(f"device_drivers.{_name}")
    except ModuleNotFoundError as _exc:  # pragma: no cover - only while a profile is being written
        if _exc.name != f"device_drivers.{_name}":
            raise

__all__ = [
    "CareboxError",
    "Codec",
    "DeviceDriverError",
    "InvalidField",
    "MalformedValue",
    "Measure",
    "Special",
    "UnencodableValue",
    "UnknownCharacteristic",
    "codec_for",
    "decode",
    "from_json",
    "registered",
    "to_json",
]
