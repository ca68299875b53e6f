"""HTTP Blueprint for a tenant's pricing configuration: margin rules, internal identifiers, PO numbers."""

from __future__ import annotations

import azure.functions as func

from functions.http_support import MAX_BODY_BYTES, access_for, api, json_response, parse_body, query_choice, route_guid
from shared.app import file_requests
from shared.adapters.pricing import (
    CustomerIdentifierIn,
    Identifier,
    ResellerIdentifierIn,
    SubscriptionIdentifierIn,
    check_target_id,
    import_identifiers,
)
from shared.app.context import get_context
from shared.core.margins import MarginLevel, MarginRuleIn
from shared.core.access import Action, Scope
from shared.core.problems import Problem, bad_request, not_found

bp = func.Blueprint()

RULES = "tenants/{tenantId}/margin-rules"


def _tenant(req: func.HttpRequest) -> str:
    tenant_id, _ = access_for(req)
    file_requests.require_tenant(get_context(), tenant_id)
    return tenant_id


@bp.route(route=RULES, methods=["POST"])
@api(Action.RULES_WRITE, scoped=True)
def create_margin_rule(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, access = access_for(req)
    file_requests.require_tenant(get_context(), tenant_id)
    body = parse_body(req, MarginRuleIn)
    if body.level != MarginLevel.RESELLER:  # a reseller's rule is its own: it applies to its own lines only
        body = body.model_copy(update={"owner_reseller_id": access.owner_for(body.level, body.target_id,
                                                                             body.owner_reseller_id)})
    access.require(Scope.rule(body.level, body.target_id, body.owner_reseller_id, new=True))
    rule = get_context().rules.create(tenant_id, body)
    return json_response(rule.model_dump(mode="json", by_alias=True), 201,
                         headers={"Location": f"/api/{RULES.format(tenantId=tenant_id)}/{rule.id}"})


@bp.route(route=RULES, methods=["GET"])
@api(Action.RULES_READ, scoped=True)
def list_margin_rules(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id = _tenant(req)
    _, access = access_for(req)
    level = query_choice(req, "level", {lv.value for lv in MarginLevel})
    target = req.params.get("targetId") or None
    if target is not None and (len(target) > 100 or not target.replace("-", "").isalnum()):
        raise bad_request("targetId must be an MPN id or a GUID.", "targetId")
    rules = access.filter(get_context().rules.list(tenant_id, level, target),
                          lambda r: Scope.rule(r.level, r.target_id, r.owner_reseller_id))
    return json_response({"items": [r.model_dump(mode="json", by_alias=True) for r in rules]})


@bp.route(route=RULES + "/{ruleId}", methods=["DELETE"])
@api(Action.RULES_WRITE, scoped=True)
def delete_margin_rule(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id = _tenant(req)
    _, access = access_for(req)
    rule_id = route_guid(req, "ruleId")
    missing = not_found(f"Margin rule {rule_id}")
    rule = get_context().rules.get(tenant_id, rule_id)
    if rule is None:
        raise missing
    access.require(Scope.rule(rule.level, rule.target_id, rule.owner_reseller_id), hidden=missing)
    get_context().rules.delete(tenant_id, rule_id)
    return func.HttpResponse(status_code=204)


_KINDS = {"resellers": ("reseller", "resellerMpnId", ResellerIdentifierIn),
          "customers": ("customer", "customerId", CustomerIdentifierIn),
          "subscriptions": ("subscription", "subscriptionId", SubscriptionIdentifierIn)}


def _identifier_routes(plural: str) -> None:
    kind, param, model = _KINDS[plural]
    route = f"tenants/{{tenantId}}/{plural}/{{{param}}}"

    def put(req: func.HttpRequest) -> func.HttpResponse:
        tenant_id = _tenant(req)
        _, access = access_for(req)
        id_ = check_target_id(kind, req.route_params.get(param, ""), param)
        owner = _owner(req, access, kind, id_)  # a reseller's identifier is its own: on its own lines only
        store = get_context().identifiers
        access.require(Scope.identifier(kind, id_, owner, new=store.find(tenant_id, kind, id_, owner) is None))
        body = parse_body(req, model)
        saved = store.put(tenant_id, Identifier(kind=kind, id=id_, owner_reseller_id=owner, **body.model_dump()))
        return json_response(saved.model_dump(mode="json", by_alias=True, exclude_none=True))

    def get(req: func.HttpRequest) -> func.HttpResponse:
        tenant_id = _tenant(req)
        _, access = access_for(req)
        id_ = check_target_id(kind, req.route_params.get(param, ""), param)
        owner = _owner(req, access, kind, id_)
        store = get_context().identifiers
        found = store.find(tenant_id, kind, id_, owner)
        if found is None and owner is not None and access.acts_as_reseller:  # else the partner's, if it may see it
            owner, found = None, store.find(tenant_id, kind, id_)
        access.require(Scope.identifier(kind, id_, owner))
        if found is None:
            raise not_found(f"The {kind} {id_}")
        return json_response(found.model_dump(mode="json", by_alias=True, exclude_none=True))

    # Named before `api` sees them: the policy is keyed by function name.
    put.__name__ = put.__qualname__ = f"put_{kind}_identifier"
    get.__name__ = get.__qualname__ = f"get_{kind}_identifier"
    bp.route(route=route, methods=["PUT"])(api(Action.IDENTIFIERS_WRITE, scoped=True)(put))
    bp.route(route=route, methods=["GET"])(api(Action.IDENTIFIERS_READ, scoped=True)(get))


def _owner(req: func.HttpRequest, access, kind: str, id_: str) -> str | None:
    """Whose identifier: `ownerResellerId` (query), else for a reseller its own reseller id; None: the partner's."""
    requested = req.params.get("ownerResellerId") or None
    if requested is not None:
        requested = check_target_id("reseller", requested, "ownerResellerId")
        if requested == "0" or kind == "reseller":
            raise bad_request("ownerResellerId is a reseller's MPN id, for customer and subscription identifiers.",
                              "ownerResellerId")
    return None if kind == "reseller" else access.owner_for(kind, id_, requested)


for _plural in _KINDS:
    _identifier_routes(_plural)


@bp.route(route="tenants/{tenantId}/identifiers", methods=["GET"])
@api(Action.IDENTIFIERS_READ, scoped=True)
def list_identifiers(req: func.HttpRequest) -> func.HttpResponse:
    _, access = access_for(req)
    items = access.filter(get_context().identifiers.list(_tenant(req)),
                          lambda i: Scope.identifier(i.kind, i.id, i.owner_reseller_id))
    return json_response({"items": [i.model_dump(mode="json", by_alias=True, exclude_none=True) for i in items]})


@bp.route(route="tenants/{tenantId}/identifiers:import", methods=["POST"])
@api(Action.IDENTIFIERS_WRITE)
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
