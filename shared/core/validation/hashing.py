"""Compact 64-bit hashes of line keys, computed over Arrow's buffers (duplicate detection: `duplicates`).

Not for adversaries: for Microsoft's data two different keys collide with probability about n**2 / 2**64, and a
collision could only add a duplicate finding, never hide one.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.core.money import ZERO

__all__ = ["row_hashes"]

_MIX = np.uint64(0x9E3779B97F4A7C15)
_NULL_HASH = np.uint64(0x51ED270B27A5C3D1)
_BASE = np.uint64(0x100000001B3 | 1)  # polynomial base (odd)
_CHUNK_BYTES = 1 << 17  # bytes of text hashed per numpy pass: keeps the temporaries to a few MB
_powers = np.ones(1, dtype=np.uint64)


def _base_powers(n: int) -> np.ndarray:
    """_BASE**0 .. _BASE**(n-1), modulo 2**64 (numpy's uint64 arithmetic wraps), grown on demand."""
    global _powers
    if len(_powers) < n:
        _powers = np.concatenate(([np.uint64(1)], np.cumprod(np.full(max(n, 2 * len(_powers)) - 1, _BASE))))
    return _powers[:n]


def _finalize(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the whole hash."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _string_hashes(arr: pa.Array) -> np.ndarray:
    """A 64-bit hash of each string's UTF-8 bytes, computed over Arrow's buffers (no Python object per value).

    A polynomial hash modulo 2**64 (sum of (byte+1) * BASE**position), mixed with the length and finalised. Not
    for adversaries: for Microsoft's data two different keys collide with probability about n**2 / 2**64, and a
    collision could only add a duplicate warning, never hide one. Nulls hash to _NULL_HASH.
    """
    n = len(arr)
    out = np.empty(n, dtype=np.uint64)
    if n == 0:
        return out
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset: arr.offset + n + 1].astype(np.int64)
    data = arr.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    lo = 0
    while lo < n:
        # As many strings as fit in _CHUNK_BYTES (at least one).
        hi = int(np.searchsorted(offsets, offsets[lo] + _CHUNK_BYTES, side="right")) - 1
        hi = min(max(hi, lo + 1), n)
        o = offsets[lo: hi + 1]
        start = o[0]
        lengths = np.diff(o)
        position = np.arange(o[-1] - start) - np.repeat(o[:-1] - start, lengths)
        terms = (data[start: o[-1]].astype(np.uint64) + np.uint64(1)) * _base_powers(int(lengths.max()) + 1)[position]
        sums = np.concatenate((np.zeros(1, np.uint64), np.cumsum(terms, dtype=np.uint64)))
        h = sums[o[1:] - start] - sums[o[:-1] - start]
        out[lo:hi] = _finalize(h ^ (lengths.astype(np.uint64) * _MIX))
        lo = hi
    if arr.null_count:
        out[_nulls(arr)] = _NULL_HASH
    return out


def _nulls(arr: pa.Array) -> np.ndarray:
    return arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else np.zeros(len(arr), dtype=bool)


def _column_hash(arr: pa.Array) -> np.ndarray:
    """A stable 64-bit hash per value: strings via their (per-batch) dictionary, decimals via their bits."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_decimal(arr.type):
        filled = pc.fill_null(arr, pa.scalar(ZERO, arr.type))
        if isinstance(filled, pa.ChunkedArray):
            filled = filled.combine_chunks()
        words = np.frombuffer(filled.buffers()[1], dtype=np.uint64)[2 * filled.offset: 2 * (filled.offset + len(filled))]
        h = words[0::2] * _MIX + words[1::2]
        if arr.null_count:
            h = np.where(_nulls(arr), _NULL_HASH, h)
        return h
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    encoded = pc.dictionary_encode(arr)
    table = _string_hashes(encoded.dictionary)
    indices = encoded.indices
    idx = np.frombuffer(indices.buffers()[1], dtype=np.int32)[indices.offset: indices.offset + len(indices)]
    h = table[idx] if len(table) else np.zeros(len(idx), np.uint64)
    if indices.null_count:
        h = np.where(_nulls(indices), _NULL_HASH, h)
    return h


def row_hashes(batch: pa.RecordBatch, columns: Iterable[str]) -> np.ndarray:
    h = np.zeros(batch.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in columns:
            h = h * _MIX + _column_hash(batch.column(name))
            h ^= h >> np.uint64(29)
    return h
