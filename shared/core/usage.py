"""Consumption alerts for Azure plans, the pure part: each customer's daily usage in the customer's price, and the
budget and spike checks over it.

`UsageCollector` sums `CustomerSubtotal` per customer and `UsageDate` while a daily-rated-usage file streams (in
Arrow tables, exact decimals, memory growing with customers × days, never with lines); a segment read again replaces its
own sums. `alerts` turns the sums and the customers' budgets into alerts whose keys make each one happen once: a
budget is exceeded once per customer and month, a spike once per customer and day.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from shared.core.money import CONTEXT, ZERO, Decimal, add, exact_sum, plain
from typing import Annotated, Iterable

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.core.columns import Layout
from shared.core.margins import DIRECT_RESELLER_IDS
from shared.core.models import ApiModel, Money

SPIKE_WINDOW_DAYS = 7
PRICE_COLUMN = "CustomerSubtotal"


class BudgetIn(ApiModel):
    """`PUT …/customers/{customerId}/budget`: a monthly budget in the customer's price (the billing currency of its
    lines), and optionally a spike threshold: a day more than `spikePercent` % above the trailing 7-day average."""

    monthly_budget: Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=6)]
    spike_percent: Annotated[Decimal, Field(gt=0, le=10000, decimal_places=4)] | None = None


class Budget(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    tenant_id: str
    customer_id: str
    monthly_budget: Money
    spike_percent: Money | None = None


COMPACT_AFTER = 16  # a segment's per-batch sums joined into one table after this many batches


@dataclass
class UsageCollector:
    """Sums in Arrow, never a Python object per customer and day while the file streams: each batch's sums per
    (customer, day), joined into the committed table once its segment is complete (measured at a million lines,
    5,000 customers: the former dict of Decimals held ~50 MB and cost ~5 s; this table holds ~10 MB)."""

    layout: Layout
    _done: pa.Table | None = None  # c (customer), d (day text), p (the sum): one row per customer and day
    _segment: list[pa.Table] = field(default_factory=list)
    resellers: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def begin_segment(self) -> None:
        self._segment = []

    def end_segment(self) -> None:
        parts = ([self._done] if self._done is not None else []) + self._segment
        self._segment = []
        if parts:
            self._done = _sums(parts)

    def add(self, lines: pa.RecordBatch) -> None:
        """Lines of the view after the margins (they carry `CustomerSubtotal`)."""
        if not lines.num_rows:
            return
        lay = self.layout
        customer = _text(lines.column(lay.customer_column))
        day = pc.utf8_slice_codeunits(_text(lines.column(lay.charge_date_column)), 0, 10)
        price = pc.cast(lines.column(PRICE_COLUMN), pa.decimal256(76, lines.column(PRICE_COLUMN).type.scale))
        reseller = _text(lines.column(lay.reseller_column)) if lay.reseller_column in lines.schema.names \
            else pa.nulls(lines.num_rows, pa.string())
        table = pa.table({"c": pc.utf8_lower(pc.utf8_trim_whitespace(customer)), "d": day, "p": price,
                          "r": pc.utf8_trim_whitespace(reseller)})
        self._segment.append(_sums([table.select(["c", "d", "p"])]))
        if len(self._segment) > COMPACT_AFTER:
            self._segment = [_sums(self._segment)]
        for row in table.group_by(["c", "r"], use_threads=False).aggregate([]).to_pylist():
            if row["c"] and row["r"] and row["r"] not in DIRECT_RESELLER_IDS:
                self.resellers[row["c"]].add(row["r"])

    def daily(self, customers: Iterable[str] | None = None) -> dict[str, dict[date, Decimal]]:
        """customer -> day -> the customer's price of that day's usage (complete segments only); only `customers`
        when given (the budgeted ones: Python objects for those alone)."""
        out: dict[str, dict[date, Decimal]] = defaultdict(dict)
        if self._done is None:
            return out
        done = self._done
        if customers is not None:
            done = done.filter(pc.is_in(done.column("c"), value_set=pa.array(sorted(set(customers)), pa.string())))
        for customer, text, amount in zip(*(done.column(k).to_pylist() for k in ("c", "d", "p"))):
            when = _day(text)
            if customer and when is not None and amount is not None:
                days = out[customer]
                days[when] = add(days[when], amount) if when in days else amount
        return out


def _sums(parts: list[pa.Table]) -> pa.Table:
    """The exact sum per (customer, day) of these tables (decimals widened to the largest scale among them)."""
    scale = max(t.schema.field("p").type.scale for t in parts)
    kind = pa.decimal256(76, scale)
    parts = [t if t.schema.field("p").type == kind else t.set_column(2, "p", pc.cast(t.column("p"), kind))
             for t in parts]
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    summed = table.group_by(["c", "d"], use_threads=False).aggregate([("p", "sum")])
    return pa.table({"c": summed.column("c"), "d": summed.column("d"), "p": summed.column("p_sum")})


def _text(column: pa.Array) -> pa.Array:
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Alert:
    kind: str  # "budgetExceeded" | "spike"
    customer_id: str
    key: str  # what makes it once: the month, or the day
    data: dict


def alerts(budget: Budget, daily: dict[date, Decimal]) -> list[Alert]:
    """A month's usage over the budget (once per month); a day above the trailing average by more than the
    threshold (once per day; only days with 7 earlier days of data, each counted, a day without usage as 0)."""
    out: list[Alert] = []
    months: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for day, amount in daily.items():
        months[(day.year, day.month)] = add(months[(day.year, day.month)], amount)
    for (year, month), spent in sorted(months.items()):
        if spent > budget.monthly_budget:
            key = f"{year:04d}-{month:02d}"
            out.append(Alert("budgetExceeded", budget.customer_id, key, {
                "customerId": budget.customer_id, "month": key, "budget": _text_of(budget.monthly_budget),
                "spent": _text_of(spent), "over": _text_of(CONTEXT.subtract(spent, budget.monthly_budget))}))
    if budget.spike_percent is not None and daily:
        first = min(daily)
        for day in sorted(daily):
            if day - timedelta(days=SPIKE_WINDOW_DAYS) < first:
                continue
            window = [daily.get(day - timedelta(days=i), ZERO) for i in range(1, SPIKE_WINDOW_DAYS + 1)]
            average = CONTEXT.divide(exact_sum(window), SPIKE_WINDOW_DAYS)
            limit = CONTEXT.multiply(average, CONTEXT.add(1, CONTEXT.divide(budget.spike_percent, 100)))
            if average > 0 and daily[day] > limit:
                out.append(Alert("spike", budget.customer_id, day.isoformat(), {
                    "customerId": budget.customer_id, "day": day.isoformat(), "amount": _text_of(daily[day]),
                    "trailingAverage": _text_of(average.quantize(Decimal("0.000001"))),
                    "spikePercent": _text_of(budget.spike_percent)}))
    return out


def _text_of(value: Decimal) -> str:
    return plain(value)
