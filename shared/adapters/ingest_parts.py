"""What one export blob's ingest leaves for the fan-in (shared/app/ingest_fanin.py), under the snapshot's prefix.

Per part, in `{snapshot}/_ingest/aNN/` (one folder per attempt: an older attempt's leftovers are never read):
- `part-00003.json`: its validation state (shared.core.validation.part_state: exact decimal text, no pickle) and
  where its duplicate keys are;
- `part-00003.{RULE}.bin`: every line's 64-bit key hash of each duplicate rule, in line order (8 bytes a line,
  little-endian; the line number is the position), and `part-00003.keys-NN.arrow`: the columns a duplicate's
  finding names, one Arrow IPC file per schema, one record batch per validator batch.
The fan-in streams them into a `DuplicateSpill` with the part's line offset (memory flat), then deletes the folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import IO, Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from azure.storage.blob import ContainerClient

from shared.core.validation import DuplicateStore

__all__ = ["PartDuplicates", "folder", "save_part", "load_part", "feed", "part_batches", "forget"]

HASH = np.dtype("<u8")
CHUNK = 1 << 17  # hashes handed to the spill at once (1 MB)
_IPC = pa.ipc.IpcWriteOptions(compression="zstd")


def folder(snapshot_id: str, attempt: int) -> str:
    return f"{snapshot_id}/_ingest/a{attempt:02d}"


def _name(part: int) -> str:
    return f"part-{part:05d}"


class PartDuplicates:
    """A DuplicateStore that judges nothing: it keeps one part's hashes in line order and its key columns on disk,
    for `save_part` to upload (the judging is the fan-in's, over every part). A segment read again starts over."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="ingest-part-")
        self._hashes: dict[str, IO[bytes]] = {}
        self._keys: list[tuple[int, str]] = []  # (first line, path) of each keys file
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._schema: pa.Schema | None = None
        self.batches: list[int] = []  # rows of each validator batch, in order

    def begin_segment(self) -> None:
        for f in self._hashes.values():
            f.seek(0)
            f.truncate(0)
        self._close_writer()
        for _, path in self._keys:
            os.remove(path)
        self._keys, self.batches = [], []

    def end_segment(self) -> None:
        self._close_writer()
        for f in self._hashes.values():
            f.flush()

    def add(self, rule: str, hashes: np.ndarray, first_line: int) -> None:
        f = self._hashes.get(rule)
        if f is None:
            f = self._hashes[rule] = open(os.path.join(self._tmp.name, f"{rule}.bin"), "w+b")
        if f.tell() != first_line * HASH.itemsize:
            raise RuntimeError(f"{rule}: hashes of line {first_line} after {f.tell() // HASH.itemsize} lines")
        f.write(np.asarray(hashes, dtype=HASH).tobytes())

    def add_keys(self, batch: pa.RecordBatch, first_line: int) -> None:
        self.batches.append(batch.num_rows)
        if not batch.num_rows:
            return
        if self._writer is not None and batch.schema != self._schema:
            self._close_writer()
        if self._writer is None:
            path = os.path.join(self._tmp.name, f"keys-{len(self._keys):02d}.arrow")
            self._schema, self._writer = batch.schema, pa.ipc.new_file(path, batch.schema, options=_IPC)
            self._keys.append((first_line, path))
        self._writer.write_batch(batch)

    def later_copies(self, rule: str, limit: int) -> tuple[int, np.ndarray]:
        raise NotImplementedError("a part's duplicates are judged by the fan-in, over every part")

    def rows(self, lines: np.ndarray) -> list[tuple[int, dict[str, Any]]]:
        raise NotImplementedError("a part's duplicates are judged by the fan-in, over every part")

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer, self._schema = None, None

    def close(self) -> None:
        self._close_writer()
        for f in self._hashes.values():
            f.close()
        self._hashes = {}
        self._tmp.cleanup()


def save_part(container: ContainerClient, base: str, part: int, state: dict[str, Any],
              dups: PartDuplicates) -> None:
    """Upload a part's hashes and keys, then its JSON (last: it names the others)."""
    dups.end_segment()
    hashes = {}
    for rule, f in dups._hashes.items():
        name = f"{_name(part)}.{rule}.bin"
        f.seek(0)
        container.get_blob_client(f"{base}/{name}").upload_blob(f, overwrite=True, max_concurrency=2)
        hashes[rule] = name
    keys = []
    for n, (first, path) in enumerate(dups._keys):
        name = f"{_name(part)}.keys-{n:02d}.arrow"
        with open(path, "rb") as f:
            container.get_blob_client(f"{base}/{name}").upload_blob(f, overwrite=True, max_concurrency=2)
        keys.append({"name": name, "first": first})
    body = {"state": state, "hashes": hashes, "keys": keys}
    container.get_blob_client(f"{base}/{_name(part)}.json").upload_blob(json.dumps(body).encode(), overwrite=True)


def load_part(container: ContainerClient, base: str, part: int) -> dict[str, Any]:
    return json.loads(container.get_blob_client(f"{base}/{_name(part)}.json").download_blob().readall())


def _download(container: ContainerClient, name: str) -> IO[bytes]:
    target = tempfile.NamedTemporaryFile(prefix="ingest-in-")
    container.get_blob_client(name).download_blob(max_concurrency=2).readinto(target)
    target.flush()
    target.seek(0)
    return target


def feed(container: ContainerClient, base: str, saved: dict[str, Any], store: DuplicateStore, offset: int) -> None:
    """A part's hashes and keys into `store` (between its begin and end of segment), lines moved by `offset`."""
    for rule, name in saved["hashes"].items():
        with _download(container, f"{base}/{name}") as f:
            start = 0
            while True:
                chunk = np.fromfile(f, dtype=HASH, count=CHUNK)
                if not len(chunk):
                    break
                store.add(rule, chunk, offset + start)
                start += len(chunk)
    for keys in saved["keys"]:
        with _download(container, f"{base}/{keys['name']}") as f:
            reader = pa.ipc.open_file(f)
            line = offset + int(keys["first"])
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                store.add_keys(batch, line)
                line += batch.num_rows


def part_batches(container: ContainerClient, snapshot_id: str, entry: dict[str, Any],
                 sizes: list[int]) -> Iterator[pa.RecordBatch]:
    """A written part's lines read back from its Parquet files, cut into the batches its validator saw (a batch
    never spans two files: the builder cuts where the schema changes, and so does the part writer)."""
    pending = [n for n in sizes if n]
    for file in entry["files"]:
        with _download(container, f"{snapshot_id}/{file['name']}") as f:
            table = pq.read_table(f)
        at = 0
        while at < table.num_rows:
            n = pending.pop(0)
            for batch in table.slice(at, n).combine_chunks().to_batches():
                yield batch
            at += n


def forget(container: ContainerClient, base: str) -> None:
    """Best effort: the parts' leftovers once the snapshot is Ready (retention removes the snapshot's blobs anyway)."""
    for blob in container.list_blobs(name_starts_with=base + "/"):
        container.delete_blob(blob.name)
