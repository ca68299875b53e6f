"""Who may do what in a tenant, as the API manages it: principals (partner admins grant and revoke roles), the
caller's own standing (`/me`), and the audit trail of download links."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from shared.adapters.audit import AuditEntry
from shared.adapters.repositories import Conflict
from shared.app.context import AppContext
from shared.core.access import Access, Caller, Principal, PrincipalIn
from shared.core.models import Tenant
from shared.core.problems import conflict, not_found

CHANGED = "The principal changed since it was read; read it again and retry."


def list_principals(ctx: AppContext, tenant_id: str) -> list[Principal]:
    return ctx.principals.list(tenant_id)


def get_principal(ctx: AppContext, tenant_id: str, object_id: str) -> Principal:
    found = ctx.principals.get(tenant_id, object_id)
    if found is None:
        raise not_found(f"Principal {object_id}")
    return found


def put_principal(ctx: AppContext, tenant: Tenant, object_id: str, body: PrincipalIn,
                  if_match: str | None) -> tuple[Principal, bool]:
    """Grant one role; returns (principal, created). With `if_match`, only over the version the client read."""
    try:
        return ctx.principals.put(tenant.tenant_id, object_id, body, if_match=if_match)
    except Conflict:
        raise conflict(CHANGED)


def delete_principal(ctx: AppContext, tenant_id: str, object_id: str, if_match: str | None) -> None:
    try:
        existed = ctx.principals.delete(tenant_id, object_id, if_match=if_match)
    except Conflict:
        raise conflict(CHANGED)
    if not existed:
        raise not_found(f"Principal {object_id}")


def audit_between(ctx: AppContext, tenant_id: str, start: datetime, end: datetime) -> tuple[list[AuditEntry], bool]:
    """The download links issued in [start, end), oldest first, and whether the list was cut short."""
    return ctx.audit.between(tenant_id, start, end)


def my_standing(ctx: AppContext, caller: Caller,
                standing_in: Callable[[Iterable[str]], list[Access]]) -> dict[str, Any]:
    """Who the caller is and its roles in each registered tenant where it has one (`standing_in` gives the
    caller's access in each tenant id): the web front end learns from it which tenants to offer and which views
    to ask for (resellers and customers cannot list tenants)."""
    tenants = {t.tenant_id.lower(): t for t in ctx.tenants.list()}
    items = []
    for access in standing_in(tenants):
        principal = access.principal
        items.append({"tenantId": access.tenant_id, "displayName": tenants[access.tenant_id].display_name,
                      "roles": sorted(r.value for r in access.roles),
                      "resellerIds": principal.reseller_ids if principal else [],
                      "customerIds": principal.customer_ids if principal else []})
    return {"objectId": caller.object_id, "tenantId": caller.tenant_id, "tenants": items}
