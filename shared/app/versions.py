"""File versions and bulk regeneration: what each version was, its download, and regenerating many at once.

Every version is kept until retention removes it (shared/app/retention.py): the finished ones in the FileVersions
history, the current one in the file record (which wins where both name the same version).
"""

from __future__ import annotations

from shared.app import approval, file_requests, tenants
from shared.app.context import AppContext
from shared.core.models import (DOWNLOADABLE_STATUSES, SETTLED_STATUSES, BulkRegenerateIn, FileRecord, View, plain_error,
                                plain_reason)
from shared.core.problems import Problem

BULK_REASON = "bulk regeneration"


def list_versions(ctx: AppContext, record: FileRecord, viewer: View | str = View.PARTNER,
                  approved_only: bool = False) -> list[dict]:
    """Every version still kept (finished ones from FileVersions, plus the current one), with why it was made; for a
    reseller or customer (`approved_only`) the versions approved at some point, without Microsoft's or Entra's own
    words (`plain_error`)."""
    if approved_only:
        items = [version_json(v, current=v.version == record.approved_version)
                 for v in approval.approved_versions(ctx, record)]
    else:
        versions = {v.version: v for v in ctx.files.list_versions(record.tenant_id, record.id)}
        versions[record.version] = record
        items = [version_json(v, current=v.version == record.version) for _, v in sorted(versions.items())]
    if View(viewer) != View.PARTNER:
        items = [{**v, "error": plain_error(v["error"], None), "reason": plain_reason(v["reason"])} for v in items]
    return items


def version_json(v: FileRecord, current: bool) -> dict:
    return {"version": v.version, "current": current, "status": v.status.value, "reason": v.reason,
            "createdAt": v.created_at.isoformat(),
            "completedAt": v.completed_at.isoformat() if v.completed_at else None,
            "rowCount": v.row_count, "source": v.source.value if v.source else None, "dataVersion": v.data_version,
            "error": v.error, "fileName": v.file_name,
            "downloadable": v.status in DOWNLOADABLE_STATUSES and bool(v.blob_name),
            **({"approved": True, "approvedBy": v.approved_by, "approvedAt": v.approved_at.isoformat()}
               if v.approved_version == v.version and v.approved_at else {"approved": False})}


def regenerate_many(ctx: AppContext, tenant_id: str, selection: BulkRegenerateIn) -> list[FileRecord]:
    """Regenerate every Available or Failed file matching the selection; files busy or changing are skipped."""
    tenant = tenants.require_tenant(ctx, tenant_id)
    filters = {"invoice_id": selection.invoice_id.upper() if selection.invoice_id else None,
               "invoice_type": selection.invoice_type.value if selection.invoice_type else None,
               "view": selection.view.value if selection.view else None}
    done = []
    for record in ctx.files.list(tenant.tenant_id, **filters):
        if record.status not in SETTLED_STATUSES:
            continue
        loaded = ctx.files.get(tenant.tenant_id, record.id)  # with its ETag; the tenant is not read again
        if loaded is None:
            continue
        try:
            done.append(file_requests.new_version(ctx, *loaded, reason=BULK_REASON))
        except Problem:
            continue
    return done
