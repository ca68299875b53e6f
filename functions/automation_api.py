"""HTTP Blueprint for the monthly automation: settings, calendar, versions, bulk regeneration.

Each handler parses, calls one use case in `shared.app`, shapes; the routes are declared in `functions/routes.py`.
`…/reconciliation-files:regenerate` is its own literal segment, so it never matches
`…/reconciliation-files/{fileId}`.
"""

from __future__ import annotations

import azure.functions as func

from functions.http_support import (access_for, current_guard, handles, json_response, link_response, parse_body, readable_file,
                                    requester)
from shared.app import automation, downloads, invoice_calendar, versions
from shared.app.context import get_context
from shared.core.boundaries import is_whole_number
from shared.core.models import AutomationIn, BulkRegenerateIn
from shared.core.problems import bad_request

bp = func.Blueprint()

MAX_CALENDAR_MONTHS = 24


@handles(bp)
def put_automation(req: func.HttpRequest) -> func.HttpResponse:
    settings = automation.put_automation(get_context(), access_for(req)[0], parse_body(req, AutomationIn))
    return json_response(settings.model_dump(mode="json", by_alias=True))


@handles(bp)
def get_automation(req: func.HttpRequest) -> func.HttpResponse:
    settings = automation.get_automation(get_context(), access_for(req)[0])
    return json_response(settings.model_dump(mode="json", by_alias=True))


@handles(bp)
def get_calendar(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id = access_for(req)[0]
    return json_response(invoice_calendar.calendar_view(get_context(), tenant_id, months_param(req)))


def months_param(req: func.HttpRequest) -> int:
    raw = req.params.get("months") or "3"
    if not is_whole_number(raw) or not 1 <= int(raw) <= MAX_CALENDAR_MONTHS:
        raise bad_request(f"months must be a whole number from 1 to {MAX_CALENDAR_MONTHS}.", "months")
    return int(raw)


@handles(bp)
def list_file_versions(req: func.HttpRequest) -> func.HttpResponse:
    guard = current_guard()
    items = versions.list_versions(get_context(), readable_file(req), guard.viewer, not guard.sees_unapproved())
    return json_response({"items": items})


@handles(bp)
def download_file_version(req: func.HttpRequest) -> func.HttpResponse:
    raw = req.route_params.get("version", "")
    if not is_whole_number(raw) or int(raw) < 1:
        raise bad_request("version must be a whole number from 1.", "version")
    link = downloads.version_link(get_context(), readable_file(req), int(raw), requester(req),
                                  approved_only=not current_guard().sees_unapproved())
    return link_response(req, link)


@handles(bp)
def regenerate_files(req: func.HttpRequest) -> func.HttpResponse:
    records = versions.regenerate_many(get_context(), access_for(req)[0], parse_body(req, BulkRegenerateIn))
    return json_response({"items": [r.public() for r in records]}, 202)
