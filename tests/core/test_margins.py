"""The margin engine against its contract (shared/core/margins.py module docstring).

Property tests compare MarginEngine.apply with `reference`, a row-by-row plain-Python Decimal reading of the
contract written here independently of the engine. The worked examples are the README's examples.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.core.columns import (
    DAILY,
    ENGINE_COLUMNS,
    LAYOUTS,
    LICENSE,
    ONETIME,
    USAGE,
    Layout,
)
from shared.core.margins import (
    Mappings,
    MarginEngine,
    MarginRule,
    MarginRuleIn,
    overlaps,
)
from shared.adapters.microsoft_json import batch_from_items
from shared.core.models import Totals
from shared.core.money import arrow_sum

CUST_A = "aaaaaaaa-0000-0000-0000-000000000001"
CUST_B = "bbbbbbbb-0000-0000-0000-000000000002"
SUB_A = "5a5a5a5a-0000-0000-0000-000000000001"
SUB_B = "5b5b5b5b-0000-0000-0000-000000000002"


# ---- the reference: the contract, one row at a time -------------------------------------------------------------

def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def _rule_for(rules: list[MarginRule], level: str, target: str | None, product: str | None,
              day: date) -> MarginRule | None:
    active = [r for r in rules
              if r.level == level and target and r.target_id.lower() == target.strip().lower()
              and r.effective_from <= day and (r.effective_to is None or day < r.effective_to)]
    specific = [r for r in active if r.product_id and product and r.product_id.lower() == product.strip().lower()]
    pool = specific or [r for r in active if r.product_id is None]
    return max(pool, key=lambda r: (r.effective_from, r.id)) if pool else None


def reference(layout: Layout, rules: list[MarginRule], item: dict[str, Any]) -> tuple[Decimal, Decimal, Decimal,
                                                                                          Decimal | None, Decimal | None]:
    """(cost, r, c, ResellerSubtotal, CustomerSubtotal) for one line, straight from the contract."""
    quantum = Decimal(1).scaleb(-layout.margin_scale)
    cost_text = item.get(layout.cost_column)
    cost = Decimal(cost_text) if cost_text is not None else None
    day = _day(item.get(layout.charge_date_column))
    product = item.get(layout.product_column) if layout.product_column else None
    r = c = Decimal(0)
    if day is not None:
        reseller = (item.get(layout.reseller_column) or "").strip()
        if reseller not in ("", "0", "-1"):
            rule = _rule_for(rules, "reseller", reseller, product, day)
            r = rule.percent if rule else Decimal(0)
        rule = (_rule_for(rules, "subscription", item.get(layout.subscription_column), product, day)
                or _rule_for(rules, "customer", item.get(layout.customer_column), product, day))
        c = rule.percent if rule else Decimal(0)
    if cost is None:
        return cost, r, c, None, None
    with localcontext(prec=100):  # exact: the default 28 digits would round a 38-digit product
        reseller_subtotal = (cost * (1 + r / 100)).quantize(quantum, rounding=ROUND_HALF_UP)
        customer_subtotal = (reseller_subtotal * (1 + c / 100)).quantize(quantum, rounding=ROUND_HALF_UP)
    return cost, r, c, reseller_subtotal, customer_subtotal


# ---- strategies -------------------------------------------------------------------------------------------------

BASE = date(2026, 9, 25)
days = st.integers(0, 20).map(lambda n: BASE + timedelta(days=n))
percents = st.integers(-999_999, 10_000_000).map(lambda n: Decimal(n).scaleb(-4))
products = st.sampled_from([None, "P1", "P2"])


@st.composite
def rules_st(draw: st.DrawFn) -> list[MarginRule]:
    out = []
    for i in range(draw(st.integers(0, 12))):
        level = draw(st.sampled_from(["reseller", "customer", "subscription"]))
        target = draw(st.sampled_from({"reseller": ["1001", "1002"], "customer": [CUST_A, CUST_B],
                                       "subscription": [SUB_A, SUB_B]}[level]))
        start = draw(days)
        end = draw(st.one_of(st.none(), st.integers(1, 10).map(lambda n, s=start: s + timedelta(days=n))))
        out.append(MarginRule(id=f"rule{i}", level=level, target_id=target, percent=draw(percents),
                              effective_from=start, effective_to=end, product_id=draw(products)))
    return out


# Every amount the money type holds (shared.core.money): up to 18 integer digits and 20 places.
costs = st.integers(0, 20).flatmap(lambda places: st.one_of(
    st.integers(-10**15, 10**15), st.integers(-(10**(18 + places)) + 1, 10**(18 + places) - 1)).map(
        lambda n: str(Decimal(f"{n}E-{places}"))))  # exact (scaleb would round past 28 digits)
date_texts = st.one_of(days.map(lambda d: f"{d.isoformat()}T00:00:00Z"), days.map(date.isoformat),
                       st.sampled_from([None, "", "not a date"]))


@st.composite
def item_st(draw: st.DrawFn, layout: Layout) -> dict[str, Any]:
    item = {
        layout.cost_column: draw(st.one_of(costs, st.just(None))) if draw(st.integers(0, 20)) == 0 else draw(costs),
        layout.charge_date_column: draw(date_texts),
        layout.reseller_column: draw(st.sampled_from(["1001", "1002", "1003", "", "0", "-1", None, " 1001"])),
        layout.customer_column: draw(st.sampled_from([CUST_A, CUST_A.upper(), CUST_B, None])),
        layout.subscription_column: draw(st.sampled_from([SUB_A, SUB_B, SUB_B.upper(), None])),
    }
    if layout.product_column:
        item[layout.product_column] = draw(st.sampled_from(["P1", "p2", "P3", None]))
    return item


@st.composite
def case_st(draw: st.DrawFn) -> tuple[Layout, list[MarginRule], list[dict[str, Any]]]:
    layout = draw(st.sampled_from(list(LAYOUTS.values())))
    return layout, draw(rules_st()), draw(st.lists(item_st(layout), min_size=0, max_size=40))


# ---- properties -------------------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case_st())
def test_apply_matches_reference(case: tuple[Layout, list[MarginRule], list[dict[str, Any]]]) -> None:
    layout, rules, items = case
    batch = batch_from_items(layout, items)
    out = MarginEngine(layout, rules).apply(batch)
    assert out.schema.names == [*batch.schema.names, *ENGINE_COLUMNS]
    assert out.column("ResellerSubtotal").type == pa.decimal128(38, layout.margin_scale)
    got = out.to_pydict()
    for i, item in enumerate(items):
        _, r, c, rs, cs = reference(layout, rules, item)
        assert got["ResellerMarginPercent"][i] == r, item
        assert got["CustomerMarginPercent"][i] == c, item
        assert got["ResellerSubtotal"][i] == rs, item
        assert got["CustomerSubtotal"][i] == cs, item
    refs = [reference(layout, rules, it) for it in items]
    with localcontext(prec=100):
        assert arrow_sum(out.column(layout.cost_column)) == sum((x[0] for x in refs if x[0] is not None), Decimal(0))
        assert arrow_sum(out.column("ResellerSubtotal")) == sum((x[3] for x in refs if x[3] is not None), Decimal(0))
        assert arrow_sum(out.column("CustomerSubtotal")) == sum((x[4] for x in refs if x[4] is not None), Decimal(0))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 29), st.integers(-10**12, 10**12)), min_size=1, max_size=60))
def test_many_places_take_the_exact_path(rows: list[tuple[int, int]]) -> None:
    """Costs with 12-20 places (20 is beyond the decimal128 fast path) are still exact."""
    rule = MarginRule(id="r", level="reseller", target_id="1001", percent=Decimal("12.3456"),
                      effective_from=date(2026, 1, 1))
    items = [{"Subtotal": str(Decimal(n).scaleb(-(20 - k % 9))), "ChargeStartDate": "2026-10-01",
              "ResellerMpnId": "1001", "CustomerId": CUST_A, "SubscriptionId": SUB_A} for k, n in rows]
    out = MarginEngine(ONETIME, [rule]).apply(batch_from_items(ONETIME, items)).to_pydict()
    for i, item in enumerate(items):
        assert out["ResellerSubtotal"][i] == reference(ONETIME, [rule], item)[3]


# ---- worked examples (README) -----------------------------------------------------------------------------------

def _line(layout: Layout, cost: str, charge_date: str = "2026-10-01T00:00:00Z", reseller: str | None = "1001",
          customer: str = CUST_A, subscription: str = SUB_A, product: str | None = "P1") -> dict[str, Any]:
    item = {layout.cost_column: cost, layout.charge_date_column: charge_date, layout.reseller_column: reseller,
            layout.customer_column: customer, layout.subscription_column: subscription}
    if layout.product_column:
        item[layout.product_column] = product
    return item


def _rule(level: str, target: str, percent: str, start: date = date(2026, 1, 1), end: date | None = None,
          product: str | None = None, rule_id: str | None = None) -> MarginRule:
    return MarginRule(id=rule_id or f"{level}-{target}-{product}-{start}", level=level, target_id=target,
                      percent=Decimal(percent), effective_from=start, effective_to=end, product_id=product)


def _run(layout: Layout, rules: list[MarginRule], *items: dict[str, Any]) -> dict[str, list[Any]]:
    return MarginEngine(layout, rules).apply(batch_from_items(layout, items)).to_pydict()


def test_example_reseller_then_customer() -> None:
    """Cost 100.00, reseller 10 % -> 110.00; customer 5 % on top -> 115.50."""
    out = _run(ONETIME, [_rule("reseller", "1001", "10"), _rule("customer", CUST_A, "5")], _line(ONETIME, "100.00"))
    assert out["ResellerSubtotal"] == [Decimal("110.00")]
    assert out["CustomerSubtotal"] == [Decimal("115.50")]
    assert out["ResellerMarginPercent"] == [Decimal(10)] and out["CustomerMarginPercent"] == [Decimal(5)]


def test_example_credit() -> None:
    """A credit of -33.33 with 7.5 %: -33.33 × 1.075 = -35.82975 -> -35.83."""
    out = _run(LICENSE, [_rule("reseller", "1001", "7.5")], _line(LICENSE, "-33.33"))
    assert out["ResellerSubtotal"] == [Decimal("-35.83")]
    assert out["CustomerSubtotal"] == [Decimal("-35.83")]


def test_example_half_away_from_zero() -> None:
    """A tie rounds away from zero: 1.00 × 1.005 = 1.005 -> 1.01, and the credit -1.005 -> -1.01 (not -1.00)."""
    rules = [_rule("reseller", "1001", "0.5")]
    out = _run(ONETIME, rules, _line(ONETIME, "1.00"), _line(ONETIME, "-1.00"))
    assert out["ResellerSubtotal"] == [Decimal("1.01"), Decimal("-1.01")]


def test_example_customer_price_is_built_on_the_rounded_reseller_price() -> None:
    """10.00 with 0.05 % -> 10.005 -> 10.01; then 0.05 % of 10.01 -> 10.015005 -> 10.02
    (10.0100025 -> 10.01 had the unrounded 10.005 been used)."""
    rules = [_rule("reseller", "1001", "0.05"), _rule("subscription", SUB_A, "0.05")]
    out = _run(ONETIME, rules, _line(ONETIME, "10.00"))
    assert out["ResellerSubtotal"] == [Decimal("10.01")]
    assert out["CustomerSubtotal"] == [Decimal("10.02")]


def test_example_daily_usage_six_places() -> None:
    """Daily rated usage keeps 6 places: 0.490235765325545 × 1.125 = 0.551515236... -> 0.551515."""
    out = _run(DAILY, [_rule("reseller", "1001", "12.5")], _line(DAILY, "0.490235765325545", "2026-10-01"))
    assert out["ResellerSubtotal"] == [Decimal("0.551515")]
    assert out["CustomerSubtotal"] == [Decimal("0.551515")]


def test_example_rule_ending_the_day_before_does_not_apply() -> None:
    """effectiveTo is exclusive: a rule to 2026-10-01 covers 30 September, not a charge on 1 October."""
    rules = [_rule("reseller", "1001", "10", end=date(2026, 10, 1))]
    out = _run(ONETIME, rules, _line(ONETIME, "100.00", "2026-10-01T00:00:00Z"),
               _line(ONETIME, "100.00", "2026-09-30T00:00:00Z"))
    assert out["ResellerSubtotal"] == [Decimal("100.00"), Decimal("110.00")]
    assert out["ResellerMarginPercent"] == [Decimal(0), Decimal(10)]


def test_example_precedence() -> None:
    """Subscription beats customer; within a level a product rule beats a general one."""
    rules = [_rule("customer", CUST_A, "5"), _rule("customer", CUST_A, "8", product="P1"),
             _rule("subscription", SUB_B, "3")]
    out = _run(ONETIME, rules, _line(ONETIME, "100.00", product="P1"), _line(ONETIME, "100.00", product="P2"),
               _line(ONETIME, "100.00", subscription=SUB_B, product="P1"))
    assert out["CustomerMarginPercent"] == [Decimal(8), Decimal(5), Decimal(3)]
    assert out["CustomerSubtotal"] == [Decimal("108.00"), Decimal("105.00"), Decimal("103.00")]


def test_example_direct_customers_get_no_reseller_margin() -> None:
    rules = [_rule("reseller", "1001", "10"), _rule("customer", CUST_A, "5")]
    lines = [_line(USAGE, "100.00", reseller=r) for r in (None, "", "0", "-1")]
    out = _run(USAGE, rules, *lines)
    assert out["ResellerMarginPercent"] == [Decimal(0)] * 4
    assert out["ResellerSubtotal"] == [Decimal("100.00")] * 4
    assert out["CustomerSubtotal"] == [Decimal("105.00")] * 4


def test_undated_lines_get_no_rule_and_are_counted() -> None:
    """A null or unparseable charge date applies no rule (subtotals = cost) and is counted for the caller."""
    engine = MarginEngine(ONETIME, [_rule("reseller", "1001", "10"), _rule("customer", CUST_A, "5")])
    out = engine.apply(batch_from_items(ONETIME, [_line(ONETIME, "100.00", charge_date=t)
                                                  for t in (None, "31/12/2026", "2026-10-01")])).to_pydict()
    assert out["ResellerSubtotal"] == [Decimal("100.00"), Decimal("100.00"), Decimal("110.00")]
    assert out["CustomerSubtotal"] == [Decimal("100.00"), Decimal("100.00"), Decimal("115.50")]
    assert engine.undated_rows == 2


def test_mappings_and_snapshot() -> None:
    maps = Mappings(resellers={"1001": "RES-1"}, customers={CUST_A.upper(): "CUS-A"},
                    subscriptions={SUB_A: "SUB-1"}, po_numbers={SUB_A: "PO-77"})
    rule = _rule("reseller", "1001", "10")
    engine = MarginEngine(LICENSE, [rule], maps)
    out = engine.apply(batch_from_items(LICENSE, [_line(LICENSE, "1"), _line(LICENSE, "1", reseller="0",
                                                                                customer=CUST_B, subscription=SUB_B)]))
    d = out.to_pydict()
    assert d["ResellerInternalId"] == ["RES-1", None]
    assert d["CustomerInternalId"] == ["CUS-A", None]
    assert d["SubscriptionInternalId"] == ["SUB-1", None]
    assert d["PONumber"] == ["PO-77", None]
    snap = engine.snapshot()
    assert snap["rules"][0]["percent"] == "10" and snap["rules"][0]["targetId"] == "1001"
    assert snap["mappings"]["poNumbers"] == {SUB_A: "PO-77"}
    import json
    json.dumps(snap)  # JSON-able as is


def test_empty_batch_and_totals_add() -> None:
    out = MarginEngine(DAILY, []).apply(batch_from_items(DAILY, []))
    assert out.num_rows == 0 and out.schema.names[-8:] == list(ENGINE_COLUMNS)
    assert arrow_sum(out.column("CustomerSubtotal")) == 0
    big = Decimal("999999999999999999.99999999999999999999")  # 38 digits: the default context would round the sum
    a = Totals(cost=big, microsoft_total=None, reseller=Decimal(2), customer=Decimal(3))
    assert a.plus(a) == Totals(cost=Decimal("1999999999999999999.99999999999999999998"), microsoft_total=None,
                               reseller=Decimal(4), customer=Decimal(6))


def test_apply_refuses_a_batch_that_already_has_engine_columns() -> None:
    engine = MarginEngine(ONETIME, [])
    out = engine.apply(batch_from_items(ONETIME, [_line(ONETIME, "1")]))
    with pytest.raises(ValueError):
        engine.apply(out)


# ---- models -----------------------------------------------------------------------------------------------------

def _rule_in(**changes: Any) -> dict[str, Any]:
    body = {"level": "customer", "targetId": CUST_A, "percent": "12.5", "effectiveFrom": "2026-10-01"}
    body.update(changes)
    return body


@pytest.mark.parametrize("percent", ["-100", "-150", "1000.0001", "12.34567", "abc", "NaN", "Infinity", True, None])
def test_bad_percent_is_refused(percent: Any) -> None:
    with pytest.raises(ValidationError):
        MarginRuleIn.model_validate(_rule_in(percent=percent))


@pytest.mark.parametrize("percent, expected", [("12.5", "12.5"), (12.345, "12.345"), (10, "10"), ("1E+1", "10"),
                                               ("-99.9999", "-99.9999"), ("1000", "1000"), ("7.50000", "7.5"),
                                               (0.1, "0.1")])
def test_percent_is_exact(percent: Any, expected: str) -> None:
    rule = MarginRuleIn.model_validate(_rule_in(percent=percent))
    assert rule.percent == Decimal(expected)
    assert rule.model_dump(mode="json", by_alias=True)["percent"] == expected


def test_percent_from_json_number_is_exact() -> None:
    rule = MarginRuleIn.model_validate_json('{"level": "reseller", "targetId": "1001", "percent": 0.1, '
                                            '"effectiveFrom": "2026-10-01"}')
    assert rule.percent == Decimal("0.1")


@pytest.mark.parametrize("end", ["2026-10-01", "2026-09-30"])
def test_effective_to_must_follow_effective_from(end: str) -> None:
    with pytest.raises(ValidationError):
        MarginRuleIn.model_validate(_rule_in(effectiveTo=end))


@pytest.mark.parametrize("changes", [{"unknown": 1}, {"level": "partner"}, {"level": "reseller", "targetId": "0"},
                                     {"level": "reseller", "targetId": "abc"}, {"targetId": ""}])
def test_bad_rule_bodies_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MarginRuleIn.model_validate(_rule_in(**changes))


def test_overlaps() -> None:
    a = _rule("customer", CUST_A, "5", date(2026, 1, 1), date(2026, 7, 1))
    assert overlaps(a, _rule("customer", CUST_A.upper(), "6", date(2026, 6, 30)))
    assert not overlaps(a, _rule("customer", CUST_A, "6", date(2026, 7, 1)))  # effectiveTo is exclusive
    assert not overlaps(a, _rule("customer", CUST_A, "6", date(2026, 3, 1), product="P1"))  # product rule differs
    assert not overlaps(a, _rule("customer", CUST_B, "6", date(2026, 3, 1)))
    assert not overlaps(a, _rule("subscription", CUST_A, "6", date(2026, 3, 1)))
    assert overlaps(_rule("reseller", "1001", "1"), _rule("reseller", "1001", "2", date(2030, 1, 1)))
    assert overlaps(MarginRuleIn.model_validate(_rule_in(effectiveFrom="2025-12-01")), a)
