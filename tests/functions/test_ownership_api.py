"""Rule and identifier ownership through the real routes (Azurite, real tokens; issue 14, defect 1).

The property of `tests/core/test_reach_property.py`, smaller, end to end: random worlds are indexed into the real
reach table; random principals write rules and internal ids through the HTTP handlers; after every write the API
accepted from a reseller, the margins computed from what the store holds change no line but that reseller's own;
every rule and identifier a principal lists is its own or the partner's of its unshared targets.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings

from shared.app import tenants
from shared.app import file_requests
from shared.core.access import PrincipalIn, Role
from shared.core.columns import ONETIME
from shared.core.margins import MarginEngine
from shared.core.models import TenantIn
from shared.core.ownership import line_owner
from shared.core.reach import ReachCollector
from tests.conftest import SECRET_SETTING, call, token_for
from tests.core.test_ownership import DAY0, batch_of
from tests.core.test_reach_property import STRANGER_RESELLER, World, _changed, worlds

CLIENT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
IDENTIFIER_ROUTES = {"customer": ("put_customer_identifier", "customerId"),
                     "subscription": ("put_subscription_identifier", "subscriptionId"),
                     "reseller": ("put_reseller_identifier", "resellerMpnId")}


def _setup(ctx, world: World) -> tuple[str, list[str | None]]:
    tenant = str(uuid.uuid4())
    tenants.put_tenant(ctx, tenant, TenantIn(display_name="T", client_id=CLIENT,
                                                   client_secret_setting=SECRET_SETTING))
    collector = ReachCollector(ONETIME)
    collector.add(batch_of(world.lines[:world.seen]))
    ctx.reach.record(tenant, collector.valid())  # what the partner-view files made so far taught the index
    tokens: list[str | None] = []
    for p in world.principals:
        if p is None:
            tokens.append(token_for(tenant))
            continue
        ctx.principals.put(tenant, p.object_id, PrincipalIn(role=p.role, reseller_ids=p.reseller_ids or None,
                                                            customer_ids=p.customer_ids or None))
        tokens.append(token_for(tenant, role=None, object_id=p.object_id))
    return tenant, tokens


def _priced(ctx, tenant: str, full):
    return MarginEngine(ONETIME, ctx.rules.list(tenant), ctx.identifiers.mappings(tenant)).apply(full)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(world=worlds())
def test_writes_through_the_api_change_only_the_writers_lines(app_env, ctx, functions, world: World) -> None:
    tenant, tokens = _setup(ctx, world)
    full = batch_of(world.lines)
    current = _priced(ctx, tenant, full)
    for n, w in enumerate(world.writes):
        p, token = world.principals[w.who], tokens[w.who]
        target = world.target(w.level, w.target, p)
        requested = None if w.requested is None else [*world.resellers, STRANGER_RESELLER][w.requested]
        if w.what == "rule":
            start = DAY0 + timedelta(days=w.start)
            body = {"level": w.level, "targetId": target, "percent": w.percent, "effectiveFrom": start.isoformat(),
                    **({"effectiveTo": (start + timedelta(days=w.days)).isoformat()} if w.days else {}),
                    **({"productId": w.product} if w.product else {}),
                    **({"ownerResellerId": requested} if requested else {})}
            resp = call(functions, "create_margin_rule", "POST", route={"tenantId": tenant}, body=body, token=token)
        else:
            name, param = IDENTIFIER_ROUTES[w.level]
            resp = call(functions, name, "PUT", route={"tenantId": tenant, param: target}, token=token,
                        params={"ownerResellerId": requested} if requested else None,
                        body={"internalId": f"ID-{n}"})
        assert resp.status_code < 500, resp.get_body()
        if resp.status_code >= 300:
            continue
        assert p is None or p.role == Role.RESELLER, "a customer may write nothing"
        before, current = current, _priced(ctx, tenant, full)
        if p is None:
            continue
        owner = json.loads(resp.get_body()).get("ownerResellerId")
        assert owner in p.reseller_ids  # shown in the API: what a reseller writes is its own
        for i in _changed(before, current):
            assert line_owner(world.lines[i]["ResellerMpnId"]) == owner, (w, world.lines[i])

    for p, token in zip(world.principals[1:], tokens[1:]):
        reach = ctx.reach.resolve(tenant, frozenset(p.reseller_ids))
        for name in ("list_margin_rules", "list_identifiers"):
            resp = call(functions, name, "GET", route={"tenantId": tenant}, token=token)
            assert resp.status_code == 200
            for item in json.loads(resp.get_body())["items"]:
                level, target = item.get("level") or item["kind"], item.get("targetId") or item["id"]
                assert p.role == Role.RESELLER and level in ("customer", "subscription"), item
                mine = reach.customers if level == "customer" else reach.subscriptions
                shared = reach.shared if level == "customer" else reach.shared_subscriptions
                assert target in mine
                owner = item.get("ownerResellerId")
                assert owner in p.reseller_ids or (owner is None and target not in shared), item


def test_a_resellers_own_rule_after_its_customer_becomes_shared(app_env, ctx, functions) -> None:
    """R1 writes a rule and an internal id for its customer (owned by R1, shown in the API); the partner then sells
    to that customer directly: R1 creates nothing new for it, still lists and removes its own rule, and the
    partner's direct lines never took R1's price or id."""
    c = "c1c1c1c1-0000-4000-8000-000000000001"
    s1, s0 = "51515151-0000-4000-8000-000000000001", "50505050-0000-4000-8000-000000000000"
    tenant = str(uuid.uuid4())
    tenants.put_tenant(ctx, tenant, TenantIn(display_name="T", client_id=CLIENT,
                                                   client_secret_setting=SECRET_SETTING))
    ctx.principals.put(tenant, "0f000000-0000-4000-8000-0000000000f1",
                       PrincipalIn(role=Role.RESELLER, reseller_ids=["1234567"]))
    token = token_for(tenant, role=None, object_id="0f000000-0000-4000-8000-0000000000f1")
    ctx.reach.record(tenant, [("1234567", c, s1)])
    route = {"tenantId": tenant}
    body = {"level": "customer", "targetId": c, "percent": "-99.9999", "effectiveFrom": "2026-01-01"}
    made = call(functions, "create_margin_rule", "POST", route=route, body=body, token=token)
    assert made.status_code == 201, made.get_body()
    rule = json.loads(made.get_body())
    assert rule["ownerResellerId"] == "1234567"
    ident = call(functions, "put_customer_identifier", "PUT", route={**route, "customerId": c}, token=token,
                 body={"internalId": "R1-C"})
    assert ident.status_code == 200 and json.loads(ident.get_body())["ownerResellerId"] == "1234567"
    partner_ident = call(functions, "put_customer_identifier", "PUT", route={**route, "customerId": c},
                         body={"internalId": "PARTNER-C"})
    assert json.loads(partner_ident.get_body()) == {"kind": "customer", "id": c, "internalId": "PARTNER-C"}

    ctx.reach.record(tenant, [("0", c, s0)])  # a later invoice: the partner bills the customer directly
    again = call(functions, "create_margin_rule", "POST", route=route, token=token,
                 body={**body, "percent": "5", "productId": "P9"})
    assert again.status_code == 403
    listed = json.loads(call(functions, "list_margin_rules", "GET", route=route, token=token).get_body())["items"]
    assert [r["id"] for r in listed] == [rule["id"]]
    lines = batch_of([{"ResellerMpnId": "1234567", "CustomerId": c, "SubscriptionId": s1, "Subtotal": "100.00",
                       "ChargeStartDate": "2026-10-01"},
                      {"ResellerMpnId": "0", "CustomerId": c, "SubscriptionId": s0, "Subtotal": "100.00",
                       "ChargeStartDate": "2026-10-01"}])
    priced = _priced(ctx, tenant, lines)
    assert priced.column("CustomerSubtotal").to_pylist() == [Decimal("0.00"), Decimal("100.00")]
    assert priced.column("CustomerInternalId").to_pylist() == ["R1-C", "PARTNER-C"]
    gone = call(functions, "delete_margin_rule", "DELETE", route={**route, "ruleId": rule["id"]}, token=token)
    assert gone.status_code == 204
    assert ctx.rules.list(tenant) == []
