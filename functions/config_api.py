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
from shared.app import names, pricing_admin, tenants
from shared.app.context import get_context
from shared.core.access import Scope
from shared.core.margins import MarginLevel, MarginRuleIn
from shared.core.boundaries import is_whole_number
from shared.core.models import Tenant
from shared.core.money import plain_amounts
from shared.core.names import NameEntry
from shared.core.preview import MarginRuleEnd, RulePreviewIn
from shared.core.problems import Problem, bad_request, not_found

bp = func.Blueprint()


def _tenant(req: func.HttpRequest) -> Tenant:
    return tenants.require_tenant(get_context(), access_for(req)[0])


@handles(bp)
def create_margin_rule(req: func.HttpRequest) -> func.HttpResponse:
    tenant = _tenant(req)
    body = parse_body(req, MarginRuleIn)
    guard = access_for(req)[1]
    if body.level != MarginLevel.RESELLER:  # a reseller's rule is its own: it applies to its own lines only
        body = body.model_copy(update={"owner_reseller_id": guard.owner_for(body.level, body.target_id,
                                                                            body.owner_reseller_id)})
    guard.require(Scope.rule(body.level, body.target_id, body.owner_reseller_id, new=True))
    rule = pricing_admin.create_rule(get_context(), tenant, body)
    url = location("delete_margin_rule", tenantId=tenant.tenant_id, ruleId=rule.id)  # the rule's own URL
    etag = pricing_admin.rule_etags(get_context(), tenant).get(rule.id)
    return json_response({**rule.model_dump(mode="json", by_alias=True), "etag": etag}, 201,
                         headers={"Location": url, **({"ETag": etag} if etag else {})})


@handles(bp)
def list_margin_rules(req: func.HttpRequest) -> func.HttpResponse:
    tenant = _tenant(req)
    level = query_choice(req, "level", {lv.value for lv in MarginLevel})
    target = req.params.get("targetId") or None
    if target is not None and (len(target) > 100 or not target.replace("-", "").isalnum()):
        raise bad_request("targetId must be an MPN id or a GUID.", "targetId")
    rules = access_for(req)[1].filter(pricing_admin.list_rules(get_context(), tenant, level, target),
                                      lambda r: Scope.rule(r.level, r.target_id, r.owner_reseller_id))
    etags = pricing_admin.rule_etags(get_context(), tenant) if rules else {}  # for If-Match on PATCH
    return json_response({"items": [{**r.model_dump(mode="json", by_alias=True), "etag": etags.get(r.id)}
                                    for r in rules]})


@handles(bp)
def patch_margin_rule(req: func.HttpRequest) -> func.HttpResponse:
    """End-date (or reopen) a rule in one atomic write: `{"effectiveTo": "2026-12-01" | null}` with `If-Match`
    (the rule's ETag from the list or from this route): 428 without it, 412 when the rule changed meanwhile."""
    tenant = _tenant(req)
    rule_id = route_guid(req, "ruleId")
    body = parse_body(req, MarginRuleEnd)  # a malformed body is a 400 whatever the rule (it says nothing about it)
    rule = pricing_admin.get_rule(get_context(), tenant, rule_id)
    access_for(req)[1].require(Scope.rule(rule.level, rule.target_id, rule.owner_reseller_id),
                               hidden=not_found(f"Margin rule {rule_id}"))
    etag = req.headers.get("If-Match")
    if not etag:
        raise Problem(428, "Precondition required", "Send the rule's ETag in If-Match (from the rule list), so a "
                      "change made meanwhile is not overwritten.", errors=[{"field": "If-Match",
                                                                            "message": "required"}])
    changed, new_etag = pricing_admin.end_date_rule(get_context(), tenant, rule, body.effective_to, etag)
    return json_response({**changed.model_dump(mode="json", by_alias=True), "etag": new_etag},
                         headers={"ETag": new_etag})


@handles(bp)
def preview_margin_rule(req: func.HttpRequest) -> func.HttpResponse:
    """The rule's effect on the latest invoice before it is saved: per affected customer, today's price, the new
    price and the difference (the margin engine's own numbers). A reseller sees only its own lines."""
    tenant = _tenant(req)
    guard = access_for(req)[1]
    body = parse_body(req, RulePreviewIn)
    if body.level != MarginLevel.RESELLER:  # previewed as it would be saved: a reseller's rule is its own
        body = body.model_copy(update={"owner_reseller_id": guard.owner_for(body.level, body.target_id,
                                                                            body.owner_reseller_id)})
    guard.require(Scope.rule(body.level, body.target_id, body.owner_reseller_id, new=True))
    standing = guard.access
    own = (frozenset(standing.principal.reseller_ids) if standing is not None and standing.acts_as_reseller
           and standing.principal is not None else None)
    return json_response(plain_amounts(names.preview_rule(get_context(), tenant.tenant_id, body, own)))


