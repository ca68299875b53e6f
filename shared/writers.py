"""Writing a file into Blob Storage as staged blocks, committed only when the whole file is done.

A half-written file is never visible: blocks are staged under deterministic ids (segment, chunk) and the blob
appears only at `commit`. A segment (one export blob or one v1 page) that fails half way is discarded and
re-staged under the same ids. The header block is staged last, so columns Microsoft added mid-stream still get
their header, and committed first.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Sequence

import pyarrow as pa
import pyarrow.csv as pcsv
from azure.storage.blob import BlobBlock, BlobClient, ContentSettings

from shared.records import decimal_text

HEADER_BLOCK = "0" * 16


def _block_id(segment: int, chunk: int) -> str:
    return f"{segment + 1:08d}{chunk:08d}"


@dataclass
class BlockBlobSink:
    blob: BlobClient
    block_size: int
    committed: list[str] = field(default_factory=list)
    _segment_ids: list[str] = field(default_factory=list)
    _buffer: io.BytesIO = field(default_factory=io.BytesIO)
    _segment: int = -1
    bytes_written: int = 0

    def begin_segment(self, index: int) -> None:
        self._segment, self._segment_ids, self._buffer = index, [], io.BytesIO()

    def write(self, data: bytes) -> None:
        self._buffer.write(data)
        if self._buffer.tell() >= self.block_size:
            self._stage()

    def _stage(self) -> None:
        data = self._buffer.getvalue()
        if data:
            block_id = _block_id(self._segment, len(self._segment_ids))
            self.blob.stage_block(block_id, data)
            self._segment_ids.append(block_id)
            self.bytes_written += len(data)
        self._buffer = io.BytesIO()

    def end_segment(self) -> None:
        self._stage()
        self.committed.extend(self._segment_ids)
        self._segment_ids = []

    def discard_segment(self) -> None:
        self._segment_ids, self._buffer = [], io.BytesIO()

    def commit(self, header: bytes, content_type: str, metadata: dict[str, str]) -> None:
        if header:
            self.blob.stage_block(HEADER_BLOCK, header)
        blocks = ([HEADER_BLOCK] if header else []) + self.committed
        self.blob.commit_block_list([BlobBlock(block_id=b) for b in blocks],
                                    content_settings=ContentSettings(content_type=content_type),
                                    metadata=metadata)


@dataclass(frozen=True)
class CsvFormat:
    """Regional CSV options: partners in many countries open these files in Excel."""

    delimiter: str = ","
    decimal_separator: str = "."


class CsvWriter:
    """Arrow batches -> CSV bytes. Decimal columns are written as exact plain text."""

    content_type = "text/csv; charset=utf-8"
    extension = "csv"

    def __init__(self, sink: BlockBlobSink, fmt: CsvFormat = CsvFormat()) -> None:
        self.sink = sink
        self.fmt = fmt
        self.columns: list[str] = []
        self._options = pcsv.WriteOptions(include_header=False, delimiter=fmt.delimiter, quoting_style="needed")

    def write(self, batch: pa.RecordBatch) -> None:
        for name in batch.schema.names:
            if name not in self.columns:
                self.columns.append(name)
        arrays = []
        for name in self.columns:
            idx = batch.schema.get_field_index(name)
            if idx < 0:
                arrays.append(pa.nulls(batch.num_rows, pa.string()))
                continue
            arr = batch.column(idx)
            arrays.append(decimal_text(arr, self.fmt.decimal_separator) if pa.types.is_decimal(arr.type) else arr)
        out = io.BytesIO()
        pcsv.write_csv(pa.RecordBatch.from_arrays(arrays, names=self.columns), out, self._options)
        self.sink.write(out.getvalue())

    def header(self) -> bytes:
        return header_line(self.columns, self.fmt.delimiter)


def header_line(columns: Sequence[str], delimiter: str) -> bytes:
    out = io.BytesIO()
    table = pa.table({c: pa.array([], pa.string()) for c in columns})
    pcsv.write_csv(table, out, pcsv.WriteOptions(include_header=True, delimiter=delimiter, quoting_style="needed"))
    return b"\xef\xbb\xbf" + out.getvalue()  # UTF-8 BOM: Excel then reads accents correctly
