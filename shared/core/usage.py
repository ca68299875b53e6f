"""Consumption alerts for Azure plans, the pure part: each customer's daily usage in the customer's price, and the
budget and spike checks over it.

`UsageCollector` sums `CustomerSubtotal` per customer and `UsageDate` while a daily-rated-usage file streams (exact
integer sums in numpy, memory growing with customers × days, never with lines); a segment read again replaces its
own sums. `alerts` turns the sums and the customers' budgets into alerts whose keys make each one happen once: a
budget is exceeded once per customer and month, a spike once per customer and day.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from shared.core.money import CONTEXT, ZERO, Decimal, add, exact_sum, plain
from typing import Annotated, Iterable

import numpy as np
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


COMPACT_ROWS = 65_536  # a segment's per-line keys and amounts are summed once this many lines wait
_DAY_BITS = 24  # a (customer, day) key: the customer's index above these bits, the day's below
_LIMB = np.int64(0xFFFFFFFF)


class _Sums:
    """Exact sums of decimal128 amounts per int64 key, in numpy: each amount's unscaled 128-bit integer as four
    32-bit limbs (the top one signed), each limb summed in int64 (exact up to 2**31 amounts), and how many amounts
    (not null) each key had. Merging sorts keys (np.unique): temporaries of a few bytes per key, where Arrow's
    hash group-by of a customers × days table held ~90 MB at a million lines (measured)."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.int64)
        self.limbs = np.zeros((0, 4), np.int64)
        self.counts = np.zeros(0, np.int64)

    def merge(self, keys: np.ndarray, limbs: np.ndarray, counts: np.ndarray) -> None:
        keys = np.concatenate((self.keys, keys))
        self.keys, inverse = np.unique(keys, return_inverse=True)
        summed = np.zeros((len(self.keys), 4), np.int64)
        np.add.at(summed, inverse, np.concatenate((self.limbs, limbs)))
        self.counts = _add_counts(len(self.keys), inverse, np.concatenate((self.counts, counts)))
        self.limbs = summed

    def absorb(self, other: "_Sums") -> None:
        self.merge(other.keys, other.limbs, other.counts)


def _add_counts(n: int, inverse: np.ndarray, counts: np.ndarray) -> np.ndarray:
    out = np.zeros(n, np.int64)
    np.add.at(out, inverse, counts)
    return out


def _limbs(amounts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A decimal128 array's unscaled integers as four 32-bit limbs (int64; nulls as 0), and its validity."""
    if isinstance(amounts, pa.ChunkedArray):
        amounts = amounts.combine_chunks()
    words = np.frombuffer(amounts.buffers()[1], dtype=np.uint64)[2 * amounts.offset: 2 * (amounts.offset + len(amounts))]
    lo, hi = words[0::2], words[1::2]
    limbs = np.empty((len(amounts), 4), np.int64)
    limbs[:, 0] = (lo & np.uint64(0xFFFFFFFF)).astype(np.int64)
    limbs[:, 1] = (lo >> np.uint64(32)).astype(np.int64)
    limbs[:, 2] = (hi & np.uint64(0xFFFFFFFF)).astype(np.int64)
    limbs[:, 3] = hi.view(np.int64) >> np.int64(32)  # the sign lives in the top limb
    valid = amounts.is_valid().to_numpy(zero_copy_only=False)
    limbs[~valid] = 0
    return limbs, valid.astype(np.int64)


def _integer(limbs: np.ndarray) -> int:
    return int(limbs[0]) + (int(limbs[1]) << 32) + (int(limbs[2]) << 64) + (int(limbs[3]) << 96)


class _Index:
    """Distinct texts (customers, days, resellers) numbered in the order first seen; bounded by distinct values."""

    def __init__(self) -> None:
        self.values = pa.array([], pa.string())

    def of(self, texts: pa.Array) -> np.ndarray:
        """Each text's number (-1 for null)."""
        idx = pc.index_in(texts, value_set=self.values)
        new = pc.and_(pc.is_null(idx), pc.is_valid(texts))
        if pc.any(new).as_py():
            self.values = pa.concat_arrays([self.values, pc.unique(pc.filter(texts, new))])
            idx = pc.index_in(texts, value_set=self.values)
        return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64)


