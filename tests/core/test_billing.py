"""The billing summary: one line per who-is-billed, customer, subscription, product and period; exact sums of the
view's price to bill, however the lines arrive (merged partial groups included)."""

from __future__ import annotations

import random
from shared.core.money import Decimal

import pyarrow as pa

from shared.core import billing
from shared.core.billing import BillingSummary, total
from shared.core.columns import ONETIME
from shared.core.models import View

C1, C2 = "c1c1c1c1-0000-4000-8000-000000000001", "c2c2c2c2-0000-4000-8000-000000000002"


def _batch(rows: list[dict]) -> pa.RecordBatch:
    cols = ["ResellerMpnId", "CustomerId", "CustomerName", "SubscriptionId", "SubscriptionDescription", "ProductId",
            "ProductName", "ChargeStartDate", "ChargeEndDate", "Currency", "PONumber", "CustomerInternalId"]
    data = {c: pa.array([r.get(c) for r in rows], pa.string()) for c in cols}
    for c in ("Quantity", "ResellerSubtotal", "CustomerSubtotal"):
        data[c] = pa.array([r[c] for r in rows], pa.decimal128(38, 2 if c != "Quantity" else 0))
    return pa.RecordBatch.from_pydict(data)


def _row(reseller: str, customer: str, sub: str, amount: str, qty: int = 1) -> dict:
    return {"ResellerMpnId": reseller, "CustomerId": customer, "CustomerName": customer[:2], "SubscriptionId": sub,
            "ProductId": "P1", "ProductName": "Microsoft 365 E3", "ChargeStartDate": "2026-10-01T00:00:00Z",
            "ChargeEndDate": "2026-10-31T00:00:00Z", "Currency": "EUR", "PONumber": "PO-7", "Quantity": Decimal(qty),
            "ResellerSubtotal": Decimal(amount), "CustomerSubtotal": Decimal(amount) * 2}


def test_partner_view_bills_resellers_their_price_and_direct_customers_theirs() -> None:
    s = BillingSummary(ONETIME, View.PARTNER, "G1")
    s.add(_batch([_row("1234567", C1, "s1", "10.01", 2), _row("1234567", C1, "s1", "-0.01", 1),
                  _row("", C2, "s2", "5.55"), _row("0", C2, "s2", "1.10")]))
    rows = s.table().to_pylist()
    assert [(r["BillTo"], r["BillToId"], r["Amount"], r["Quantity"], r["Lines"]) for r in rows] == [
        ("customer", C2, Decimal("13.30"), 2, 2),  # 2 × (5.55 + 1.10): direct, the customer's price
        ("reseller", "1234567", Decimal("10.00"), 3, 2)]  # the reseller's price, credits netted, to the cent
    assert rows[0]["ChargeStartDate"] == "2026-10-01" and rows[0]["PONumber"] == "PO-7"
    assert list(s.table().column_names) == list(billing.COLUMNS)


def test_reseller_and_customer_views_bill_the_customer_price() -> None:
    for view in (View.RESELLER, View.CUSTOMER):
        s = BillingSummary(ONETIME, view, "G1")
        s.add(_batch([_row("1234567", C1, "s1", "10.01")]))
        assert s.table().column("Amount").to_pylist() == [Decimal("20.02")]


def test_streamed_merges_keep_every_cent(monkeypatch) -> None:
    monkeypatch.setattr(billing, "MERGE_ROWS", 5)
    rnd = random.Random(7)
    rows = [_row(rnd.choice(["1234567", "7654321", ""]), rnd.choice([C1, C2]), f"s{rnd.randint(1, 9)}",
                 f"{rnd.randint(-5000, 90000) / 100:.2f}") for _ in range(2000)]
    s = BillingSummary(ONETIME, View.PARTNER, "G1")
    for i in range(0, len(rows), 37):
        s.add(_batch(rows[i:i + 37]))
    want = sum((r["CustomerSubtotal"] if r["ResellerMpnId"] == "" else r["ResellerSubtotal"]) for r in rows)
    table = s.table()
    assert total(table) == want and sum(table.column("Lines").to_pylist()) == 2000
    assert table.num_rows == len({(r["ResellerMpnId"] or r["CustomerId"], r["CustomerId"], r["SubscriptionId"])
                                  for r in rows})


def test_empty_file_gives_an_empty_summary_with_the_columns() -> None:
    table = BillingSummary(ONETIME, View.PARTNER, "G1").table()
    assert table.num_rows == 0 and list(table.column_names) == list(billing.COLUMNS)
