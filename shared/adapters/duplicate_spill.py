"""The validator's duplicate detection on disk: memory flat in the number of lines (a `DuplicateStore`).

Per rule, every line's 64-bit key hash and its line number (16 bytes) are appended to one of `PARTITIONS` files
chosen by the hash's top bits, so the lines of one key all land in one file; at the end each file is read and
sorted alone (`shared.core.validation.duplicates.later_copies`); a partition of more than SORT_RECORDS records
(~8 M lines and up) is split again by the next hash bits, so memory at the end is SORT_RECORDS records (2 MB) plus
the first `limit` duplicates kept, whatever the number of lines (measured before the split: +24 MB at 20 M). A segment read again after a
broken attempt truncates every file back to what the committed segments wrote.

The columns a finding names (its key, the subscription, the charge type) are written per segment to an Arrow IPC
file (zstd, ~50 bytes a line); at the end only the segments holding a duplicate that is reported are read back.
Everything lives in one temporary directory, removed by `close` (or when the object is collected).
"""

from __future__ import annotations

import os
import tempfile
from typing import IO, Any

import numpy as np
import pyarrow as pa

from shared.core.validation.duplicates import later_copies, smallest

__all__ = ["DuplicateSpill", "PARTITIONS"]

PARTITIONS = 64
SORT_RECORDS = 1 << 17  # records sorted at once (2 MB); a bigger partition is split further by the next hash bits
SPLIT_BITS = 4
RECORD = np.dtype([("h", "<u8"), ("line", "<i8")])
_IPC = pa.ipc.IpcWriteOptions(compression="zstd")


