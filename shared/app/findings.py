"""The findings API: a finished partner-view file's validation findings, paged or as a download link."""

from __future__ import annotations

from typing import Any

from shared.app import file_requests
from shared.app.charges import read_token, sign_token
from shared.app.generation import findings_name_for
from shared.core.models import DOWNLOADABLE_STATUSES
from shared.core.problems import bad_request, conflict
from shared.core.validation import read_findings_csv


def _findings_file(ctx: Any, tenant_id: str, file_id: str) -> Any:
    record, _ = file_requests.get_file(ctx, tenant_id, file_id)
    if record.status not in DOWNLOADABLE_STATUSES or not record.blob_name or record.findings is None:
        raise conflict("This file has no findings: only a finished partner-view file is validated.")
    return record


def findings_page(ctx: Any, tenant_id: str, file_id: str, severity: str | None, rule: str | None,
                  page_size: int, token: str | None) -> dict[str, Any]:
    """A page of a file's findings (filtered by severity and rule), with a signed offset token."""
    record = _findings_file(ctx, tenant_id, file_id)
    scope = [record.id, record.version, severity, rule]
    offset = 0
    if token:
        payload = read_token(ctx.settings, token)
        if payload.get("findings") != scope or not isinstance(payload.get("off"), int):
            raise bad_request("continuationToken belongs to another file, version or filter.", "continuationToken")
        offset = payload["off"]
    data = ctx.storage.files.get_blob_client(findings_name_for(record.blob_name)).download_blob().readall()
    items = [f for f in read_findings_csv(data)
             if (severity is None or f["severity"] == severity) and (rule is None or f["rule"] == rule)]
    page = items[offset:offset + page_size]
    more = offset + page_size < len(items)
    return {"items": page, "counts": record.findings,
            "continuationToken": sign_token(ctx.settings, {"findings": scope, "off": offset + page_size})
            if more else None}


def findings_link(ctx: Any, tenant_id: str, file_id: str) -> Any:
    """A short-lived read-only link to the version's findings.csv."""
    record = _findings_file(ctx, tenant_id, file_id)
    stem = (record.file_name or "reconciliation.csv").rsplit(".", 1)[0]
    return ctx.links.url_for(findings_name_for(record.blob_name), f"{stem}_findings.csv")
