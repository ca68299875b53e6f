"""HTTP Blueprint for a tenant's pricing configuration: margin rules, internal identifiers, PO numbers."""

from __future__ import annotations

import azure.functions as func

from functions.http_support import MAX_BODY_BYTES, api, json_response, parse_body, query_choice, route_guid
from shared import service
from shared.configuration import (
    CustomerIdentifierIn,
    Identifier,
    ResellerIdentifierIn,
    SubscriptionIdentifierIn,
    check_target_id,
    import_identifiers,
)
from shared.context import get_context
from shared.margins import MarginLevel, MarginRuleIn
from shared.problems import Problem, bad_request

bp = func.Blueprint()

RULES = "tenants/{tenantId}/margin-rules"


def _tenant(req: func.HttpRequest) -> str:
    tenant_id = route_guid(req, "tenantId")
    service.require_tenant(get_context(), tenant_id)
    return tenant_id


@bp.route(route=RULES, methods=["POST"])
@api
def create_margin_rule(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id = _tenant(req)
    rule = get_context().rules.create(tenant_id, parse_body(req, MarginRuleIn))
    return json_response(rule.model_dump(mode="json", by_alias=True), 201,
                         headers={"Location": f"/api/{RULES.format(tenantId=tenant_id)}/{rule.id}"})


@bp.route(route=RULES, methods=["GET"])
@api
def list_margin_rules(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id = _tenant(req)
    level = query_choice(req, "level", {lv.value for lv in MarginLevel})
    target = req.params.get("targetId") or None
    if target is not None and (len(target) > 100 or not target.replace("-", "").isalnum()):
        raise bad_request("targetId must be an MPN id or a GUID.", "targetId")
    rules = get_context().rules.list(tenant_id, level, target)
    return json_response({"items": [r.model_dump(mode="json", by_alias=True) for r in rules]})


@bp.route(route=RULES + "/{ruleId}", methods=["DELETE"])
@api
def delete_margin_rule(req: func.HttpRequest) -> func.HttpResponse:
    get_context().rules.delete(_tenant(req), route_guid(req, "ruleId"))
    return func.HttpResponse(status_code=204)


_KINDS = {"resellers": ("reseller", "resellerMpnId", ResellerIdentifierIn),
          "customers": ("customer", "customerId", CustomerIdentifierIn),
          "subscriptions": ("subscription", "subscriptionId", SubscriptionIdentifierIn)}


def _identifier_routes(plural: str) -> None:
    kind, param, model = _KINDS[plural]
    route = f"tenants/{{tenantId}}/{plural}/{{{param}}}"

    @api
    def put(req: func.HttpRequest) -> func.HttpResponse:
        tenant_id = _tenant(req)
        id_ = check_target_id(kind, req.route_params.get(param, ""), param)
        body = parse_body(req, model)
        saved = get_context().identifiers.put(tenant_id, Identifier(kind=kind, id=id_, **body.model_dump()))
        return json_response(saved.model_dump(mode="json", by_alias=True, exclude_none=True))

    @api
    def get(req: func.HttpRequest) -> func.HttpResponse:
        tenant_id = _tenant(req)
        id_ = check_target_id(kind, req.route_params.get(param, ""), param)
        found = get_context().identifiers.get(tenant_id, kind, id_)
        return json_response(found.model_dump(mode="json", by_alias=True, exclude_none=True))

    put.__name__, get.__name__ = f"put_{kind}_identifier", f"get_{kind}_identifier"
    bp.route(route=route, methods=["PUT"])(put)
    bp.route(route=route, methods=["GET"])(get)


for _plural in _KINDS:
    _identifier_routes(_plural)


@bp.route(route="tenants/{tenantId}/identifiers", methods=["GET"])
@api
def list_identifiers(req: func.HttpRequest) -> func.HttpResponse:
    items = get_context().identifiers.list(_tenant(req))
    return json_response({"items": [i.model_dump(mode="json", by_alias=True, exclude_none=True) for i in items]})


@bp.route(route="tenants/{tenantId}/identifiers:import", methods=["POST"])
@api
def import_identifiers_csv(req: func.HttpRequest) -> func.HttpResponse:
    """One CSV upload (kind,id,internalId,name,poNumber): validated as a whole, all or nothing."""
    tenant_id = _tenant(req)
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES * 10:
        raise Problem(413, "Request too large", f"The CSV is larger than {MAX_BODY_BYTES * 10} bytes.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The CSV must be UTF-8.", "body")
    result = import_identifiers(get_context().identifiers, tenant_id, text)
    return json_response(result.model_dump(by_alias=True))
