"""The radio arbiter (LESSONS.md L3.1): one scanner for the whole gateway, stopped before any
connect attempt, one connect attempt at a time. BlueZ answers overlapping discovery and
connection requests with `org.bluez.Error.InProgress`, and a Pi's combo chip drops
connections while it scans. Established sessions run side by side: only the *attempt* is
exclusive.

`exclusive()` is the only way to get the radio for a connect: it stops the scanner, holds the
lock for the attempt, and asks the scanner task to resume afterwards. The scanner task starts
the scanner whenever nobody holds the radio, retrying a failed start through the reconnect
policy (an `InProgress` at scan start is the most reported BlueZ failure).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from gateway.ble.reconnect import ReconnectPolicy
from gateway.ble.uuids import HEALTH_SERVICE_UUIDS

__all__ = ["RadioArbiter"]

log = logging.getLogger(__name__)


class RadioArbiter:
    def __init__(
        self,
        scanner_backend: type[BaseBleakScanner] | None,
        on_advertisement: Callable[[BLEDevice, AdvertisementData], None],
        *,
        scanner_kwargs: dict[str, Any] | None = None,
        on_escalation: Callable[[str, BaseException], Awaitable[None]] | None = None,
    ) -> None:
        self._scanner = BleakScanner(
            on_advertisement,
            service_uuids=list(HEALTH_SERVICE_UUIDS),  # 128-bit: 16-bit strings match nothing
            backend=scanner_backend,
            **(scanner_kwargs or {}),
        )
        self._lock = asyncio.Lock()
        self._scanning = False
        self._resume = asyncio.Event()
        self._resume.set()
        self._policy = ReconnectPolicy()
        self._on_escalation = on_escalation
        self.connect_attempts = 0

    @property
    def scanning(self) -> bool:
        return self._scanning

    async def run(self) -> None:
        """Keep the scanner running whenever the radio is free; until cancelled."""
        try:
            while True:
                await self._resume.wait()
                self._resume.clear()
                async with self._lock:
                    if self._scanning:
                        continue
                    try:
                        await self._scanner.start()
                    except Exception as exc:
                        decision = self._policy.failed(exc)
                        log.warning(
                            "scanner start failed (%s), retrying in %.1f s",
                            decision.failure,
                            decision.delay_s,
                        )
                        if decision.escalate and self._on_escalation is not None:
                            await self._on_escalation("scanner", exc)
                    else:
                        self._scanning = True
                        self._policy.succeeded()
                        continue
                await asyncio.sleep(decision.delay_s)
                self._resume.set()
        finally:
            if self._scanning:
                self._scanning = False
                await self._scanner.stop()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the radio for one connect attempt (the scanner is stopped meanwhile)."""
        async with self._lock:
            if self._scanning:
                self._scanning = False
                await self._scanner.stop()
            self.connect_attempts += 1
            try:
                yield
            finally:
                self._resume.set()
