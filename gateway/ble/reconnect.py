"""The one reconnect policy of the BLE layer (STYLE practice 6, LESSONS.md L3.2, L4.4).

Two halves, each testable alone:
- `classify(exc)` turns whatever a connect, a GATT operation or a scan start raised into a
  `Failure` class, by exception type, D-Bus error name and body (BLE.md sections 7-9). It never
  looks at anything else, so the simulated backend exercises it by raising the same shapes.
- `ReconnectPolicy` is a small state machine: each failure class has its own backoff and budget;
  a success resets everything. Exhausting a budget escalates once (the caller raises an event)
  and from then on that class backs off at its maximum. A device that needs re-pairing
  therefore settles at one attempt an hour instead of hammering the cuff (L4.4).

The policy holds no clock: it returns delays, the caller sleeps (and, for a BLE device, also
waits for the device's next advertisement).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from bleak.exc import (
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)

from gateway.ble.errors import NeedsRepairing

__all__ = ["DEFAULT_BACKOFFS", "Backoff", "Decision", "Failure", "ReconnectPolicy", "classify"]


class Failure(enum.StrEnum):
    TRANSIENT = "transient"  # interference: le-connection-abort-by-local and friends
    BUSY = "busy"  # org.bluez.Error.InProgress: another scan/connect is pending in BlueZ
    TIMEOUT = "timeout"  # no answer in time: out of range, or the burst ended
    LINK_LOST = "link_lost"  # an established link dropped mid-session
    DEVICE_GONE = "device_gone"  # BlueZ no longer knows the device
    NEEDS_REPAIRING = "needs_repairing"  # security refused: the bond is gone on one side
    ADAPTER = "adapter"  # the adapter or bluetoothd is not answering


_SECURITY_CODES: Final = frozenset(
    {
        BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION,
        BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION,
        BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION_KEY_SIZE,
        BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHORIZATION,
    }
)
_AUTH_DBUS: Final = frozenset(
    {
        "org.bluez.Error.AuthenticationFailed",
        "org.bluez.Error.AuthenticationRejected",
        "org.bluez.Error.AuthenticationCanceled",
        "org.bluez.Error.AuthenticationTimeout",
        "org.bluez.Error.NotAuthorized",
    }
)
_GONE_DBUS: Final = frozenset(
    {"org.freedesktop.DBus.Error.UnknownObject", "org.bluez.Error.DoesNotExist"}
)
_ADAPTER_DBUS: Final = frozenset(
    {
        "org.bluez.Error.NotReady",
        "org.freedesktop.DBus.Error.NoReply",
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.Disconnected",
    }
)


def classify(exc: BaseException) -> Failure:
    """The failure class of an exception raised by bleak (any backend) or by a session."""
    if isinstance(exc, NeedsRepairing):
        return Failure.NEEDS_REPAIRING
    if isinstance(exc, BleakGATTProtocolError):
        return Failure.NEEDS_REPAIRING if exc.code in _SECURITY_CODES else Failure.LINK_LOST
    if isinstance(exc, BleakDBusError):
        return _classify_dbus(exc.dbus_error, exc.dbus_error_details or "")
    if isinstance(exc, BleakDeviceNotFoundError):
        return Failure.DEVICE_GONE
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Failure.TIMEOUT
    if isinstance(exc, BleakError):
        return Failure.LINK_LOST  # "Not connected", "disconnected during ...": the link is gone
    return Failure.TRANSIENT


def _classify_dbus(name: str, body: str) -> Failure:
    lowered = body.lower()
    if name == "org.bluez.Error.InProgress":
        return Failure.BUSY
    if name in _AUTH_DBUS:
        return Failure.NEEDS_REPAIRING
    if name == "org.bluez.Error.NotPermitted" and "not paired" in lowered:
        # bleak leaves "Not paired" unparsed: ATT 0x05, 0x0F or 0x0C behind it (BLE.md 7)
        return Failure.NEEDS_REPAIRING
    if name in _GONE_DBUS:
        return Failure.DEVICE_GONE
    if name in _ADAPTER_DBUS or "resource not ready" in lowered:
        return Failure.ADAPTER
    if "att error: 0x05" in lowered or "att error: 0x0f" in lowered:
        return Failure.NEEDS_REPAIRING
    # le-connection-abort-by-local, br-connection-canceled, "Software caused connection abort",
    # and whatever else BlueZ invents: interference until proven otherwise.
    return Failure.TRANSIENT


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay `initial`, multiplied by `factor` per consecutive failure up to `maximum`;
    `budget` consecutive failures escalate once."""

    initial: float
    maximum: float
    budget: int
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        """The delay after the `attempt`-th consecutive failure (1-based)."""
        return min(self.maximum, self.initial * self.factor ** (attempt - 1))


DEFAULT_BACKOFFS: Final[Mapping[Failure, Backoff]] = {
    # A retry inside the same advertising burst is what catches a cuff that sleeps again in
    # seconds, so the transient classes start short (bleak-retry-connector uses 0.25 s too).
    Failure.TRANSIENT: Backoff(0.25, 4.0, budget=8),
    Failure.BUSY: Backoff(0.5, 5.0, budget=6),
    Failure.TIMEOUT: Backoff(1.0, 30.0, budget=6),
    Failure.LINK_LOST: Backoff(0.0, 2.0, budget=20, factor=1.0),
    Failure.DEVICE_GONE: Backoff(5.0, 300.0, budget=5),
    # Security refusals are not fixed by retrying: three, then one attempt an hour (L4.4).
    Failure.NEEDS_REPAIRING: Backoff(30.0, 3600.0, budget=3, factor=4.0),
    Failure.ADAPTER: Backoff(2.0, 60.0, budget=3),
}


@dataclass(frozen=True, slots=True)
class Decision:
    failure: Failure
    delay_s: float
    attempt: int  # consecutive failures of this class
    escalate: bool  # True exactly once, when the class's budget is spent


@dataclass(slots=True)
class ReconnectPolicy:
    backoffs: Mapping[Failure, Backoff] = field(default_factory=lambda: dict(DEFAULT_BACKOFFS))
    _attempts: dict[Failure, int] = field(default_factory=dict)

    def failed(self, exc: BaseException) -> Decision:
        return self.failed_as(classify(exc))

    def failed_as(self, failure: Failure) -> Decision:
        attempt = self._attempts.get(failure, 0) + 1
        self._attempts[failure] = attempt
        backoff = self.backoffs[failure]
        exhausted = attempt >= backoff.budget
        delay = backoff.maximum if exhausted else backoff.delay(attempt)
        return Decision(failure, delay, attempt, escalate=attempt == backoff.budget)

    def succeeded(self) -> None:
        self._attempts.clear()

    def state(self) -> Failure | None:
        """The class whose budget is spent (e.g. needs re-pairing), for `carebox status`."""
        for failure, attempt in self._attempts.items():
            if attempt >= self.backoffs[failure].budget:
                return failure
        return None
