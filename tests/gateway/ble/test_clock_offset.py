"""The device-clock offset a session measures through Current Time (0x2A2B): a clock read in
whole seconds is counted from the middle of the second it shows, so a clock that is right
yields no correction (it read about 0.5 s slow, and rounding made a spurious second of that
half the time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from device_drivers.current_time import CurrentTime
from gateway.ble.session import Session

NOW = datetime(2026, 3, 10, 9, 0, 0, 750_000, tzinfo=UTC)  # the gateway, 0.75 s into a second


class _Client:
    """What `_read_offset` asks of a BleakClient: one read."""

    def __init__(self, value: bytes) -> None:
        self.value = value

    async def read_gatt_char(self, _char: object) -> bytearray:
        return bytearray(self.value)


async def _offset(shown: datetime, fractions256: int = 0) -> float | None:
    session = Session(
        address="C0:11:22:33:44:55",
        kind="blood_pressure",
        store=None,  # type: ignore[arg-type]  # not touched by a value that decodes
        clock_trusted=lambda: True,
        now=lambda: NOW,
    )
    value = bytes(CurrentTime(shown, fractions256=fractions256))
    client: Any = _Client(value)
    return await session._read_offset(client, None)  # type: ignore[arg-type]


def _local(at: datetime) -> datetime:
    return at.astimezone().replace(tzinfo=None)


@pytest.mark.parametrize(
    ("behind_s", "fractions256", "expected", "corrected_by"),
    [
        (0, 0, -0.25, 0),  # right: shows the current second, no fraction sent
        (1, 0, -1.25, -1),  # a second slow
        (0, 192, 0.0, 0),  # right, and says it is 0.75 s into the second
        (-2, 0, 1.75, 2),  # two seconds fast
    ],
)
async def test_a_whole_second_clock_is_read_from_the_middle_of_its_second(
    behind_s: int, fractions256: int, expected: float, corrected_by: int
) -> None:
    shown = _local(NOW).replace(microsecond=0) - timedelta(seconds=behind_s)
    offset = await _offset(shown, fractions256)
    assert offset == pytest.approx(expected)
    assert round(offset) == corrected_by  # the correction the FHIR mapping applies
