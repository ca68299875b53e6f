"""The margin engine: what a reseller and a customer pay, line by line, computed exactly.

Contract (the numbers every file promises; tests/test_margins.py checks it against a plain-Python reference):

- The cost of a line is the layout's ``cost_column`` (``Subtotal`` onetime/license, ``PretaxCharges`` usage,
  ``BillingPreTaxTotal`` dailyratedusage).
- ``ResellerSubtotal = round(cost × (1 + r/100))`` and ``CustomerSubtotal = round(ResellerSubtotal × (1 + c/100))``:
  the customer's price is built on the *rounded* reseller price, so a reseller can re-check it from its own file.
- ``round`` is **half-up in the commercial sense: half away from zero** (Python's ``ROUND_HALF_UP``, Arrow's
  ``round_mode="half_towards_infinity"``), to ``layout.margin_scale`` places (2; 6 for dailyratedusage). Credits
  are negative and round symmetrically: 1.005 -> 1.01 and -1.005 -> -1.01. (Arrow's own ``"half_up"`` rounds
  toward +infinity, which would give -1.00; it is deliberately not used.)
- ``r`` is the reseller rule's percent for the line's reseller id (``layout.reseller_column``); 0 for direct
  customers (reseller id empty, null, "0" or "-1") or when no rule applies.
- ``c`` is the subscription rule's percent (``layout.subscription_column``), else the customer rule's
  (``layout.customer_column``), else 0. Within a level a rule with a productId matching ``layout.product_column``
  beats one without (usage files have no product column, so only general rules apply there).
- A rule applies when ``effectiveFrom <= charge date < effectiveTo`` (``effectiveTo`` optional and exclusive), the
  charge date being the date part of ``layout.charge_date_column``. Should two rules of the same level, target and
  product both be active (storage refuses that, see ``overlaps``), the later ``effectiveFrom`` wins, then the id.
- A line whose charge date is null or unparseable gets **no rule** (percent 0 at both levels, subtotals equal the
  cost): guessing a date could bill a price that was never agreed. ``MarginEngine.undated_rows`` counts such lines
  so the caller can report them.
- The percent written is the percent actually applied (0 when no rule). Ids and matching are case-insensitive.
- No floats anywhere: percents are Decimal (at most 4 places, -100 < percent <= 1000) and the arithmetic is Arrow
  decimal arithmetic (decimal256 for the exact product).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    model_validator,
)

from shared.core.columns import ENGINE_COLUMNS, Layout
from shared.core.models import ApiModel

PERCENT_PLACES = 4
PERCENT_MIN = Decimal(-100)  # exclusive: -100 % would make the line free
PERCENT_MAX = Decimal(1000)  # inclusive
PERCENT_TYPE = pa.decimal128(9, PERCENT_PLACES)
_FACTOR_SCALE = PERCENT_PLACES + 2  # 1 + p/100 is exact with 6 places
_FACTOR_TYPE = pa.decimal256(10, _FACTOR_SCALE)
_FACTOR_TYPE_128 = pa.decimal128(8, _FACTOR_SCALE)  # 1 + p/100 <= 11
ROUND_MODE = "half_towards_infinity"  # Arrow's name for half away from zero (= decimal.ROUND_HALF_UP)
DIRECT_RESELLER_IDS = frozenset({"", "0", "-1"})


def subtotal_type(layout: Layout) -> pa.DataType:
    return pa.decimal128(38, layout.margin_scale)


# ---- rules -----------------------------------------------------------------------------------------------------

class MarginLevel(StrEnum):
    RESELLER = "reseller"
    CUSTOMER = "customer"
    SUBSCRIPTION = "subscription"


def _percent_in(value: Any) -> Any:
    """Numbers become Decimal through their text, never through binary float arithmetic."""
    if isinstance(value, bool):
        raise ValueError("percent must be a number or a decimal string")  # noqa: TRY004 (pydantic wants ValueError)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("percent must be finite")
        return Decimal(str(value))  # str(12.345) == "12.345": the shortest text that reads back as that number
    if isinstance(value, str):
        return value.strip()
    return value


def _percent_check(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("percent must be finite")
    if not (PERCENT_MIN < value <= PERCENT_MAX):
        raise ValueError(f"percent must be greater than {PERCENT_MIN} and at most {PERCENT_MAX}")
    if value != value.quantize(Decimal(1).scaleb(-PERCENT_PLACES)):
        raise ValueError(f"percent has more than {PERCENT_PLACES} decimal places")
    if value == 0:
        return Decimal(0)
    return Decimal(format(value.normalize(), "f"))  # 12.50 -> 12.5, 1E+1 -> 10: stable JSON text


MarginPercent = Annotated[Decimal, BeforeValidator(_percent_in), AfterValidator(_percent_check)]
TargetId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
ProductId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:/-]+$")]


class _RuleFields(ApiModel):
    level: MarginLevel
    target_id: TargetId = Field(description="Reseller MPN id, customer id or subscription id, per level.")
    percent: MarginPercent
    effective_from: date
    effective_to: date | None = Field(default=None, description="Exclusive; open-ended when absent.")
    product_id: ProductId | None = None

    @model_validator(mode="after")
    def _check(self) -> _RuleFields:
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError("effectiveTo must be after effectiveFrom (it is exclusive)")
        if self.level == MarginLevel.RESELLER and (not self.target_id.isdigit() or self.target_id == "0"):
            raise ValueError("a reseller rule's targetId is the reseller's MPN id (digits, not 0)")
        return self


class MarginRuleIn(_RuleFields):
    """A rule as a request body (camelCase, unknown fields refused)."""


class MarginRule(_RuleFields):
    """A stored rule."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=100)]

    def active_on(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day < self.effective_to)


