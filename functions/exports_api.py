"""HTTP Blueprint for billing exports of a file version: request one (202, a queue job makes it), read its status,
download it through the same audited short-lived link as the file. Access is the file's own: a caller exports only
a file it may read (a reseller its own views), and an export of a file it may not see does not exist for it."""

from __future__ import annotations

import azure.functions as func

from functions.http_support import handles, json_response, link_response, parse_body, readable_file, requester, route_guid
from functions.routes import location
from shared.app import exports
from shared.app.context import get_context
from shared.core.exports import ExportIn

bp = func.Blueprint()


@handles(bp)
def request_export(req: func.HttpRequest) -> func.HttpResponse:
    body = parse_body(req, ExportIn)  # a malformed body is a 400 whatever the file (it says nothing about it)
    record = readable_file(req)
    export, created = exports.request_export(get_context(), record, body)
    url = location("get_export", tenantId=record.tenant_id, fileId=record.id, exportId=export.id)
    return json_response(export.public(), 202 if created else 200, headers={"Location": url})


@handles(bp)
def list_exports(req: func.HttpRequest) -> func.HttpResponse:
    record = readable_file(req)
    return json_response({"items": [e.public() for e in exports.list_exports(get_context(), record)]})


@handles(bp)
def get_export(req: func.HttpRequest) -> func.HttpResponse:
    record = readable_file(req)
    return json_response(exports.get_export(get_context(), record, route_guid(req, "exportId")).public())


@handles(bp)
def download_export(req: func.HttpRequest) -> func.HttpResponse:
    record = readable_file(req)
    link = exports.export_link(get_context(), record, route_guid(req, "exportId"), requester(req))
    return link_response(req, link)
