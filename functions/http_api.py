"""HTTP API Blueprint: tenants and reconciliation files. Each handler parses, calls `shared.app.file_requests`, shapes."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import azure.functions as func

from functions.http_support import (
    access_for,
    api,
    current_guard,
    json_response,
    page_size,
    parse_body,
    query_choice,
    route_guid,
)
from shared.app import file_requests
from shared.app import findings
from shared.core import validation
from shared.adapters.audit import client_address, forwarded_chain
from shared.core.columns import FileType
from shared.app.context import get_context
from shared.core.models import INVOICE_ID_PATTERN, ChargesScope, FileRecord, FileRequest, FileStatus, TenantIn
from shared.core.access import Action, Scope
from shared.core.problems import bad_request, not_found

bp = func.Blueprint()

FILES = "tenants/{tenantId}/reconciliation-files"


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"status": "ok"})


@bp.route(route="tenants/{tenantId}", methods=["PUT"])
@api(Action.TENANT_WRITE)
def put_tenant(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, _ = access_for(req)
    tenant, created = file_requests.put_tenant(get_context(), tenant_id, parse_body(req, TenantIn))
    return json_response(tenant.model_dump(mode="json", by_alias=True), 201 if created else 200)


@bp.route(route="tenants", methods=["GET"])
@api(Action.TENANT_READ, scoped=True)
def list_tenants(req: func.HttpRequest) -> func.HttpResponse:
    guard = current_guard()
    items = [t.model_dump(mode="json", by_alias=True) for t in get_context().tenants.list()
             if guard.allows_in(t.tenant_id)]
    return json_response({"items": items})


@bp.route(route="tenants/{tenantId}", methods=["GET"])
@api(Action.TENANT_READ)
def get_tenant(req: func.HttpRequest) -> func.HttpResponse:
    tenant = file_requests.require_tenant(get_context(), access_for(req)[0])
    return json_response(tenant.model_dump(mode="json", by_alias=True))


@bp.route(route=FILES, methods=["POST"])
@api(Action.FILES_REQUEST, scoped=True)
def request_file(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, access = access_for(req)
    body = access.require_lines(parse_body(req, FileRequest))
    record, created = file_requests.request_file(get_context(), tenant_id, body)
    location = f"/api/{FILES.format(tenantId=tenant_id)}/{record.id}"
    return json_response(record.public(), 202 if created else 200, headers={"Location": location})


@bp.route(route=FILES, methods=["GET"])
@api(Action.FILES_READ, scoped=True)
def list_files(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, access = access_for(req)
    invoice_type = query_choice(req, "invoiceType", {t.value for t in FileType})
    status = query_choice(req, "status", {s.value for s in FileStatus})
    invoice_id = req.params.get("invoiceId") or None
    if invoice_id and not re.match(INVOICE_ID_PATTERN, invoice_id):
        raise bad_request("invoiceId must be letters and digits.", "invoiceId")
    items = file_requests.list_files(get_context(), tenant_id, invoice_type, status, invoice_id)
    return json_response({"items": [r.public() for r in access.filter(items, Scope.lines)]})


def readable_file(req: func.HttpRequest) -> FileRecord:
    """The route's file if the caller may act on it (the route's action, on the file's own scope); a file the
    caller may not see is answered exactly like one that does not exist."""
    tenant_id, access = access_for(req)
    file_id = route_guid(req, "fileId")
    record, _ = file_requests.get_file(get_context(), tenant_id, file_id)
    access.require(Scope.lines(record), hidden=not_found(f"Reconciliation file {file_id}"))
    return record


@bp.route(route=FILES + "/{fileId}", methods=["GET"])
@api(Action.FILES_READ, scoped=True)
def get_file(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(readable_file(req).public())


@bp.route(route=FILES + "/{fileId}/download", methods=["GET"])
@api(Action.FILES_READ, scoped=True)
def download(req: func.HttpRequest) -> func.HttpResponse:
    record = readable_file(req)
    url, expires = file_requests.download_link(get_context(), record.tenant_id, record.id)
    return audited_redirect(req, record.tenant_id, record.id, record.version, "file", url, expires)


def audited_redirect(req: func.HttpRequest, tenant_id: str, file_id: str, version: int, kind: str, url: str,
                     expires) -> func.HttpResponse:
    """The one way a download link leaves the API: recorded in the audit table first (no record, no link).
    A 302 to it, or with `Accept: application/json` the link as JSON: a page cannot read a redirect's target
    and the storage account sends no CORS headers, so the web front end navigates to the link itself."""
    get_context().audit.record(tenant_id, current_guard().caller, file_id, version, kind,
                               client_address(req.headers), expires, forwarded_for=forwarded_chain(req.headers))
    headers = {"Cache-Control": "no-store", "X-Link-Expires": expires.isoformat()}
    if req.headers.get("Accept", "").lower().startswith("application/json"):
        return json_response({"url": url, "expiresAt": expires.isoformat()}, headers=headers)
    return func.HttpResponse(status_code=302, headers={"Location": url, **headers})


@bp.route(route=FILES + "/{fileId}/findings", methods=["GET"])
@api(Action.FILES_READ, scoped=True)
def list_findings(req: func.HttpRequest) -> func.HttpResponse:
    record = readable_file(req)
    tenant_id, file_id = record.tenant_id, record.id
    severity = query_choice(req, "severity", set(validation.SEVERITIES))
    rule = query_choice(req, "rule", set(validation.RULES))
    page = findings.findings_page(get_context(), tenant_id, file_id, severity, rule, page_size(req),
                                    req.params.get("continuationToken") or None)
    return json_response(page)


@bp.route(route=FILES + "/{fileId}/findings/download", methods=["GET"])
@api(Action.FILES_READ, scoped=True)
def download_findings(req: func.HttpRequest) -> func.HttpResponse:
    record = readable_file(req)
    url, expires = findings.findings_link(get_context(), record.tenant_id, record.id)
    return audited_redirect(req, record.tenant_id, record.id, record.version, "findings", url, expires)


@bp.route(route=FILES + "/{fileId}/regenerate", methods=["POST"])
@api(Action.FILES_REGENERATE, scoped=True)
def regenerate(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, access = access_for(req)
    file_id = route_guid(req, "fileId")
    current, _ = file_requests.get_file(get_context(), tenant_id, file_id)
    if not access.allows_action(Action.FILES_READ, Scope.lines(current)):
        raise not_found(f"Reconciliation file {file_id}")
    access.require(Scope.lines(current))
    record = file_requests.regenerate(get_context(), tenant_id, file_id)
    location = f"/api/{FILES.format(tenantId=tenant_id)}/{record.id}"
    return json_response(record.public(), 202, headers={"Location": location})


@bp.route(route="tenants/{tenantId}/invoices", methods=["GET"])
@api(Action.INVOICES_READ)
def list_invoices(req: func.HttpRequest) -> func.HttpResponse:
    items = file_requests.list_invoices(get_context(), access_for(req)[0])
    return json_response({"items": [i.model_dump(mode="json", by_alias=True) for i in items]})


@bp.route(route="tenants/{tenantId}/invoices/{invoiceId}/charges", methods=["GET"])
@api(Action.CHARGES_READ, scoped=True)
def get_charges(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, access = access_for(req)
    invoice_id = req.route_params.get("invoiceId", "")
    if not re.match(INVOICE_ID_PATTERN, invoice_id):
        raise bad_request("invoiceId must be letters and digits.", "invoiceId")
    file_type = query_choice(req, "type", {t.value for t in FileType})
    if file_type is None:
        raise bad_request("type is required: onetime, license, usage or dailyratedusage.", "type")
    scope = ChargesScope.model_validate({"invoiceType": file_type, "view": req.params.get("view") or "partner",
                                         "resellerId": req.params.get("resellerId") or None,
                                         "customerId": req.params.get("customerId") or None})
    scope = access.require_lines(scope)
    page = file_requests.get_charges(get_context(), tenant_id, invoice_id, scope, page_size(req),
                               req.params.get("continuationToken") or None)
    if "pending" in page:  # no snapshot yet: its ingest is queued; poll the same URL
        pending = page["pending"]
        query = urlencode({k: v for k, v in req.params.items() if k != "continuationToken"})
        location = f"/api/tenants/{tenant_id}/invoices/{invoice_id}/charges?{query}"
        return json_response(pending, 202, headers={"Location": location,
                                                   "Retry-After": str(pending["retryAfter"])})
    return json_response(page)
