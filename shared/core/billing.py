"""The billing summary: one line per customer, subscription, product and charge period with the view's price to
bill, the partner's ids and the PO number — what an accounting or PSA system imports. Pure (Arrow in, Arrow out).

The price to bill is the view's own price (README "Billing exports"):
- partner view: what the partner bills — `ResellerSubtotal` to the reseller for a line sold through one
  (`BillTo` = reseller), `CustomerSubtotal` to the customer for a direct line (`BillTo` = customer);
- reseller view: `CustomerSubtotal`, billed by the reseller to its customer;
- customer view: `CustomerSubtotal`, what the customer owes.

Amounts are exact sums of the view's lines (2 places; 6 for daily rated usage, as in the file), so the summary's
total equals the file's total to the last place. Aggregation is streamed: each batch is grouped by Arrow
(`group_by`, sums in decimal256 so nothing overflows), partial groups are merged again whenever they pile up,
so memory follows the number of distinct summary lines, never the file's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from shared.core.money import Decimal
from shared.core.columns import FileType, Layout
from shared.core.ownership import DIRECT_RESELLER_IDS
from shared.core.models import View

WIDE = 28  # places kept while summing (every amount has at most 28)
SUM_TYPE = pa.decimal256(76, WIDE)
MERGE_ROWS = 100_000  # partial groups kept before they are merged


@dataclass(frozen=True)
class BillingFields:
    """Where a file type keeps what the summary needs (columns differ per type)."""

    customer_name: str
    subscription_name: str
    product_id: str | None
    product_name: str
    quantity: str
    currency: str


FIELDS: dict[FileType, BillingFields] = {
    FileType.ONETIME: BillingFields("CustomerName", "SubscriptionDescription", "ProductId", "ProductName",
                                    "Quantity", "Currency"),
    FileType.DAILY: BillingFields("CustomerName", "SubscriptionDescription", "ProductId", "ProductName",
                                  "Quantity", "BillingCurrency"),
    FileType.LICENSE: BillingFields("CustomerName", "SubscriptionName", "OfferId", "OfferName", "Quantity",
                                    "Currency"),
    FileType.USAGE: BillingFields("CustomerCompanyName", "SubscriptionName", None, "ServiceName",
                                  "ConsumedQuantity", "Currency"),
}

# The summary's columns, in order (README "Billing exports" maps them to QuickBooks Online and Xero).
KEYS = ("BillTo", "BillToId", "ResellerMpnId", "ResellerInternalId", "CustomerId", "CustomerInternalId",
        "CustomerName", "SubscriptionId", "SubscriptionInternalId", "SubscriptionName", "PONumber", "ProductId",
        "ProductName", "ChargeStartDate", "ChargeEndDate", "Currency")
COLUMNS = ("InvoiceId", *KEYS[:13], "ChargeStartDate", "ChargeEndDate", "Quantity", "Amount", "Currency", "Lines")


def reseller_of(layout: Layout, batch: pa.RecordBatch) -> pa.Array:
    """The line's reseller MPN id, null for a direct line (Microsoft writes empty, 0 or -1 there)."""
    reseller = pc.utf8_trim_whitespace(_text(batch, layout.reseller_column))
    direct = pc.fill_null(pc.is_in(reseller, value_set=pa.array(sorted(DIRECT_RESELLER_IDS))), True)
    return pc.if_else(direct, pa.scalar(None, pa.string()), reseller)


def price_to_bill(layout: Layout, batch: pa.RecordBatch, view: View) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(BillTo, BillToId, amount) per line of a view: who is billed and the view's price for it."""
    customer = _text(batch, layout.customer_column)
    if view != View.PARTNER:
        return (pa.repeat(pa.scalar("customer"), batch.num_rows), customer, batch.column("CustomerSubtotal"))
    reseller = reseller_of(layout, batch)
    direct = pc.is_null(reseller)
    amount = pc.if_else(direct, batch.column("CustomerSubtotal"), batch.column("ResellerSubtotal"))
    return (pc.if_else(direct, "customer", "reseller"), pc.if_else(direct, customer, reseller), amount)


