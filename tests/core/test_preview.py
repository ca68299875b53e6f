"""The rule preview: both sides are the margin engine's own numbers; a reseller's preview reads its lines only."""

from __future__ import annotations

from shared.core.money import Decimal

import pyarrow as pa

from shared.core.columns import ENGINE_COLUMNS, ONETIME
from shared.core.margins import MarginEngine, MarginRule
from shared.core.preview import RulePreview

C1 = "c1c1c1c1-0000-4000-8000-000000000001"


def _batch(rows: list[tuple[str, str, str]]) -> pa.RecordBatch:
    data = {c: [None] * len(rows) for c in ONETIME.columns}
    data["ResellerMpnId"] = [r[0] for r in rows]
    data["CustomerId"] = [r[1] for r in rows]
    data["CustomerName"] = ["Fabrikam"] * len(rows)
    data["ChargeStartDate"] = ["2026-10-01T00:00:00Z"] * len(rows)
    data["Subtotal"] = [Decimal(r[2]) for r in rows]
    types = {c: pa.decimal128(38, 28) if c in ONETIME.decimal_columns else pa.string() for c in ONETIME.columns}
    return pa.RecordBatch.from_pydict({c: pa.array(v, types[c]) for c, v in data.items()})


RULES = [MarginRule(id="r1", level="reseller", target_id="1234567", percent=Decimal("10"),
                    effective_from="2026-01-01")]
CANDIDATE = MarginRule(id="preview", level="customer", target_id=C1, percent=Decimal("5"),
                       effective_from="2026-01-01")


def test_both_sides_come_from_the_engine_and_engine_columns_in_the_file_are_not_trusted() -> None:
    batch = _batch([("1234567", C1, "100.00"), ("", C1, "10.01"), ("1234567", "other", "7.00")])
    stale = MarginEngine(ONETIME, []).apply(batch)  # a file made before today's rules: its subtotals are old
    preview = RulePreview(ONETIME, RULES, CANDIDATE)
    preview.add(stale)
    (row,) = preview.customers()
    # today: 110.00 + 10.01 (reseller 10 % on R1's line); new: × 1.05 each, rounded half away from zero
    assert row["customer"] == {"today": Decimal("120.01"), "new": Decimal("115.50") + Decimal("10.51"),
                               "difference": Decimal("6.00")}
    assert row["reseller"]["difference"] == 0 and row["lines"] == 2
    assert set(ENGINE_COLUMNS) <= set(stale.schema.names)


def test_a_reseller_preview_reads_only_its_own_lines() -> None:
    batch = _batch([("1234567", C1, "100.00"), ("", C1, "10.01"), ("7654321", C1, "1.00")])
    preview = RulePreview(ONETIME, RULES, CANDIDATE, reseller_ids=frozenset({"1234567"}))
    preview.add(batch)
    (row,) = preview.customers()
    assert row["lines"] == 1 and row["customer"]["today"] == Decimal("110.00")
