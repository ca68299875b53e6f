"""HTTP API Blueprint: tenants and reconciliation files. Each handler parses, loads what the access check needs
(the tenant's file), calls one use case in `shared.app` with it, shapes. Routes: `functions/routes.py`."""

from __future__ import annotations

import re
from functools import partial
from urllib.parse import urlencode

import azure.functions as func

from functions.http_support import (
    access_for,
    current_guard,
    handles,
    json_response,
    link_response,
    loaded_file,
    page_size,
    parse_body,
    query_choice,
    readable_file,
    requester,
)
from functions.routes import location
from shared.app import approval, downloads, file_requests, findings, tenants
from shared.app.context import get_context
from shared.core import validation
from shared.core.access import Scope
from shared.core.columns import FileType
from shared.core.models import INVOICE_ID_PATTERN, ChargesScope, FileRequest, FileStatus, TenantIn, View
from shared.core.problems import bad_request

bp = func.Blueprint()

@handles(bp)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"status": "ok"})


@handles(bp)
def put_tenant(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, _ = access_for(req)
    tenant, created = tenants.put_tenant(get_context(), tenant_id, parse_body(req, TenantIn))
    return json_response(tenant.model_dump(mode="json", by_alias=True), 201 if created else 200)


@handles(bp)
def list_tenants(req: func.HttpRequest) -> func.HttpResponse:
    items = current_guard().filter_tenants(tenants.list_tenants(get_context()), lambda t: t.tenant_id)
    return json_response({"items": [t.model_dump(mode="json", by_alias=True) for t in items]})


@handles(bp)
def get_tenant(req: func.HttpRequest) -> func.HttpResponse:
    tenant = tenants.require_tenant(get_context(), access_for(req)[0])
    return json_response(tenant.model_dump(mode="json", by_alias=True))


@handles(bp)
def request_file(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, access = access_for(req)
    body = access.require_lines(parse_body(req, FileRequest))
    charge = partial(file_requests.take_quota, get_context(), tenant_id, access.viewer, access.caller.object_id)
    record, created = file_requests.request_file(get_context(), tenant_id, body, charge)
    return json_response(approval.public_for(get_context(), record, access.viewer, not access.sees_unapproved()),
                         202 if created else 200,
                         headers={"Location": location("get_file", tenantId=tenant_id, fileId=record.id)})


@handles(bp)
def list_files(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, access = access_for(req)
    invoice_type = query_choice(req, "invoiceType", {t.value for t in FileType})
    status = query_choice(req, "status", {s.value for s in FileStatus})
    invoice_id = req.params.get("invoiceId") or None
    if invoice_id and not re.fullmatch(INVOICE_ID_PATTERN, invoice_id):
        raise bad_request("invoiceId must be letters and digits.", "invoiceId")
    items = file_requests.list_files(get_context(), tenant_id, invoice_type, status, invoice_id)
    approved_only = not access.sees_unapproved()  # resellers and customers: approved versions only
    items = [approval.public_for(get_context(), r, access.viewer, approved_only)
             for r in access.filter(items, Scope.lines) if not approved_only or r.approved_version is not None]
    return json_response({"items": items})


@handles(bp)
def get_file(req: func.HttpRequest) -> func.HttpResponse:
    guard = access_for(req)[1]
    return json_response(approval.public_for(get_context(), readable_file(req), guard.viewer,
                                             not guard.sees_unapproved()))


@handles(bp)
def download(req: func.HttpRequest) -> func.HttpResponse:
    link = downloads.file_link(get_context(), readable_file(req), requester(req),
                               approved_only=not current_guard().sees_unapproved())
    return link_response(req, link)


@handles(bp)
def list_findings(req: func.HttpRequest) -> func.HttpResponse:
    record = readable_file(req)
    severity = query_choice(req, "severity", set(validation.SEVERITIES))
    rule = query_choice(req, "rule", set(validation.RULES))
    page = findings.findings_page(get_context(), record, severity, rule, page_size(req),
                                  req.params.get("continuationToken") or None)
    return json_response(page)


@handles(bp)
def download_findings(req: func.HttpRequest) -> func.HttpResponse:
    return link_response(req, downloads.findings_link(get_context(), readable_file(req), requester(req)))


@handles(bp)
def regenerate(req: func.HttpRequest) -> func.HttpResponse:
    current, etag = loaded_file(req)
    guard = access_for(req)[1]
    charge = partial(file_requests.take_quota, get_context(), current.tenant_id, guard.viewer, guard.caller.object_id)
    record = file_requests.new_version(get_context(), current, etag, charge=charge)
    return json_response(approval.public_for(get_context(), record, guard.viewer, not guard.sees_unapproved()), 202,
                         headers={"Location": location("get_file", tenantId=record.tenant_id, fileId=record.id)})


@handles(bp)
def list_invoices(req: func.HttpRequest) -> func.HttpResponse:
    items = file_requests.list_invoices(get_context(), access_for(req)[0])
    return json_response({"items": [i.model_dump(mode="json", by_alias=True) for i in items]})


@handles(bp)
def get_charges(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, access = access_for(req)
    invoice_id = req.route_params.get("invoiceId", "")
    if not re.fullmatch(INVOICE_ID_PATTERN, invoice_id):
        raise bad_request("invoiceId must be letters and digits.", "invoiceId")
    file_type = query_choice(req, "type", {t.value for t in FileType})
    if file_type is None:
        raise bad_request("type is required: onetime, license, usage or dailyratedusage.", "type")
    scope = ChargesScope.model_validate({"invoiceType": file_type, "view": req.params.get("view") or "partner",
                                         "resellerId": req.params.get("resellerId") or None,
                                         "customerId": req.params.get("customerId") or None})
    scope = access.require_lines(scope)
    approved = None  # resellers and customers: the approved file's lines, once the partner approved one
    if not access.sees_unapproved():
        approved = approval.require_approved_file(get_context(), tenant_id, invoice_id, scope)
    page = file_requests.get_charges(get_context(), tenant_id, invoice_id, scope, page_size(req),
                                     req.params.get("continuationToken") or None, approved)
    if "pending" in page:  # no snapshot yet: its ingest is queued; poll the same URL
        pending = page["pending"]
        query = urlencode({k: v for k, v in req.params.items() if k != "continuationToken"})
        poll = location("get_charges", tenantId=tenant_id, invoiceId=invoice_id) + f"?{query}"
        return json_response(pending, 202, headers={"Location": poll,
                                                   "Retry-After": str(pending["retryAfter"])})
    return json_response(page)
