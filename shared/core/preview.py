"""A margin rule's effect before it is saved: today's prices against the prices with the rule, per customer.

Both sides are computed by the margin engine itself (`MarginEngine.apply`, the same call every file and the
charges API make), over the lines of the latest invoice's partner-view file: once with the tenant's rules as they
are, once with the candidate added. Only lines the rule can reach are read (its target's lines; for a reseller
caller only its own lines), so the preview stays small. Sums are exact (Arrow decimal256), per customer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from shared.core.money import Decimal
from shared.core.columns import ENGINE_COLUMNS, FileType, Layout
from shared.core.margins import MarginEngine, MarginLevel, MarginRule, MarginRuleIn
from shared.core.models import ApiModel
from shared.core.names import CUSTOMER_NAME

SUM = pa.decimal256(76, 6)
PREVIEW_RULE_ID = "preview"


class MarginRuleEnd(ApiModel):
    """`PATCH …/margin-rules/{id}`: the rule's new end (exclusive), or null to leave it open-ended."""

    effective_to: date | None


class RulePreviewIn(MarginRuleIn):
    """`POST …/margin-rules:preview`: the rule as it would be saved, and which invoice type to try it on."""

    invoice_type: FileType = FileType.ONETIME


def _text(batch: pa.RecordBatch, name: str | None) -> pa.Array:
    if name is None or batch.schema.get_field_index(name) < 0:
        return pa.nulls(batch.num_rows, pa.string())
    arr = batch.column(name)
    return arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())


def _norm(arr: pa.Array) -> pa.Array:
    return pc.utf8_lower(pc.utf8_trim_whitespace(arr))


@dataclass
class RulePreview:
    layout: Layout
    rules: list[MarginRule]
    candidate: MarginRule
    reseller_ids: frozenset[str] | None = None  # a reseller caller: only its own lines
    lines: int = 0
    _parts: list[pa.Table] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.before = MarginEngine(self.layout, self.rules)
        self.after = MarginEngine(self.layout, [*self.rules, self.candidate])

    def _reached(self, batch: pa.RecordBatch) -> pa.Array:
        lay, rule = self.layout, self.candidate
        column = {MarginLevel.RESELLER: lay.reseller_column, MarginLevel.CUSTOMER: lay.customer_column,
                  MarginLevel.SUBSCRIPTION: lay.subscription_column}[rule.level]
        keep = pc.equal(_norm(_text(batch, column)), rule.target_id.lower())
        if rule.product_id and lay.product_column:
            keep = pc.and_(keep, pc.equal(_norm(_text(batch, lay.product_column)), rule.product_id.lower()))
        if self.reseller_ids is not None:
            mine = pa.array(sorted(self.reseller_ids), pa.string())
            keep = pc.and_(keep, pc.is_in(pc.utf8_trim_whitespace(_text(batch, lay.reseller_column)), value_set=mine))
        return pc.fill_null(keep, False)

    def add(self, batch: pa.RecordBatch) -> None:
        """One batch of the file's lines (its engine columns are recomputed, never trusted)."""
        batch = batch.select([n for n in batch.schema.names if n not in ENGINE_COLUMNS])
        batch = batch.filter(self._reached(batch))
        if not batch.num_rows:
            return
        self.lines += batch.num_rows
        now, then = self.before.apply(batch), self.after.apply(batch)

        def wide(b: pa.RecordBatch, name: str) -> pa.Array:
            return pc.cast(b.column(name), SUM)

        table = pa.table({
            "customerId": _norm(_text(batch, self.layout.customer_column)),
            "customerName": _text(batch, CUSTOMER_NAME[self.layout.file_type]),
            "resellerToday": wide(now, "ResellerSubtotal"), "resellerNew": wide(then, "ResellerSubtotal"),
            "customerToday": wide(now, "CustomerSubtotal"), "customerNew": wide(then, "CustomerSubtotal"),
            "lines": pa.repeat(pa.scalar(1, pa.int64()), batch.num_rows),
        })
        grouped = table.group_by(["customerId"], use_threads=False).aggregate(
            [("customerName", "max"), *((c, "sum") for c in ("resellerToday", "resellerNew", "customerToday",
                                                               "customerNew", "lines"))])
        self._parts.append(grouped.rename_columns([c.rsplit("_", 1)[0] for c in grouped.column_names]))

    def customers(self) -> list[dict]:
        """Per customer: lines, and today's price, the new price and the difference, for the reseller's price and
        the customer's; largest change first."""
        if not self._parts:
            return []
        merged = pa.concat_tables(self._parts)
        merged = merged.group_by(["customerId"], use_threads=False).aggregate(
            [("customerName", "max"), *((c, "sum") for c in ("resellerToday", "resellerNew", "customerToday",
                                                               "customerNew", "lines"))])
        merged = merged.rename_columns([c.rsplit("_", 1)[0] for c in merged.column_names])
        out = []
        for row in merged.to_pylist():
            out.append({"customerId": row["customerId"], "customerName": row["customerName"], "lines": row["lines"],
                        "reseller": _change(row["resellerToday"], row["resellerNew"]),
                        "customer": _change(row["customerToday"], row["customerNew"])})
        return sorted(out, key=lambda r: (-abs(r["customer"]["difference"]), r["customerName"] or "", r["customerId"]))


def _change(today: Decimal, new: Decimal) -> dict[str, Decimal]:
    return {"today": today, "new": new, "difference": new - today}


def totals(customers: list[dict]) -> dict[str, dict[str, Decimal]]:
    out = {}
    for side in ("reseller", "customer"):
        today = sum((c[side]["today"] for c in customers), Decimal(0))
        new = sum((c[side]["new"] for c in customers), Decimal(0))
        out[side] = _change(today, new)
    return out
