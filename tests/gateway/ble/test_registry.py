"""The registry over the real store: the Device Information cache writes the DIS strings and
nothing else of the device's row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.ble.registry import Registry
from tests.gateway.ble.conftest import enroll

ADDRESS = "C0:DD:00:00:00:01"
INFO = {"manufacturer": "Acme", "model": "BP-1", "serial_number": "42", "system_id": "0011"}


async def test_caching_device_information_keeps_contact_and_battery(store: Any) -> None:
    await enroll(store, ADDRESS, "blood_pressure")
    registry = Registry(store)
    await registry.refresh()  # the snapshot the central takes at start: no contact yet
    seen = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    await store.touch_device(ADDRESS, at=seen, battery=77)
    await registry.cache_device_information(ADDRESS, INFO)
    (row,) = await store.devices()
    assert (row.last_contact, row.battery) == (seen, 77)
    assert (row.manufacturer, row.model, row.serial, row.system_id) == (
        "Acme",
        "BP-1",
        "42",
        "0011",
    )
    assert not registry.needs_device_information(ADDRESS)


async def test_caching_device_information_never_brings_back_a_removed_device(
    store: Any,
) -> None:
    await enroll(store, ADDRESS, "blood_pressure")
    registry = Registry(store)
    await registry.refresh()
    await store.store.remove_device(ADDRESS)  # unpaired while a session was running
    await registry.cache_device_information(ADDRESS, INFO)
    assert await store.devices() == []


async def test_a_scale_without_its_resolutions_reads_its_information_once_more(
    store: Any,
) -> None:
    scale = "E0:DD:00:00:00:02"
    await enroll(store, scale, "weight_scale")
    await enroll(store, ADDRESS, "blood_pressure")
    registry = Registry(store)
    await registry.refresh()
    for address in (scale, ADDRESS):
        await registry.cache_device_information(address, INFO)  # as cached before schema 6
    assert not registry.needs_device_information(ADDRESS)  # a cuff has no resolutions
    assert registry.needs_device_information(scale)  # read again, feature included
    await registry.cache_device_information(
        scale, {**INFO, "weight_resolution": "0", "height_resolution": "0"}
    )
    assert not registry.needs_device_information(scale)  # "0": stated as not specified
