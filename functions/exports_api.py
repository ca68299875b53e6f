"""HTTP Blueprint for billing exports of a file version: request one (202, a queue job makes it), read its status,
download it through the same audited short-lived link as the file. Access is the file's own: a caller exports only
a file it may read (a reseller its own views), and an export of a file it may not see does not exist for it."""

from __future__ import annotations

import azure.functions as func

from functions.http_api import audited_redirect, readable_file
from functions.http_support import api, json_response, parse_body, route_guid
from shared.app import exports
from shared.app.context import get_context
from shared.core.access import Action
from shared.core.exports import ExportIn

bp = func.Blueprint()

EXPORTS = "tenants/{tenantId}/reconciliation-files/{fileId}/exports"


@bp.route(route=EXPORTS, methods=["POST"])
@api(Action.FILES_READ, scoped=True)
def request_export(req: func.HttpRequest) -> func.HttpResponse:
    record = readable_file(req)
    export, created = exports.request_export(get_context(), record, parse_body(req, ExportIn))
    location = f"/api/{EXPORTS.format(tenantId=record.tenant_id, fileId=record.id)}/{export.id}"
    return json_response(export.public(), 202 if created else 200, headers={"Location": location})


@bp.route(route=EXPORTS, methods=["GET"])
@api(Action.FILES_READ, scoped=True)
def list_exports(req: func.HttpRequest) -> func.HttpResponse:
    record = readable_file(req)
    return json_response({"items": [e.public() for e in exports.list_exports(get_context(), record)]})


@bp.route(route=EXPORTS + "/{exportId}", methods=["GET"])
@api(Action.FILES_READ, scoped=True)
def get_export(req: func.HttpRequest) -> func.HttpResponse:
    record = readable_file(req)
    return json_response(exports.get_export(get_context(), record, route_guid(req, "exportId")).public())


@bp.route(route=EXPORTS + "/{exportId}/download", methods=["GET"])
@api(Action.FILES_READ, scoped=True)
def download_export(req: func.HttpRequest) -> func.HttpResponse:
    record = readable_file(req)
    export = exports.get_export(get_context(), record, route_guid(req, "exportId"))
    url, expires = exports.export_link(get_context(), export)
    return audited_redirect(req, record.tenant_id, record.id, export.version, f"export-{export.kind.value}", url,
                            expires)
