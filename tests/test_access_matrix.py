"""Every route × every role × own scope / another's scope / another tenant, against the expectations written out
here (not derived from the policy code). Adding a route without a ROUTES entry fails the first test."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from typing import Any

import pytest

from functions.http_support import ROUTE_POLICY
from shared.models import FileRecord, FileStatus, TenantIn
from shared.principals import Action, PrincipalIn, Role
from shared.repositories import utcnow
from shared import service
from tests.conftest import SECRET_SETTING, call, token_for

OTHER_TENANT = "bbbbbbbb-2222-4000-8000-0000000000bb"
R1, R2 = "1234567", "7654321"  # the reseller principal's own MPN id; another reseller's
C1 = "c1c1c1c1-0000-4000-8000-000000000001"  # the customer principal's own id
C3 = "c3c3c3c3-0000-4000-8000-000000000003"  # another customer
S1 = "51515151-0000-4000-8000-000000000001"
OIDS = {"reader": "0e000000-0000-4000-8000-00000000000e", "reseller": "0f000000-0000-4000-8000-00000000000f",
        "customer": "0c000000-0000-4000-8000-00000000000c", "stranger": "05000000-0000-4000-8000-000000000005"}
ROLES = ("admin", "reader", "reseller", "customer", "stranger", "outsider")

# Targets: the scope a request touches. Line targets (files, charges): partner view, reseller views of R1 and R2,
# customer views of C1 and C3. Configuration targets: a reseller-level and a customer-level rule / identifier.
LINE_TARGETS = ("partner", "R1", "R2", "C1", "C3")
CONFIG_TARGETS = ("resellerLevel", "customerLevel")
FILE_ROUTES = {"get_file", "download", "list_findings", "download_findings", "regenerate", "list_file_versions",
               "download_file_version"}
LIST_ROUTES = {"list_tenants", "list_files", "list_margin_rules", "list_identifiers"}

# route -> the targets it is called with ("tenant": the tenant as a whole)
ROUTES: dict[str, tuple[str, ...]] = {
    **{name: ("tenant",) for name in ("list_principals", "get_principal", "put_principal", "delete_principal",
                                      "list_audit", "put_tenant", "get_tenant", "list_invoices", "put_automation",
                                      "get_automation", "get_calendar", "regenerate_files",
                                      "import_identifiers_csv")},
    **{name: LINE_TARGETS for name in FILE_ROUTES | {"request_file", "get_charges"}},
    **{name: CONFIG_TARGETS for name in ("create_margin_rule", "delete_margin_rule", "put_reseller_identifier",
                                         "get_reseller_identifier", "put_customer_identifier",
                                         "get_customer_identifier", "put_subscription_identifier",
                                         "get_subscription_identifier")},
    **{name: ("list",) for name in LIST_ROUTES},
    "get_me": ("self",),  # the caller's own standing: every signed-in caller, checked item by item below
}


def test_every_route_has_an_entry() -> None:
    import function_app  # noqa: F401  (registers every route)

    assert set(ROUTES) == set(ROUTE_POLICY), "add the new route to ROUTES (and its expectations) in this file"


# ---- the expectations ------------------------------------------------------------------------------------------

def may(role: str, action: Action, target: str) -> bool:
    """What each role may do, written out from the README's role table."""
    if role == "admin":
        return True
    if role == "reader":  # reads everything but the audit log (partner admins only), changes nothing
        return action in (Action.TENANT_READ, Action.PRINCIPALS_READ, Action.RULES_READ, Action.IDENTIFIERS_READ,
                          Action.FILES_REQUEST, Action.FILES_READ, Action.CHARGES_READ, Action.INVOICES_READ)
    if role == "reseller":  # its own reseller view; its customers are unknown until lines are indexed
        if action in (Action.FILES_REQUEST, Action.FILES_READ, Action.FILES_REGENERATE, Action.CHARGES_READ):
            return target == "R1"
        return False
    if role == "customer":
        return action in (Action.FILES_REQUEST, Action.FILES_READ, Action.CHARGES_READ) and target == "C1"
    return False  # stranger, outsider: no standing


def expected(role: str, name: str, target: str) -> str:
    action = ROUTE_POLICY[name].action
    if name == "get_me":  # about the caller itself: answered for anyone signed in, strangers included
        return "allowed"
    if role in ("stranger", "outsider"):
        return "no tenant"
    if may(role, action, target):
        return "allowed"
    if name in FILE_ROUTES:  # a file the caller may not see does not exist for it
        return "forbidden" if may(role, Action.FILES_READ, target) else "hidden"
    if name == "delete_margin_rule":
        return "hidden"
    return "forbidden"


