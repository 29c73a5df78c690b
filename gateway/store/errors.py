"""The store's errors (drawn in the package docstring)."""

from __future__ import annotations

from gateway.errors import GatewayError

__all__ = ["StoreBusy", "StoreCorrupt", "StoreError", "StoreFull", "TamperedRecord", "WrongKey"]


class StoreError(GatewayError):
    """Root of the store's errors; the message names what is wrong and what to do."""


class StoreFull(StoreError):
    """New readings refused: the free-disk floor is reached (nothing committed was lost)."""


class StoreCorrupt(StoreError):
    """Stored bytes that fail their integrity check (database file or one record)."""


class TamperedRecord(StoreCorrupt):
    """One record whose AES-GCM tag, associated data or layout does not check out."""


class WrongKey(StoreError):
    """The key-encryption key does not open this store's data keys; nothing was changed."""


class StoreBusy(StoreError):
    """Another process holds the store (one writer per state directory)."""
