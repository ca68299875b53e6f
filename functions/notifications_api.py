"""HTTP Blueprint for notifications and approval: webhook endpoints, their delivery log, approving a version, and
customers' consumption budgets (whose alerts are events too).

Each handler parses, checks access and calls `shared.app.webhooks` / `shared.app.approval`. A reseller principal
manages only the endpoints it registered (scoped to its MPN ids: they receive only events about its own views);
an endpoint the caller may not manage is answered exactly like one that does not exist.
"""

from __future__ import annotations

import azure.functions as func

from functions.http_support import Guard, access_for, handles, json_response, loaded_file, parse_body, route_guid
from shared.app import alerts, approval, tenants, webhooks
from shared.app.context import get_context
from shared.core.access import Scope
from shared.core.notifications import Webhook, WebhookIn
from shared.core.usage import BudgetIn
from shared.core.boundaries import is_whole_number
from shared.core.problems import bad_request, not_found

bp = func.Blueprint()

MAX_DELIVERIES = 200


def scopes_of(reseller_ids: list[str]) -> list[Scope]:
    """A partner's endpoint is scoped to the tenant; a reseller's to each of its MPN ids."""
    return [Scope(kind="webhook", reseller_id=r) for r in reseller_ids] or [Scope(kind="webhook")]


def may_manage(guard: Guard, hook: Webhook) -> bool:
    return all(guard.allows(scope) for scope in scopes_of(hook.reseller_ids))


def managed_hook(req: func.HttpRequest) -> Webhook:
    tenant_id, guard = access_for(req)
    guard.require(scopes_of(guard.own_reseller_ids())[0])  # 403 for those who may register none
    endpoint_id = req.route_params.get("webhookId", "")
    hook, _ = webhooks.get_webhook(get_context(), tenant_id, endpoint_id)
    if not may_manage(guard, hook):
        raise not_found(f"Webhook {endpoint_id}")
    return hook


@handles(bp)
def put_webhook(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, guard = access_for(req)
    guard.require(scopes_of(guard.own_reseller_ids())[0])  # 403 for those who may register none
    ctx = get_context()
    endpoint_id = webhooks.check_endpoint_id(req.route_params.get("webhookId", ""))
    tenants.require_tenant(ctx, tenant_id)
    existing = webhooks.find_webhook(ctx, tenant_id, endpoint_id)
    reseller_ids = guard.own_reseller_ids()
    if existing is not None and not may_manage(guard, existing):
        raise not_found(f"Webhook {endpoint_id}")
    for scope in scopes_of(existing.reseller_ids if existing is not None else reseller_ids):
        guard.require(scope)
    body = parse_body(req, WebhookIn)
    hook, secret, created = webhooks.put_webhook(ctx, tenant_id, endpoint_id, body, guard.caller.object_id,
                                                 reseller_ids)
    data = hook.public()
    if secret is not None:
        data["secret"] = secret  # shown this once; only its name is stored, the secret is in the secret store
    return json_response(data, 201 if created else 200, headers={"Cache-Control": "no-store"})


@handles(bp)
def list_webhooks(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, guard = access_for(req)
    ctx = get_context()
    tenants.require_tenant(ctx, tenant_id)
    guard.require(scopes_of(guard.own_reseller_ids())[0])  # 403 for those who may register none
    items = [h.public() for h in webhooks.list_webhooks(ctx, tenant_id) if may_manage(guard, h)]
    return json_response({"items": items})


@handles(bp)
def get_webhook(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(managed_hook(req).public())


@handles(bp)
def delete_webhook(req: func.HttpRequest) -> func.HttpResponse:
    webhooks.delete_webhook(get_context(), managed_hook(req))
    return func.HttpResponse(status_code=204)


@handles(bp)
def list_webhook_deliveries(req: func.HttpRequest) -> func.HttpResponse:
    hook = managed_hook(req)
    raw = req.params.get("limit") or "50"
    if not is_whole_number(raw, 3) or not 1 <= int(raw) <= MAX_DELIVERIES:
        raise bad_request(f"limit must be a whole number from 1 to {MAX_DELIVERIES}.", "limit")
    items = webhooks.list_deliveries(get_context(), hook, int(raw))
    return json_response({"items": [d.public() for d in items]})


@handles(bp)
def approve_file_version(req: func.HttpRequest) -> func.HttpResponse:
    raw = req.route_params.get("version", "")
    if not is_whole_number(raw) or int(raw) < 1:
        raise bad_request("version must be a whole number from 1.", "version")
    record, etag = loaded_file(req)
    approved = approval.approve(get_context(), record.tenant_id, record, etag, int(raw),
                                access_for(req)[1].caller.object_id)
    return json_response(approved.public())


def budget_scope(req: func.HttpRequest) -> tuple[str, str]:
    """The tenant and customer of a budget route, after the customer-level check, as for a customer-level margin
    rule: a reseller sets budgets of its own customers, never of a customer another party serves too."""
    tenant_id, guard = access_for(req)
    customer_id = route_guid(req, "customerId")
    if req.method.upper() == "GET":  # a budget is the customer's one: read like the partner's own configuration
        guard.require(Scope.rule("customer", customer_id))
    else:
        guard.require(Scope.rule("customer", customer_id, guard.owner_for("customer", customer_id), new=True))
    tenants.require_tenant(get_context(), tenant_id)
    return tenant_id, customer_id


@handles(bp)
def put_budget(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, customer_id = budget_scope(req)
    budget = alerts.put_budget(get_context(), tenant_id, customer_id, parse_body(req, BudgetIn))
    return json_response(budget.model_dump(mode="json", by_alias=True))


@handles(bp)
def get_budget(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, customer_id = budget_scope(req)
    return json_response(alerts.get_budget(get_context(), tenant_id, customer_id).model_dump(mode="json",
                                                                                             by_alias=True))


@handles(bp)
def delete_budget(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, customer_id = budget_scope(req)
    alerts.delete_budget(get_context(), tenant_id, customer_id)
    return func.HttpResponse(status_code=204)


@handles(bp)
def list_usage_alerts(req: func.HttpRequest) -> func.HttpResponse:
    """Consumption alerts raised, newest first: each one the caller may see (a reseller: its own customers')."""
    tenant_id, guard = access_for(req)
    tenants.require_tenant(get_context(), tenant_id)
    items = guard.filter(alerts.list_alerts(get_context(), tenant_id),
                         lambda alert: Scope.rule("customer", alert["customerId"]))
    return json_response({"items": items})
