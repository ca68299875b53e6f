"""HTTP Blueprint for the monthly automation: settings, calendar, versions, bulk regeneration.

Each handler parses, calls `shared.app.automation`, shapes. `…/reconciliation-files:regenerate` is its own literal
segment, so it never matches `…/reconciliation-files/{fileId}`.
"""

from __future__ import annotations

import azure.functions as func

from functions.http_api import audited_redirect, readable_file
from functions.http_support import access_for, api, current_guard, json_response, parse_body
from shared.app import approval, automation
from shared.app.context import get_context
from shared.core.models import AutomationIn, BulkRegenerateIn
from shared.core.access import Action
from shared.core.problems import bad_request

bp = func.Blueprint()

TENANT = "tenants/{tenantId}"
FILES = TENANT + "/reconciliation-files"
MAX_CALENDAR_MONTHS = 24


@bp.route(route=TENANT + "/automation", methods=["PUT"])
@api(Action.TENANT_WRITE)
def put_automation(req: func.HttpRequest) -> func.HttpResponse:
    settings = automation.put_automation(get_context(), access_for(req)[0], parse_body(req, AutomationIn))
    return json_response(settings.model_dump(mode="json", by_alias=True))


@bp.route(route=TENANT + "/automation", methods=["GET"])
@api(Action.TENANT_READ)
def get_automation(req: func.HttpRequest) -> func.HttpResponse:
    settings = automation.get_automation(get_context(), access_for(req)[0])
    return json_response(settings.model_dump(mode="json", by_alias=True))


@bp.route(route=TENANT + "/calendar", methods=["GET"])
@api(Action.TENANT_READ)
def get_calendar(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id = access_for(req)[0]
    return json_response(automation.calendar_view(get_context(), tenant_id, months_param(req)))


def months_param(req: func.HttpRequest) -> int:
    raw = req.params.get("months") or "3"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_CALENDAR_MONTHS:
        raise bad_request(f"months must be a whole number from 1 to {MAX_CALENDAR_MONTHS}.", "months")
    return int(raw)


@bp.route(route=FILES + "/{fileId}/versions", methods=["GET"])
@api(Action.FILES_READ, scoped=True)
def list_file_versions(req: func.HttpRequest) -> func.HttpResponse:
    record = readable_file(req)
    if not current_guard().sees_unapproved():  # resellers and customers: the versions approved at some point
        items = [automation.version_json(v, current=v.version == record.approved_version)
                 for v in approval.approved_versions(get_context(), record)]
        return json_response({"items": items})
    items = automation.list_versions(get_context(), record.tenant_id, record.id)
    return json_response({"items": items})


@bp.route(route=FILES + "/{fileId}/versions/{version}/download", methods=["GET"])
@api(Action.FILES_READ, scoped=True)
def download_file_version(req: func.HttpRequest) -> func.HttpResponse:
    raw = req.route_params.get("version", "")
    if not raw.isdigit() or int(raw) < 1:
        raise bad_request("version must be a whole number from 1.", "version")
    record = readable_file(req)
    if not current_guard().sees_unapproved():
        (url, expires), version = approval.approved_link(get_context(), record, int(raw))
        return audited_redirect(req, record.tenant_id, record.id, version, "file", url, expires)
    url, expires = automation.version_download_link(get_context(), record.tenant_id, record.id, int(raw))
    return audited_redirect(req, record.tenant_id, record.id, int(raw), "file", url, expires)


@bp.route(route=FILES + ":regenerate", methods=["POST"])
@api(Action.FILES_REGENERATE)
def regenerate_files(req: func.HttpRequest) -> func.HttpResponse:
    records = automation.regenerate_many(get_context(), access_for(req)[0],
                                         parse_body(req, BulkRegenerateIn))
    return json_response({"items": [r.public() for r in records]}, 202)