@handles(bp)
def list_names(req: func.HttpRequest) -> func.HttpResponse:
    """Resellers, customers and subscriptions by name, as Microsoft's lines showed them: `q` (words, any case),
    `kind`, `ids` (comma-separated: just these), `top` (1-100, default 20); only those the caller may set rules
    for."""
    tenant = _tenant(req)
    guard = access_for(req)[1]
    kind = query_choice(req, "kind", set(names.KINDS))
    query = (req.params.get("q") or "").strip()
    if len(query) > 100:
        raise bad_request("q is at most 100 characters.", "q")
    raw = req.params.get("top") or "20"
    if not is_whole_number(raw, 3) or not 1 <= int(raw) <= names.MAX_RESULTS:
        raise bad_request(f"top must be a whole number from 1 to {names.MAX_RESULTS}.", "top")
    ids = frozenset(i.strip().lower() for i in (req.params.get("ids") or "").split(",") if i.strip())
    if len(ids) > names.MAX_RESULTS or any(len(i) > 100 for i in ids):
        raise bad_request(f"ids holds at most {names.MAX_RESULTS} ids.", "ids")

    def visible(entry: NameEntry) -> bool:
        return bool(guard.filter([entry], lambda e: Scope.rule(e.kind, e.id)))

    items = names.search_names(get_context(), tenant.tenant_id, query, kind, int(raw), visible, ids)
    if not items:
        guard.filter([], lambda e: Scope())  # nothing to show is an answer too: the scope was checked
    return json_response({"items": items})


@handles(bp)
def delete_margin_rule(req: func.HttpRequest) -> func.HttpResponse:
    tenant = _tenant(req)
    rule_id = route_guid(req, "ruleId")
    rule = pricing_admin.get_rule(get_context(), tenant, rule_id)
    access_for(req)[1].require(Scope.rule(rule.level, rule.target_id, rule.owner_reseller_id),
                               hidden=not_found(f"Margin rule {rule_id}"))
    pricing_admin.delete_rule(get_context(), tenant, rule)
    return func.HttpResponse(status_code=204)


# kind -> (route parameter, body model); the routes `put_{kind}_identifier` and `get_{kind}_identifier`
_KINDS = {"reseller": ("resellerMpnId", ResellerIdentifierIn), "customer": ("customerId", CustomerIdentifierIn),
          "subscription": ("subscriptionId", SubscriptionIdentifierIn)}


def _identifier_handlers(kind: str) -> None:
    param, model = _KINDS[kind]

    def target(req: func.HttpRequest) -> tuple[Tenant, str, str | None]:
        tenant = _tenant(req)
        id_ = check_target_id(kind, req.route_params.get(param, ""), param)
        return tenant, id_, _owner(req, kind, id_)  # a reseller's identifier is its own: on its own lines only

    def put(req: func.HttpRequest) -> func.HttpResponse:
        tenant, id_, owner = target(req)
        new = pricing_admin.find_identifier(get_context(), tenant, kind, id_, owner) is None
        access_for(req)[1].require(Scope.identifier(kind, id_, owner, new=new))
        saved = pricing_admin.put_identifier(get_context(), tenant, kind, id_, parse_body(req, model), owner)
        return json_response(saved.model_dump(mode="json", by_alias=True, exclude_none=True))

    def get(req: func.HttpRequest) -> func.HttpResponse:
        tenant, id_, owner = target(req)
        guard = access_for(req)[1]
        found = pricing_admin.find_identifier(get_context(), tenant, kind, id_, owner)
        if found is None and owner is not None and guard.acts_as_reseller:  # else the partner's, if it may see it
            owner, found = None, pricing_admin.find_identifier(get_context(), tenant, kind, id_, None)
        guard.require(Scope.identifier(kind, id_, owner))
        if found is None:
            raise not_found(f"The {kind} {id_}")
        return json_response(found.model_dump(mode="json", by_alias=True, exclude_none=True))

    # Named before `handles` sees them: the route table is keyed by function name.
    put.__name__ = put.__qualname__ = f"put_{kind}_identifier"
    get.__name__ = get.__qualname__ = f"get_{kind}_identifier"
    handles(bp)(put)
    handles(bp)(get)


def _owner(req: func.HttpRequest, kind: str, id_: str) -> str | None:
    """Whose identifier: `ownerResellerId` (query), else for a reseller its own reseller id; None: the partner's."""
    requested = req.params.get("ownerResellerId") or None
    if requested is not None:
        requested = check_target_id("reseller", requested, "ownerResellerId")
        if requested == "0" or kind == "reseller":
            raise bad_request("ownerResellerId is a reseller's MPN id, for customer and subscription identifiers.",
                              "ownerResellerId")
    return None if kind == "reseller" else access_for(req)[1].owner_for(kind, id_, requested)


for _kind in _KINDS:
    _identifier_handlers(_kind)


@handles(bp)
def list_identifiers(req: func.HttpRequest) -> func.HttpResponse:
    items = access_for(req)[1].filter(pricing_admin.list_identifiers(get_context(), _tenant(req)),
                                      lambda i: Scope.identifier(i.kind, i.id, i.owner_reseller_id))
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
