"""The file formats: CSV (regional), Parquet (decimals kept), XLSX (constant memory) — segment-safe."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.core.columns import ONETIME
from shared.app.context import AppContext
from shared.core.models import FileFormat
from shared.adapters.microsoft_json import batch_from_items
from shared.adapters.file_writers import BlockBlobSink, format_dates, writer_for
from shared.core.models import CsvFormat

ITEMS = [
    {"CustomerId": "c1", "Subtotal": "1234.50", "ChargeStartDate": "2026-10-01T00:00:00Z", "ChargeType": "new"},
    {"CustomerId": "c2", "Subtotal": "-33.33", "ChargeStartDate": "2026-10-15T00:00:00Z",
     "ChargeType": "removeQuantity"},
]


def write(ctx: AppContext, fmt: FileFormat, name: str, csv_format: CsvFormat = CsvFormat()) -> bytes:
    blob = ctx.storage.files.get_blob_client(name)
    writer = writer_for(fmt, BlockBlobSink(blob, 64 * 1024), csv_format, ONETIME.date_columns)
    writer.begin_segment(0)
    writer.write(batch_from_items(ONETIME, ITEMS[:1]))
    writer.end_segment()
    writer.begin_segment(1)
    writer.write(batch_from_items(ONETIME, [{"CustomerId": "half-read", "Subtotal": "999"}]))
    writer.discard_segment()  # a broken segment is read again: its rows must not appear
    writer.begin_segment(1)
    writer.write(batch_from_items(ONETIME, ITEMS[1:]))
    writer.end_segment()
    writer.finish({"rows": "2"})
    return blob.download_blob().readall()


def test_csv_default_and_regional(ctx: AppContext) -> None:
    rows = list(csv.DictReader(io.StringIO(write(ctx, FileFormat.CSV, "a.csv").decode("utf-8-sig"))))
    assert [r["CustomerId"] for r in rows] == ["c1", "c2"]
    assert [r["Subtotal"] for r in rows] == ["1234.5", "-33.33"]
    assert rows[0]["ChargeStartDate"] == "2026-10-01T00:00:00Z"
    eu = write(ctx, FileFormat.CSV, "b.csv", CsvFormat(delimiter=";", decimal_separator=",", date_format="eu"))
    rows = list(csv.DictReader(io.StringIO(eu.decode("utf-8-sig")), delimiter=";"))
    assert [r["Subtotal"] for r in rows] == ["1234,5", "-33,33"]
    assert [r["ChargeStartDate"] for r in rows] == ["01/10/2026", "15/10/2026"]


def test_us_dates_like_microsofts_files() -> None:
    arr = pa.array(["2026-01-05T00:00:00Z", "2026-12-31", None, "not a date"])
    assert format_dates(arr, "us").to_pylist() == ["1/5/2026", "12/31/2026", None, "not a date"]


def test_parquet_keeps_exact_decimals(ctx: AppContext) -> None:
    table = pq.read_table(io.BytesIO(write(ctx, FileFormat.PARQUET, "a.parquet")))
    assert pa.types.is_decimal(table.schema.field("Subtotal").type)
    assert table.column("Subtotal").to_pylist() == [Decimal("1234.5"), Decimal("-33.33")]
    assert table.column("CustomerId").to_pylist() == ["c1", "c2"]


def test_xlsx_has_header_rows_and_numbers(ctx: AppContext) -> None:
    import zipfile

    data = write(ctx, FileFormat.XLSX, "a.xlsx")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        sheet = z.read("xl/worksheets/sheet1.xml").decode()
    assert "<v>1234.5</v>" in sheet and "<v>-33.33</v>" in sheet
    assert "half-read" not in sheet and "c2" in sheet


@pytest.mark.parametrize("fmt", list(FileFormat))
def test_nothing_visible_until_finish(ctx: AppContext, fmt: FileFormat) -> None:
    blob = ctx.storage.files.get_blob_client(f"pending.{fmt.value}")
    writer = writer_for(fmt, BlockBlobSink(blob, 1024))
    writer.begin_segment(0)
    writer.write(batch_from_items(ONETIME, ITEMS))
    writer.end_segment()
    assert not blob.exists()
    writer.finish({})
    assert blob.exists()