def _text(batch: pa.RecordBatch, name: str | None) -> pa.Array:
    if name is None or batch.schema.get_field_index(name) < 0:
        return pa.nulls(batch.num_rows, pa.string())
    arr = batch.column(name)
    return arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())


def _decimal(batch: pa.RecordBatch, name: str) -> pa.Array:
    if batch.schema.get_field_index(name) < 0:
        return pa.nulls(batch.num_rows, SUM_TYPE)
    return pc.cast(batch.column(name), SUM_TYPE)


def _day(arr: pa.Array) -> pa.Array:
    """A date or timestamp text as its date part (2026-10-01T00:00:00Z -> 2026-10-01)."""
    return pc.utf8_slice_codeunits(arr, 0, 10)


@dataclass
class BillingSummary:
    """Feed it the view's batches (`add`), then take the summary (`table`)."""

    layout: Layout
    view: View
    invoice_id: str
    _parts: list[pa.Table] = field(default_factory=list)
    _rows: int = 0

    def add(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        lay, f = self.layout, FIELDS[self.layout.file_type]
        bill_to, bill_to_id, amount = price_to_bill(lay, batch, self.view)
        columns = {
            "BillTo": bill_to, "BillToId": bill_to_id, "ResellerMpnId": reseller_of(lay, batch),
            "ResellerInternalId": _text(batch, "ResellerInternalId"), "CustomerId": _text(batch, lay.customer_column),
            "CustomerInternalId": _text(batch, "CustomerInternalId"), "CustomerName": _text(batch, f.customer_name),
            "SubscriptionId": _text(batch, lay.subscription_column),
            "SubscriptionInternalId": _text(batch, "SubscriptionInternalId"),
            "SubscriptionName": _text(batch, f.subscription_name), "PONumber": _text(batch, "PONumber"),
            "ProductId": _text(batch, f.product_id), "ProductName": _text(batch, f.product_name),
            "ChargeStartDate": _day(_text(batch, "ChargeStartDate")),
            "ChargeEndDate": _day(_text(batch, "ChargeEndDate")), "Currency": _text(batch, f.currency),
            "Quantity": _decimal(batch, f.quantity), "Amount": pc.cast(amount, SUM_TYPE),
            "Lines": pa.repeat(pa.scalar(1, pa.int64()), batch.num_rows),
        }
        self._parts.append(_group(pa.table(columns)))
        self._rows += self._parts[-1].num_rows
        if self._rows > MERGE_ROWS:
            merged = _group(pa.concat_tables(self._parts))
            self._parts, self._rows = [merged], merged.num_rows

    def table(self) -> pa.Table:
        """The summary, sorted by who is billed, customer, subscription, product and period; amounts to the
        file's places, quantities without trailing zeros."""
        if not self._parts:
            empty = {c: pa.array([], pa.string()) for c in COLUMNS}
            return pa.table({**empty, "Quantity": pa.array([], SUM_TYPE), "Amount": pa.array([], SUM_TYPE),
                             "Lines": pa.array([], pa.int64())}).select(list(COLUMNS))
        merged = _group(pa.concat_tables(self._parts))
        merged = merged.sort_by([(k, "ascending") for k in KEYS])
        places = self.layout.margin_scale
        amount = pc.cast(merged.column("Amount"), pa.decimal128(38, places))  # exact: every price has `places`
        invoice = pa.repeat(pa.scalar(self.invoice_id), merged.num_rows)
        out = merged.set_column(merged.schema.get_field_index("Amount"), "Amount", amount)
        out = out.append_column("InvoiceId", pa.chunked_array([invoice], pa.string()))
        return out.select(list(COLUMNS))


def _group(table: pa.Table) -> pa.Table:
    grouped = table.group_by(list(KEYS), use_threads=False).aggregate(
        [("Quantity", "sum"), ("Amount", "sum"), ("Lines", "sum")])
    return grouped.rename_columns([n.removesuffix("_sum") for n in grouped.column_names])


def total(table: pa.Table, column: str = "Amount") -> Decimal:
    value = pc.sum(pc.cast(table.column(column), SUM_TYPE)).as_py()
    return Decimal(0) if value is None else value
