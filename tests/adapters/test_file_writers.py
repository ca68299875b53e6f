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


@pytest.mark.parametrize("fmt", [FileFormat.PARQUET, FileFormat.XLSX])
def test_a_field_first_seen_in_the_third_batch_reaches_every_format(ctx: AppContext, fmt: FileFormat) -> None:
    """Issue 15, defect 7: Parquet and XLSX used to fix their columns with the first batch and drop a field
    Microsoft added later (CSV kept it). Now every field of any batch is a column of the file."""
    from shared.core.columns import ENGINE_COLUMNS

    blob = ctx.storage.files.get_blob_client(f"late-field.{fmt.value}")
    writer = writer_for(fmt, BlockBlobSink(blob, 64 * 1024), CsvFormat(), ONETIME.date_columns)
    plain = [{"CustomerId": f"c{i}", "Subtotal": f"{i}.25"} for i in range(3)]
    late = {"CustomerId": "c3", "Subtotal": "3.25", "NewMicrosoftField": "appeared"}
    def with_engine(batch: pa.RecordBatch) -> pa.RecordBatch:  # the engine's columns come last
        return batch.append_column("CustomerSubtotal", pa.array([Decimal(1)] * batch.num_rows, pa.decimal128(38, 2)))
    for index, items in enumerate([plain[:1], plain[1:2], [late], plain[2:]]):  # the field comes in batch 3
        writer.begin_segment(index)
        writer.write(with_engine(batch_from_items(ONETIME, items)))
        writer.end_segment()
    writer.finish({})
    data = blob.download_blob().readall()
    if fmt == FileFormat.PARQUET:
        table = pq.read_table(io.BytesIO(data))
        names = table.schema.names
        assert table.column("NewMicrosoftField").to_pylist() == [None, None, "appeared", None]
        assert table.column("CustomerId").to_pylist() == ["c0", "c1", "c3", "c2"]
        assert table.column("Subtotal").to_pylist() == [Decimal("0.25"), Decimal("1.25"), Decimal("3.25"),
                                                        Decimal("2.25")]
    else:
        rows = xlsx_rows(data)
        names = rows[0]
        column = names.index("NewMicrosoftField")
        assert [r[column] for r in rows[1:]] == [None, None, "appeared", None]
        assert [r[names.index("CustomerId")] for r in rows[1:]] == ["c0", "c1", "c3", "c2"]
    # Microsoft's new field sits with Microsoft's columns, before the engine's
    assert names.index("NewMicrosoftField") < min(names.index(c) for c in names if c in ENGINE_COLUMNS)


def xlsx_rows(data: bytes) -> list[list[str | None]]:
    """The first sheet's cells as text (XlsxWriter's constant-memory mode writes strings inline)."""
    import re
    import zipfile
    from xml.etree import ElementTree

    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        root = ElementTree.fromstring(z.read("xl/worksheets/sheet1.xml"))
    out = []
    for row in root.iterfind(".//m:sheetData/m:row", ns):
        cells: dict[int, str | None] = {}
        for cell in row.iterfind("m:c", ns):
            letters = re.match(r"[A-Z]+", cell.get("r")).group()
            col = 0
            for ch in letters:
                col = col * 26 + ord(ch) - 64
            text = cell.find("m:is/m:t", ns) if cell.get("t") == "inlineStr" else cell.find("m:v", ns)
            cells[col - 1] = text.text if text is not None else None
        out.append([cells.get(i) for i in range(max(cells, default=-1) + 1)])
    width = max(len(r) for r in out)
    return [r + [None] * (width - len(r)) for r in out]