class _RuleLike(Protocol):
    level: MarginLevel
    target_id: str
    product_id: str | None
    effective_from: date
    effective_to: date | None


def overlaps(a: _RuleLike, b: _RuleLike) -> bool:
    """Would both rules compete for the same line on some day? (Same level, target and product; ranges meet.)"""
    if a.level != b.level or a.target_id.lower() != b.target_id.lower():
        return False
    if (a.product_id or "").lower() != (b.product_id or "").lower():
        return False
    a_before_b_ends = b.effective_to is None or a.effective_from < b.effective_to
    b_before_a_ends = a.effective_to is None or b.effective_from < a.effective_to
    return a_before_b_ends and b_before_a_ends


# ---- mappings --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mappings:
    """The partner's own ids for Microsoft's: written on every line so files join with the partner's systems."""

    resellers: dict[str, str] = field(default_factory=dict)  # reseller MPN id -> internal id
    customers: dict[str, str] = field(default_factory=dict)  # customer id -> internal id
    subscriptions: dict[str, str] = field(default_factory=dict)  # subscription id -> internal id
    po_numbers: dict[str, str] = field(default_factory=dict)  # subscription id -> PO number

    def snapshot(self) -> dict[str, dict[str, str]]:
        return {"resellers": dict(sorted(self.resellers.items())),
                "customers": dict(sorted(self.customers.items())),
                "subscriptions": dict(sorted(self.subscriptions.items())),
                "poNumbers": dict(sorted(self.po_numbers.items()))}


# ---- vectorised helpers ----------------------------------------------------------------------------------------

@dataclass
class _Encoded:
    """A column as (row -> index, distinct values); nulls are one more distinct value (None)."""

    indices: pa.Array  # int32, never null
    values: list[Any]

    @property
    def size(self) -> int:
        return max(len(self.values), 1)


def _encode(arr: pa.Array) -> _Encoded:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.string())
    enc = pc.dictionary_encode(arr, null_encoding="encode")
    return _Encoded(enc.indices.cast(pa.int32()), enc.dictionary.to_pylist())


