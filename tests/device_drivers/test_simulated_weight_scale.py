"""The simulated scale driven through the sans-I/O protocol."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from device_drivers import Special, decode
from device_drivers.body_composition import BodyCompositionFeature, BodyCompositionMeasurement
from device_drivers.codec import from_json
from device_drivers.current_time import CurrentTime
from device_drivers.simulators.base import DeviceKind, Security
from device_drivers.simulators.weight_scale import WeightScale
from device_drivers.weight_scale import WeightMeasurement, WeightScaleFeature, WeightUnit

NOW = datetime(2026, 11, 28, 7, 15, 0)


def scale(**kwargs: object) -> WeightScale:
    return WeightScale("D0:11:22:33:44:55", "Scale Sim", lambda: NOW, **kwargs)  # type: ignore[arg-type]


def test_gatt_table() -> None:
    s = scale()
    assert s.kind is DeviceKind.WEIGHT_SCALE
    assert s.advertised_services() == (0x181D, 0x181B)
    chars = {c.uuid: c for svc in s.services() for c in svc.characteristics}
    assert {svc.uuid for svc in s.services()} == {0x181D, 0x181B, 0x1805, 0x180A, 0x180F}
    for uuid in (0x2A9D, 0x2A9C):
        assert chars[uuid].properties == {"indicate"}
        assert chars[uuid].security is Security.ENCRYPTED
    assert chars[0x2A9E].properties == {"read"}
    assert chars[0x2A9B].properties == {"read"}


def test_each_measurement_goes_out_on_its_characteristic() -> None:
    s = scale()
    weight = from_json(WeightMeasurement, {"weight": 72.5, "timestamp": "2026-11-28T07:14:00"})
    body = BodyCompositionMeasurement(body_fat_pct=Decimal("21.3"), weight=Decimal("72.5"))
    s.add(weight)
    s.add(body)
    s.add(bytes.fromhex("00ffff"))  # raw: "measurement unsuccessful" on 2A9D
    assert s.advertising()
    weights = s.subscribed(0x2A9D)
    bodies = s.subscribed(0x2A9C)
    assert [decode(e.uuid, e.value) for e in weights] == [
        weight,
        WeightMeasurement(weight=Special.NAN),
    ]
    assert [decode(e.uuid, e.value) for e in bodies] == [body]
    assert all(e.indicate for e in weights + bodies)
    for e in weights:
        s.confirmed(e)
    assert s.stored() == [bytes(body)]
    s.disconnected()
    (again,) = s.subscribed(0x2A9C)
    s.confirmed(again)
    assert not s.advertising()


def test_raw_bytes_on_body_composition() -> None:
    s = scale()
    s.add(bytes.fromhex("0000ffff"), uuid=0x2A9C)
    (emit,) = s.subscribed(0x2A9C)
    assert emit.value == bytes.fromhex("0000ffff")
    assert s.subscribed(0x2A9D) == []


def test_add_refuses_a_mismatched_characteristic() -> None:
    s = scale()
    with pytest.raises(ValueError, match="2A9D"):
        s.add(WeightMeasurement(weight=Decimal(70)), uuid=0x2A9C)
    with pytest.raises(ValueError, match="2A35"):
        s.add(b"\x00", uuid=0x2A35)


def test_features_and_clock() -> None:
    s = scale()
    feature = decode(0x2A9E, s.read(0x2A9E))
    assert isinstance(feature, WeightScaleFeature)
    assert feature.weight_precision(WeightUnit.SI) == Decimal("0.05")
    assert isinstance(decode(0x2A9B, s.read(0x2A9B)), BodyCompositionFeature)
    now = decode(0x2A2B, s.read(0x2A2B))
    assert isinstance(now, CurrentTime)
    assert now.timestamp == NOW
    assert s.read(0x2A24) == b"WS-SIM"