class UsageCollector:
    """Sums in numpy, never a Python object per customer and day while the file streams: per batch each line's
    (customer, day) key and amount, summed exactly once a segment's lines add up to COMPACT_ROWS or it is complete.
    Memory follows customers × days (~40 bytes each); a segment read again replaces its own sums."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._customers, self._days, self._sellers = _Index(), _Index(), _Index()
        self._done: dict[int, _Sums] = {}  # per decimal scale (one in practice)
        self._segment: dict[int, _Sums] = {}
        self._waiting: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self._pairs = np.zeros(0, np.int64)  # (customer, reseller) keys seen in complete segments
        self._segment_pairs: list[np.ndarray] = []

    def begin_segment(self) -> None:
        self._segment, self._waiting, self._segment_pairs = {}, [], []

    def end_segment(self) -> None:
        self._compact()
        for scale, sums in self._segment.items():
            self._done.setdefault(scale, _Sums()).absorb(sums)
        self._pairs = np.unique(np.concatenate([self._pairs, *self._segment_pairs]))
        self.begin_segment()

    def add(self, lines: pa.RecordBatch) -> None:
        """Lines of the view after the margins (they carry `CustomerSubtotal`)."""
        if not lines.num_rows:
            return
        lay = self.layout
        customer = self._customers.of(pc.utf8_lower(pc.utf8_trim_whitespace(_text(lines.column(lay.customer_column)))))
        day = self._days.of(pc.utf8_slice_codeunits(_text(lines.column(lay.charge_date_column)), 0, 10))
        price = lines.column(PRICE_COLUMN)
        if not pa.types.is_decimal128(price.type):
            price = pc.cast(price, pa.decimal128(38, price.type.scale))  # a wider type: refused if it does not fit
        known = (customer >= 0) & (day >= 0)
        limbs, valid = _limbs(price)
        keys = (customer << _DAY_BITS) | day
        self._waiting.append((price.type.scale, keys[known], limbs[known], valid[known]))
        if sum(len(w[1]) for w in self._waiting) >= COMPACT_ROWS:
            self._compact()
        if lay.reseller_column in lines.schema.names:
            seller = self._sellers.of(pc.utf8_trim_whitespace(_text(lines.column(lay.reseller_column))))
            both = (customer >= 0) & (seller >= 0)
            self._segment_pairs.append(np.unique((customer[both] << 32) | seller[both]))

    def _compact(self) -> None:
        for scale in {w[0] for w in self._waiting}:
            mine = [w for w in self._waiting if w[0] == scale]
            self._segment.setdefault(scale, _Sums()).merge(np.concatenate([w[1] for w in mine]),
                                                          np.concatenate([w[2] for w in mine]),
                                                          np.concatenate([w[3] for w in mine]))
        self._waiting = []
        if len(self._segment_pairs) > 1:
            self._segment_pairs = [np.unique(np.concatenate(self._segment_pairs))]

    @property
    def resellers(self) -> dict[str, set[str]]:
        """customer -> the resellers its lines name (complete segments; direct lines name none)."""
        out: dict[str, set[str]] = defaultdict(set)
        customers, sellers = self._customers.values.to_pylist(), self._sellers.values.to_pylist()
        for pair in self._pairs.tolist():
            c, r = customers[pair >> 32], sellers[pair & 0xFFFFFFFF]
            if c and r and r not in DIRECT_RESELLER_IDS:
                out[c].add(r)
        return dict(out)

    def daily(self, customers: Iterable[str] | None = None) -> dict[str, dict[date, Decimal]]:
        """customer -> day -> the customer's price of that day's usage (complete segments only); only `customers`
        when given (the budgeted ones: Python objects for those alone)."""
        out: dict[str, dict[date, Decimal]] = defaultdict(dict)
        names, days = self._customers.values.to_pylist(), self._days.values.to_pylist()
        wanted = None if customers is None else set(customers)
        for scale, sums in self._done.items():
            which = np.nonzero(sums.counts > 0)[0]
            if wanted is not None:
                mine = np.array([i for i, n in enumerate(names) if n in wanted], np.int64)
                which = which[np.isin(sums.keys[which] >> _DAY_BITS, mine)]
            for i in which.tolist():
                key = int(sums.keys[i])
                customer, when = names[key >> _DAY_BITS], _day(days[key & ((1 << _DAY_BITS) - 1)])
                if customer and when is not None:
                    amount = Decimal(_integer(sums.limbs[i])).scaleb(-scale)
                    known = out[customer].get(when)
                    out[customer][when] = amount if known is None else add(known, amount)
        return out


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
