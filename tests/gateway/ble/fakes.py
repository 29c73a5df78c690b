"""Test doubles: an in-memory store with the surface `gateway.ble.ports.Store` names (used
only until the real store is importable), and helpers to build measurement bytes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from device_drivers.reading import Reading


@dataclasses.dataclass(frozen=True, slots=True)
class FakeDeviceRecord:
    address: str
    kind: str
    name: str | None = None
    paired_at: datetime | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None


class FakeStore:
    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.ids: set[str] = set()
        self.cursors: dict[str, int] = {}
        self.records: dict[str, Any] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.touched: list[tuple[str, datetime, int | None]] = []

    async def add(
        self, readings: Sequence[Reading], *, cursor: tuple[str, int] | None = None
    ) -> list[str]:
        out = []
        for r in readings:
            i = r.identity()
            if i not in self.ids:
                self.ids.add(i)
                self.readings.append(r)
            out.append(i)
        if cursor is not None:
            self.cursors[cursor[0]] = cursor[1]
        return out

    async def cursor(self, device: str) -> int | None:
        return self.cursors.get(device)

    async def devices(self) -> list[Any]:
        return list(self.records.values())

    async def upsert_device(self, record: Any) -> None:
        self.records[record.address] = record

    async def touch_device(self, address: str, *, at: datetime, battery: int | None = None) -> None:
        self.touched.append((address, at, battery))

    async def record_event(self, kind: str, **detail: Any) -> None:
        # The real store's contract: event details are scalars (it refuses anything else).
        for key, value in detail.items():
            if not isinstance(value, str | int | float | bool):
                raise TypeError(f"event detail {key!r} must be str, int, float or bool")
        self.events.append((kind, detail))

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.events if k == kind]


# -- a minimal cuff, speaking raw bytes, for backend-level tests independent of the codecs --

from collections.abc import Sequence as _Seq  # noqa: E402
from dataclasses import field  # noqa: E402

from device_drivers.simulators.base import (  # noqa: E402
    CharacteristicSpec,
    DeviceKind,
    Emit,
    Security,
    ServiceSpec,
    SimulatedDevice,
)


def bpm_bytes(systolic: int, second: int = 0) -> bytes:
    """A 2A35 value in mmHg with a timestamp (2024-01-02 03:04:second)."""
    return (
        bytes([0x02])
        + systolic.to_bytes(2, "little")
        + (80).to_bytes(2, "little")
        + (93).to_bytes(2, "little")
        + bytes([0xE8, 0x07, 1, 2, 3, 4, second])
    )


@dataclasses.dataclass(slots=True, kw_only=True)
class RawCuff(SimulatedDevice):
    kind = DeviceKind.BLOOD_PRESSURE
    stored: list[bytes] = field(default_factory=list)

    def services(self) -> tuple[ServiceSpec, ...]:
        return (
            ServiceSpec(
                0x1810,
                (
                    CharacteristicSpec(0x2A35, frozenset({"indicate"}), Security.ENCRYPTED),
                    CharacteristicSpec(0x2A49, frozenset({"read"})),
                ),
            ),
        )

    def advertised_services(self) -> tuple[int, ...]:
        return (0x1810,)

    def advertising(self) -> bool:
        return bool(self.stored)

    def read(self, uuid: int) -> bytes:
        return b"\x00\x00"

    def write(self, uuid: int, data: bytes) -> _Seq[Emit]:
        return ()

    def subscribed(self, uuid: int) -> _Seq[Emit]:
        return [Emit(0x2A35, self._maybe_corrupt(v), indicate=True) for v in self.stored]

    def confirmed(self, emit: Emit) -> None:
        for i, v in enumerate(self.stored):
            if v == emit.value or v[:1] == emit.value:
                del self.stored[i]
                return
