"""Every route × every role × own scope / another's scope / another tenant, against the expectations written out
here (not derived from the policy code). Adding a route without a ROUTES entry fails the first test.

The reseller principal's customers come from the real reach index (`ResellerReach`), filled as the worker fills it:
R1 serves C1 (the customer principal's own) with S1, R2 serves C3 with S3, and both serve CS (a shared customer)."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from typing import Any

import pytest

from functions.http_support import ROUTE_POLICY
from shared.core.models import FileRecord, FileStatus, TenantIn
from shared.core.access import Action, PrincipalIn, Role
from shared.adapters.repositories import utcnow
from shared.app import ingest, tenants
from shared.core.columns import FileType
from tests.conftest import SECRET_SETTING, call, token_for

OTHER_TENANT = "bbbbbbbb-2222-4000-8000-0000000000bb"
R1, R2 = "1234567", "7654321"  # the reseller principal's own MPN id; another reseller's
C1 = "c1c1c1c1-0000-4000-8000-000000000001"  # the customer principal's own id
C3 = "c3c3c3c3-0000-4000-8000-000000000003"  # another reseller's customer
CS = "c5c5c5c5-0000-4000-8000-000000000005"  # a customer both resellers serve
S1 = "51515151-0000-4000-8000-000000000001"  # R1's subscription of C1
S3 = "53535353-0000-4000-8000-000000000003"  # R2's subscription of C3
REACH = [(R1, C1, S1), (R2, C3, S3), (R1, CS, "5a5a5a5a-0000-4000-8000-00000000005a"),
         (R2, CS, "5b5b5b5b-0000-4000-8000-00000000005b")]
OIDS = {"reader": "0e000000-0000-4000-8000-00000000000e", "reseller": "0f000000-0000-4000-8000-00000000000f",
        "customer": "0c000000-0000-4000-8000-00000000000c", "stranger": "05000000-0000-4000-8000-000000000005"}
ROLES = ("admin", "reader", "reseller", "customer", "stranger", "outsider")

# Targets: the scope a request touches. Line targets (files, charges): partner view, reseller views of R1 and R2,
# customer views of C1 and C3 (whole), and customer views narrowed to one reseller's lines ("C1@R1": R1's lines of
# C1). Configuration targets: rules and identifiers at reseller level (R1), of R1's customer C1 and subscription
# S1, of R2's customer C3 and subscription S3, and of the shared customer CS.
LINE_TARGETS = ("partner", "R1", "R2", "C1", "C3", "C1@R1", "C3@R2", "CS@R1", "CS@R2")
CONFIG_TARGETS = ("resellerLevel", "customerLevel", "subscriptionLevel", "otherCustomer", "otherSubscription",
                  "sharedCustomer")
TARGET_IDS = {"resellerLevel": ("reseller", R1), "customerLevel": ("customer", C1),
              "subscriptionLevel": ("subscription", S1), "otherCustomer": ("customer", C3),
              "otherSubscription": ("subscription", S3), "sharedCustomer": ("customer", CS)}
IDENTIFIER_TARGETS = {kind: tuple(t for t, (k, _) in TARGET_IDS.items() if k == kind)
                      for kind in ("reseller", "customer", "subscription")}
IDENTIFIER_TARGETS["reseller"] += ("otherReseller",)
TARGET_IDS["otherReseller"] = ("reseller", R2)
FILE_ROUTES = {"get_file", "download", "list_findings", "download_findings", "regenerate", "list_file_versions",
               "download_file_version", "request_export", "list_exports", "get_export", "download_export"}
LIST_ROUTES = {"list_tenants", "list_files", "list_margin_rules", "list_identifiers", "list_names", "list_usage_alerts"}

# Webhook endpoints: the partner's, and those R1's and R2's reseller principals registered (each request makes a
# fresh one, so deleting one changes nothing for the next).
WEBHOOK_TARGETS = ("partnerHook", "R1hook", "R2hook")
WEBHOOK_ROUTES = {"put_webhook", "get_webhook", "delete_webhook", "list_webhook_deliveries"}

# route -> the targets it is called with ("tenant": the tenant as a whole)
ROUTES: dict[str, tuple[str, ...]] = {
    **{name: ("tenant",) for name in ("list_principals", "get_principal", "put_principal", "delete_principal",
                                      "list_audit", "put_tenant", "get_tenant", "list_invoices", "put_automation",
                                      "get_automation", "get_calendar", "regenerate_files",
                                      "import_identifiers_csv")},
    **{name: LINE_TARGETS for name in FILE_ROUTES | {"request_file", "get_charges"}},
    **{name: CONFIG_TARGETS for name in ("create_margin_rule", "delete_margin_rule", "patch_margin_rule",
                                         "preview_margin_rule")},
    **{f"{verb}_{kind}_identifier": targets for kind, targets in IDENTIFIER_TARGETS.items()
       for verb in ("put", "get")},
    **{name: ("list",) for name in LIST_ROUTES},
    "get_me": ("self",),  # the caller's own standing: every signed-in caller, checked item by item below
    **{name: WEBHOOK_TARGETS for name in ("put_webhook", "get_webhook", "delete_webhook", "list_webhook_deliveries")},
    "list_webhooks": ("ownHooks",),
    "approve_file_version": ("tenant",),  # partner admins only, whatever the file
    # a customer's consumption budget: like its customer-level rules
    **{name: ("customerLevel", "otherCustomer", "sharedCustomer") for name in ("put_budget", "get_budget",
                                                                              "delete_budget")},
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
    if action == Action.FILES_APPROVE:
        return False  # partner admins only
    if action == Action.WEBHOOKS_MANAGE:  # a reseller manages the endpoints it registered, nobody else's
        return role == "reseller" and target in ("R1hook", "ownHooks")
    if role == "reseller":  # R1's reseller view; R1's lines of its customers; its customers' configuration
        if action == Action.CHARGES_READ:
            return target == "R1"
        if action in (Action.FILES_REQUEST, Action.FILES_READ, Action.FILES_REGENERATE):
            return target in ("R1", "C1@R1", "CS@R1")  # never a whole customer, never R2's lines of CS
        # never reseller level; not the shared customer (its rules would set R2's prices); R1's subscriptions
        return target in ("customerLevel", "subscriptionLevel")
    if role == "customer":
        return (action in (Action.FILES_REQUEST, Action.FILES_READ, Action.CHARGES_READ)
                and target in ("C1", "C1@R1"))
    return False  # stranger, outsider: no standing


def expected(role: str, name: str, target: str) -> str:
    action = ROUTE_POLICY[name].action
    if name == "get_me":  # about the caller itself: answered for anyone signed in, strangers included
        return "allowed"
    if role in ("stranger", "outsider"):
        return "no tenant"
    if role == "reseller" and name == "request_file" and target in ("C1", "C3"):
        target += "@R1"  # the gate narrows a reseller's customer-view request to its own lines
    if role == "reseller" and name in ("delete_margin_rule", "patch_margin_rule"):
        return "hidden"  # the rule here is the partner's: a reseller changes or removes only its own rules
    if may(role, action, target):
        return "allowed"
    if name in FILE_ROUTES:  # a file the caller may not see does not exist for it
        return "forbidden" if may(role, Action.FILES_READ, target) else "hidden"
    if name in ("delete_margin_rule", "patch_margin_rule"):
        return "hidden"
    if name in WEBHOOK_ROUTES and role == "reseller":  # another's endpoint does not exist for it
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
        if detail.startswith(("Reconciliation file ", "Margin rule ", "Webhook ")):
            return "hidden"
    return "allowed"


# ---- the world -------------------------------------------------------------------------------------------------

@pytest.fixture
def world(sim_env, webhook_env, ctx, sim) -> dict[str, Any]:
    tenant = sim.tenant_id
    tenants.put_tenant(ctx, tenant, TenantIn(display_name="Sim", client_id=sim.client_id,
                                             client_secret_setting=SECRET_SETTING))
    ctx.principals.put(tenant, OIDS["reader"], PrincipalIn(role=Role.PARTNER_READER))
    ctx.principals.put(tenant, OIDS["reseller"], PrincipalIn(role=Role.RESELLER, reseller_ids=[R1]))
    ctx.principals.put(tenant, OIDS["customer"], PrincipalIn(role=Role.CUSTOMER, customer_ids=[C1]))
    ctx.reach.record(tenant, REACH)
    invoice = next(i["id"] for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")
    ingest.ensure(ctx, tenant, invoice, FileType.ONETIME)  # charges are read from the invoice's snapshot
    views = {target: _line_scope(target) for target in LINE_TARGETS}
    files = {}
    for target, (view, reseller, customer) in views.items():
        record = FileRecord(id=str(uuid.uuid4()), tenant_id=tenant, invoice_type="onetime", invoice_id=invoice,
                            view=view, reseller_id=reseller, customer_id=customer, status=FileStatus.AVAILABLE,
                            created_at=utcnow(), file_name=f"{target}.csv", blob_name=f"{tenant}/{target}.csv",
                            approved_version=1, approved_by=OIDS["reader"], approved_at=utcnow())
        ctx.files.create(record)
        files[target] = record.id
    tokens = {"admin": token_for(tenant), "outsider": token_for(OTHER_TENANT)}
    tokens.update({role: token_for(tenant, role=None, object_id=oid) for role, oid in OIDS.items()})
    return {"tenant": tenant, "invoice": invoice, "files": files, "tokens": tokens, "ctx": ctx}


def _line_scope(target: str) -> tuple[str, str | None, str | None]:
    """(view, resellerId, customerId) of a line target."""
    ids = {"R1": R1, "R2": R2, "C1": C1, "C3": C3, "CS": CS}
    if target == "partner":
        return "partner", None, None
    if target.startswith("R"):
        return "reseller", ids[target], None
    customer, _, reseller = target.partition("@")
    return "customer", ids.get(reseller), ids[customer]


def _line_body(target: str, invoice: str) -> dict[str, Any]:
    view, reseller, customer = _line_scope(target)
    body = {"view": view} if view != "partner" else {}
    return {**body, **({"resellerId": reseller} if reseller else {}), **({"customerId": customer} if customer else {})}


def request_for(world: dict[str, Any], name: str, target: str) -> dict[str, Any]:
    t, invoice = world["tenant"], world["invoice"]
    base = {"route": {"tenantId": t}}
    if name in FILE_ROUTES or name == "approve_file_version":
        route = {"tenantId": t, "fileId": world["files"].get(target, world["files"]["partner"]), "version": "1",
                 "exportId": "e0000000-0000-4000-8000-00000000000e"}
        return {"route": route, "body": {"kind": "billing"} if name == "request_export" else None}
    if name in WEBHOOK_ROUTES:
        from shared.app import webhooks
        from shared.core.notifications import WebhookIn

        hook_id = f"{target}-{uuid.uuid4().hex[:8]}"
        owners = {"partnerHook": [], "R1hook": [R1], "R2hook": [R2]}[target]
        webhooks.put_webhook(world["ctx"], t, hook_id, WebhookIn(url="https://example.com/hook",
                                                                  events=["file.approved"]), "o", owners)
        body = {"url": "https://example.com/hook2", "events": ["file.approved"]} if name == "put_webhook" else None
        return {"route": {"tenantId": t, "webhookId": hook_id}, "body": body}
    if name == "request_file":
        return {**base, "body": {"invoiceType": "onetime", "invoiceId": invoice, **_line_body(target, invoice)}}
    if name == "get_charges":
        params = {"type": "onetime", "pageSize": "5", **_line_body(target, invoice)}
        return {"route": {"tenantId": t, "invoiceId": invoice}, "params": params}
    level, target_id = TARGET_IDS.get(target, ("", ""))
    if name == "preview_margin_rule":  # no file to preview on: 409 once allowed
        return {**base, "body": {"level": level, "targetId": target_id, "percent": "5", "effectiveFrom": "2001-01-01",
                                 "productId": uuid.uuid4().hex[:12]}}
    if name == "patch_margin_rule":
        from shared.core.margins import MarginRuleIn

        rule = world["ctx"].rules.create(t, MarginRuleIn.model_validate(
            {"level": level, "targetId": target_id, "percent": "1", "effectiveFrom": "2001-01-01",
             "productId": uuid.uuid4().hex[:12]}))
        etag = world["ctx"].rules.get_tagged(t, rule.id)[1]
        return {"route": {"tenantId": t, "ruleId": rule.id}, "body": {"effectiveTo": "2001-02-01"},
                "headers": {"If-Match": etag}}
    if name == "create_margin_rule":
        start = date(2020, 1, 1) + timedelta(days=uuid.uuid4().int % 3000)
        return {**base, "body": {"level": level, "targetId": target_id, "percent": "5",
                                 "effectiveFrom": start.isoformat(), "effectiveTo": (start + timedelta(days=1)).isoformat()}}
    if name == "delete_margin_rule":
        from shared.core.margins import MarginRuleIn

        rule = world["ctx"].rules.create(t, MarginRuleIn.model_validate(
            {"level": level, "targetId": target_id, "percent": "1", "effectiveFrom": "2001-01-01",
             "productId": uuid.uuid4().hex[:12]}))
        return {"route": {"tenantId": t, "ruleId": rule.id}}
    if name.endswith("_budget"):
        if name != "put_budget":
            from shared.app import alerts
            from shared.core.usage import BudgetIn

            alerts.put_budget(world["ctx"], t, target_id, BudgetIn(monthly_budget="100"))
        body = {"monthlyBudget": "250.50", "spikePercent": "50"} if name == "put_budget" else None
        return {"route": {"tenantId": t, "customerId": target_id}, "body": body}
    if name.endswith("_identifier"):
        kind = name.split("_")[1]
        ident = target_id
        param = {"reseller": "resellerMpnId", "customer": "customerId", "subscription": "subscriptionId"}[kind]
        body = {"internalId": "X-1"} if name.startswith("put_") else None
        return {"route": {"tenantId": t, param: ident}, "body": body}
    bodies = {"put_principal": {"role": "partnerReader"}, "put_tenant": {"displayName": "Sim", "clientId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
              "clientSecretSetting": SECRET_SETTING}, "put_automation": {"enabled": False},
              "regenerate_files": {"invoiceId": invoice, "invoiceType": "license"}}
    route = {"tenantId": t, "objectId": "0d000000-0000-4000-8000-00000000000d"}
    if name == "import_identifiers_csv":
        return {"route": route, "raw": b"kind,id,internalId,name,poNumber\nreseller,1234567,R-1,,\n"}
    if name == "list_webhooks":
        return base
    if name in ("list_tenants", "get_me"):
        return {"route": {}}
    return {"route": route, "body": bodies.get(name)}


METHODS = {"put": "PUT", "create": "POST", "request": "POST", "regenerate": "POST", "import": "POST",
           "delete": "DELETE", "patch": "PATCH", "preview": "POST", "approve": "POST"}


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
    for target in CONFIG_TARGETS:  # one rule per target, one identifier per target of its kind
        assert call(functions, "create_margin_rule", "POST",
                    **request_for(world, "create_margin_rule", target)).status_code == 201
    for target, (kind, _) in TARGET_IDS.items():
        name = f"put_{kind}_identifier"
        assert call(functions, name, "PUT", **request_for(world, name, target)).status_code == 200

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

    from shared.core.names import NameEntry

    world["ctx"].names.record(t, [NameEntry("reseller", R1), NameEntry("reseller", R2)] + [
        NameEntry(kind, target_id, f"{target} name") for target, (kind, target_id) in TARGET_IDS.items()
        if kind != "reseller"])
    for name in ("list_files", "list_margin_rules", "list_identifiers", "list_names"):
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
            if name == "list_names":
                action, seen, targets = Action.RULES_READ, {(i["kind"], i["id"]) for i in items}, tuple(TARGET_IDS)
            elif name == "list_margin_rules":
                seen, targets = {(i["level"], i["targetId"]) for i in items}, CONFIG_TARGETS
            else:
                seen, targets = {(i["kind"], i["id"]) for i in items}, tuple(TARGET_IDS)
            assert seen == {TARGET_IDS[x] for x in targets if may(role, action, x)}, (name, role, seen)