class DuplicateSpill:
    def __init__(self, partitions: int = PARTITIONS, directory: str | None = None) -> None:
        if partitions < 1 or partitions & (partitions - 1):
            raise ValueError("partitions must be a power of two")
        self._tmp = tempfile.TemporaryDirectory(prefix="dup-spill-", dir=directory)
        self.path = self._tmp.name
        self.partitions = partitions
        self._shift = np.uint64(64 - (partitions.bit_length() - 1))
        self._files: dict[str, list[IO[bytes]]] = {}
        self._committed: dict[str, list[int]] = {}
        self._chunks: list[tuple[int, int, str]] = []  # committed key files: first line, lines, path
        self._staged: list[tuple[int, int, str]] = []  # this segment's key files
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._schema: pa.Schema | None = None
        self._seq = 0

    # ---- segments -------------------------------------------------------------------------------------------------
    def begin_segment(self) -> None:
        for rule, files in self._files.items():
            for f, size in zip(files, self._committed[rule]):
                if f.tell() != size:
                    f.flush()
                    f.truncate(size)
                    f.seek(size)
        self._close_writer()
        for _, _, path in self._staged:
            os.remove(path)
        self._staged = []

    def end_segment(self) -> None:
        for rule, files in self._files.items():
            self._committed[rule] = [f.tell() for f in files]
        self._close_writer()
        self._chunks.extend(self._staged)
        self._staged = []

    # ---- what the validator hands over ----------------------------------------------------------------------------
    def add(self, rule: str, hashes: np.ndarray, first_line: int) -> None:
        if not len(hashes):
            return
        files = self._files.get(rule)
        if files is None:
            files = self._files[rule] = [open(os.path.join(self.path, f"{rule}-{p:03d}.bin"), "w+b")
                                         for p in range(self.partitions)]
            self._committed[rule] = [0] * self.partitions
        part = (hashes >> self._shift).astype(np.intp) if self.partitions > 1 else np.zeros(len(hashes), np.intp)
        order = np.argsort(part, kind="stable")
        records = np.empty(len(hashes), RECORD)
        records["h"] = hashes[order]
        records["line"] = order + first_line
        bounds = np.searchsorted(part[order], np.arange(self.partitions + 1))
        for p in np.nonzero(np.diff(bounds))[0]:
            files[p].write(records[bounds[p]: bounds[p + 1]].tobytes())

    def add_keys(self, batch: pa.RecordBatch, first_line: int) -> None:
        if not batch.num_rows:
            return
        if self._writer is not None and batch.schema != self._schema:
            self._close_writer()  # a field's type changed within the segment: the rest goes to another file
        if self._writer is None:
            path = os.path.join(self.path, f"keys-{self._seq:06d}.arrow")
            self._seq += 1
            self._schema = batch.schema
            self._writer = pa.ipc.new_file(path, batch.schema, options=_IPC)
            self._staged.append((first_line, 0, path))
        self._writer.write_batch(batch)
        first, lines, path = self._staged[-1]
        self._staged[-1] = (first, lines + batch.num_rows, path)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer, self._schema = None, None

    # ---- the end ---------------------------------------------------------------------------------------------------
    def later_copies(self, rule: str, limit: int) -> tuple[int, np.ndarray]:
        count, kept = 0, np.zeros(0, np.int64)
        for f, size in zip(self._files.get(rule, []), self._committed.get(rule, [])):
            if size:
                f.flush()
                count, kept = self._judge(f.name, size // RECORD.itemsize, self._shift, count, kept, limit)
        return count, kept

    def _judge(self, path: str, records: int, shift: np.uint64, count: int, kept: np.ndarray,
               limit: int) -> tuple[int, np.ndarray]:
        """The later copies in one file of records whose hashes agree above `shift`: sorted at once when it holds
        at most SORT_RECORDS, else split by the next SPLIT_BITS bits into files judged alone (memory stays
        SORT_RECORDS records whatever the number of lines; all copies of a key stay in one file)."""
        if records <= SORT_RECORDS or shift < SPLIT_BITS:
            data = np.fromfile(path, dtype=RECORD, count=records)
            found = later_copies(data["h"], data["line"])
            del data
            return count + len(found), smallest(np.concatenate((kept, found)), limit)
        below = shift - np.uint64(SPLIT_BITS)
        parts = [open(f"{path}.{k:x}", "w+b") for k in range(1 << SPLIT_BITS)]
        try:
            with open(path, "rb") as source:
                for start in range(0, records, SORT_RECORDS):
                    data = np.fromfile(source, dtype=RECORD, count=min(SORT_RECORDS, records - start))
                    sub = ((data["h"] >> below) & np.uint64((1 << SPLIT_BITS) - 1)).astype(np.intp)
                    order = np.argsort(sub, kind="stable")
                    bounds = np.searchsorted(sub[order], np.arange((1 << SPLIT_BITS) + 1))
                    data = data[order]
                    for k in np.nonzero(np.diff(bounds))[0]:
                        parts[k].write(data[bounds[k]: bounds[k + 1]].tobytes())
            for f in parts:
                n = f.tell() // RECORD.itemsize
                f.close()
                if n:
                    count, kept = self._judge(f.name, n, below, count, kept, limit)
        finally:
            for f in parts:
                f.close()
                os.remove(f.name)
        return count, kept

    def rows(self, lines: np.ndarray) -> list[tuple[int, dict[str, Any]]]:
        out: list[tuple[int, dict[str, Any]]] = []
        for first, n, path in self._chunks:
            inside = lines[(lines >= first) & (lines < first + n)]
            if not len(inside):
                continue
            with pa.memory_map(path) as source:
                reader = pa.ipc.open_file(source)
                sizes = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
                table = reader.read_all()
            starts = first + np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)  # one per validator batch
            batch_of = starts[np.searchsorted(starts, inside, side="right") - 1]
            out.extend(zip(batch_of.tolist(), table.take(pa.array(inside - first)).to_pylist()))
        return out

    def close(self) -> None:
        self._close_writer()
        for files in self._files.values():
            for f in files:
                f.close()
        self._files = {}
        self._tmp.cleanup()
