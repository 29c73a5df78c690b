"""What the BLE layer needs from its neighbours, as Protocols, so it imports neither the store
nor the config package and tests can see the exact surface it calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from device_drivers.reading import Reading

__all__ = ["BleConfigLike", "DeviceRecordLike", "SimulatorSpec", "Store"]


class DeviceRecordLike(Protocol):
    """One row of the paired-device registry (`gateway.store.DeviceRecord`)."""

    @property
    def address(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str | None: ...


class Store(Protocol):
    """The calls the BLE layer makes on `gateway.store.Store`."""

    async def add(
        self, readings: Sequence[Reading], *, cursor: tuple[str, int] | None = None
    ) -> list[str]: ...

    async def cursor(self, device: str) -> int | None: ...

    async def devices(self) -> Sequence[Any]: ...

    async def upsert_device(self, record: Any, /) -> None: ...

    async def touch_device(
        self, address: str, *, at: datetime, battery: int | None = None
    ) -> None: ...

    async def update_device_information(self, address: str, info: Mapping[str, str], /) -> None: ...

    async def record_event(self, kind: str, /, **detail: Any) -> None: ...

    async def record_malformed(
        self, device: str, characteristic: int, value: bytes, /, **detail: Any
    ) -> None: ...


class BleConfigLike(Protocol):
    """`[ble]` of the config (`gateway.config.BleConfig`)."""

    @property
    def backend(self) -> str: ...
    @property
    def adapter(self) -> str: ...


class SimulatorSpec(Protocol):
    """One `[[simulator]]` table (`gateway.config.SimulatorConfig`), DESIGN.md "Simulated
    devices"."""

    @property
    def kind(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def paired(self) -> bool: ...
    @property
    def readings(self) -> Sequence[Mapping[str, object]]: ...
    @property
    def raw(self) -> Sequence[str]: ...
    @property
    def interval_s(self) -> float: ...
    @property
    def disconnect_after(self) -> int | None: ...
    @property
    def corrupt_every(self) -> int | None: ...
    @property
    def refuse_pairing(self) -> bool: ...
