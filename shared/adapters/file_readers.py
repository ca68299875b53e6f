"""Reading a stored file version back as Arrow batches, exactly: what exports and the rule preview start from.

A version's blob is the view as it was written (see file_writers): CSV in the tenant's or request's regional
format, or Parquet with its decimal types. CSV cells are read as text and turned back into the engine's types:
amounts into decimal128 from their own text (the decimal comma put back to a point first; never through float),
dates in `us`/`eu` format back to ISO `yyyy-mm-dd`. XLSX is not read back: its cells are Excel numbers at 16
significant digits, so an export from it could not be exact (the caller refuses it up front).

The blob is downloaded to a temporary file first (streamed, never whole in memory) and read in batches.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from azure.storage.blob import BlobClient

from shared.adapters.microsoft_json import to_decimal_array
from shared.core.columns import Layout
from shared.core.models import CsvFormat, FileFormat

BLOCK_BYTES = 4 * 1024 * 1024  # CSV read block: a few thousand lines per batch
PARQUET_BATCH_ROWS = 16_384
# The engine's amounts and percents: decimals in every view that shows them.
ENGINE_DECIMALS = frozenset({"ResellerMarginPercent", "ResellerSubtotal", "CustomerMarginPercent",
                             "CustomerSubtotal"})
READABLE_FORMATS = (FileFormat.CSV, FileFormat.PARQUET)


class Unreadable(ValueError):
    """The version cannot be read back exactly (an Excel file)."""


def read_version(blob: BlobClient, layout: Layout, fmt: FileFormat,
                 csv_options: CsvFormat | None = None) -> Iterator[pa.RecordBatch]:
    """The lines of one stored file version, batch by batch, with decimals as decimals and ISO dates."""
    if fmt not in READABLE_FORMATS:
        raise Unreadable("Exports and previews are made from CSV or Parquet files: an Excel file holds amounts "
                         "at 16 significant digits only. Request the same view as csv or parquet.")
    fd, path = tempfile.mkstemp(prefix="version-", suffix=f".{fmt.value}")
    try:
        with os.fdopen(fd, "wb") as out:
            blob.download_blob(max_concurrency=2).readinto(out)
        if fmt == FileFormat.PARQUET:
            yield from pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS)
        else:
            yield from _csv_batches(path, layout, csv_options or CsvFormat())
    finally:
        os.unlink(path)


def _header(path: str, delimiter: str) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        line = f.readline()
    return next(csv.reader(io.StringIO(line), delimiter=delimiter), [])


def _csv_batches(path: str, layout: Layout, options: CsvFormat) -> Iterator[pa.RecordBatch]:
    names = _header(path, options.delimiter)
    if not names:
        return
    decimals = (layout.decimal_columns | ENGINE_DECIMALS) & set(names)
    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(column_names=names, skip_rows=1, block_size=BLOCK_BYTES),
        parse_options=pcsv.ParseOptions(delimiter=options.delimiter, newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                            strings_can_be_null=False, quoted_strings_can_be_null=False))
    for batch in reader:
        arrays = []
        for name, arr in zip(batch.schema.names, batch.columns):
            if name in decimals:
                if options.decimal_separator != ".":
                    arr = pc.replace_substring(arr, options.decimal_separator, ".")
                arr = to_decimal_array(arr, name)
            elif arr.type == pa.string():
                if name in layout.date_columns and options.date_format != "iso":
                    arr = iso_dates(arr, options.date_format)
                arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
            arrays.append(arr)
        yield pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


_US = r"^(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})$"
_EU = r"^(?P<d>\d{1,2})/(?P<m>\d{1,2})/(?P<y>\d{4})$"


def iso_dates(arr: pa.Array, date_format: str) -> pa.Array:
    """`us` (10/31/2026, no leading zeros) or `eu` (31/10/2026) text back to ISO 2026-10-31; other text kept."""
    pattern = _US if date_format == "us" else _EU
    parts = pc.extract_regex(arr, pattern)

    def two(field: str) -> pa.Array:
        return pc.utf8_lpad(parts.field(field), width=2, padding="0")

    joined = pc.binary_join_element_wise(parts.field("y"), two("m"), two("d"), "-")
    return pc.if_else(pc.fill_null(pc.match_substring_regex(arr, pattern), False), joined, arr)
