"""HTTP Blueprint for a tenant's pricing configuration: margin rules, internal identifiers, PO numbers.

Each handler loads the tenant once (404 before anything else), checks the caller's access on what it touches and
calls one use case in `shared.app.pricing_admin` with the tenant; the routes are declared in `functions/routes.py`.
"""

from __future__ import annotations

import azure.functions as func

from functions.http_support import (MAX_BODY_BYTES, access_for, handles, json_response, parse_body, query_choice,
                                    route_guid)
from functions.routes import location
from shared.adapters.pricing import (CustomerIdentifierIn, ResellerIdentifierIn, SubscriptionIdentifierIn,
                                     check_target_id)
from shared.app import pricing_admin, tenants
from shared.app.context import get_context
from shared.core.access import Scope
from shared.core.margins import MarginLevel, MarginRuleIn
from shared.core.models import Tenant
from shared.core.problems import Problem, bad_request, not_found

bp = func.Blueprint()


def _tenant(req: func.HttpRequest) -> Tenant:
    return tenants.require_tenant(get_context(), access_for(req)[0])


@handles(bp)
def create_margin_rule(req: func.HttpRequest) -> func.HttpResponse:
    tenant = _tenant(req)
    body = parse_body(req, MarginRuleIn)
    access_for(req)[1].require(Scope.rule(body.level, body.target_id))
    rule = pricing_admin.create_rule(get_context(), tenant, body)
    url = location("delete_margin_rule", tenantId=tenant.tenant_id, ruleId=rule.id)  # the rule's own URL
    return json_response(rule.model_dump(mode="json", by_alias=True), 201, headers={"Location": url})


@handles(bp)
def list_margin_rules(req: func.HttpRequest) -> func.HttpResponse:
    tenant = _tenant(req)
    level = query_choice(req, "level", {lv.value for lv in MarginLevel})
    target = req.params.get("targetId") or None
    if target is not None and (len(target) > 100 or not target.replace("-", "").isalnum()):
        raise bad_request("targetId must be an MPN id or a GUID.", "targetId")
    rules = access_for(req)[1].filter(pricing_admin.list_rules(get_context(), tenant, level, target),
                                      lambda r: Scope.rule(r.level, r.target_id))
    return json_response({"items": [r.model_dump(mode="json", by_alias=True) for r in rules]})


@handles(bp)
def delete_margin_rule(req: func.HttpRequest) -> func.HttpResponse:
    tenant = _tenant(req)
    rule_id = route_guid(req, "ruleId")
    rule = pricing_admin.get_rule(get_context(), tenant, rule_id)
    access_for(req)[1].require(Scope.rule(rule.level, rule.target_id), hidden=not_found(f"Margin rule {rule_id}"))
    pricing_admin.delete_rule(get_context(), tenant, rule)
    return func.HttpResponse(status_code=204)


# kind -> (route parameter, body model); the routes `put_{kind}_identifier` and `get_{kind}_identifier`
_KINDS = {"reseller": ("resellerMpnId", ResellerIdentifierIn), "customer": ("customerId", CustomerIdentifierIn),
          "subscription": ("subscriptionId", SubscriptionIdentifierIn)}


def _identifier_handlers(kind: str) -> None:
    param, model = _KINDS[kind]

    def target(req: func.HttpRequest) -> tuple[Tenant, str]:
        tenant = _tenant(req)
        id_ = check_target_id(kind, req.route_params.get(param, ""), param)
        access_for(req)[1].require(Scope.identifier(kind, id_))
        return tenant, id_

    def put(req: func.HttpRequest) -> func.HttpResponse:
        tenant, id_ = target(req)
        saved = pricing_admin.put_identifier(get_context(), tenant, kind, id_, parse_body(req, model))
        return json_response(saved.model_dump(mode="json", by_alias=True, exclude_none=True))

    def get(req: func.HttpRequest) -> func.HttpResponse:
        tenant, id_ = target(req)
        found = pricing_admin.get_identifier(get_context(), tenant, kind, id_)
        return json_response(found.model_dump(mode="json", by_alias=True, exclude_none=True))

    # Named before `handles` sees them: the route table is keyed by function name.
    put.__name__ = put.__qualname__ = f"put_{kind}_identifier"
    get.__name__ = get.__qualname__ = f"get_{kind}_identifier"
    handles(bp)(put)
    handles(bp)(get)


for _kind in _KINDS:
    _identifier_handlers(_kind)


@handles(bp)
def list_identifiers(req: func.HttpRequest) -> func.HttpResponse:
    items = access_for(req)[1].filter(pricing_admin.list_identifiers(get_context(), _tenant(req)),
                                      lambda i: Scope.identifier(i.kind, i.id))
    return json_response({"items": [i.model_dump(mode="json", by_alias=True, exclude_none=True) for i in items]})


@handles(bp)
def import_identifiers_csv(req: func.HttpRequest) -> func.HttpResponse:
    """One CSV upload (kind,id,internalId,name,poNumber): validated as a whole, all or nothing."""
    tenant = _tenant(req)
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES * 10:
        raise Problem(413, "Request too large", f"The CSV is larger than {MAX_BODY_BYTES * 10} bytes.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The CSV must be UTF-8.", "body")
    return json_response(pricing_admin.import_identifiers(get_context(), tenant, text).model_dump(by_alias=True))
