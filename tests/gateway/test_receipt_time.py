"""Readings received on an untrusted clock dated once it is trusted (LESSONS L7.2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from device_drivers.blood_pressure import BloodPressureMeasurement, PressureUnit
from device_drivers.reading import Reading
from device_drivers.weight_scale import WeightMeasurement, WeightUnit
from gateway.receipt_time import ReceiveTimeUnknown, boot_id, resolve

BOOT = "0123456789abcdef0123456789abcdef"
NOW = datetime(2026, 11, 28, 16, 0, tzinfo=UTC)
WRONG = datetime(1970, 1, 1, 0, 5, tzinfo=UTC)  # what an unsynchronised Pi reads after boot
STAMP = datetime(2026, 11, 28, 15, 0)


def cuff(stamp: datetime | None) -> bytes:
    return bytes(
        BloodPressureMeasurement(
            unit=PressureUnit.MMHG,
            systolic=Decimal(120),
            diastolic=Decimal(80),
            mean_arterial_pressure=Decimal(93),
            timestamp=stamp,
        )
    )


def scale() -> bytes:  # no time stamp: its time is the receive time
    return bytes(WeightMeasurement(unit=WeightUnit.SI, weight=Decimal("71.5")))


def untrusted(value: bytes, *, offset: float | None, boot: str | None, mono: int | None) -> Reading:
    return Reading(
        "C0:11:22:33:44:55",
        0x2A9D if value == scale() else 0x2A35,
        value,
        WRONG,
        False,
        None,
        offset,
        boot,
        mono,
    )


def test_same_boot_dates_the_receipt_from_the_monotonic_clock() -> None:
    r = untrusted(scale(), offset=None, boot=BOOT, mono=10_000_000_000)
    dated = resolve(r, boot=BOOT, now=NOW, monotonic_ns=70_000_000_000)  # 60 s later
    assert dated.received_at == NOW - timedelta(seconds=60)
    assert dated.clock_trusted
    assert dated.value == r.value


def test_same_boot_moves_the_device_offset_by_the_same_amount() -> None:
    # the device read 15:00 while the gateway (wrong) read WRONG: offset = device - WRONG
    device_clock = datetime(2026, 11, 28, 15, 59, tzinfo=UTC)
    offset = (device_clock - WRONG).total_seconds()
    r = untrusted(cuff(STAMP), offset=offset, boot=BOOT, mono=0)
    dated = resolve(r, boot=BOOT, now=NOW, monotonic_ns=0)
    assert dated.device_clock_offset_s == pytest.approx((device_clock - NOW).total_seconds())


def test_an_earlier_boot_keeps_the_device_time_without_correction() -> None:
    r = untrusted(cuff(STAMP), offset=1234.0, boot="f" * 32, mono=5)
    dated = resolve(r, boot=BOOT, now=NOW, monotonic_ns=10)
    assert dated.device_clock_offset_s is None
    assert dated.received_at == WRONG  # not used: the device time is


def test_an_earlier_boot_without_device_time_cannot_be_dated() -> None:
    r = untrusted(scale(), offset=None, boot="f" * 32, mono=5)
    with pytest.raises(ReceiveTimeUnknown):
        resolve(r, boot=BOOT, now=NOW, monotonic_ns=10)
    unrecorded = untrusted(scale(), offset=None, boot=None, mono=None)
    with pytest.raises(ReceiveTimeUnknown):
        resolve(unrecorded, boot=BOOT, now=NOW, monotonic_ns=10)


def test_what_needs_no_gateway_clock_is_left_alone() -> None:
    trusted = Reading("C0:11:22:33:44:55", 0x2A9D, scale(), NOW, True)
    assert resolve(trusted, boot=BOOT, now=NOW, monotonic_ns=0) is trusted
    own_time = untrusted(cuff(STAMP), offset=None, boot=None, mono=None)
    assert resolve(own_time, boot=BOOT, now=NOW, monotonic_ns=0) is own_time


def test_this_machine_has_a_boot_id() -> None:
    found = boot_id()
    assert found is not None
    assert len(found) == 32
    assert int(found, 16) >= 0