def _group(parts: list[_Encoded]) -> tuple[pa.Array, list[tuple[int, ...]]]:
    """Rows -> dense group number, and for each group the index into every part: the distinct combinations."""
    group = parts[0].indices.cast(pa.int64())
    combos: list[tuple[int, ...]] = [(i,) for i in range(parts[0].size)]
    for part in parts[1:]:
        codes = pc.add(pc.multiply(group, pa.scalar(part.size, pa.int64())), part.indices.cast(pa.int64()))
        uniq = pc.unique(codes)
        group = pc.index_in(codes, value_set=uniq).cast(pa.int64())
        combos = [(*combos[u // part.size], u % part.size) for u in uniq.to_pylist()]
    if len(parts) == 1:  # keep only combinations that occur
        uniq = pc.unique(group)
        combos = [combos[u] for u in uniq.to_pylist()]
        group = pc.index_in(group, value_set=uniq).cast(pa.int64())
    return group, combos


def _norm(value: Any) -> str:
    return "" if value is None else str(value).strip().lower()


def _parse_day(text: Any) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(str(text).strip()[:10])
    except ValueError:
        return None


def _factor(percent: Decimal) -> Decimal:
    return ((Decimal(100) + percent) / Decimal(100)).quantize(Decimal(1).scaleb(-_FACTOR_SCALE))


def _apply_factor(amount: pa.Array, factors: pa.Array, scale: int) -> pa.Array:
    """round(amount × factor) to `scale` places, half away from zero, exactly.

    Fast path: amounts with at most 19 places fit decimal128(29, <=19), and × decimal(8, 6) stays within
    decimal128's 38 digits. Otherwise (more places) the product is taken in decimal256. Both are exact.
    """
    try:
        narrow = pc.cast(amount, pa.decimal128(29, min(amount.type.scale, 19)))  # safe: raises, never drops
        product = pc.multiply(narrow, factors)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        wide = pc.cast(amount, pa.decimal256(amount.type.precision, amount.type.scale))
        product = pc.multiply(wide, pc.cast(factors, _FACTOR_TYPE))
    rounded = pc.round(product, ndigits=scale, round_mode=ROUND_MODE)
    return pc.cast(rounded, pa.decimal128(38, scale))


def _mapped(enc: _Encoded, mapping: dict[str, str]) -> pa.Array:
    values = pa.array([mapping.get(_norm(v)) if v is not None else None for v in enc.values], pa.string())
    return values.take(enc.indices) if len(values) else pa.nulls(len(enc.indices), pa.string())


# ---- the engine ------------------------------------------------------------------------------------------------

class MarginEngine:
    """Applies one set of rules and mappings to batches of one file type (see the module docstring)."""

    def __init__(self, layout: Layout, rules: Iterable[MarginRule], mappings: Mappings | None = None) -> None:
        self.layout = layout
        self.rules = sorted(rules, key=lambda r: r.id)
        self.mappings = mappings or Mappings()
        self.undated_rows = 0
        self._by_target: dict[tuple[MarginLevel, str], list[MarginRule]] = {}
        for rule in self.rules:
            self._by_target.setdefault((rule.level, rule.target_id.lower()), []).append(rule)
        self._boundaries = sorted({d for r in self.rules for d in (r.effective_from, r.effective_to) if d})
        self._products_reseller = {r.product_id.lower() for r in self.rules
                                   if r.product_id and r.level == MarginLevel.RESELLER}
        self._products_customer = {r.product_id.lower() for r in self.rules
                                   if r.product_id and r.level != MarginLevel.RESELLER}
        self._maps = {name: {k.strip().lower(): v for k, v in m.items()}
                      for name, m in (("resellers", self.mappings.resellers),
                                      ("customers", self.mappings.customers),
                                      ("subscriptions", self.mappings.subscriptions),
                                      ("po", self.mappings.po_numbers))}

    # -- rule resolution, per distinct combination --

    def _pick(self, level: MarginLevel, target: str, product: str, day: date) -> MarginRule | None:
        candidates = [r for r in self._by_target.get((level, target), ()) if r.active_on(day)]
        specific = [r for r in candidates if r.product_id is not None and r.product_id.lower() == product]
        pool = specific or [r for r in candidates if r.product_id is None]
        return max(pool, key=lambda r: (r.effective_from, r.id)) if pool else None

    def reseller_percent(self, reseller_id: str | None, product_id: str | None, day: date | None) -> Decimal:
        """r for one line (the engine calls this once per distinct combination, never per row)."""
        rid = _norm(reseller_id)
        if day is None or rid in DIRECT_RESELLER_IDS:
            return Decimal(0)
        rule = self._pick(MarginLevel.RESELLER, rid, _norm(product_id), day)
        return rule.percent if rule else Decimal(0)

    def customer_percent(self, customer_id: str | None, subscription_id: str | None, product_id: str | None,
                         day: date | None) -> Decimal:
        """c for one line: subscription rule, else customer rule, else 0."""
        if day is None:
            return Decimal(0)
        product = _norm(product_id)
        for level, target in ((MarginLevel.SUBSCRIPTION, _norm(subscription_id)),
                              (MarginLevel.CUSTOMER, _norm(customer_id))):
            if target:
                rule = self._pick(level, target, product, day)
                if rule:
                    return rule.percent
        return Decimal(0)

    # -- collapsing distinct values to what rules can tell apart --

    def _target(self, level: MarginLevel, value: Any) -> str:
        """The normalised id if some rule of `level` names it, else "" (no rule can apply)."""
        v = _norm(value)
        return v if (level, v) in self._by_target else ""

    def _product(self, level: MarginLevel | None, value: Any) -> str:
        v = _norm(value)
        known = self._products_reseller if level == MarginLevel.RESELLER else self._products_customer
        return v if v in known else ""

    def _epoch(self, day: date | None) -> int:
        """Days between the same two rule boundaries see the same rules; -1 for no (usable) date."""
        return -1 if day is None else bisect_right(self._boundaries, day)

    def _epoch_day(self, epoch: int) -> date | None:
        """A representative day of an epoch (its first boundary, or date.min before the first)."""
        if epoch < 0:
            return None
        return date.min if epoch == 0 else self._boundaries[epoch - 1]

    @staticmethod
    def _relevant(enc: _Encoded, keys: list[Any]) -> _Encoded:
        """Re-encode a column by a per-distinct-value key (many values collapse to one)."""
        distinct: dict[Any, int] = {}
        codes = [distinct.setdefault(k, len(distinct)) for k in keys] or [0]
        indices = pa.array(codes, pa.int32()).take(enc.indices) if len(enc.indices) else enc.indices
        return _Encoded(indices, list(distinct) or [None])

    # -- batches --

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch with ENGINE_COLUMNS appended (after every column it already has)."""
        lay = self.layout
        present = set(batch.schema.names)
        if present & set(ENGINE_COLUMNS):
            raise ValueError("This batch already has the engine's columns.")
        missing = {lay.cost_column, lay.charge_date_column, lay.reseller_column, lay.customer_column,
                   lay.subscription_column} - present
        if missing:
            raise ValueError(f"The batch lacks the columns {sorted(missing)}.")
        n = batch.num_rows

        def col(name: str | None) -> _Encoded:
            if name is None or name not in present:
                return _Encoded(pa.repeat(pa.scalar(0, pa.int32()), n), [None])
            return _encode(batch.column(name))

        reseller, customer = col(lay.reseller_column), col(lay.customer_column)
        subscription, product = col(lay.subscription_column), col(lay.product_column)
        date_text = batch.column(lay.charge_date_column)
        if not pa.types.is_string(date_text.type):
            date_text = pc.cast(date_text, pa.string())
        day = _encode(pc.utf8_slice_codeunits(date_text, 0, 10))
        days = [_parse_day(v) for v in day.values]
        undated = [i for i, d in enumerate(days) if d is None]
        if undated and n:
            self.undated_rows += pc.sum(pc.is_in(day.indices, value_set=pa.array(undated, pa.int32()))).as_py() or 0

        # Rules only change at their boundary dates and only name some targets and products: collapse each
        # distinct value to what can make a difference, then resolve once per distinct combination.
        epoch = self._relevant(day, [self._epoch(d) for d in days])
        r_reseller = self._relevant(reseller, [self._target(MarginLevel.RESELLER, v) for v in reseller.values])
        r_product = self._relevant(product, [self._product(MarginLevel.RESELLER, v) for v in product.values])
        r_group, r_combos = _group([r_reseller, r_product, epoch])
        r_percents = [self.reseller_percent(r_reseller.values[a], r_product.values[b],
                                            self._epoch_day(epoch.values[e])) for a, b, e in r_combos]
        c_customer = self._relevant(customer, [self._target(MarginLevel.CUSTOMER, v) for v in customer.values])
        c_sub = self._relevant(subscription,
                               [self._target(MarginLevel.SUBSCRIPTION, v) for v in subscription.values])
        c_product = self._relevant(product, [self._product(None, v) for v in product.values])
        c_group, c_combos = _group([c_customer, c_sub, c_product, epoch])
        c_percents = [self.customer_percent(c_customer.values[a], c_sub.values[s], c_product.values[b],
                                            self._epoch_day(epoch.values[e])) for a, s, b, e in c_combos]

        r_pct = pa.array(r_percents, PERCENT_TYPE).take(r_group)
        c_pct = pa.array(c_percents, PERCENT_TYPE).take(c_group)
        r_factor = pa.array([_factor(p) for p in r_percents], _FACTOR_TYPE_128).take(r_group)
        c_factor = pa.array([_factor(p) for p in c_percents], _FACTOR_TYPE_128).take(c_group)

        cost = batch.column(lay.cost_column)
        if not pa.types.is_decimal(cost.type):
            raise ValueError(f"{lay.cost_column} must be a decimal column, not {cost.type}.")
        reseller_subtotal = _apply_factor(cost, r_factor, lay.margin_scale)
        customer_subtotal = _apply_factor(reseller_subtotal, c_factor, lay.margin_scale)

        arrays = [
            _mapped(reseller, {k: v for k, v in self._maps["resellers"].items() if k not in DIRECT_RESELLER_IDS}),
            _mapped(customer, self._maps["customers"]),
            _mapped(subscription, self._maps["subscriptions"]),
            _mapped(subscription, self._maps["po"]),
            r_pct, reseller_subtotal, c_pct, customer_subtotal,
        ]
        return pa.RecordBatch.from_arrays([*batch.columns, *arrays], names=[*batch.schema.names, *ENGINE_COLUMNS])

    def snapshot(self) -> dict[str, Any]:
        """Everything that decided the numbers, as JSON: stored with a file version so it can be explained later."""
        return {
            "fileType": self.layout.file_type.value,
            "costColumn": self.layout.cost_column,
            "marginScale": self.layout.margin_scale,
            "rounding": "half away from zero (ROUND_HALF_UP); CustomerSubtotal from the rounded ResellerSubtotal",
            "rules": [r.model_dump(mode="json", by_alias=True) for r in self.rules],
            "mappings": self.mappings.snapshot(),
        }


# ---- totals ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MarginTotals:
    """Sums over lines; add them across batches."""

    cost: Decimal = Decimal(0)
    reseller_subtotal: Decimal = Decimal(0)
    customer_subtotal: Decimal = Decimal(0)

    def __add__(self, other: MarginTotals) -> MarginTotals:
        return MarginTotals(self.cost + other.cost, self.reseller_subtotal + other.reseller_subtotal,
                            self.customer_subtotal + other.customer_subtotal)


def decimal_sum(arr: pa.Array | pa.ChunkedArray) -> Decimal:
    """Exact sum of a decimal column (widened to decimal256 so millions of lines cannot overflow); nulls skip."""
    wide = pc.cast(arr, pa.decimal256(76, arr.type.scale))
    total = pc.sum(wide).as_py()
    return Decimal(0) if total is None else total


def batch_totals(layout: Layout, batch: pa.RecordBatch) -> MarginTotals:
    """Cost, ResellerSubtotal and CustomerSubtotal sums of a batch the engine has filled."""
    return MarginTotals(decimal_sum(batch.column(layout.cost_column)),
                        decimal_sum(batch.column("ResellerSubtotal")),
                        decimal_sum(batch.column("CustomerSubtotal")))
