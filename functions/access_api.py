"""HTTP Blueprint for who may do what in a tenant: principals (partner admins manage them), the caller's own
standing and the audit trail of download links. Each handler calls one use case in `shared.app.access_admin`; the
routes are declared in `functions/routes.py`."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import azure.functions as func

from functions.http_support import access_for, current_guard, handles, json_response, parse_body, route_guid
from shared.app import access_admin, tenants
from shared.app.context import get_context
from shared.core.access import PrincipalIn
from shared.core.problems import bad_request

bp = func.Blueprint()

DEFAULT_AUDIT_DAYS = 30


def _etag_headers(etag: str | None) -> dict[str, str]:
    return {"ETag": etag} if etag else {}


@handles(bp)
def list_principals(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, _ = access_for(req)
    return json_response({"items": [p.public() for p in access_admin.list_principals(get_context(), tenant_id)]})


@handles(bp)
def get_principal(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, _ = access_for(req)
    object_id = route_guid(req, "objectId")
    found = access_admin.get_principal(get_context(), tenant_id, object_id)
    return json_response(found.public(), headers=_etag_headers(found.etag))


@handles(bp)
def put_principal(req: func.HttpRequest) -> func.HttpResponse:
    """Grant one role (`If-Match` optional: then only over the version the client read)."""
    tenant_id, _ = access_for(req)
    object_id = route_guid(req, "objectId")
    tenant = tenants.require_tenant(get_context(), tenant_id)
    saved, created = access_admin.put_principal(get_context(), tenant, object_id, parse_body(req, PrincipalIn),
                                                req.headers.get("If-Match") or None)
    return json_response(saved.public(), 201 if created else 200, headers=_etag_headers(saved.etag))


@handles(bp)
def delete_principal(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, _ = access_for(req)
    object_id = route_guid(req, "objectId")
    access_admin.delete_principal(get_context(), tenant_id, object_id, req.headers.get("If-Match") or None)
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


@handles(bp)
def list_audit(req: func.HttpRequest) -> func.HttpResponse:
    """The download links issued in [from, to) (default: the last 30 days), oldest first."""
    tenant_id, _ = access_for(req)
    now = datetime.now(timezone.utc)
    end = _instant(req, "to", now + timedelta(seconds=1))
    start = _instant(req, "from", end - timedelta(days=DEFAULT_AUDIT_DAYS))
    if start >= end:
        raise bad_request("from must be before to.", "from")
    items, truncated = access_admin.audit_between(get_context(), tenant_id, start, end)
    return json_response({"items": [e.model_dump(mode="json", by_alias=True) for e in items],
                          "truncated": truncated})


@handles(bp)
def get_me(req: func.HttpRequest) -> func.HttpResponse:
    """Who the caller is and its roles in each registered tenant."""
    guard = current_guard()
    return json_response(access_admin.my_standing(get_context(), guard.caller, guard.own_standing))
