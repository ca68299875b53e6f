"""Property (issue 14): over random worlds, no principal's permitted write changes any amount or internal id on a
line outside its reach, and every principal's permitted reads hold only its lines and its figures.

A world: two or three resellers; customers served by random parties, the first always by two resellers *and*
directly; one or two subscriptions per customer and party, sometimes one showing up under a second party; random
lines (direct lines marked every way Microsoft marks them). Writes (margin rules at every level, internal ids) by
random principals (the partner, each reseller, a reseller with two ids, each customer), with owners requested at
random, checked by the real policy (`Access`) against the reach learned from the lines seen *so far* (a prefix:
customers become shared later); amounts are then computed by the real engine over *all* lines. Pure, seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.core.access import Access, Action, Principal, Role, Scope
from shared.core.columns import ONETIME
from shared.core.margins import Mappings, MarginEngine, MarginRule, MarginRuleIn, overlaps
from shared.core.money import arrow_sum as decimal_sum
from shared.core.models import FileRecord, FileStatus, Totals, View
from shared.core.ownership import DIRECT, line_owner
from shared.core.problems import Problem
from shared.core.views import project, removed_columns, select_lines
from tests.core.test_ownership import (
    CHANGED,
    CUSTOMERS,
    DAY0,
    DIRECT_MARKS,
    PRODUCTS,
    RESELLERS,
    TENANT,
    _sub,
    access_of,
    batch_of,
    line,
    principal,
    reach_resolver,
)

STRANGER_RESELLER = "9999999"  # serves nothing here
STRANGER_CUSTOMER = "c9c9c9c9-0000-4000-8000-000000000009"
COSTS = ["100.00", "-33.33", "0.01", "1234.56", "0.00"]
PERCENTS = ["-99.9999", "-50", "0", "5", "12.5", "1000"]


@dataclass(frozen=True)
class Write:
    who: int
    what: str  # "rule" | "identifier"
    level: str
    target: int  # below 30: a target of one of the writer's own lines seen so far, if any; else any, strangers too
    percent: str
    product: str | None
    start: int
    days: int | None
    requested: int | None  # index into RESELLERS + [STRANGER_RESELLER], or None


@dataclass
class World:
    resellers: list[str]
    customers: list[str]
    subscriptions: list[str]
    lines: list[dict[str, Any]]
    seen: int
    principals: list[Principal | None]  # None: a partner admin
    writes: list[Write]

    def target(self, level: str, index: int, writer: Principal | None) -> str:
        ids = writer.reseller_ids if writer is not None else self.resellers
        own = [row for row in self.lines[:self.seen] if line_owner(row["ResellerMpnId"]) in ids]
        if index < 30 and own:
            row = own[index % len(own)]
            return {"reseller": line_owner(row["ResellerMpnId"]), "customer": row["CustomerId"],
                    "subscription": row["SubscriptionId"]}[level]
        every = self.targets(level)
        return every[index % len(every)]

    def targets(self, level: str) -> list[str]:
        return {"reseller": [*self.resellers, STRANGER_RESELLER], "customer": [*self.customers, STRANGER_CUSTOMER],
                "subscription": [*self.subscriptions, _sub(STRANGER_CUSTOMER, "x", 0)]}[level]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    resellers = RESELLERS[:draw(st.integers(2, 3))]
    parties = [*resellers, DIRECT]
    customers = CUSTOMERS[:draw(st.integers(2, 4))]
    served = {customers[0]: {resellers[0], resellers[1], DIRECT}}  # two resellers and directly, always
    for c in customers[1:]:  # mostly one party; sometimes more
        served[c] = draw(st.sets(st.sampled_from(parties), min_size=1, max_size=draw(st.sampled_from([1, 1, 2, 4]))))
    subs = {(c, p): [_sub(c, p, n) for n in range(draw(st.integers(1, 2)))]
            for c in customers for p in sorted(served[c])}
    options = [(c, p, s) for (c, p), ss in subs.items() for s in ss]
    if draw(st.booleans()):  # a subscription that shows up under another party of its customer
        c = customers[0]
        options.append((c, draw(st.sampled_from([resellers[1], DIRECT])), subs[(c, resellers[0])][0]))
    picks = draw(st.lists(st.tuples(st.sampled_from(options), st.sampled_from(COSTS), st.integers(0, 60),
                                    st.sampled_from(PRODUCTS), st.sampled_from(DIRECT_MARKS)),
                          min_size=1, max_size=30))
    lines = [line(mark if p == DIRECT else p, c, s, cost, DAY0 + timedelta(days=d), product)
             for (c, p, s), cost, d, product, mark in picks]
    principals: list[Principal | None] = [None]
    principals += [principal(Role.RESELLER, f"0f00000{n}-0000-4000-8000-000000000000", [r])
                   for n, r in enumerate(resellers)]
    principals.append(principal(Role.RESELLER, "0f0000ff-0000-4000-8000-000000000000", resellers[:2]))
    principals += [principal(Role.CUSTOMER, f"0c00000{n}-0000-4000-8000-000000000000", customers=[c])
                   for n, c in enumerate(customers)]
    subscriptions = sorted({s for _, _, s in options})
    writes = draw(st.lists(st.builds(
        Write, who=st.one_of(st.integers(0, len(principals) - 1), st.integers(1, len(resellers) + 1)), what=st.sampled_from(["rule", "rule", "identifier"]),
        level=st.sampled_from(["reseller", "customer", "customer", "subscription", "subscription"]),
        target=st.integers(0, 40), percent=st.sampled_from(PERCENTS), product=st.sampled_from([None, None, *PRODUCTS]),
        start=st.integers(-30, 40), days=st.sampled_from([None, None, 1, 45]),
        requested=st.one_of(st.none(), st.none(), st.integers(0, len(resellers)))), max_size=10))
    return World(resellers, customers, subscriptions, lines, draw(st.integers(0, len(lines))), principals, writes)


def _owner(access: Access, w: Write, target: str, world: World) -> str | None:
    """The owner the routes give what the caller writes (config_api): the policy then judges it."""
    requested = None if w.requested is None else [*world.resellers, STRANGER_RESELLER][w.requested]
    if w.level == "reseller":
        if requested is not None:
            raise Problem(400, "Invalid request")  # reseller-level configuration is the partner's
        return None
    return access.owner_for(w.level, target, requested)


def _flat(mappings: Mappings) -> list[tuple[str, str, str | None]]:
    """(kind, id, owner) of every identifier, as the identifiers list route sees them."""
    out = []
    for owner, m in [(None, mappings), *mappings.owned.items()]:
        out += [("reseller", k, owner) for k in m.resellers] + [("customer", k, owner) for k in m.customers]
        out += [("subscription", k, owner) for k in {*m.subscriptions, *m.po_numbers}]
    return out


def _put(mappings: Mappings, kind: str, id_: str, owner: str | None, value: str) -> None:
    m = mappings if owner is None else mappings.owned.setdefault(owner, Mappings())
    if kind == "subscription":
        m.subscriptions[id_] = value
        m.po_numbers[id_] = "PO-" + value
    else:
        getattr(m, kind + "s")[id_] = value


def _changed(before: pa.RecordBatch, after: pa.RecordBatch) -> list[int]:
    return [i for i in range(before.num_rows)
            if any(before.column(c)[i].as_py() != after.column(c)[i].as_py() for c in CHANGED)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(world=worlds())
def test_no_permitted_write_reaches_past_its_principal_and_reads_hold_only_their_own(world: World) -> None:
    full = batch_of(world.lines)
    seen_resolver = reach_resolver(batch_of(world.lines[:world.seen]))  # what the index knew at write time
    full_resolver = reach_resolver(full)
    rules: list[MarginRule] = []
    mappings = Mappings()
    current = MarginEngine(ONETIME, rules, mappings).apply(full)
    for n, w in enumerate(world.writes):
        p = world.principals[w.who]
        access = access_of(p, seen_resolver)
        target = world.target(w.level, w.target, p)
        try:
            owner = _owner(access, w, target, world)
        except (Problem, ValidationError):
            continue  # 400: several of its resellers serve the target, or an owner where none can be
        if w.what == "rule":
            scope = Scope.rule(w.level, target, owner, new=True)
            action = Action.RULES_WRITE
        else:
            exists = (w.level, target, owner) in _flat(mappings)
            scope = Scope.identifier(w.level, target, owner, new=not exists)
            action = Action.IDENTIFIERS_WRITE
        if not access.allows(action, scope):
            continue
        assert p is None or p.role == Role.RESELLER, "a customer may write nothing"
        before = current
        if w.what == "rule":
            start = DAY0 + timedelta(days=w.start)
            body = {"level": w.level, "targetId": target, "percent": w.percent, "effectiveFrom": start.isoformat(),
                    "effectiveTo": None if w.days is None else (start + timedelta(days=w.days)).isoformat(),
                    "productId": w.product, "ownerResellerId": owner}
            try:
                new = MarginRule(id=f"r{n:03d}", **MarginRuleIn.model_validate(body).model_dump())
            except ValidationError:
                continue  # e.g. a reseller rule for a reseller id the engine's validation refuses
            if any(overlaps(new, other) for other in rules):
                continue  # 409, as the store answers
            rules = [*rules, new]
        else:
            _put(mappings, w.level, target, owner, f"ID-{n}")
        after = current = MarginEngine(ONETIME, rules, mappings).apply(full)
        if p is None:
            continue  # the partner's reach is every line
        reach = full_resolver(TENANT, frozenset(p.reseller_ids))
        event(f"reseller write permitted, {w.what}, lines changed: {bool(_changed(before, after))}")
        for i in _changed(before, after):
            whose = line_owner(world.lines[i]["ResellerMpnId"])
            assert whose == owner and whose in p.reseller_ids, (w, world.lines[i])
            assert world.lines[i]["CustomerId"] in reach.customers

    _check_reads(world, current, rules, mappings, full_resolver)


def _line_scopes(world: World) -> list[tuple[str, str | None, str | None]]:
    resellers = [*world.resellers, STRANGER_RESELLER]
    out = [("partner", None, None)] + [("reseller", r, None) for r in resellers]
    for c in [*world.customers, STRANGER_CUSTOMER]:
        out += [("customer", None, c)] + [("customer", r, c) for r in resellers]
    return out


def _check_reads(world: World, priced: pa.RecordBatch, rules: list[MarginRule], mappings: Mappings,
                 resolver) -> None:
    """Every read a principal is permitted, as the file plan makes it (`select_lines`, totals, `project`) from the
    engine's lines."""
    identifiers = _flat(mappings)
    for p in world.principals[1:]:
        access = access_of(p, resolver)
        reach = resolver(TENANT, frozenset(p.reseller_ids))
        hidden = removed_columns(ONETIME, access.viewer)
        recorded: set[str] = set()
        for view, reseller, customer in _line_scopes(world):
            scope = Scope(view=view, reseller_id=reseller, customer_id=customer, invoice_type="onetime")
            if not access.allows(Action.FILES_READ, scope):
                continue
            lines = select_lines(ONETIME, priced, view, reseller, customer)
            out = project(ONETIME, lines, view)
            assert not hidden & set(out.schema.names), (p.role, view)
            if p.role == Role.RESELLER:
                assert {line_owner(v) for v in out.column("ResellerMpnId").to_pylist()} <= set(p.reseller_ids)
            else:
                assert set(out.column("CustomerId").to_pylist()) <= set(p.customer_ids)
            if view in recorded:
                continue  # the record's figures depend on the caller and the view, not on which lines
            recorded.add(view)
            record = FileRecord(id="f", tenant_id=TENANT, invoice_type="onetime", invoice_id="G1", view=view,
                                reseller_id=reseller, customer_id=customer, status=FileStatus.AVAILABLE,
                                created_at="2026-12-01T00:00:00Z", invoice_total=decimal_sum(lines.column("Total")),
                                totals=Totals(cost=decimal_sum(lines.column("Subtotal")),
                                              microsoft_total=decimal_sum(lines.column("Total")),
                                              reseller=decimal_sum(lines.column("ResellerSubtotal")),
                                              customer=decimal_sum(lines.column("CustomerSubtotal"))))
            shown = record.public(access.viewer)
            allowed = {"reseller", "customer"} if p.role == Role.RESELLER else {"customer"}
            assert set(shown["totals"]) <= allowed and "invoiceTotal" not in shown
        for r in access.filter(Action.RULES_READ, rules, lambda r: Scope.rule(r.level, r.target_id,
                                                                              r.owner_reseller_id)):
            _assert_readable(p, reach, r.level.value, r.target_id, r.owner_reseller_id)
        for kind, id_, owner in access.filter(Action.IDENTIFIERS_READ, identifiers,
                                              lambda i: Scope.identifier(*i)):
            _assert_readable(p, reach, kind, id_, owner)


def _assert_readable(p: Principal, reach, level: str, target: str, owner: str | None) -> None:
    """A reseller reads its own configuration, or the partner's of its unshared customers and subscriptions; a
    customer reads none."""
    assert p.role == Role.RESELLER and level in ("customer", "subscription")
    mine = reach.customers if level == "customer" else reach.subscriptions
    shared = reach.shared if level == "customer" else reach.shared_subscriptions
    assert target in mine
    assert owner in p.reseller_ids or (owner is None and target not in shared)
