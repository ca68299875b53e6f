"""Download links, the one way a stored blob leaves the API: each link is recorded in the audit table before it is
handed out (no record, no link). The HTTP edge passes the file it loaded (and checked access on) and who asks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.app import approval
from shared.app.context import AppContext
from shared.app.generation import findings_name_for
from shared.core.access import Caller
from shared.core.models import DOWNLOADABLE_STATUSES, FileRecord
from shared.core.problems import conflict, not_found

DEFAULT_NAME = "reconciliation.csv"


@dataclass(frozen=True)
class Requester:
    """Who asks for a link, as the audit table records it."""

    caller: Caller
    client_address: str | None = None
    forwarded_for: str | None = None


@dataclass(frozen=True)
class Link:
    url: str
    expires: datetime
    version: int


def current_link(ctx: AppContext, record: FileRecord) -> tuple[str, datetime]:
    """The current version's link, unaudited (for callers that are not the API: scripts and tests)."""
    # NeedsReview: held because Microsoft's data has error findings, but complete: partners download it to review.
    if record.status not in DOWNLOADABLE_STATUSES or not record.blob_name:
        raise conflict(f"The file is {record.status}, not Available; there is nothing to download yet.")
    return ctx.links.url_for(record.blob_name, record.file_name or DEFAULT_NAME)


def file_link(ctx: AppContext, record: FileRecord, who: Requester, approved_only: bool = False) -> Link:
    """The current version's file; for resellers and customers (`approved_only`) the approved one (409 while none
    is)."""
    if approved_only:
        (url, expires), version = approval.approved_link(ctx, record)
        return _issued(ctx, record, version, "file", who, url, expires)
    url, expires = current_link(ctx, record)
    return _issued(ctx, record, record.version, "file", who, url, expires)


def version_link(ctx: AppContext, record: FileRecord, version: int, who: Requester,
                 approved_only: bool = False) -> Link:
    """A kept version's file: the current one, or an earlier one from the file's versions; for resellers and
    customers (`approved_only`) only a version that was approved."""
    if approved_only:
        (url, expires), shown = approval.approved_link(ctx, record, version)
        return _issued(ctx, record, shown, "file", who, url, expires)
    if version == record.version:
        return file_link(ctx, record, who)
    found = next((v for v in ctx.files.list_versions(record.tenant_id, record.id) if v.version == version), None)
    if found is None:
        raise not_found(f"Version {version} of reconciliation file {record.id}")
    if found.status not in DOWNLOADABLE_STATUSES or not found.blob_name:
        raise conflict(f"Version {version} is {found.status.value}; it has no file to download.")
    url, expires = ctx.links.url_for(found.blob_name, found.file_name or DEFAULT_NAME)
    return _issued(ctx, record, version, "file", who, url, expires)


def findings_file(record: FileRecord) -> FileRecord:
    """The file if it has findings (a finished partner-view file), else 409."""
    if record.status not in DOWNLOADABLE_STATUSES or not record.blob_name or record.findings is None:
        raise conflict("This file has no findings: only a finished partner-view file is validated.")
    return record


def findings_link(ctx: AppContext, record: FileRecord, who: Requester) -> Link:
    """The version's findings.csv."""
    blob_name = findings_file(record).blob_name or ""
    stem = (record.file_name or DEFAULT_NAME).rsplit(".", 1)[0]
    url, expires = ctx.links.url_for(findings_name_for(blob_name), f"{stem}_findings.csv")
    return _issued(ctx, record, record.version, "findings", who, url, expires)


def blob_link(ctx: AppContext, record: FileRecord, version: int, kind: str, who: Requester, blob_name: str,
              file_name: str) -> Link:
    """Another blob made from a version of the file (an export): linked and audited like the file itself."""
    url, expires = ctx.links.url_for(blob_name, file_name)
    return _issued(ctx, record, version, kind, who, url, expires)


def _issued(ctx: AppContext, record: FileRecord, version: int, kind: str, who: Requester, url: str,
            expires: datetime) -> Link:
    ctx.audit.record(record.tenant_id, who.caller, record.id, version, kind, who.client_address, expires,
                     forwarded_for=who.forwarded_for)
    return Link(url, expires, version)
