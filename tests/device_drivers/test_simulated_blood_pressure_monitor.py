"""The simulated cuff driven through the sans-I/O protocol, as the radio layer drives it."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from device_drivers import MalformedValue, UnencodableValue, decode
from device_drivers.blood_pressure import (
    BloodPressureFeature,
    BloodPressureMeasurement,
    IntermediateCuffPressure,
)
from device_drivers.codec import from_json
from device_drivers.current_time import CurrentTime
from device_drivers.device_information import SystemId
from device_drivers.simulators.base import AttError, AttErrorCode, DeviceKind, Security
from device_drivers.simulators.blood_pressure_monitor import BloodPressureMonitor

NOW = datetime(2026, 11, 28, 9, 0, 0)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def reading(systolic: int, minute: int = 0) -> BloodPressureMeasurement:
    return BloodPressureMeasurement(
        systolic=Decimal(systolic),
        diastolic=Decimal(80),
        mean_arterial_pressure=Decimal(93),
        timestamp=datetime(2026, 11, 28, 8, minute),
        pulse_rate=Decimal(70),
    )


def monitor(**kwargs: object) -> BloodPressureMonitor:
    return BloodPressureMonitor("C0:11:22:33:44:55", "BP Sim", FakeClock(NOW), **kwargs)  # type: ignore[arg-type]


def test_gatt_table() -> None:
    m = monitor()
    assert m.kind is DeviceKind.BLOOD_PRESSURE
    assert m.advertised_services() == (0x1810,)
    chars = {c.uuid: c for s in m.services() for c in s.characteristics}
    assert {s.uuid for s in m.services()} == {0x1810, 0x1805, 0x180A, 0x180F}
    assert chars[0x2A35].properties == {"indicate"}
    assert chars[0x2A35].security is Security.ENCRYPTED
    assert chars[0x2A36].properties == {"notify"}
    assert chars[0x2A49].properties == {"read"}
    assert chars[0x2A2B].properties == {"read", "write", "notify"}
    assert {0x2A29, 0x2A24, 0x2A25, 0x2A26, 0x2A27, 0x2A28, 0x2A23, 0x2A19} <= set(chars)


def test_stored_measurements_are_indicated_until_confirmed() -> None:
    m = monitor()
    assert not m.advertising()
    m.add(reading(120, 1))
    m.add(reading(130, 2))
    assert m.advertising()
    emits = m.subscribed(0x2A35)
    assert [e.indicate for e in emits] == [True, True]
    assert [decode(e.uuid, e.value) for e in emits] == [reading(120, 1), reading(130, 2)]
    m.confirmed(emits[0])
    m.disconnected()
    # The unconfirmed second one is sent again on the next connection, alone.
    again = m.subscribed(0x2A35)
    assert [decode(e.uuid, e.value) for e in again] == [reading(130, 2)]
    m.confirmed(again[0])
    assert not m.advertising()
    assert m.subscribed(0x2A35) == []


def test_two_equal_measurements_stay_two() -> None:
    m = monitor()
    m.add(reading(120))
    m.add(reading(120))
    first, second = m.subscribed(0x2A35)
    m.confirmed(first)
    assert m.stored() == [bytes(reading(120))]
    m.confirmed(second)
    assert m.stored() == []


def test_raw_bytes_go_out_as_they_are() -> None:
    m = monitor()
    m.add(bytes.fromhex("00ff"))
    (emit,) = m.subscribed(0x2A35)
    assert emit.value == bytes.fromhex("00ff")
    with pytest.raises(MalformedValue):
        decode(emit.uuid, emit.value)


def test_from_config_table() -> None:
    m = monitor()
    m.add(
        from_json(
            BloodPressureMeasurement,
            {"systolic": 118, "diastolic": 76, "mean_arterial_pressure": 90},
        )
    )
    (emit,) = m.subscribed(0x2A35)
    assert emit.value.hex() == "0076004c005a00"


def test_unencodable_measurement_fails_at_add() -> None:
    m = monitor()
    with pytest.raises(UnencodableValue):
        m.add(
            BloodPressureMeasurement(
                systolic=Decimal(1),
                diastolic=Decimal(1),
                mean_arterial_pressure=Decimal(1),
                user_id=300,
            )
        )
    assert not m.advertising()


def test_corrupt_every_truncates_the_nth_value() -> None:
    m = monitor(corrupt_every=2)
    for minute in range(4):
        m.add(reading(120 + minute, minute))
    emits = m.subscribed(0x2A35)
    assert [len(e.value) for e in emits] == [16, 1, 16, 1]
    with pytest.raises(MalformedValue):
        decode(0x2A35, emits[1].value)
    # A confirmed corrupted indication is delivered as far as the cuff knows: forgotten.
    m.confirmed(emits[1])
    assert len(m.stored()) == 3


def test_cuff_pressure_is_notified_never_stored() -> None:
    m = monitor(cuff_pressures=[IntermediateCuffPressure(systolic=Decimal(s)) for s in (40, 90)])
    emits = m.subscribed(0x2A36)
    assert [e.indicate for e in emits] == [False, False]
    assert [decode(0x2A36, e.value) for e in emits] == [
        IntermediateCuffPressure(systolic=Decimal(40)),
        IntermediateCuffPressure(systolic=Decimal(90)),
    ]
    assert not m.advertising()


def test_device_information_and_battery() -> None:
    m = monitor(manufacturer="Acme", model="X1", serial="S-9", firmware="2.0", battery_level=42)
    assert m.read(0x2A29) == b"Acme"
    assert m.read(0x2A24) == b"X1"
    assert m.read(0x2A25) == b"S-9"
    assert m.read(0x2A26) == b"2.0"
    assert m.read(0x2A19) == bytes([42])
    sid = decode(0x2A23, m.read(0x2A23))
    assert isinstance(sid, SystemId)
    assert sid.eui64 == "C01122FFFE334455"
    assert decode(0x2A49, m.read(0x2A49)) == m.features
    assert isinstance(m.features, BloodPressureFeature)


def test_explicit_system_id_and_symbolic_address() -> None:
    sid = SystemId(0x0102030405, 0xABCDEF)
    assert decode(0x2A23, monitor(system_id=sid).read(0x2A23)) == sid
    other = BloodPressureMonitor("sim-bp", "BP", FakeClock(NOW))
    assert other.system_id is not None
    assert other.system_id == BloodPressureMonitor("sim-bp", "BP", FakeClock(NOW)).system_id


def test_impossible_battery_level_is_refused() -> None:
    with pytest.raises(UnencodableValue):
        monitor(battery_level=120)


def test_clock_read_and_write() -> None:
    clock = FakeClock(NOW)
    m = BloodPressureMonitor("C0:11:22:33:44:55", "BP", clock, clock_offset=timedelta(minutes=-2))
    value = decode(0x2A2B, m.read(0x2A2B))
    assert isinstance(value, CurrentTime)
    assert value.timestamp == NOW - timedelta(minutes=2)
    # The gateway writes its trusted time; the device clock follows and keeps running.
    m.write(0x2A2B, bytes(CurrentTime.at(datetime(2026, 11, 28, 9, 0, 30))))
    clock.now += timedelta(seconds=10)
    value = decode(0x2A2B, m.read(0x2A2B))
    assert isinstance(value, CurrentTime)
    assert value.timestamp == datetime(2026, 11, 28, 9, 0, 40)
    assert m.device_time() == datetime(2026, 11, 28, 9, 0, 40)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (bytes(9), AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH),
        (bytes.fromhex("e8070d0f0e1e2d050000"), AttErrorCode.OUT_OF_RANGE),  # month 13
        (bytes(10), AttErrorCode.OUT_OF_RANGE),  # unknown date
    ],
)
def test_bad_clock_writes(data: bytes, code: AttErrorCode) -> None:
    m = monitor()
    with pytest.raises(AttError) as info:
        m.write(0x2A2B, data)
    assert info.value.code is code
    assert m.clock_offset == timedelta(0)


def test_reads_and_writes_of_other_characteristics_are_refused() -> None:
    m = monitor()
    with pytest.raises(AttError) as info:
        m.read(0x2A35)
    assert info.value.code is AttErrorCode.READ_NOT_PERMITTED
    with pytest.raises(AttError) as info:
        m.write(0x2A49, b"\x00\x00")
    assert info.value.code is AttErrorCode.WRITE_NOT_PERMITTED
