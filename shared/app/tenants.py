"""Partner tenants as the API sees them: register, read, list. Every tenant route loads its tenant here once and
hands the `Tenant` on."""

from __future__ import annotations

from collections.abc import Callable

from shared.adapters.repositories import utcnow
from shared.app.context import AppContext
from shared.core.models import Tenant, TenantIn
from shared.core.problems import not_found


def put_tenant(ctx: AppContext, tenant_id: str, body: TenantIn) -> tuple[Tenant, bool]:
    """Register or update; returns (tenant, created)."""
    existing = ctx.tenants.get(tenant_id)
    now = utcnow()
    tenant = Tenant(tenant_id=tenant_id.lower(), created_at=existing.created_at if existing else now,
                    updated_at=now, **body.model_dump())
    ctx.tenants.upsert(tenant)
    return tenant, existing is None


def require_tenant(ctx: AppContext, tenant_id: str) -> Tenant:
    tenant = ctx.tenants.get(tenant_id.lower())
    if tenant is None:
        raise not_found(f"Tenant {tenant_id}")
    return tenant


def list_tenants(ctx: AppContext, readable: Callable[[str], bool] = lambda _: True) -> list[Tenant]:
    """The registered tenants `readable` admits (by tenant id)."""
    return [t for t in ctx.tenants.list() if readable(t.tenant_id)]
