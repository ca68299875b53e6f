"""A snapshot's Parquet parts: written segment by segment while Microsoft's lines stream in, read back as a Source.

Each part keeps Microsoft's columns exactly as the JSON reader made them (strings, and `money.DECIMAL_TYPE` =
`decimal128(38, 20)` for money and quantities), unknown fields included. A part is one Parquet file; when
Microsoft's fields change half way through a part (a field appears later), the part goes on in a second file with
the wider schema, so every file has one schema and the lines keep their order. Sums in the manifest are exact
`money.plain` text.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from azure.storage.blob import ContainerClient

from shared.core.money import CONTEXT, ZERO, Decimal, arrow_sum, plain
from shared.core.models import DataSource
from shared.adapters.snapshot_store import Snapshot
from shared.adapters.sources import Segment
from shared.adapters.spool import spooled

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 8_192  # the Parquet writer holds a row group in memory (measured: 16,384 cost ~20 MB more); a charges page starts at its row group: ~8k lines decoded at most to skip
# Lines per batch read from a part: about what Arrow's JSON reader yields (~1,500), so the builder's read-ahead
# (4 batches, decoded in its own thread) holds ~6,000 lines, not 24,000; the builder joins them to 6,144 for the
# plan. Measured at a million lines (partner file of daily usage): 6,144 here peaked ~50 MB higher.
READ_BATCH_ROWS = 1_536
V1_PART_ROWS = 50_000  # v1 pages (2,000 lines each) are gathered into parts of about this many lines
UPLOAD_CONCURRENCY = 4
UPLOADS_IN_FLIGHT = 2


def part_name(part: int, file: int) -> str:
    return f"part-{part:05d}-{file:02d}.parquet"


class PartWriter:
    """The Writer the builder streams into while a snapshot is ingested (begin/write/end/discard per segment).

    Graph: one part per segment (export blob), streamed to a temporary file and uploaded when the segment ends.
    V1: pages are small, so a part gathers consecutive pages until it holds about V1_PART_ROWS lines; a page's
    batches are held until its segment ends, so a page read again never leaves half of itself in a part.
    """

    content_type = "application/vnd.apache.parquet"
    extension = "parquet"

    def __init__(self, container: ContainerClient, snapshot_id: str, decimal_columns: tuple[str, ...], *,
                 gather_rows: int = 0) -> None:
        self.container, self.snapshot_id = container, snapshot_id
        self.decimal_columns = decimal_columns
        self.gather_rows = gather_rows
        self.parts: list[dict[str, Any]] = []
        self._part: dict[str, Any] | None = None
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._tmp: IO[bytes] | None = None
        self._held: list[pa.RecordBatch] = []
        # a part uploads while the next one is parsed (at most UPLOADS_IN_FLIGHT; each a temporary file on disk)
        self._pool = ThreadPoolExecutor(max_workers=UPLOADS_IN_FLIGHT, thread_name_prefix="part-upload")
        self._uploads: list[tuple[str, Future[None]]] = []

    # ---- the Writer protocol ----------------------------------------------------------------------------------
    def begin_segment(self, index: int) -> None:
        self._held = []
        if not self.gather_rows:
            self._open_part(index)  # a blob's part is numbered as the blob: an ingest part writes the same names

    def write(self, batch: pa.RecordBatch) -> None:
        if self.gather_rows:
            self._held.append(batch)
        else:
            self._write(batch)

    def end_segment(self) -> None:
        if self.gather_rows:
            if self._part is None:
                self._open_part()
            for batch in self._held:
                self._write(batch)
            self._held = []
            written = self._part["rows"] + (self._file["rows"] if self._writer is not None else 0)
            if written >= self.gather_rows:
                self._close_part()
        else:
            self._close_part()

    def discard_segment(self) -> None:
        self._held = []
        if not self.gather_rows:
            self._drop_file()
            names = {f"{self.snapshot_id}/{f['name']}" for f in self._part["files"]} if self._part else set()
            for name, upload in self._uploads:
                if name in names:
                    upload.exception()  # wait for it, whatever its outcome, before deleting what it wrote
            for name in names:
                blob = self.container.get_blob_client(name)
                if blob.exists():
                    blob.delete_blob()
            self._uploads = [(n, u) for n, u in self._uploads if n not in names]
            self._part = None

    def finish(self, metadata: dict[str, str]) -> None:
        """The last gathered part is written and every upload is done (their errors surface here); the manifest
        is the caller's: it knows the invoice."""
        try:
            if self._part is not None:
                self._close_part()
            for _, upload in self._uploads:
                upload.result()
        finally:
            self.close()

    def close(self) -> None:
        """Stop (also after a failure): uploads under way finish, nothing new starts."""
        self._drop_file()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ---- parts and files --------------------------------------------------------------------------------------
    def _open_part(self, number: int | None = None) -> None:
        self._part = {"part": len(self.parts) if number is None else number, "rows": 0, "files": [], "sums": {}}

    def _write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        if self._writer is not None and self._schema != batch.schema:
            self._close_file()
        if self._writer is None:
            self._schema = batch.schema
            self._tmp = tempfile.NamedTemporaryFile(prefix="part-", suffix=".parquet")
            self._writer = pq.ParquetWriter(self._tmp, batch.schema, compression="zstd")
            self._file = {"name": part_name(self._part["part"], len(self._part["files"])), "rows": 0,
                          "sums": {}}
        self._writer.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
        self._file["rows"] += batch.num_rows
        for column in self.decimal_columns:
            if column in batch.schema.names:
                self._file["sums"][column] = CONTEXT.add(self._file["sums"].get(column, ZERO),
                                                         arrow_sum(batch.column(column)))

    def _close_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        tmp, self._writer, self._tmp = self._tmp, None, None
        assert tmp is not None
        tmp.seek(0)
        name = f"{self.snapshot_id}/{self._file['name']}"
        pending = [u for _, u in self._uploads if not u.done()]
        if len(pending) >= UPLOADS_IN_FLIGHT:
            pending[0].exception()  # bounded: wait for the oldest before queuing another
        self._uploads.append((name, self._pool.submit(self._upload, tmp, name)))
        part = self._part
        part["files"].append(self._file)
        part["rows"] += self._file["rows"]
        for column, value in self._file["sums"].items():
            part["sums"][column] = CONTEXT.add(part["sums"].get(column, ZERO), value)

    def _upload(self, tmp: IO[bytes], name: str) -> None:
        try:
            self.container.get_blob_client(name).upload_blob(tmp, overwrite=True, max_concurrency=UPLOAD_CONCURRENCY)
        finally:
            tmp.close()

    def _drop_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._tmp is not None:
            self._tmp.close()
            self._tmp = None

    def _close_part(self) -> None:
        self._close_file()
        part, self._part = self._part, None
        if part is not None and part["files"]:
            self.parts.append(part)

    def manifest_parts(self) -> list[dict[str, Any]]:
        """The parts as the manifest lists them (sums as exact decimal text)."""
        def text(sums: dict[str, Decimal]) -> dict[str, str]:
            return {k: plain(v) for k, v in sums.items()}

        return [{**p, "sums": text(p["sums"]), "files": [{**f, "sums": text(f["sums"])} for f in p["files"]]}
                for p in self.parts]


