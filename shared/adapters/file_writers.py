"""Writing a file into Blob Storage as staged blocks, committed only when the whole file is done.

A half-written file is never visible (shared/adapters/block_sink.py): blocks are staged under deterministic ids
and the blob appears only at `commit`. A segment (one export blob or one v1 page) that fails half way is
discarded and re-staged under the same ids.

Formats:
- CSV streams straight into blocks. Its header block is staged last (so a column Microsoft added mid-stream
  still gets its header) and committed first. Regional options: delimiter, decimal separator, date format.
  Text cells a spreadsheet would evaluate (leading = + - @ tab CR) get a leading apostrophe; numbers never do.
- Parquet and XLSX cannot take back what they wrote, nor add a column later, so complete segments are spooled to
  local Arrow IPC files and written into the format at the end, with every field any batch had (a field
  Microsoft adds a few thousand lines in is kept, empty before it). Parquet keeps the decimal types. XLSX is written
  by XlsxWriter in constant-memory mode to a temporary file, then uploaded block by block; its amounts are Excel
  numbers written from the decimal's own text at 16 significant digits (Excel's precision), never via float;
  text is a string cell (never a formula), quote-prefixed when it begins like one.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import weakref
from typing import BinaryIO, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from shared.adapters.block_sink import BlockBlobSink, SinkFile
from shared.core.boundaries import is_formula_text, neutralise_formulas, neutralise_text
from shared.core.columns import ENGINE_COLUMNS
from shared.core.models import CsvFormat, FileFormat
from shared.core.money import CONTEXT, Decimal, arrow_text

log = logging.getLogger(__name__)

XLSX_MAX_ROWS = 1_048_576 - 1  # a sheet's rows, less the header


class TooManyRows(ValueError):
    """More rows than the chosen format can hold."""




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
        pcsv.write_csv(pa.RecordBatch.from_arrays(arrays, names=self.columns), SinkFile(self.sink), self._options)
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
    """Segment-safe writing for formats that cannot take back bytes, nor add a column once written.

    Each segment is spooled to local Arrow IPC files (LZ4, on disk: memory stays one batch), a discarded segment's
    are deleted, and the format is written at `finish` from the complete segments, with every field any batch
    had: a field Microsoft added in the third batch is a column of the whole file, empty on the lines before it.
    """

    def __init__(self, sink: BlockBlobSink) -> None:
        self.sink = sink
        self.rows = 0
        self._done: list[str] = []  # spool files of complete segments, in order
        self._open: list[str] = []  # the current segment's
        self._ipc: ipc.RecordBatchStreamWriter | None = None
        self._spool: BinaryIO | None = None
        self._segment_rows = 0
        self._stream_schema: pa.Schema | None = None
        self._schema: pa.Schema | None = None  # every field seen so far, Microsoft's before the engine's
        self._cleanup = weakref.finalize(self, _unlink_all, self._done, self._open)  # a failed file leaves none
        sink.begin_segment(0)

    def begin_segment(self, index: int) -> None:
        self._close_stream()
        self._open.clear()
        self._segment_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._widen(batch.schema)
        if self._ipc is None or not batch.schema.equals(self._stream_schema):
            self._close_stream()
            self._spool = tempfile.NamedTemporaryFile(prefix="seg-", suffix=".arrow", delete=False)
            self._open.append(self._spool.name)
            self._ipc = ipc.new_stream(self._spool, batch.schema, options=ipc.IpcWriteOptions(compression="lz4"))
            self._stream_schema = batch.schema
        self._ipc.write_batch(batch)
        self._segment_rows += batch.num_rows

    def _widen(self, schema: pa.Schema) -> None:
        if self._schema is None:
            self._schema = schema
            return
        for f in schema:
            idx = self._schema.get_field_index(f.name)
            if idx < 0:  # a new field: before the engine's columns, like CSV's header
                tail = next((i for i, name in enumerate(self._schema.names) if name in ENGINE_COLUMNS),
                            len(self._schema))
                self._schema = self._schema.insert(tail, f)
                log.info("field %s first appeared after %d lines; it is a column of the whole file", f.name,
                         self.rows + self._segment_rows)
            elif pa.types.is_null(self._schema.field(idx).type) and not pa.types.is_null(f.type):
                self._schema = self._schema.set(idx, f)

    def _close_stream(self) -> None:
        if self._ipc is not None:
            self._ipc.close()
        if self._spool is not None:
            self._spool.close()
        self._ipc = self._spool = None

    def discard_segment(self) -> None:
        self._close_stream()
        _unlink_all(self._open)
        self._segment_rows = 0

    def end_segment(self) -> None:
        self._close_stream()
        self._done.extend(self._open)
        self._open.clear()
        self.rows += self._segment_rows
        self._segment_rows = 0
        self.check_rows()

    def check_rows(self) -> None:
        """Refuse, as soon as it is known, a file too big for its format."""

    def replay(self) -> Iterator[pa.RecordBatch]:
        """The complete segments' batches, in order, each with every field of the file; spools deleted as read."""
        assert self._schema is not None
        while self._done:
            path = self._done.pop(0)
            try:
                with pa.memory_map(path) as source:
                    for batch in ipc.open_stream(source):
                        yield _conform(batch, self._schema)
            finally:
                os.unlink(path)


def _unlink_all(*lists: list[str]) -> None:
    for paths in lists:
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        paths.clear()


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Align a batch to the file's schema (every field of the file; one the batch lacks is empty)."""
    if batch.schema.equals(schema):
        return batch
    arrays = []
    for f in schema:
        idx = batch.schema.get_field_index(f.name)
        arrays.append(pa.nulls(batch.num_rows, f.type) if idx < 0 else batch.column(idx).cast(f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class ParquetWriter(_Spooled):
    content_type = "application/vnd.apache.parquet"
    extension = "parquet"

    def finish(self, metadata: dict[str, str]) -> None:
        writer = pq.ParquetWriter(SinkFile(self.sink), self._schema or pa.schema([]), compression="zstd")
        if self._schema is not None:
            for batch in self.replay():
                writer.write_batch(batch)
        writer.close()
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

    def check_rows(self) -> None:
        if self.rows > XLSX_MAX_ROWS:
            raise TooManyRows(f"More than {XLSX_MAX_ROWS:,} rows do not fit in one Excel sheet; choose CSV or "
                              "Parquet for this invoice.")

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
        if self._schema is not None:
            for batch in self.replay():
                self.emit(batch)
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
