"""The reconnect policy alone: classification of every error shape, backoff, budgets."""

from __future__ import annotations

import pytest
from bleak.exc import (
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)

from gateway.ble.errors import NeedsRepairing
from gateway.ble.reconnect import DEFAULT_BACKOFFS, Backoff, Failure, ReconnectPolicy, classify
from gateway.ble.simulated import faults


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (faults.connection_abort(), Failure.TRANSIENT),
        (BleakDBusError("org.bluez.Error.Failed", ["br-connection-canceled"]), Failure.TRANSIENT),
        (faults.in_progress(), Failure.BUSY),
        (faults.timeout(), Failure.TIMEOUT),
        (TimeoutError(), Failure.TIMEOUT),
        (faults.not_paired(), Failure.NEEDS_REPAIRING),
        (faults.authentication_failed(), Failure.NEEDS_REPAIRING),
        (faults.authentication_rejected(), Failure.NEEDS_REPAIRING),
        (faults.insufficient_encryption(), Failure.NEEDS_REPAIRING),
        (
            BleakGATTProtocolError(BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION),
            Failure.NEEDS_REPAIRING,
        ),
        (
            BleakDBusError("org.bluez.Error.Failed", ["Operation failed with ATT error: 0x0f"]),
            Failure.NEEDS_REPAIRING,
        ),
        (NeedsRepairing("x"), Failure.NEEDS_REPAIRING),
        (BleakGATTProtocolError(0x80), Failure.LINK_LOST),
        (BleakDeviceNotFoundError("AA"), Failure.DEVICE_GONE),
        (
            BleakDBusError("org.freedesktop.DBus.Error.UnknownObject", ["Method ..."]),
            Failure.DEVICE_GONE,
        ),
        (BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"]), Failure.ADAPTER),
        (BleakDBusError("org.freedesktop.DBus.Error.NoReply", []), Failure.ADAPTER),
        (BleakError("Not connected"), Failure.LINK_LOST),
        (RuntimeError("?"), Failure.TRANSIENT),
    ],
)
def test_classify(exc: BaseException, expected: Failure) -> None:
    assert classify(exc) is expected


def test_backoff_grows_to_maximum() -> None:
    b = Backoff(0.5, 4.0, budget=10)
    assert [b.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_each_class_has_its_own_count_and_success_resets() -> None:
    policy = ReconnectPolicy()
    first = policy.failed(faults.connection_abort())
    assert (first.failure, first.attempt, first.delay_s) == (Failure.TRANSIENT, 1, 0.25)
    assert policy.failed(faults.in_progress()).attempt == 1
    assert policy.failed(faults.connection_abort()).attempt == 2
    policy.succeeded()
    assert policy.failed(faults.connection_abort()).attempt == 1


def test_needs_repairing_escalates_once_then_backs_off_to_the_maximum() -> None:
    policy = ReconnectPolicy()
    budget = DEFAULT_BACKOFFS[Failure.NEEDS_REPAIRING].budget
    decisions = [policy.failed(faults.insufficient_encryption()) for _ in range(budget + 3)]
    assert [d.escalate for d in decisions].count(True) == 1
    assert decisions[budget - 1].escalate
    maximum = DEFAULT_BACKOFFS[Failure.NEEDS_REPAIRING].maximum
    assert all(d.delay_s == maximum for d in decisions[budget - 1 :])
    assert decisions[0].delay_s < maximum
    assert policy.state() is Failure.NEEDS_REPAIRING


def test_link_lost_retries_at_once() -> None:
    assert ReconnectPolicy().failed(BleakError("disconnected")).delay_s == 0.0


def test_asyncio_timeout_is_the_builtin() -> None:
    assert classify(TimeoutError()) is Failure.TIMEOUT
