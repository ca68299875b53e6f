"""One file's processing of a batch: margins and identifiers, the view's lines, totals, the view's columns.

The same plan serves the generation worker and the charges API, so a page of charges and a file line never
disagree. Totals are measured on the view's lines before its columns are projected (a reseller-view record still
knows its own cost), and only the partner view reports Microsoft's cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from shared.core.columns import Layout
from shared.core.margins import MarginEngine, Mappings, MarginRule
from shared.core.models import Totals, View
from shared.core.money import ZERO, arrow_sum
from shared.core.names import NamesCollector
from shared.core.reach import ReachCollector
from shared.core.usage import UsageCollector
from shared.core.validation import Validator
from shared.core.views import check_view, project, select_lines


def _zero() -> Totals:
    return Totals(cost=ZERO, microsoft_total=ZERO)


@dataclass
class Tally:
    """What a file's lines counted: their Totals (the sums) and counts; one per segment, added up once the segment
    is complete."""

    rows: int = 0
    sums: Totals = field(default_factory=_zero)
    unmapped_customer_lines: int = 0
    unmapped_subscription_lines: int = 0
    first_unmapped_customer: str | None = None
    first_unmapped_subscription: str | None = None
    undated_lines: int = 0
    no_cost_lines: int = 0  # lines whose cost column is empty: not in the sums, no margin

    def add(self, other: "Tally") -> None:
        for name in ("rows", "unmapped_customer_lines", "unmapped_subscription_lines", "undated_lines",
                     "no_cost_lines"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.sums = self.sums.plus(other.sums)
        self.first_unmapped_customer = self.first_unmapped_customer or other.first_unmapped_customer
        self.first_unmapped_subscription = self.first_unmapped_subscription or other.first_unmapped_subscription


def _first_unmapped(ids: pa.Array, internal: pa.Array) -> tuple[int, str | None]:
    """How many lines have an id but no internal id, and the first such id."""
    missing = pc.and_(pc.is_valid(ids), pc.invert(pc.is_valid(internal)))
    missing = pc.and_(missing, pc.not_equal(pc.utf8_trim_whitespace(ids), ""))
    missing = pc.fill_null(missing, False)
    count = pc.sum(missing).as_py() or 0
    if not count:
        return 0, None
    return count, pc.filter(ids, missing)[0].as_py()


@dataclass
class FilePlan:
    layout: Layout
    rules: list[MarginRule]
    mappings: Mappings
    view: View = View.PARTNER
    reseller_id: str | None = None
    customer_id: str | None = None
    validator: Validator | None = None  # partner-view files only: checks Microsoft's lines in the same pass
    reach: ReachCollector | None = None  # partner-view files only: which reseller serves which customer
    names: NamesCollector | None = None  # partner-view files only: what the lines call customers, subscriptions
    usage: UsageCollector | None = None  # partner-view daily usage only: each customer's price per day (alerts)
    engine: MarginEngine = field(init=False)

    def __post_init__(self) -> None:
        self.view = check_view(self.layout, self.view)
        self.engine = MarginEngine(self.layout, self.rules, self.mappings)

    def begin_segment(self) -> None:
        """A segment (re)starts: whatever a broken attempt of it taught the validator is forgotten."""
        if self.validator is not None:
            self.validator.begin_segment()
        if self.usage is not None:
            self.usage.begin_segment()

    def end_segment(self) -> None:
        """The segment is complete: its findings and per-key state count from now on (like its totals)."""
        if self.validator is not None:
            self.validator.end_segment()
        if self.usage is not None:
            self.usage.end_segment()

    def process(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, Tally]:
        if self.validator is not None:
            self.validator.check(batch)
        if self.reach is not None:
            self.reach.add(batch)
        if self.names is not None:
            self.names.add(batch)
        undated_before = self.engine.undated_rows
        lines = select_lines(self.layout, self.engine.apply(batch), self.view, self.reseller_id, self.customer_id)
        if self.usage is not None:
            self.usage.add(lines)
        lay = self.layout
        totals = Tally(rows=lines.num_rows, undated_lines=self.engine.undated_rows - undated_before)
        if lines.num_rows:
            cost = lines.column(lay.cost_column)
            totals.no_cost_lines = cost.null_count
            totals.sums = Totals(cost=arrow_sum(cost), microsoft_total=arrow_sum(lines.column(lay.total_column)),
                                 reseller=arrow_sum(lines.column("ResellerSubtotal")),
                                 customer=arrow_sum(lines.column("CustomerSubtotal")))
            totals.unmapped_customer_lines, totals.first_unmapped_customer = _first_unmapped(
                lines.column(lay.customer_column), lines.column("CustomerInternalId"))
            totals.unmapped_subscription_lines, totals.first_unmapped_subscription = _first_unmapped(
                lines.column(lay.subscription_column), lines.column("SubscriptionInternalId"))
        return project(lay, lines, self.view), totals

    def snapshot(self) -> dict[str, Any]:
        """What decided this file's numbers, stored beside it so any version can be explained later."""
        return {**self.engine.snapshot(), "view": self.view.value, "resellerId": self.reseller_id,
                "customerId": self.customer_id}
