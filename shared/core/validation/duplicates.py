"""Duplicate lines, found once the whole file is seen: the first copy of a key is not a duplicate, every later one is.

The validator hands every line's 64-bit key hash (`hashing.row_hashes`) and its line number to a `DuplicateStore`,
with the few columns a finding names, segment by segment (`begin_segment` forgets a broken attempt, `end_segment`
commits), and asks at `finish` which lines repeat an earlier line's key. What the store keeps meanwhile is its own
affair: `shared.adapters.duplicate_spill` keeps it on disk (memory flat in the number of lines); `MemoryDuplicates`
here keeps it in memory (tests and small inputs). Both find the same lines with `later_copies`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

__all__ = ["DuplicateStore", "MemoryDuplicates", "later_copies", "smallest"]


class DuplicateStore(Protocol):
    def begin_segment(self) -> None:
        """A segment (re)starts: forget whatever the uncommitted segment added."""

    def end_segment(self) -> None:
        """The segment is complete: what it added counts from now on."""

    def add(self, rule: str, hashes: np.ndarray, first_line: int) -> None:
        """The key hashes of lines first_line, first_line + 1, ... for `rule`."""

    def add_keys(self, batch: pa.RecordBatch, first_line: int) -> None:
        """The columns a finding names, for the same lines (looked up by `rows` for the few duplicates)."""

    def later_copies(self, rule: str, limit: int) -> tuple[int, np.ndarray]:
        """How many committed lines repeat an earlier line's hash, and the first `limit` of them (ascending)."""

    def rows(self, lines: np.ndarray) -> list[tuple[int, dict[str, Any]]]:
        """The `add_keys` columns of these lines (ascending), in that order, each with the first line of the batch
        it came in (`add_keys`'s `first_line`): a finding's place among its batch's others."""

    def close(self) -> None:
        """Release whatever the store holds (temporary files)."""


def later_copies(hashes: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """The lines whose hash an earlier line (a smaller line number) already has, ascending."""
    if not len(hashes):
        return np.zeros(0, np.int64)
    order = np.lexsort((lines, hashes))
    h = hashes[order]
    repeat = np.zeros(len(h), dtype=bool)
    repeat[1:] = h[1:] == h[:-1]
    return np.sort(lines[order][repeat])


def smallest(values: np.ndarray, k: int) -> np.ndarray:
    """The k smallest values, ascending (all of them when fewer)."""
    if len(values) > k:
        values = np.partition(values, k - 1)[:k] if k > 0 else values[:0]
    return np.sort(values)


@dataclass
class _Staged:
    hashes: dict[str, list[tuple[np.ndarray, int]]] = field(default_factory=dict)
    keys: list[tuple[int, pa.RecordBatch]] = field(default_factory=list)


class MemoryDuplicates:
    """A DuplicateStore in memory: 8 bytes a line and the key columns of every line. For tests and small inputs;
    the worker uses the disk spill (shared.adapters.duplicate_spill)."""

    def __init__(self) -> None:
        self.done, self.seg = _Staged(), _Staged()

    def begin_segment(self) -> None:
        self.seg = _Staged()

    def end_segment(self) -> None:
        for rule, parts in self.seg.hashes.items():
            self.done.hashes.setdefault(rule, []).extend(parts)
        self.done.keys.extend(self.seg.keys)
        self.seg = _Staged()

    def add(self, rule: str, hashes: np.ndarray, first_line: int) -> None:
        self.seg.hashes.setdefault(rule, []).append((hashes, first_line))

    def add_keys(self, batch: pa.RecordBatch, first_line: int) -> None:
        self.seg.keys.append((first_line, batch))

    def later_copies(self, rule: str, limit: int) -> tuple[int, np.ndarray]:
        parts = self.done.hashes.get(rule, [])
        if not parts:
            return 0, np.zeros(0, np.int64)
        hashes = np.concatenate([h for h, _ in parts])
        lines = np.concatenate([np.arange(first, first + len(h), dtype=np.int64) for h, first in parts])
        found = later_copies(hashes, lines)
        return len(found), smallest(found, limit)

    def rows(self, lines: np.ndarray) -> list[tuple[int, dict[str, Any]]]:
        out: list[tuple[int, dict[str, Any]]] = []
        for first, batch in self.done.keys:
            inside = lines[(lines >= first) & (lines < first + batch.num_rows)]
            if len(inside):
                out.extend((first, row) for row in batch.take(pa.array(inside - first)).to_pylist())
        return out

    def close(self) -> None:
        self.done = self.seg = _Staged()
