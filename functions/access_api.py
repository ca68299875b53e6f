"""HTTP Blueprint for who may do what in a tenant: principals (partner admins manage them) and the audit trail
of download links."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import azure.functions as func

from functions.http_support import access_for, api, current_guard, json_response, parse_body, route_guid
from shared.app import file_requests
from shared.app.context import get_context
from shared.core.access import Action, PrincipalIn
from shared.core.problems import bad_request, conflict, not_found
from shared.adapters.repositories import Conflict

bp = func.Blueprint()

PRINCIPALS = "tenants/{tenantId}/principals"
DEFAULT_AUDIT_DAYS = 30


def _etag_headers(etag: str | None) -> dict[str, str]:
    return {"ETag": etag} if etag else {}


@bp.route(route=PRINCIPALS, methods=["GET"])
@api(Action.PRINCIPALS_READ)
def list_principals(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, _ = access_for(req)
    return json_response({"items": [p.public() for p in get_context().principals.list(tenant_id)]})


@bp.route(route=PRINCIPALS + "/{objectId}", methods=["GET"])
@api(Action.PRINCIPALS_READ)
def get_principal(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, _ = access_for(req)
    object_id = route_guid(req, "objectId")
    found = get_context().principals.get(tenant_id, object_id)
    if found is None:
        raise not_found(f"Principal {object_id}")
    return json_response(found.public(), headers=_etag_headers(found.etag))


@bp.route(route=PRINCIPALS + "/{objectId}", methods=["PUT"])
@api(Action.PRINCIPALS_MANAGE)
def put_principal(req: func.HttpRequest) -> func.HttpResponse:
    """Grant one role (`If-Match` optional: then only over the version the client read)."""
    tenant_id, _ = access_for(req)
    object_id = route_guid(req, "objectId")
    file_requests.require_tenant(get_context(), tenant_id)
    body = parse_body(req, PrincipalIn)
    try:
        saved, created = get_context().principals.put(tenant_id, object_id, body,
                                                      if_match=req.headers.get("If-Match") or None)
    except Conflict:
        raise conflict("The principal changed since it was read; read it again and retry.")
    return json_response(saved.public(), 201 if created else 200, headers=_etag_headers(saved.etag))


@bp.route(route=PRINCIPALS + "/{objectId}", methods=["DELETE"])
@api(Action.PRINCIPALS_MANAGE)
def delete_principal(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, _ = access_for(req)
    object_id = route_guid(req, "objectId")
    try:
        existed = get_context().principals.delete(tenant_id, object_id, if_match=req.headers.get("If-Match") or None)
    except Conflict:
        raise conflict("The principal changed since it was read; read it again and retry.")
    if not existed:
        raise not_found(f"Principal {object_id}")
    return func.HttpResponse(status_code=204)


def _instant(req: func.HttpRequest, name: str, default: datetime) -> datetime:
    """`YYYY-MM-DD` (midnight UTC) or an ISO 8601 date-time (UTC if no offset)."""
    raw = req.params.get(name)
    if not raw:
        return default
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(), tzinfo=timezone.utc)
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 date-time.", name)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@bp.route(route="tenants/{tenantId}/audit", methods=["GET"])
@api(Action.AUDIT_READ)
def list_audit(req: func.HttpRequest) -> func.HttpResponse:
    """The download links issued in [from, to) (default: the last 30 days), oldest first."""
    tenant_id, _ = access_for(req)
    now = datetime.now(timezone.utc)
    end = _instant(req, "to", now + timedelta(seconds=1))
    start = _instant(req, "from", end - timedelta(days=DEFAULT_AUDIT_DAYS))
    if start >= end:
        raise bad_request("from must be before to.", "from")
    items, truncated = get_context().audit.between(tenant_id, start, end)
    return json_response({"items": [e.model_dump(mode="json", by_alias=True) for e in items],
                          "truncated": truncated})


@bp.route(route="me", methods=["GET"])
@api(Action.SELF_READ, scoped=True)
def get_me(req: func.HttpRequest) -> func.HttpResponse:
    """Who the caller is and its roles in each registered tenant: the web front end learns from it which tenants
    to offer and which views to ask for (resellers and customers cannot list tenants)."""
    guard = current_guard()
    tenants = {t.tenant_id.lower(): t for t in get_context().tenants.list()}
    items = []
    for access in guard.own_standing(tenants):
        principal = access.principal
        items.append({"tenantId": access.tenant_id, "displayName": tenants[access.tenant_id].display_name,
                      "roles": sorted(r.value for r in access.roles),
                      "resellerIds": principal.reseller_ids if principal else [],
                      "customerIds": principal.customer_ids if principal else []})
    return json_response({"objectId": guard.caller.object_id, "tenantId": guard.caller.tenant_id, "tenants": items})
