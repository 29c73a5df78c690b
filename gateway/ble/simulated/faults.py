"""BlueZ-shaped failures, built exactly as bleak's BlueZ backend raises them (BLE.md sections
4, 7, 8), so the reconnect policy meets the same types and texts with and without a radio."""

from __future__ import annotations

import asyncio

from bleak.exc import BleakDBusError, BleakGATTProtocolError, BleakGATTProtocolErrorCode

__all__ = [
    "authentication_failed",
    "authentication_rejected",
    "connection_abort",
    "in_progress",
    "insufficient_encryption",
    "not_paired",
    "timeout",
]


def connection_abort() -> BleakDBusError:
    """RF interference (the Pi's own Wi-Fi hotspot is the classic), hbldh/bleak#1673."""
    return BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-local"])


def in_progress() -> BleakDBusError:
    """A scan or connect already pending in BlueZ, hbldh/bleak#859."""
    return BleakDBusError("org.bluez.Error.InProgress", ["Operation already in progress"])


def timeout() -> asyncio.TimeoutError:
    return TimeoutError()


def not_paired() -> BleakDBusError:
    return BleakDBusError("org.bluez.Error.NotPermitted", ["Not paired"])


def authentication_failed() -> BleakDBusError:
    return BleakDBusError("org.bluez.Error.AuthenticationFailed", ["Authentication Failed"])


def authentication_rejected() -> BleakDBusError:
    return BleakDBusError("org.bluez.Error.AuthenticationRejected", ["Authentication Rejected"])


def insufficient_encryption() -> BleakGATTProtocolError:
    return BleakGATTProtocolError(BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION)
