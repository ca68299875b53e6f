"""Writing a file into Blob Storage as staged blocks, committed only when the whole file is done.

A half-written file is never visible: blocks are staged under deterministic ids (segment, chunk) and the blob
appears only at `commit`. A segment (one export blob or one v1 page) that fails half way is discarded and
re-staged under the same ids.

Formats:
- CSV streams straight into blocks. Its header block is staged last (so a column Microsoft added mid-stream
  still gets its header) and committed first. Regional options: delimiter, decimal separator, date format.
  Text cells a spreadsheet would evaluate (leading = + - @ tab CR) get a leading apostrophe; numbers never do.
- Parquet and XLSX cannot take back what they wrote, so each segment is spooled to a local Arrow IPC file and
  replayed into the format only once the segment is complete. Parquet keeps the decimal types. XLSX is written
  by XlsxWriter in constant-memory mode to a temporary file, then uploaded block by block; its amounts are Excel
  numbers written from the decimal's own text at 16 significant digits (Excel's precision), never via float;
  text is a string cell (never a formula), quote-prefixed when it begins like one.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from azure.storage.blob import BlobBlock, BlobClient, ContentSettings

from shared.core.boundaries import is_formula_text, neutralise_formulas, neutralise_text
from shared.core.columns import ENGINE_COLUMNS
from shared.core.models import CsvFormat, FileFormat
from shared.core.money import CONTEXT, Decimal, arrow_text

log = logging.getLogger(__name__)

HEADER_BLOCK = "0" * 16
XLSX_MAX_ROWS = 1_048_576 - 1  # a sheet's rows, less the header


class TooManyRows(ValueError):
    """More rows than the chosen format can hold."""


def _block_id(segment: int, chunk: int) -> str:
    return f"{segment + 1:08d}{chunk:08d}"


class BlockBlobSink:
    """Stages blocks in the background (at most `in_flight` at once), so computing the next block overlaps
    the upload of the last one while memory stays bounded."""

    def __init__(self, blob: BlobClient, block_size: int, in_flight: int = 2) -> None:
        self.blob, self.block_size = blob, block_size
        self.committed: list[str] = []
        self.bytes_written = 0
        self._segment = -1
        self._segment_ids: list[str] = []
        self._buffer = io.BytesIO()
        self._pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="stage-block")
        self._slots = threading.BoundedSemaphore(in_flight)
        self._pending: list[tuple[int, Future]] = []  # (segment, upload)

    def begin_segment(self, index: int) -> None:
        self._segment, self._segment_ids, self._buffer = index, [], io.BytesIO()

    def write(self, data: bytes) -> None:
        self._buffer.write(data)
        if self._buffer.tell() >= self.block_size:
            self._stage()

    def _stage(self) -> None:
        data = self._buffer.getvalue()
        self._buffer = io.BytesIO()
        if not data:
            return
        block_id = _block_id(self._segment, len(self._segment_ids))
        self._segment_ids.append(block_id)
        self.bytes_written += len(data)
        self._slots.acquire()  # back-pressure: never more than `in_flight` blocks in memory
        future = self._pool.submit(self._put, block_id, data)
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append((self._segment, future))

    def _put(self, block_id: str, data: bytes) -> None:
        # Content-MD5 on every block: the service checks each block arrived intact before it can be committed.
        # (Azurite otherwise computes a CRC64 of each block, in JavaScript, a byte at a time: measured, that
        # took as much CPU as the whole pipeline on the benchmark's two cores.)
        self.blob.stage_block(block_id, data, validate_content=True)

    def _wait(self) -> None:
        pending, self._pending = self._pending, []
        for _, future in pending:
            future.result()  # re-raises a failed upload here, in the caller's thread

    def _raise_failed(self) -> None:
        """Surface an upload that already failed, without waiting for those still running."""
        for _, future in self._pending:
            if future.done():
                future.result()
        self._pending = [(segment, f) for segment, f in self._pending if not f.done()]

    def end_segment(self) -> None:
        # No wait here: the segment's last uploads overlap the next segment's parsing (the commit waits).
        self._stage()
        self._raise_failed()
        self.committed.extend(self._segment_ids)
        self._segment_ids = []

    def discard_segment(self) -> None:
        """Forget the segment's blocks. Its uploads still running are waited for (their errors ignored): the same
        block ids are staged again when the segment is re-read, and no old upload may land after a new one."""
        mine = [f for segment, f in self._pending if segment == self._segment]
        self._pending = [(segment, f) for segment, f in self._pending if segment != self._segment]
        for future in mine:
            try:
                future.result()
            except Exception:  # the segment is being thrown away anyway
                pass
        self._segment_ids, self._buffer = [], io.BytesIO()

    def commit(self, header: bytes, content_type: str, metadata: dict[str, str]) -> None:
        self._wait()
        self._pool.shutdown()
        if header:
            self._put(HEADER_BLOCK, header)
        blocks = ([HEADER_BLOCK] if header else []) + self.committed
        self.blob.commit_block_list([BlobBlock(block_id=b) for b in blocks],
                                    content_settings=ContentSettings(content_type=content_type),
                                    metadata=metadata)


class _SinkFile:
    """A write-only file object over a sink (what pyarrow's Parquet writer writes into)."""

    def __init__(self, sink: BlockBlobSink) -> None:
        self.sink, self.closed, self._pos = sink, False, 0

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.sink.write(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


_DATE = r"^(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})"


def format_dates(arr: pa.Array, date_format: str) -> pa.Array:
    """Microsoft's ISO timestamps as dates in the chosen format; text that is not a date is left alone."""
    if date_format == "iso" or arr.null_count == len(arr):
        parts = pc.extract_regex(arr, _DATE)
        joined = pc.binary_join_element_wise(parts.field("y"), parts.field("m"), parts.field("d"), "-")
    else:
        parts = pc.extract_regex(arr, _DATE)
        month = pc.replace_substring_regex(parts.field("m"), "^0", "") if date_format == "us" else parts.field("m")
        day = pc.replace_substring_regex(parts.field("d"), "^0", "") if date_format == "us" else parts.field("d")
        first, second = (month, day) if date_format == "us" else (day, month)
        joined = pc.binary_join_element_wise(first, second, parts.field("y"), "/")
    return pc.if_else(pc.match_substring_regex(arr, _DATE), joined, arr)


class CsvWriter:
    """Arrow batches -> CSV bytes, streamed into the sink. Decimal columns are written as exact plain text."""

    content_type = "text/csv; charset=utf-8"
    extension = "csv"

    def __init__(self, sink: BlockBlobSink, fmt: CsvFormat = CsvFormat(),
                 date_columns: frozenset[str] = frozenset(), columns: Sequence[str] = ()) -> None:
        self.sink, self.fmt, self.date_columns = sink, fmt, date_columns
        self.columns: list[str] = list(columns)  # the header even when no line is written
        self.rows = 0
        self._options = pcsv.WriteOptions(include_header=False, delimiter=fmt.delimiter, quoting_style="needed")

    def begin_segment(self, index: int) -> None:
        self.sink.begin_segment(index)

    def end_segment(self) -> None:
        self.sink.end_segment()

    def discard_segment(self) -> None:
        self.sink.discard_segment()

    def write(self, batch: pa.RecordBatch) -> None:
        for name in batch.schema.names:
            if name not in self.columns:
                self._add_column(name)
        arrays = []
        for name in self.columns:
            idx = batch.schema.get_field_index(name)
            if idx < 0:
                arrays.append(pa.nulls(batch.num_rows, pa.string()))
                continue
            arr = batch.column(idx)
            if pa.types.is_decimal(arr.type):
                arr = arrow_text(arr, self.fmt.decimal_separator)
            else:  # text: Microsoft's (CustomerName is the customer's own), our ids and PO numbers
                dates = name in self.date_columns and self.fmt.date_format != "iso"
                arr = neutralise_formulas(format_dates(arr, self.fmt.date_format) if dates else arr)
            arrays.append(arr)
        # Straight into the block being filled (no whole-batch copy of the CSV text on the way).
        pcsv.write_csv(pa.RecordBatch.from_arrays(arrays, names=self.columns), _SinkFile(self.sink), self._options)
        self.rows += batch.num_rows

    def _add_column(self, name: str) -> None:
        """A field Microsoft added goes before the engine's columns while no line is written; after that it
        can only go last (earlier lines end before it: their trailing cell is simply empty)."""
        tail = next((i for i, c in enumerate(self.columns) if c in ENGINE_COLUMNS), len(self.columns))
        self.columns.insert(tail if self.rows == 0 else len(self.columns), name)

    def finish(self, metadata: dict[str, str]) -> None:
        self.sink.commit(header_line(self.columns, self.fmt.delimiter), self.content_type, metadata)


def header_line(columns: Sequence[str], delimiter: str) -> bytes:
    out = io.BytesIO()
    table = pa.table({neutralise_text(c): pa.array([], pa.string()) for c in columns})
    pcsv.write_csv(table, out, pcsv.WriteOptions(include_header=True, delimiter=delimiter, quoting_style="needed"))
    return b"\xef\xbb\xbf" + out.getvalue()  # UTF-8 BOM: Excel then reads accents correctly


class _Spooled:
    """Segment-safe writing for formats that cannot take back bytes: spool, then replay complete segments."""

    def __init__(self, sink: BlockBlobSink) -> None:
        self.sink = sink
        self._spool: tempfile._TemporaryFileWrapper | None = None
        self._ipc: ipc.RecordBatchStreamWriter | None = None
        self._schema: pa.Schema | None = None
        sink.begin_segment(0)

    def begin_segment(self, index: int) -> None:
        self._spool = tempfile.NamedTemporaryFile(prefix="seg-", suffix=".arrow", delete=False)
        self._ipc = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._schema is None:
            self._schema = batch.schema
        batch = _conform(batch, self._schema)
        if self._ipc is None:
            self._ipc = ipc.new_stream(self._spool, self._schema)
        self._ipc.write_batch(batch)

    def _close_spool(self) -> str:
        assert self._spool is not None
        if self._ipc is not None:
            self._ipc.close()
        self._spool.close()
        return self._spool.name

    def discard_segment(self) -> None:
        os.unlink(self._close_spool())

    def end_segment(self) -> None:
        path = self._close_spool()
        try:
            if self._ipc is not None:
                with pa.memory_map(path) as source:
                    for batch in ipc.open_stream(source):
                        self.emit(batch)
        finally:
            os.unlink(path)

    def emit(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Align a batch to the file's schema (fixed by its first batch; later extra fields cannot be added)."""
    if batch.schema.equals(schema):
        return batch
    dropped = [name for name in batch.schema.names if schema.get_field_index(name) < 0]
    if dropped:
        log.warning("fields Microsoft added after the first batch are left out of this file: %s", dropped)
    arrays = []
    for f in schema:
        idx = batch.schema.get_field_index(f.name)
        arrays.append(pa.nulls(batch.num_rows, f.type) if idx < 0 else batch.column(idx).cast(f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class ParquetWriter(_Spooled):
    content_type = "application/vnd.apache.parquet"
    extension = "parquet"

    def __init__(self, sink: BlockBlobSink) -> None:
        super().__init__(sink)
        self._writer: pq.ParquetWriter | None = None

    def emit(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(_SinkFile(self.sink), batch.schema, compression="zstd")
        self._writer.write_batch(batch)

    def finish(self, metadata: dict[str, str]) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(_SinkFile(self.sink), self._schema or pa.schema([]))
        self._writer.close()
        self.sink.end_segment()
        self.sink.commit(b"", self.content_type, metadata)


class XlsxWriter(_Spooled):
    content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    extension = "xlsx"

    def __init__(self, sink: BlockBlobSink) -> None:
        import xlsxwriter

        super().__init__(sink)
        self._path = tempfile.mktemp(prefix="recon-", suffix=".xlsx")
        self._book = xlsxwriter.Workbook(self._path, {"constant_memory": True, "strings_to_numbers": False,
                                                      "strings_to_formulas": False, "strings_to_urls": False})
        self._sheet = self._book.add_worksheet("Reconciliation")
        self._quoted = self._book.add_format({"quote_prefix": True})  # Excel's "'": text even when edited
        self._row = 0

    def emit(self, batch: pa.RecordBatch) -> None:
        if self._row == 0:
            self._sheet.write_row(0, 0, batch.schema.names, self._quoted)  # a field name is text too
            self._row = 1
        if self._row + batch.num_rows > XLSX_MAX_ROWS + 1:
            raise TooManyRows(f"More than {XLSX_MAX_ROWS:,} rows do not fit in one Excel sheet; choose CSV or "
                              "Parquet for this invoice.")
        columns = [c.to_pylist() for c in batch.columns]
        numeric = [pa.types.is_decimal(c.type) for c in batch.columns]
        for i in range(batch.num_rows):
            for j, values in enumerate(columns):
                value = values[i]
                if value is None:
                    continue
                if numeric[j]:
                    self._sheet.write_number(self._row, j, _excel_number(value))
                elif is_formula_text(value):
                    self._sheet.write_string(self._row, j, value, self._quoted)
                else:
                    self._sheet.write_string(self._row, j, value)
            self._row += 1

    def finish(self, metadata: dict[str, str]) -> None:
        if self._row == 0 and self._schema is not None:
            self._sheet.write_row(0, 0, self._schema.names, self._quoted)
        self._book.close()
        try:
            with open(self._path, "rb") as f:
                _copy(f, self.sink)
        finally:
            os.unlink(self._path)
        self.sink.end_segment()
        self.sink.commit(b"", self.content_type, metadata)



def _excel_number(value: Decimal) -> Decimal:
    """XlsxWriter writes `f"{value:.16G}"`, which a Decimal formats itself (no float); drop trailing zeros."""
    return value.normalize(CONTEXT)  # (the default context would round past 28 digits)


def _copy(source: BinaryIO, sink: BlockBlobSink, chunk: int = 4 * 1024 * 1024) -> None:
    while data := source.read(chunk):
        sink.write(data)


def writer_for(fmt: FileFormat, sink: BlockBlobSink, csv_format: CsvFormat = CsvFormat(),
               date_columns: frozenset[str] = frozenset(),
               columns: Sequence[str] = ()) -> CsvWriter | ParquetWriter | XlsxWriter:
    if fmt == FileFormat.PARQUET:
        return ParquetWriter(sink)
    if fmt == FileFormat.XLSX:
        return XlsxWriter(sink)
    return CsvWriter(sink, csv_format, date_columns, columns)