def outcome(resp) -> str:
    status = resp.status_code
    assert status < 500, resp.get_body()
    if status == 401:
        return "unauthenticated"
    if status == 403:
        return "forbidden"
    if status == 404:
        detail = json.loads(resp.get_body()).get("detail", "")
        if detail.startswith("Tenant "):
            return "no tenant"
        if detail.startswith(("Reconciliation file ", "Margin rule ")):
            return "hidden"
    return "allowed"


# ---- the world -------------------------------------------------------------------------------------------------

@pytest.fixture
def world(sim_env, ctx, sim) -> dict[str, Any]:
    tenant = sim.tenant_id
    service.put_tenant(ctx, tenant, TenantIn(display_name="Sim", client_id=sim.client_id,
                                             client_secret_setting=SECRET_SETTING))
    ctx.principals.put(tenant, OIDS["reader"], PrincipalIn(role=Role.PARTNER_READER))
    ctx.principals.put(tenant, OIDS["reseller"], PrincipalIn(role=Role.RESELLER, reseller_ids=[R1]))
    ctx.principals.put(tenant, OIDS["customer"], PrincipalIn(role=Role.CUSTOMER, customer_ids=[C1]))
    invoice = next(i["id"] for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")
    views = {"partner": ("partner", None, None), "R1": ("reseller", R1, None), "R2": ("reseller", R2, None),
             "C1": ("customer", None, C1), "C3": ("customer", None, C3)}
    files = {}
    for target, (view, reseller, customer) in views.items():
        record = FileRecord(id=str(uuid.uuid4()), tenant_id=tenant, invoice_type="onetime", invoice_id=invoice,
                            view=view, reseller_id=reseller, customer_id=customer, status=FileStatus.AVAILABLE,
                            created_at=utcnow(), file_name=f"{target}.csv", blob_name=f"{tenant}/{target}.csv")
        ctx.files.create(record)
        files[target] = record.id
    tokens = {"admin": token_for(tenant), "outsider": token_for(OTHER_TENANT)}
    tokens.update({role: token_for(tenant, role=None, object_id=oid) for role, oid in OIDS.items()})
    return {"tenant": tenant, "invoice": invoice, "files": files, "tokens": tokens, "ctx": ctx}


def _line_body(target: str, invoice: str) -> dict[str, Any]:
    return {"partner": {}, "R1": {"view": "reseller", "resellerId": R1}, "R2": {"view": "reseller", "resellerId": R2},
            "C1": {"view": "customer", "customerId": C1}, "C3": {"view": "customer", "customerId": C3}}[target]


def request_for(world: dict[str, Any], name: str, target: str) -> dict[str, Any]:
    t, invoice = world["tenant"], world["invoice"]
    base = {"route": {"tenantId": t}}
    if name in FILE_ROUTES:
        return {"route": {"tenantId": t, "fileId": world["files"][target], "version": "1"}}
    if name == "request_file":
        return {**base, "body": {"invoiceType": "onetime", "invoiceId": invoice, **_line_body(target, invoice)}}
    if name == "get_charges":
        params = {"type": "onetime", "pageSize": "5", **_line_body(target, invoice)}
        return {"route": {"tenantId": t, "invoiceId": invoice}, "params": params}
    level, target_id = ("reseller", R1) if target == "resellerLevel" else ("customer", C1)
    if name == "create_margin_rule":
        start = date(2020, 1, 1) + timedelta(days=uuid.uuid4().int % 3000)
        return {**base, "body": {"level": level, "targetId": target_id, "percent": "5",
                                 "effectiveFrom": start.isoformat(), "effectiveTo": (start + timedelta(days=1)).isoformat()}}
    if name == "delete_margin_rule":
        from shared.margins import MarginRuleIn

        rule = world["ctx"].rules.create(t, MarginRuleIn.model_validate(
            {"level": level, "targetId": target_id, "percent": "1", "effectiveFrom": "2001-01-01",
             "productId": uuid.uuid4().hex[:12]}))
        return {"route": {"tenantId": t, "ruleId": rule.id}}
    if name.endswith("_identifier"):
        kind = name.split("_")[1]
        ident = {"reseller": R1 if target == "resellerLevel" else R2,
                 "customer": C1 if target == "customerLevel" else C3, "subscription": S1}[kind]
        param = {"reseller": "resellerMpnId", "customer": "customerId", "subscription": "subscriptionId"}[kind]
        body = {"internalId": "X-1"} if name.startswith("put_") else None
        return {"route": {"tenantId": t, param: ident}, "body": body}
    bodies = {"put_principal": {"role": "partnerReader"}, "put_tenant": {"displayName": "Sim", "clientId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
              "clientSecretSetting": SECRET_SETTING}, "put_automation": {"enabled": False},
              "regenerate_files": {"invoiceId": invoice, "invoiceType": "license"}}
    route = {"tenantId": t, "objectId": "0d000000-0000-4000-8000-00000000000d"}
    if name == "import_identifiers_csv":
        return {"route": route, "raw": b"kind,id,internalId,name,poNumber\nreseller,1234567,R-1,,\n"}
    if name in ("list_tenants", "get_me"):
        return {"route": {}}
    return {"route": route, "body": bodies.get(name)}


METHODS = {"put": "PUT", "create": "POST", "request": "POST", "regenerate": "POST", "import": "POST",
           "delete": "DELETE"}


def _method(name: str) -> str:
    return METHODS.get(name.split("_")[0], "GET")


@pytest.mark.parametrize("role", ROLES)
def test_route_role_scope_matrix(world, functions, role) -> None:
    failures = []
    for name, targets in sorted(ROUTES.items()):
        if name in LIST_ROUTES:
            continue
        for target in targets:
            want = expected(role, name, target if target != "tenant" else "partner")
            resp = call(functions, name, _method(name), token=world["tokens"][role], **request_for(world, name, target))
            got = outcome(resp)
            if got != want:
                failures.append(f"{name} [{target}] as {role}: expected {want}, got {got} ({resp.status_code} "
                                f"{resp.get_body()[:200]!r})")
            if got == "allowed" and name == "get_charges" and role in ("reseller", "customer"):
                items = json.loads(resp.get_body())["items"]
                priced = [k for item in items for k in ("Subtotal", "UnitPrice", "EffectiveUnitPrice") if k in item]
                assert not priced, f"{role} sees Microsoft's price columns"
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", ROLES)
def test_lists_hold_only_what_the_role_may_see(world, functions, role) -> None:
    t, token = world["tenant"], world["tokens"][role]
    for target in CONFIG_TARGETS:  # one rule and one identifier per target
        call(functions, "create_margin_rule", "POST", **request_for(world, "create_margin_rule", target))
        call(functions, "put_reseller_identifier", "PUT", **request_for(world, "put_reseller_identifier", target))
        call(functions, "put_customer_identifier", "PUT", **request_for(world, "put_customer_identifier", target))

    resp = call(functions, "list_tenants", "GET", token=token)
    tenants = [x["tenantId"] for x in json.loads(resp.get_body())["items"]]
    assert tenants == ([t] if role in ("admin", "reader") else [])

    me = json.loads(call(functions, "get_me", "GET", token=token).get_body())
    standing = {x["tenantId"]: x for x in me["tenants"]}
    want_roles = {"admin": ["partnerAdmin"], "reader": ["partnerReader"], "reseller": ["reseller"],
                  "customer": ["customer"]}
    if role in want_roles:
        assert list(standing) == [t] and standing[t]["roles"] == want_roles[role], me
        assert standing[t]["resellerIds"] == ([R1] if role == "reseller" else [])
        assert standing[t]["customerIds"] == ([C1] if role == "customer" else [])
    else:
        assert standing == {}, me

    for name in ("list_files", "list_margin_rules", "list_identifiers"):
        resp = call(functions, name, "GET", route={"tenantId": t}, token=token)
        if role in ("stranger", "outsider"):
            assert outcome(resp) == "no tenant", name
            continue
        assert resp.status_code == 200, (name, resp.get_body())
        items = json.loads(resp.get_body())["items"]
        if name == "list_files":
            by_id = {v: k for k, v in world["files"].items()}
            seen = {by_id[i["id"]] for i in items}
            assert seen == {x for x in LINE_TARGETS if may(role, Action.FILES_READ, x)}, (role, seen)
        else:
            action = Action.RULES_READ if name == "list_margin_rules" else Action.IDENTIFIERS_READ
            if any(may(role, action, x) for x in CONFIG_TARGETS):
                assert items, name
            else:
                assert items == [], (name, items)
