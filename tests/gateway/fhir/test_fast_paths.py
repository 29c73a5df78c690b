"""The blood-pressure fast path says exactly what the generic path says, or steps aside."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.blood_pressure import BloodPressureMeasurement
from device_drivers.codec import decode
from device_drivers.errors import MalformedValue
from device_drivers.reading import Reading
from gateway.fhir import fast_paths
from gateway.fhir.errors import MappingError
from gateway.fhir.observations import map_measurement
from tests.device_drivers.test_blood_pressure import pressure_values

MANY = settings(max_examples=400, deadline=None)


def generic(value: bytes) -> object:
    try:
        m = decode(0x2A35, value)
        return map_measurement(0x2A35, m, None), Reading.timestamp_of(m)
    except (MalformedValue, MappingError) as exc:
        return type(exc)


@MANY
@given(pressure_values(BloodPressureMeasurement))
def test_generated_values_map_the_same(value: BloodPressureMeasurement) -> None:
    raw = bytes(value)
    fast = fast_paths.blood_pressure(raw)
    if fast is not None:
        assert fast == generic(raw)


@MANY
@given(st.binary(max_size=24))
def test_arbitrary_bytes_map_the_same_or_step_aside(raw: bytes) -> None:
    fast = fast_paths.blood_pressure(raw)
    if fast is not None:
        assert fast == generic(raw)


def test_the_common_shape_takes_the_fast_path() -> None:
    # mmHg, time stamp, pulse, user id: what most cuffs send
    raw = bytes.fromhex("0e790050005f00ea070b1c0a1e00480001")
    fast = fast_paths.blood_pressure(raw)
    assert fast is not None
    assert fast == generic(raw)
    drafts, stamp = fast
    assert [d.type_code for d in drafts] == [150020, 149546]
    assert stamp is not None
    assert stamp.isoformat() == "2026-11-28T10:30:00"


def test_rare_shapes_step_aside() -> None:
    assert fast_paths.blood_pressure(bytes.fromhex("01" + "7900" * 3)) is None  # kPa
    assert fast_paths.blood_pressure(bytes.fromhex("10" + "7900" * 3 + "0100")) is None  # status
    assert fast_paths.blood_pressure(bytes.fromhex("00" + "ff07" + "7900" * 2)) is None  # NaN
    assert fast_paths.blood_pressure(bytes.fromhex("02" + "7900" * 3 + "00000000000000")) is None
