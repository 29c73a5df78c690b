"""What the uplink needs from the store, as Protocols (the store implements them; tests may
use a small in-memory one). Only what the uplink calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

__all__ = ["Event", "Identified", "Outbox", "StoreStats"]


class Identified(Protocol):
    @property
    def id(self) -> str: ...


class StoreStats(Protocol):
    @property
    def queue_depth(self) -> int: ...
    @property
    def oldest_waiting(self) -> datetime | None: ...


class Event(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def kind(self) -> str: ...
    @property
    def detail(self) -> Mapping[str, Any]: ...


T_co = TypeVar("T_co", bound=Identified, covariant=True)


class Outbox(Protocol[T_co]):
    """The store as the uplink sees it. `lease` hands out the oldest undelivered readings not
    already leased, each for `lease_s`; `ack` deletes (delivered), `release` hands back."""

    async def lease(self, limit: int = 100, *, lease_s: float = 60.0) -> Sequence[T_co]: ...
    async def ack(self, ids: Sequence[str]) -> None: ...
    async def release(self, ids: Sequence[str]) -> None: ...
    async def stats(self) -> StoreStats: ...
    async def events(self, after: int = 0, limit: int = 100) -> Sequence[Event]: ...
    async def record_event(self, kind: str, **detail: Any) -> Any: ...
