"""The findings API: a finished partner-view file's validation findings, a page at a time (the link to the whole
findings.csv is `downloads.findings_link`)."""

from __future__ import annotations

from typing import Any

from shared.app.charges import read_token, sign_token
from shared.app.context import AppContext
from shared.app.downloads import findings_file
from shared.app.generation import findings_name_for
from shared.core.models import FileRecord
from shared.core.problems import bad_request
from shared.core.validation import read_findings_csv


def findings_page(ctx: AppContext, record: FileRecord, severity: str | None, rule: str | None,
                  page_size: int, token: str | None) -> dict[str, Any]:
    """A page of the file's findings (filtered by severity and rule), with a signed offset token."""
    record = findings_file(record)
    scope = [record.id, record.version, severity, rule]
    offset = 0
    if token:
        payload = read_token(ctx.settings, token)
        if payload.get("findings") != scope or not isinstance(payload.get("off"), int):
            raise bad_request("continuationToken belongs to another file, version or filter.", "continuationToken")
        offset = payload["off"]
    data = ctx.storage.files.get_blob_client(findings_name_for(record.blob_name or "")).download_blob().readall()
    items = [f for f in read_findings_csv(data)
             if (severity is None or f["severity"] == severity) and (rule is None or f["rule"] == rule)]
    page = items[offset:offset + page_size]
    more = offset + page_size < len(items)
    return {"items": page, "counts": record.findings,
            "continuationToken": sign_token(ctx.settings, {"findings": scope, "off": offset + page_size})
            if more else None}
