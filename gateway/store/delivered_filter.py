"""`DeliveredFilter`: which row keys may be in the `tombstones` table, kept in memory.

An add must not store again a reading delivered long ago (a monitor re-sending its memory).
Asking SQLite for every key of every batch costs a B-tree search per reading, through pages
that are rarely in cache once years of deliveries have accumulated, to find almost always
nothing. Row keys are HMAC output, uniformly spread, so their first three bytes index a bitmap
directly, with no hash to compute: a clear bit proves a key absent and only keys whose bit is
set are looked up. A false positive costs one lookup, a false negative is impossible, since a
bit is set before or with every insert into `tombstones` and never cleared (tombstones are
never deleted; a failed transaction leaves at worst a bit set for nothing).

Size: at least `BITS_PER_KEY` bits a tombstone (about 6 % false positives when full), from
8 KiB to 2 MiB (16.8 million bits, about a million tombstones at that rate). The owner
rebuilds a larger one from the table when `full` says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["BITS_PER_KEY", "DeliveredFilter"]

BITS_PER_KEY: Final = 16
_INDEX_BITS: Final = 24  # the first three bytes of a row key
_MIN_BITS_LOG2: Final = 16
_MAX_BITS_LOG2: Final = _INDEX_BITS


class DeliveredFilter:
    """A bitmap over the first 24 bits of row keys, sized for `expected` keys."""

    __slots__ = ("_bits", "_shift", "count")

    def __init__(self, expected: int) -> None:
        log2 = _MIN_BITS_LOG2
        while log2 < _MAX_BITS_LOG2 and (1 << log2) < expected * BITS_PER_KEY:
            log2 += 1
        self._shift = _INDEX_BITS - log2
        self._bits = bytearray((1 << log2) // 8)
        self.count = 0

    @property
    def size_bits(self) -> int:
        return len(self._bits) * 8

    @property
    def full(self) -> bool:
        """More keys than the size was made for, and a larger size is possible."""
        return self._shift > 0 and self.count * BITS_PER_KEY > self.size_bits

    def update(self, rids: Iterable[bytes]) -> None:
        bits, shift = self._bits, self._shift
        for rid in rids:
            i = int.from_bytes(rid[:3]) >> shift
            bits[i >> 3] |= 1 << (i & 7)
            self.count += 1

    def candidates(self, rids: Iterable[bytes]) -> list[bytes]:
        """The keys of `rids` that may be tombstones; every one that is, is among them."""
        if not self.count:  # nothing delivered yet (a new box): no bit to test
            return []
        bits, shift = self._bits, self._shift
        return [
            rid for rid in rids if bits[(i := int.from_bytes(rid[:3]) >> shift) >> 3] >> (i & 7) & 1
        ]
