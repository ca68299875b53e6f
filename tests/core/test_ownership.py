"""Whose line is this (issue 14, defect 1): one function decides it for the margin engine, the reach, the views and
the access policy; a reseller's rule or internal id applies to its own lines only; direct lines are another party.

Pure: no Azurite. The property-based test runs the real policy (`Access`), the real reach collector and the real
engine over random worlds: resellers, customers (one always served by two resellers and directly), subscriptions,
rules and identifiers written by random principals, and random lines.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core.access import Access, Action, Caller, Principal, Reach, Role, Scope
from shared.core.columns import ENGINE_COLUMNS, ONETIME
from shared.core.margins import Mappings, MarginEngine, MarginRule, MarginRuleIn, overlaps
from shared.core.models import FileRecord, FileStatus, Totals, View
from shared.core.ownership import DIRECT, applies, line_owner, owned_by, owners
from shared.core.principals import PARTNER_ADMIN_APP_ROLE
from shared.core.problems import Problem
from shared.core.reach import ReachCollector, reach_of, shared_of
from shared.core.reconcile import FilePlan
from shared.core.views import removed_columns, view_batch

TENANT = "aaaaaaaa-0000-4000-8000-00000000aaaa"
RESELLERS = ["1111111", "2222222", "3333333"]
CUSTOMERS = [f"c{n}c{n}c{n}c{n}-0000-4000-8000-00000000000{n}" for n in range(1, 5)]
DIRECT_MARKS = ["", "0", "-1", None, " 0 "]  # every way Microsoft marks a direct line
PRODUCTS = ["P1", "P2"]
DAY0 = date(2026, 9, 1)
CHANGED = ("ResellerMarginPercent", "ResellerSubtotal", "CustomerMarginPercent", "CustomerSubtotal",
           "CustomerInternalId", "SubscriptionInternalId", "PONumber")


def _sub(customer: str, party: str, n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{customer}|{party}|{n}"))


def batch_of(lines: list[dict[str, Any]]) -> pa.RecordBatch:
    """Onetime lines with every Microsoft column (views project them); amounts exact decimals."""
    columns: dict[str, pa.Array] = {}
    for col in ONETIME.columns:
        values = [line.get(col) for line in lines]
        if col in ONETIME.decimal_columns:
            columns[col] = pa.array([None if v is None else Decimal(v) for v in values], pa.decimal128(20, 2))
        else:
            columns[col] = pa.array(values, pa.string())
    return pa.RecordBatch.from_pydict(columns)


def line(reseller: Any, customer: str, subscription: str, cost: str = "100.00", day: date = DAY0,
         product: str = "P1") -> dict[str, Any]:
    return {"ResellerMpnId": reseller, "CustomerId": customer, "SubscriptionId": subscription, "Subtotal": cost,
            "Total": cost, "ChargeStartDate": day.isoformat(), "ProductId": product, "ReferenceId": uuid.uuid4().hex}


def rule(level: str, target: str, percent: str, owner: str | None = None, **kw: Any) -> MarginRule:
    body = MarginRuleIn.model_validate({"level": level, "targetId": target, "percent": percent,
                                        "effectiveFrom": "2026-01-01", "ownerResellerId": owner, **kw})
    return MarginRule(id=uuid.uuid4().hex, **body.model_dump())


def reach_resolver(batch: pa.RecordBatch):
    collector = ReachCollector(ONETIME)
    collector.add(batch)
    triples = collector.valid()
    return lambda tenant_id, reseller_ids: reach_of(triples, reseller_ids)


def principal(role: Role, oid: str, resellers: list[str] = (), customers: list[str] = ()) -> Principal:
    now = DAY0
    return Principal(tenant_id=TENANT, object_id=oid, role=role, reseller_ids=list(resellers),
                     customer_ids=list(customers), created_at=now, updated_at=now)


def access_of(p: Principal | None, resolver) -> Access:
    if p is None:
        return Access(Caller(object_id="0a" * 16, tenant_id=TENANT, app_roles=frozenset({PARTNER_ADMIN_APP_ROLE})),
                      TENANT, None, resolver)
    return Access(Caller(object_id=p.object_id, tenant_id=TENANT), TENANT, p, resolver)


# ---- the one function ---------------------------------------------------------------------------------------------

def test_whose_line() -> None:
    assert [line_owner(v) for v in DIRECT_MARKS] == [DIRECT] * len(DIRECT_MARKS)
    assert line_owner(" 1234567 ") == "1234567" and line_owner(1234567) == "1234567"
    column = pa.array(["1234567", None, "-1", " 7654321", ""], pa.string())
    assert owners(column).to_pylist() == ["1234567", DIRECT, DIRECT, "7654321", DIRECT]
    assert owners(pa.array([1234567, -1, 0], pa.int64())).to_pylist() == ["1234567", DIRECT, DIRECT]
    assert owned_by(column, {"7654321"}).to_pylist() == [False, False, False, True, False]
    assert owned_by(column, {"0"}).to_pylist() == [False] * 5  # nobody owns direct lines through an id
    assert applies(None, DIRECT) and applies(None, "1234567")  # the partner's configuration: every line
    assert applies("1234567", "1234567") and not applies("1234567", DIRECT) and not applies("1234567", "7654321")
    assert not applies(DIRECT, DIRECT)


def test_direct_lines_make_a_customer_and_a_subscription_shared() -> None:
    c, s = CUSTOMERS[0], _sub(CUSTOMERS[0], "x", 0)
    triples = {(RESELLERS[0], c, s), (DIRECT, c, s), (RESELLERS[1], CUSTOMERS[1], "")}
    assert shared_of(triples) == ({c}, {s})
    assert reach_of(triples, [RESELLERS[0]]) == Reach(frozenset({c}), frozenset({s}), frozenset({c}), frozenset({s}))
    assert reach_of(triples, ["0"]) == Reach()  # the id 0 is nobody's reach


# ---- the defect, step by step -----------------------------------------------------------------------------------

def test_a_resellers_rule_never_prices_the_partners_direct_lines() -> None:
    """R1 serves C alone and prices it at −99.9999 %; later the partner sells to C directly (and R2 too): the
    direct and R2 lines keep their prices, R1's own lines keep R1's rule, and R1 may create nothing new for C."""
    c = CUSTOMERS[0]
    s1, s0, s2 = (_sub(c, p, 0) for p in (RESELLERS[0], DIRECT, RESELLERS[1]))
    before = batch_of([line(RESELLERS[0], c, s1)])
    r1 = principal(Role.RESELLER, "0f" * 16, [RESELLERS[0]])
    access = access_of(r1, reach_resolver(before))
    owner = access.owner_for("customer", c)
    assert owner == RESELLERS[0]
    assert access.allows(Action.RULES_WRITE, Scope.rule("customer", c, owner, new=True))
    cheap = rule("customer", c, "-99.9999", owner)

    later = batch_of([line(RESELLERS[0], c, s1), line("0", c, s0), line("", c, s0), line(RESELLERS[1], c, s2)])
    out = MarginEngine(ONETIME, [cheap]).apply(later)
    assert out.column("CustomerSubtotal").to_pylist() == [Decimal("0.00"), Decimal("100.00"), Decimal("100.00"),
                                                          Decimal("100.00")]
    assert out.column("CustomerMarginPercent").to_pylist()[1:] == [Decimal(0)] * 3
    # the partner's own rules still apply to every line they name, as before
    partner = rule("subscription", s0, "10")
    both = MarginEngine(ONETIME, [cheap, partner]).apply(later)
    assert both.column("CustomerSubtotal").to_pylist() == [Decimal("0.00"), Decimal("110.00"), Decimal("110.00"),
                                                           Decimal("100.00")]

    now = access_of(r1, reach_resolver(later))
    assert not now.allows(Action.RULES_WRITE, Scope.rule("customer", c, owner, new=True))  # shared now
    assert now.allows(Action.RULES_WRITE, Scope.rule("customer", c, owner))  # its own rule: it may remove it
    assert now.allows(Action.RULES_READ, Scope.rule("customer", c, owner))
    assert not now.allows(Action.RULES_READ, Scope.rule("customer", c))  # the partner's rules of C: no longer
    assert not now.allows(Action.RULES_WRITE, Scope.rule("subscription", s0, owner, new=True))  # not its line


def test_a_resellers_internal_ids_stay_on_its_own_lines() -> None:
    c = CUSTOMERS[0]
    s1, s0 = _sub(c, RESELLERS[0], 0), _sub(c, DIRECT, 0)
    mappings = Mappings(customers={c: "PARTNER-C"}, subscriptions={s0: "PARTNER-S"},
                        owned={RESELLERS[0]: Mappings(customers={c: "R1-C"}, subscriptions={s0: "R1-S0"},
                                                      po_numbers={s1: "PO-R1"})})
    out = MarginEngine(ONETIME, [], mappings).apply(batch_of([line(RESELLERS[0], c, s1), line("-1", c, s0),
                                                              line(RESELLERS[1], c, s0)]))
    assert out.column("CustomerInternalId").to_pylist() == ["R1-C", "PARTNER-C", "PARTNER-C"]
    assert out.column("SubscriptionInternalId").to_pylist() == [None, "PARTNER-S", "PARTNER-S"]
    assert out.column("PONumber").to_pylist() == ["PO-R1", None, None]


def test_rules_of_two_resellers_never_overlap_but_a_partner_rule_does() -> None:
    c = CUSTOMERS[0]
    a, b, p = rule("customer", c, "5", RESELLERS[0]), rule("customer", c, "6", RESELLERS[1]), rule("customer", c, "7")
    assert not overlaps(a, b) and overlaps(a, p) and overlaps(p, b) and overlaps(a, rule("customer", c, "8",
                                                                                         RESELLERS[0]))
    with pytest.raises(ValueError):
        rule("reseller", RESELLERS[0], "5", RESELLERS[0])  # reseller rules are the partner's
    with pytest.raises(ValueError):
        rule("customer", c, "5", "0")  # nobody owns as "direct"
