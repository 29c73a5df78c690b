"""The paired-device registry as the central sees it: a snapshot of `store.devices()` by
address, and the two writes the central makes (a simulator's registry entry at start, the
Device Information cache). The store owns the record type; this module is the one place
that builds or copies one, so the BLE layer does not depend on its exact fields.

The snapshot goes stale as soon as the store changes a row (a session's contact and battery,
an unpairing), so it is never written back whole: the DIS cache writes the DIS columns only
(`Store.update_device_information`) and copies them into the snapshot."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gateway.ble.ports import Store

__all__ = ["DIS_FIELDS", "Registry"]

DIS_FIELDS = (
    "manufacturer",
    "model",
    "serial_number",
    "hardware_revision",
    "firmware_revision",
    "software_revision",
    "system_id",
)


# DIS names as the session reads them -> the store's DeviceRecord fields.
_RECORD_FIELD = {
    "serial_number": "serial",
    "hardware_revision": "hardware",
    "firmware_revision": "firmware",
    "software_revision": "software",
}


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.records: dict[str, Any] = {}

    async def refresh(self) -> None:
        self.records = {r.address.upper(): r for r in await self.store.devices()}

    def get(self, address: str) -> Any | None:
        return self.records.get(address.upper())

    def kind(self, address: str) -> str | None:
        record = self.get(address)
        return None if record is None else str(record.kind)

    async def enroll(self, address: str, kind: str, name: str, at: datetime) -> None:
        """Put a device in the registry as paired (a `paired = true` simulator at start)."""
        if self.get(address) is not None:
            return
        record_type = importlib.import_module("gateway.store").DeviceRecord
        fields = {f.name for f in dataclasses.fields(record_type)}
        values: dict[str, Any] = {"address": address.upper(), "kind": kind, "name": name}
        if "paired_at" in fields:
            values["paired_at"] = at
        await self.store.upsert_device(record_type(**values))
        await self.refresh()

    def needs_device_information(self, address: str) -> bool:
        """Whether the next session reads the Device Information (and, for a scale, its
        feature's resolutions): never read yet, or a scale registered before they were kept."""
        record = self.get(address)
        if record is None:
            return False
        present = [getattr(record, f) for f in DIS_FIELDS if hasattr(record, f)]
        if bool(present) and all(v is None for v in present):
            return True
        return record.kind == "weight_scale" and getattr(record, "weight_resolution", "") is None

    async def cache_device_information(self, address: str, info: Mapping[str, str]) -> None:
        record = self.get(address)
        if record is None or not info:
            return
        renamed = {_RECORD_FIELD.get(k, k): v for k, v in info.items()}
        known = {k: v for k, v in renamed.items() if hasattr(record, k)}
        if not known:
            return
        await self.store.update_device_information(address, known)
        self.records[address.upper()] = dataclasses.replace(record, **known)