def total_sums(parts: list[dict[str, Any]]) -> dict[str, str]:
    sums: dict[str, Decimal] = {}
    for part in parts:
        for column, value in part["sums"].items():
            sums[column] = CONTEXT.add(sums.get(column, ZERO), Decimal(value))
    return {k: plain(v) for k, v in sums.items()}


# ---- reading ------------------------------------------------------------------------------------------------------

class SnapshotSource:
    """A Ready snapshot as a Source: its Parquet files, one segment each, the next one downloaded while this one
    is read. No call to Microsoft."""

    def __init__(self, container: ContainerClient, snapshot: Snapshot) -> None:
        self.container, self.snapshot = container, snapshot
        self.kind = DataSource(snapshot.source)
        self.data_version: str | None = snapshot.data_version
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[int, Future[IO[bytes]]] = {}

    def segments(self) -> Iterator[Segment]:
        files = self.snapshot.files
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="part-ahead")
        try:
            for i in range(len(files)):
                yield Segment(i, lambda careful, i=i: self._read(i))
        finally:
            for ahead in self._ahead.values():
                ahead.add_done_callback(lambda f: f.exception() is None and f.result().close())
            self._pool.shutdown(wait=False)

    def _download(self, index: int) -> IO[bytes]:
        blob = self.container.get_blob_client(f"{self.snapshot.id}/{self.snapshot.files[index]['name']}")
        return spooled("snap-", ".parquet", lambda target: blob.download_blob(max_concurrency=2).readinto(target))

    def _read(self, index: int) -> Iterator[pa.RecordBatch]:
        ahead = self._ahead.pop(index, None)
        local = ahead.result() if ahead is not None else self._download(index)
        with local:
            if index + 1 < len(self.snapshot.files) and self._pool is not None and index + 1 not in self._ahead:
                self._ahead[index + 1] = self._pool.submit(self._download, index + 1)
            parquet = pq.ParquetFile(local)
            yield from parquet.iter_batches(batch_size=READ_BATCH_ROWS, use_threads=False)

    def refresh(self) -> None:
        return None


class BlobRangeFile(io.RawIOBase):
    """A blob read by HTTP ranges, as a seekable file: Parquet reads its footer and the row groups it needs."""

    def __init__(self, container: ContainerClient, name: str) -> None:
        self.blob = container.get_blob_client(name)
        self.size = self.blob.get_blob_properties().size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.size - self.pos)
        if want <= 0:
            return 0
        data = self.blob.download_blob(offset=self.pos, length=want).readall()
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def open_file(container: ContainerClient, snapshot: Snapshot, index: int) -> pq.ParquetFile:
    """One Parquet file of a snapshot, read by ranges (the footer first, then only the row groups asked for)."""
    raw = BlobRangeFile(container, f"{snapshot.id}/{snapshot.files[index]['name']}")
    return pq.ParquetFile(io.BufferedReader(raw, buffer_size=1 << 20), pre_buffer=True)


def batches_from(parquet: pq.ParquetFile, row: int) -> Iterator[pa.RecordBatch]:
    """The file's lines from `row` on, starting at the row group that holds it (earlier groups are not read)."""
    start = 0
    for group in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        if start + rows <= row:
            start += rows
            continue
        table = parquet.read_row_group(group, use_threads=False)
        for batch in table.to_batches():
            if start + batch.num_rows <= row:
                start += batch.num_rows
                continue
            skip = max(0, row - start)
            start += batch.num_rows
            yield batch.slice(skip)
