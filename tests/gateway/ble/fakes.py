"""The real store, recording what the BLE layer did so tests can look synchronously, and
helpers to build measurement bytes."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device_drivers.reading import Reading
from gateway.store import DeviceRecord, Store


def device_record(address: str, kind: str, name: str = "dev") -> DeviceRecord:
    return DeviceRecord(address.upper(), kind, name, paired_at=datetime.now(UTC))


class RecordingStore:
    """`gateway.store.Store` itself (encryption, dedup by identity, the cursor in the commit's
    transaction, the event-detail rules), with an in-memory log of the calls the central made:
    `readings` newly stored, in commit order; `cursors`, `records`, `device_information`,
    `events`, `touched`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.readings: list[Reading] = []
        self.ids: set[str] = set()
        self.cursors: dict[str, int] = {}
        self.records: dict[str, Any] = {}
        self.device_information: dict[str, dict[str, str]] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.touched: list[tuple[str, datetime, int | None]] = []

    async def add(
        self, readings: Sequence[Reading], *, cursor: tuple[str, int] | None = None
    ) -> list[str]:
        ids = await self.store.add(readings, cursor=cursor)
        for reading, rid in zip(readings, ids, strict=True):
            if rid not in self.ids:
                self.ids.add(rid)
                self.readings.append(reading)
        if cursor is not None:
            self.cursors[cursor[0]] = cursor[1]
        return ids

    async def cursor(self, device: str) -> int | None:
        return await self.store.cursor(device)

    async def devices(self) -> list[Any]:
        return list(await self.store.devices())

    async def upsert_device(self, record: Any) -> None:
        await self.store.upsert_device(record)
        self.records[record.address] = record

    async def touch_device(self, address: str, *, at: datetime, battery: int | None = None) -> None:
        await self.store.touch_device(address, at=at, battery=battery)
        self.touched.append((address, at, battery))

    async def update_device_information(self, address: str, info: Mapping[str, str]) -> None:
        await self.store.update_device_information(address, info)
        self.device_information.setdefault(address, {}).update(info)

    async def record_event(self, kind: str, **detail: Any) -> None:
        await self.store.record_event(kind, **detail)
        self.events.append((kind, detail))

    async def record_malformed(
        self, device: str, characteristic: int, value: bytes, /, **detail: Any
    ) -> None:
        await self.store.record_malformed(device, characteristic, value, **detail)
        *_, event = await self.store.events(after=0, limit=10**6)
        self.events.append((event.kind, dict(event.detail)))

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.events if k == kind]


@asynccontextmanager
async def recording_store(state_dir: Path) -> AsyncIterator[RecordingStore]:
    store = await Store.open(state_dir / "store", min_free_mb=0)
    try:
        yield RecordingStore(store)
    finally:
        await store.close()


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
