"""`corrected_time` at the edges of a zone's rules: local times a DST change makes ambiguous
or nonexistent, fixed-offset zones, and the device clock's correction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from device_drivers.reading import Reading
from gateway.fhir.errors import MappingError
from gateway.fhir.timing import corrected_time

PARIS = ZoneInfo("Europe/Paris")
RECEIVED = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _reading(offset_s: float | None = None) -> Reading:
    return Reading("C0:11:22:33:44:55", 0x2A35, b"\x00", RECEIVED, True, None, offset_s)


@pytest.mark.parametrize("fold", [0, 1])
def test_an_ambiguous_local_time_is_its_first_instant(fold: int) -> None:
    # 2026-10-25 02:30 happens twice in Paris (+02:00, then +01:00)
    local = datetime(2026, 10, 25, 2, 30, fold=fold)
    assert corrected_time(_reading(), PARIS, local) == (
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        None,
    )


def test_a_nonexistent_local_time_reads_with_the_offset_before_the_change() -> None:
    # 2026-03-29 02:30 never happens in Paris: clocks go from 02:00 +01:00 to 03:00 +02:00
    local = datetime(2026, 3, 29, 2, 30)
    assert corrected_time(_reading(), PARIS, local)[0] == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_the_result_is_what_astimezone_gives_across_years_of_local_times() -> None:
    zones = [PARIS, ZoneInfo("America/St_Johns"), ZoneInfo("Australia/Lord_Howe"), UTC]
    zones.append(timezone(timedelta(hours=-3, minutes=-30)))
    local = datetime(2019, 1, 1)
    while local < datetime(2027, 1, 1):
        for tz in zones:
            at, _ = corrected_time(_reading(), tz, local)
            assert at == local.replace(tzinfo=tz, fold=0).astimezone(UTC)
            assert at.tzinfo is UTC
        local += timedelta(minutes=97)


def test_the_device_clock_offset_moves_the_time_by_whole_seconds() -> None:
    local = datetime(2026, 6, 1, 10, 0, 0)
    at, correction = corrected_time(_reading(offset_s=-61.6), PARIS, local)
    assert correction == timedelta(seconds=-62)
    assert at == datetime(2026, 6, 1, 8, 1, 2, tzinfo=UTC)


def test_no_device_time_is_the_receive_time() -> None:
    assert corrected_time(_reading(offset_s=5.0), PARIS, None) == (RECEIVED, None)


def test_a_time_past_year_9999_once_corrected_is_a_mapping_error() -> None:
    with pytest.raises(MappingError):
        corrected_time(_reading(offset_s=-7200.0), PARIS, datetime(9999, 12, 31, 23, 30))
