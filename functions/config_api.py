"""HTTP Blueprint for a tenant's pricing configuration: margin rules, internal identifiers, PO numbers."""

from __future__ import annotations

import azure.functions as func

from functions.http_support import MAX_BODY_BYTES, access_for, api, json_response, parse_body, query_choice, route_guid
from shared.app import file_requests, names
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
from shared.core.names import NameEntry
from shared.core.preview import MarginRuleEnd, RulePreviewIn
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
    access.require(Scope.rule(body.level, body.target_id))
    rule = get_context().rules.create(tenant_id, body)
    etag = get_context().rules.etags(tenant_id).get(rule.id)
    return json_response({**rule.model_dump(mode="json", by_alias=True), "etag": etag}, 201,
                         headers={"Location": f"/api/{RULES.format(tenantId=tenant_id)}/{rule.id}",
                                  **({"ETag": etag} if etag else {})})


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
                          lambda r: Scope.rule(r.level, r.target_id))
    etags = get_context().rules.etags(tenant_id) if rules else {}  # for If-Match on PATCH
    return json_response({"items": [{**r.model_dump(mode="json", by_alias=True), "etag": etags.get(r.id)}
                                    for r in rules]})


@bp.route(route=RULES + "/{ruleId}", methods=["PATCH"])
@api(Action.RULES_WRITE, scoped=True)
def patch_margin_rule(req: func.HttpRequest) -> func.HttpResponse:
    """End-date (or reopen) a rule in one atomic write: `{"effectiveTo": "2026-12-01" | null}` with `If-Match`
    (the rule's ETag from the list or from this route): 428 without it, 412 when the rule changed meanwhile."""
    tenant_id = _tenant(req)
    _, access = access_for(req)
    rule_id = route_guid(req, "ruleId")
    missing = not_found(f"Margin rule {rule_id}")
    rule = get_context().rules.get(tenant_id, rule_id)
    if rule is None:
        raise missing
    access.require(Scope.rule(rule.level, rule.target_id), hidden=missing)
    etag = req.headers.get("If-Match")
    if not etag:
        raise Problem(428, "Precondition required", "Send the rule's ETag in If-Match (from the rule list), so a "
                      "change made meanwhile is not overwritten.", errors=[{"field": "If-Match",
                                                                            "message": "required"}])
    body = parse_body(req, MarginRuleEnd)
    changed, new_etag = get_context().rules.end_date(tenant_id, rule_id, body.effective_to, etag)
    return json_response({**changed.model_dump(mode="json", by_alias=True), "etag": new_etag},
                         headers={"ETag": new_etag})


@bp.route(route=RULES + ":preview", methods=["POST"])
@api(Action.RULES_WRITE, scoped=True)
def preview_margin_rule(req: func.HttpRequest) -> func.HttpResponse:
    """The rule's effect on the latest invoice before it is saved: per affected customer, today's price, the new
    price and the difference (the margin engine's own numbers). A reseller sees only its own lines."""
    tenant_id = _tenant(req)
    _, access = access_for(req)
    body = parse_body(req, RulePreviewIn)
    access.require(Scope.rule(body.level, body.target_id))
    standing = access.access
    own = (frozenset(standing.principal.reseller_ids) if standing is not None and standing.acts_as_reseller
           and standing.principal is not None else None)
    result = names.preview_rule(get_context(), tenant_id, body, own)
    return json_response(_money(result))


def _money(value):
    """Decimals as exact text, everywhere in a nested answer."""
    from decimal import Decimal

    from shared.core.models import plain_decimal

    if isinstance(value, Decimal):
        return plain_decimal(value)
    if isinstance(value, dict):
        return {k: _money(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_money(v) for v in value]
    return value


@bp.route(route="tenants/{tenantId}/names", methods=["GET"])
@api(Action.RULES_READ, scoped=True)
def list_names(req: func.HttpRequest) -> func.HttpResponse:
    """Resellers, customers and subscriptions by name, as Microsoft's lines showed them: `q` (words, any case),
    `kind`, `ids` (comma-separated: just these), `top` (1-100, default 20); only those the caller may set rules
    for."""
    tenant_id = _tenant(req)
    _, access = access_for(req)
    kind = query_choice(req, "kind", set(names.KINDS))
    query = (req.params.get("q") or "").strip()
    if len(query) > 100:
        raise bad_request("q is at most 100 characters.", "q")
    raw = req.params.get("top") or "20"
    if not raw.isdigit() or not 1 <= int(raw) <= names.MAX_RESULTS:
        raise bad_request(f"top must be a whole number from 1 to {names.MAX_RESULTS}.", "top")
    ids = frozenset(i.strip().lower() for i in (req.params.get("ids") or "").split(",") if i.strip())
    if len(ids) > names.MAX_RESULTS or any(len(i) > 100 for i in ids):
        raise bad_request(f"ids holds at most {names.MAX_RESULTS} ids.", "ids")

    def visible(entry: NameEntry) -> bool:
        return bool(access.filter([entry], lambda e: Scope.rule(e.kind, e.id)))

    items = names.search_names(get_context(), tenant_id, query, kind, int(raw), visible, ids)
    if not items:
        access.filter([], lambda e: Scope())  # nothing to show is an answer too: the scope was checked
    return json_response({"items": items})


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
    access.require(Scope.rule(rule.level, rule.target_id), hidden=missing)
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
        access.require(Scope.identifier(kind, id_))
        body = parse_body(req, model)
        saved = get_context().identifiers.put(tenant_id, Identifier(kind=kind, id=id_, **body.model_dump()))
        return json_response(saved.model_dump(mode="json", by_alias=True, exclude_none=True))

    def get(req: func.HttpRequest) -> func.HttpResponse:
        tenant_id = _tenant(req)
        _, access = access_for(req)
        id_ = check_target_id(kind, req.route_params.get(param, ""), param)
        access.require(Scope.identifier(kind, id_))
        found = get_context().identifiers.get(tenant_id, kind, id_)
        return json_response(found.model_dump(mode="json", by_alias=True, exclude_none=True))

    # Named before `api` sees them: the policy is keyed by function name.
    put.__name__ = put.__qualname__ = f"put_{kind}_identifier"
    get.__name__ = get.__qualname__ = f"get_{kind}_identifier"
    bp.route(route=route, methods=["PUT"])(api(Action.IDENTIFIERS_WRITE, scoped=True)(put))
    bp.route(route=route, methods=["GET"])(api(Action.IDENTIFIERS_READ, scoped=True)(get))


for _plural in _KINDS:
    _identifier_routes(_plural)


@bp.route(route="tenants/{tenantId}/identifiers", methods=["GET"])
@api(Action.IDENTIFIERS_READ, scoped=True)
def list_identifiers(req: func.HttpRequest) -> func.HttpResponse:
    _, access = access_for(req)
    items = access.filter(get_context().identifiers.list(_tenant(req)), lambda i: Scope.identifier(i.kind, i.id))
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
