"""Clock trust: "system" always, "auto" once the kernel says synchronized, then for good."""

from __future__ import annotations

import asyncio

import pytest

from gateway.clock import (
    MAX_ERROR_LIMIT_US,
    STA_CLOCKERR,
    STA_UNSYNC,
    TIME_ERROR,
    ClockTrust,
    KernelClock,
    kernel_clock,
    kernel_clock_synchronized,
)


class ScriptedProbe:
    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.answers.pop(0) if self.answers else True


def test_system_source_is_trusted_without_asking_the_kernel() -> None:
    probe = ScriptedProbe(False)
    trust = ClockTrust("system", probe=probe)
    assert trust.trusted()
    assert probe.calls == 0


def test_auto_source_follows_the_kernel_then_caches_true() -> None:
    probe = ScriptedProbe(False, False, True, False)
    trust = ClockTrust("auto", probe=probe)
    assert not trust.trusted()
    assert not trust.trusted()
    assert trust.trusted()
    assert trust.trusted()  # the probe would say False now: never asked again
    assert probe.calls == 3


def test_unknown_source_is_refused() -> None:
    with pytest.raises(ValueError, match="clock source"):
        ClockTrust("ntp")  # type: ignore[arg-type]


async def test_wait_trusted_returns_once_synchronized() -> None:
    probe = ScriptedProbe(False, False, False, True)
    trust = ClockTrust("auto", probe=probe, poll_interval_s=0.001)
    async with asyncio.timeout(5):
        await trust.wait_trusted()
    assert probe.calls == 4
    assert trust.trusted()


async def test_wait_trusted_can_be_cancelled() -> None:
    trust = ClockTrust("auto", probe=lambda: False, poll_interval_s=0.001)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await trust.wait_trusted()


@pytest.mark.parametrize(
    ("maxerror", "synchronized"),
    [(0, True), (500_000, True), (MAX_ERROR_LIMIT_US - 1, True), (MAX_ERROR_LIMIT_US, False)],
)
def test_synchronized_is_maxerror_under_the_phase_limit(maxerror: int, synchronized: bool) -> None:
    # STA_UNSYNC set (chrony without rtcsync) does not matter, as in systemd's ntp_synced().
    clock = KernelClock(state=TIME_ERROR, status=STA_UNSYNC, maxerror_us=maxerror, esterror_us=0)
    assert clock.synchronized is synchronized


def test_the_real_kernel_answers_with_a_consistent_structure() -> None:
    clock = kernel_clock()
    assert clock is not None
    # A wrong struct layout would read padding or neighbouring fields here.
    assert 0 <= clock.maxerror_us <= MAX_ERROR_LIMIT_US
    assert 0 <= clock.esterror_us <= MAX_ERROR_LIMIT_US
    assert 0 <= clock.state <= TIME_ERROR
    # The kernel returns TIME_ERROR exactly when these status bits are set (no PPS here).
    assert (clock.state == TIME_ERROR) == bool(clock.status & (STA_UNSYNC | STA_CLOCKERR))
    assert kernel_clock_synchronized() is clock.synchronized
