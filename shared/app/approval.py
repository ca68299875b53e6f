"""Approval: resellers and customers see a file only in a version a partner admin approved.

The file record carries `approvedVersion` (with who and when); a regeneration or a Microsoft revision makes a new
version that waits for approval while the approved one stays what resellers and customers see, list, download
and page. The FileVersions entity of an approved version records the approval too. With the tenant's
`autoApprove` on, the worker approves each version without error findings as it is made.
"""

from __future__ import annotations

from shared.adapters.repositories import Conflict, utcnow
from shared.app import events
from shared.app.context import AppContext
from shared.core.models import (DOWNLOADABLE_STATUSES, SETTLED_STATUSES, ChargesScope, FileRecord, FileStatus, Tenant,
                                View)
from shared.core.problems import conflict, not_found

AWAITING_APPROVAL = FileStatus.AWAITING_APPROVAL.value  # what a reseller or customer sees of a file nobody approved


def approve(ctx: AppContext, tenant_id: str, record: FileRecord, etag: str, version: int,
            approver: str) -> FileRecord:
    """Approve `version` of the file (the current one, or an older one still kept, to go back to it). Approving the
    version already approved changes nothing. Publishes `file.approved`."""
    if record.approved_version == version:
        return record
    if record.status not in SETTLED_STATUSES:  # the worker's guarded writes would lose to ours and start over
        raise conflict(f"A new version is being made ({record.status.value}); approve once it is settled.")
    target = record if version == record.version else _kept_version(ctx, record, version)
    if target.status not in DOWNLOADABLE_STATUSES or not target.blob_name:
        raise conflict(f"Version {version} is {target.status.value}; only a finished file (Available or "
                       "NeedsReview) can be approved.")
    now = utcnow()
    record.approved_version, record.approved_by, record.approved_at = version, approver, now
    try:
        ctx.files.replace(record, etag)
    except Conflict:
        raise conflict("The file changed while approving it; look at its versions and try again.")
    target.approved_version, target.approved_by, target.approved_at = version, approver, now
    ctx.files.record_version(target)
    events.file_approved(ctx, record)
    return record


def _kept_version(ctx: AppContext, record: FileRecord, version: int) -> FileRecord:
    found = next((v for v in ctx.files.list_versions(record.tenant_id, record.id) if v.version == version), None)
    if found is None:
        raise not_found(f"Version {version} of reconciliation file {record.id}")
    return found


def auto_approve(tenant: Tenant, record: FileRecord) -> None:
    """Called by the worker before it writes a finished version: approve it when the tenant says so and the
    validation found no errors (views other than the partner's are not validated: nothing holds them back)."""
    errors = (record.findings or {}).get("error", 0)
    if tenant.auto_approve and record.status == FileStatus.AVAILABLE and not errors:
        record.approved_version, record.approved_by, record.approved_at = (record.version,
                                                                          events.AUTOMATIC_APPROVER, utcnow())


def approved_record(ctx: AppContext, record: FileRecord) -> FileRecord | None:
    """What a reseller or customer sees of a file: its approved version (None when none is)."""
    if record.approved_version is None:
        return None
    if record.approved_version == record.version:
        return record
    found = next((v for v in ctx.files.list_versions(record.tenant_id, record.id)
                  if v.version == record.approved_version), None)
    if found is None:
        return None
    found.approved_version, found.approved_by, found.approved_at = (record.approved_version, record.approved_by,
                                                                    record.approved_at)
    return found


def public_for(ctx: AppContext, record: FileRecord, viewer: View | str, approved_only: bool) -> dict:
    """A file as the caller sees it: partners every version; resellers and customers (`approved_only`) the approved
    version, or only that the file exists and awaits approval; each with the figures of its own view."""
    if not approved_only:
        return record.public(viewer)
    visible = approved_record(ctx, record)
    return visible.public(viewer) if visible is not None else pending_public(record)


def pending_public(record: FileRecord) -> dict:
    """A file with no approved version, as a reseller or customer sees it: that it exists, nothing it holds."""
    return {"id": record.id, "tenantId": record.tenant_id, "invoiceType": record.invoice_type.value,
            "invoiceId": record.invoice_id, "view": record.view.value, "resellerId": record.reseller_id,
            "customerId": record.customer_id, "format": record.format.value, "status": AWAITING_APPROVAL,
            "createdAt": record.created_at.isoformat(), "approvedVersion": None}


def approved_link(ctx: AppContext, record: FileRecord, version: int | None = None):
    """A download link of the approved version (or of `version`, if it was approved once) for resellers and
    customers; 409 while nothing is approved."""
    shown = approved_record(ctx, record)
    if version is not None and version != record.approved_version:
        found = next((v for v in ctx.files.list_versions(record.tenant_id, record.id) if v.version == version), None)
        shown = found if found is not None and found.approved_version == found.version else None
        if shown is None:
            raise not_found(f"Version {version} of reconciliation file {record.id}")
    if shown is None or not shown.blob_name:
        raise conflict("This file is awaiting approval by the partner; it can be downloaded once approved.")
    return ctx.links.url_for(shown.blob_name, shown.file_name or "reconciliation.csv"), shown.version


def approved_versions(ctx: AppContext, record: FileRecord) -> list[FileRecord]:
    """The versions a reseller or customer may list: those approved at some point."""
    versions = {v.version: v for v in ctx.files.list_versions(record.tenant_id, record.id)
                if v.approved_version == v.version}  # approved once (a later version's entity names another)
    shown = approved_record(ctx, record)
    if shown is not None:
        versions[shown.version] = shown
    return [v for _, v in sorted(versions.items())]


def require_approved_file(ctx: AppContext, tenant_id: str, invoice_id: str, scope: ChargesScope) -> FileRecord:
    """Resellers and customers page an invoice's charges once the partner approved a file of the same invoice,
    type and view (409 before). Returns the approved version (the newest approval among the files of that scope,
    in any format): its charges are read from the same snapshot with the same rules and identifiers, so the
    figures are the approved file's, not what today's rules or revised data would make."""
    files = ctx.files.list(tenant_id, invoice_id=invoice_id.upper(), invoice_type=scope.invoice_type.value,
                           view=scope.view.value)
    mine = [f for f in files if f.approved_version is not None and f.reseller_id == scope.reseller_id
            and f.customer_id == ((scope.customer_id or None) and scope.customer_id.lower())]
    for record in sorted(mine, key=lambda f: f.approved_at or f.created_at, reverse=True):
        approved = approved_record(ctx, record)
        if approved is not None and approved.blob_name:
            return approved
    raise conflict("These charges are awaiting the partner's approval of their file.")