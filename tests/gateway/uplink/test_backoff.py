"""The reconnect policy on its own."""

from __future__ import annotations

import random

from gateway.uplink.backoff import MAXIMUM_S, MINIMUM_S, Backoff
from gateway.uplink.errors import FailureKind


def test_transient_failures_double_from_one_second_to_five_minutes_with_jitter() -> None:
    b = Backoff(_rng=random.Random(7))
    ceilings = []
    for _ in range(12):
        d = b.next_delay(FailureKind.TRANSIENT)
        ceilings.append(b._ceiling)
        assert max(MINIMUM_S, b._ceiling / 2) <= d <= b._ceiling
    assert ceilings[0] == MINIMUM_S
    assert ceilings[1] == 2 * MINIMUM_S
    assert ceilings[-1] == MAXIMUM_S == 300.0


def test_a_refusal_goes_straight_to_the_maximum_and_reset_starts_over() -> None:
    b = Backoff(_rng=random.Random(7))
    assert b.next_delay(FailureKind.REJECTED) >= MAXIMUM_S / 2
    b.reset()
    assert b.next_delay(FailureKind.TRANSIENT) <= MINIMUM_S


def test_no_delay_is_under_the_minimum() -> None:
    # "1 s to 5 min": the equal jitter of the first steps stays at or above 1 s
    for seed in range(200):
        b = Backoff(_rng=random.Random(seed))
        assert b.next_delay(FailureKind.TRANSIENT) == MINIMUM_S
        assert MINIMUM_S <= b.next_delay(FailureKind.TRANSIENT) <= 2 * MINIMUM_S


def test_jitter_spreads_a_fleet() -> None:
    delays = {
        Backoff(_rng=random.Random(seed)).next_delay(FailureKind.REJECTED) for seed in range(20)
    }
    assert len(delays) == 20
