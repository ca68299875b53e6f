"""File versions and bulk regeneration: what each version was, its download, and regenerating many at once.

Every version is kept until retention removes it (shared/app/retention.py): the finished ones in the FileVersions
history, the current one in the file record (which wins where both name the same version).
"""

from __future__ import annotations

from datetime import datetime

from shared.app import file_requests
from shared.app.context import AppContext
from shared.core.models import DOWNLOADABLE_STATUSES, SETTLED_STATUSES, BulkRegenerateIn, FileRecord
from shared.core.problems import Problem, conflict, not_found

BULK_REASON = "bulk regeneration"


def list_versions(ctx: AppContext, tenant_id: str, file_id: str) -> list[dict]:
    """Every version still kept (finished ones from FileVersions, plus the current one), with why it was made."""
    record, _ = file_requests.get_file(ctx, tenant_id, file_id)
    versions = {v.version: v for v in ctx.files.list_versions(record.tenant_id, record.id)}
    versions[record.version] = record
    return [version_json(v, current=v.version == record.version) for _, v in sorted(versions.items())]


def version_json(v: FileRecord, current: bool) -> dict:
    return {"version": v.version, "current": current, "status": v.status.value, "reason": v.reason,
            "createdAt": v.created_at.isoformat(),
            "completedAt": v.completed_at.isoformat() if v.completed_at else None,
            "rowCount": v.row_count, "source": v.source.value if v.source else None, "dataVersion": v.data_version,
            "error": v.error, "fileName": v.file_name,
            "downloadable": v.status in DOWNLOADABLE_STATUSES and bool(v.blob_name)}


def version_download_link(ctx: AppContext, tenant_id: str, file_id: str, version: int) -> tuple[str, datetime]:
    record, _ = file_requests.get_file(ctx, tenant_id, file_id)
    if version == record.version:
        return file_requests.download_link(ctx, tenant_id, file_id)
    found = next((v for v in ctx.files.list_versions(record.tenant_id, record.id) if v.version == version), None)
    if found is None:
        raise not_found(f"Version {version} of reconciliation file {file_id}")
    if found.status not in DOWNLOADABLE_STATUSES or not found.blob_name:
        raise conflict(f"Version {version} is {found.status.value}; it has no file to download.")
    return ctx.links.url_for(found.blob_name, found.file_name or "reconciliation.csv")


def regenerate_many(ctx: AppContext, tenant_id: str, selection: BulkRegenerateIn) -> list[FileRecord]:
    """Regenerate every Available or Failed file matching the selection; files busy or changing are skipped."""
    tenant = file_requests.require_tenant(ctx, tenant_id)
    filters = {"invoice_id": selection.invoice_id.upper() if selection.invoice_id else None,
               "invoice_type": selection.invoice_type.value if selection.invoice_type else None,
               "view": selection.view.value if selection.view else None}
    done = []
    for record in ctx.files.list(tenant.tenant_id, **filters):
        if record.status not in SETTLED_STATUSES:
            continue
        try:
            done.append(file_requests.regenerate(ctx, tenant.tenant_id, record.id, reason=BULK_REASON))
        except Problem:
            continue
    return done
