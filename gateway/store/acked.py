"""`AckedRuns`: the outbox rows delivered but not yet moved to `tombstones`, as runs of seqs.

An ack used to rewrite each delivered row in place (payload erased, key id 0): a B-tree row
update and a partial-index insert per reading, on the delivery path. The uplink acks what it
leased, and leases go out oldest first, so the seqs of one ack are nearly always a few runs
of consecutive numbers: an ack now writes one `acked` row a run, and the rows themselves are
deleted (their keys moved to `tombstones`) later, in bulk, by the store's flush.

Invariant the store keeps: every seq in a run is a row of the outbox that is still there and
was waiting when it was acked, and the runs are disjoint; the flush deletes a run's rows and
the run in one transaction. So a run never covers a seq that a later row could reuse, and
the queue's depth is the waiting rows minus `count`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

__all__ = ["AckedRuns", "runs_of"]


def runs_of(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, distinct `seqs` as inclusive runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    lo = hi = None
    for seq in sorted(set(seqs)):
        if hi is not None and seq == hi + 1:
            hi = seq
            continue
        if lo is not None and hi is not None:
            runs.append((lo, hi))
        lo = hi = seq
    if lo is not None and hi is not None:
        runs.append((lo, hi))
    return runs


class AckedRuns:
    """Disjoint inclusive runs, merged when they touch; lookups by bisection."""

    __slots__ = ("_his", "_los", "count")

    def __init__(self, runs: Iterable[tuple[int, int]] = ()) -> None:
        self._los: list[int] = []
        self._his: list[int] = []
        self.count = 0  # seqs covered
        for lo, hi in sorted(runs):
            self._append(lo, hi)

    def _append(self, lo: int, hi: int) -> None:
        if self._his and lo <= self._his[-1] + 1:
            if hi > self._his[-1]:
                self.count += hi - max(lo, self._his[-1] + 1) + 1
                self._his[-1] = hi
            return
        self._los.append(lo)
        self._his.append(hi)
        self.count += hi - lo + 1

    def __bool__(self) -> bool:
        return bool(self._los)

    def runs(self) -> list[tuple[int, int]]:
        return list(zip(self._los, self._his, strict=True))

    def run_end(self, seq: int) -> int | None:
        """The last seq of the run holding `seq`, or None when no run holds it."""
        i = bisect.bisect_right(self._los, seq) - 1
        if i >= 0 and self._his[i] >= seq:
            return self._his[i]
        return None

    def after(self, seq: int) -> list[tuple[int, int]]:
        """The runs that end after `seq`, in order (for a scan that starts there)."""
        i = bisect.bisect_right(self._his, seq)
        return list(zip(self._los[i:], self._his[i:], strict=True))

    def new_of(self, seqs: Iterable[int]) -> list[int]:
        """Those of `seqs` no run holds yet."""
        return [s for s in seqs if self.run_end(s) is None]

    def add(self, runs: Iterable[tuple[int, int]]) -> None:
        """Add runs disjoint from those held (`new_of` first), merging neighbours. A run past
        the last one (the usual ack: the oldest leased go out first) is appended."""
        for lo, hi in sorted(runs):
            if not self._his or lo > self._his[-1]:
                self._append(lo, hi)
                continue
            i = bisect.bisect_left(self._los, lo)
            self._los.insert(i, lo)
            self._his.insert(i, hi)
            self.count += hi - lo + 1
            # merge with the next run, then with the previous, where they touch
            if i + 1 < len(self._los) and self._los[i + 1] == hi + 1:
                self._his[i] = self._his.pop(i + 1)
                del self._los[i + 1]
            if i > 0 and self._his[i - 1] + 1 == lo:
                self._his[i - 1] = self._his.pop(i)
                del self._los[i]

    def clear(self) -> None:
        self._los, self._his, self.count = [], [], 0
