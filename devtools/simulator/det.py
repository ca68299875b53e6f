"""Deterministic draws: every value is a pure function of (seed, names, indexes).

No generator state is shared between rows, so any row of a million-row file can be produced on its own, in any
order, by any thread, and comes out the same in every process.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from hashlib import blake2b
from typing import TypeVar

T = TypeVar("T")


def digest(*parts: object, size: int = 64) -> bytes:
    """A stable hash of the parts (never Python's `hash`, which changes per process)."""
    return blake2b("\x1f".join(map(str, parts)).encode(), digest_size=size).digest()


class Draws:
    """Integers taken one after another from a single 512-bit hash; far cheaper than seeding an RNG per row."""

    __slots__ = ("_v",)

    def __init__(self, *parts: object) -> None:
        self._v = int.from_bytes(digest(*parts), "big")

    def below(self, n: int) -> int:
        self._v, r = divmod(self._v, n)
        return r

    def between(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""
        return lo + self.below(hi - lo + 1)

    def pick(self, seq: Sequence[T]) -> T:
        return seq[self.below(len(seq))]

    def chance(self, percent: int) -> bool:
        return self.below(100) < percent


def guid(*parts: object) -> str:
    """A version-4 style GUID that is the same for the same parts."""
    return str(uuid.UUID(bytes=digest(*parts, size=16), version=4))


def hexid(length: int, *parts: object) -> str:
    return digest(*parts).hex()[:length]


def number(*parts: object) -> int:
    """A 64-bit integer from the parts (salts for cheap per-row arithmetic)."""
    return int.from_bytes(digest(*parts, size=8), "big")
