"""The reconnect policy: exponential backoff with jitter, per failure class (STYLE practice 6).

TRANSIENT failures (network, broker away) start at `minimum_s` and double up to `maximum_s`.
REJECTED failures (certificate refused, not authorized, clock) go straight to `maximum_s`:
retrying sooner fixes nothing and hammers the broker (LESSONS.md L9.3); they never give up
either. Jitter spreads a fleet's reconnects after a broker restart ("equal jitter": the delay
is uniform in [d/2, d], never under `minimum_s`). `reset()` once a connection proved good: it
delivered a reading, or had nothing to deliver.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final

from gateway.uplink.errors import FailureKind

__all__ = ["MAXIMUM_S", "MINIMUM_S", "Backoff"]

MINIMUM_S: Final = 1.0
MAXIMUM_S: Final = 300.0  # 5 min: a box back online waits at most this for its first retry


@dataclass
class Backoff:
    minimum_s: float = MINIMUM_S
    maximum_s: float = MAXIMUM_S
    factor: float = 2.0
    _ceiling: float = field(default=0.0, init=False)
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self, kind: FailureKind) -> float:
        """The delay before the next attempt, after a failure of `kind`."""
        if kind is FailureKind.REJECTED:
            self._ceiling = self.maximum_s
        elif self._ceiling == 0.0:
            self._ceiling = self.minimum_s
        else:
            self._ceiling = min(self.maximum_s, self._ceiling * self.factor)
        return self._rng.uniform(max(self.minimum_s, self._ceiling / 2), self._ceiling)

    def reset(self) -> None:
        self._ceiling = 0.0
