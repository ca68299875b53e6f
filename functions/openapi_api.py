"""`GET /api/openapi.json`: the API described from its own pydantic models (`model_json_schema`) and the route
table below, served without a token (it holds no data). A test checks that the table and the app's HTTP
functions agree, route for route."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import azure.functions as func
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.adapters.audit import AuditEntry
from shared.adapters.pricing import (CustomerIdentifierIn, Identifier, ImportResult, ResellerIdentifierIn,
                                  SubscriptionIdentifierIn)
from shared.adapters.invoices import InvoiceSummary
from shared.core.margins import MarginRule, MarginRuleIn
from shared.core.models import AutomationIn, AutomationSettings, BulkRegenerateIn, FileRecord, FileRequest, Tenant, TenantIn
from shared.core.access import Principal, PrincipalIn

bp = func.Blueprint()

T = "/tenants/{tenantId}"
F = T + "/reconciliation-files"
FILE = F + "/{fileId}"
GUID = {"type": "string", "format": "uuid"}
MPN = {"type": "string", "pattern": "^[0-9]{1,10}$"}
INVOICE = {"type": "string", "pattern": "^[A-Za-z0-9-]{1,32}$"}
INT = {"type": "string", "pattern": "^[0-9]+$"}
STR = {"type": "string", "maxLength": 200}

# (method, path, function, summary, request body model, response model (None: no JSON body), list?, query)
ROUTES: list[tuple[str, str, str, str, Any, Any, bool, dict[str, dict]]] = [
    ("put", T, "put_tenant", "Register or update a partner tenant", TenantIn, Tenant, False, {}),
    ("get", "/tenants", "list_tenants", "The tenants the caller may read", None, Tenant, True, {}),
    ("get", T, "get_tenant", "A tenant", None, Tenant, False, {}),
    ("post", F, "request_file", "Request a reconciliation file", FileRequest, FileRecord, False, {}),
    ("get", F, "list_files", "Files the caller may read", None, FileRecord, True,
     {"invoiceType": STR, "status": STR, "invoiceId": INVOICE}),
    ("get", FILE, "get_file", "A file's status", None, FileRecord, False, {}),
    ("get", FILE + "/download", "download", "302 to a short-lived read-only link", None, None, False, {}),
    ("get", FILE + "/findings", "list_findings", "Charge-validation findings", None, "object", False,
     {"severity": STR, "rule": STR, "pageSize": INT, "continuationToken": STR}),
    ("get", FILE + "/findings/download", "download_findings", "302 to findings.csv", None, None, False, {}),
    ("post", FILE + "/regenerate", "regenerate", "Make a new version", None, FileRecord, False, {}),
    ("get", FILE + "/versions", "list_file_versions", "A file's versions", None, "object", True, {}),
    ("get", FILE + "/versions/{version}/download", "download_file_version", "302 to a version's file", None, None,
     False, {}),
    ("post", F + ":regenerate", "regenerate_files", "Regenerate a selection", BulkRegenerateIn, FileRecord, True, {}),
    ("get", T + "/invoices", "list_invoices", "Microsoft's invoices", None, InvoiceSummary, True, {}),
    ("get", T + "/invoices/{invoiceId}/charges", "get_charges", "A page of an invoice's charges", None, "object",
     False, {"type": STR, "pageSize": INT, "continuationToken": STR, "view": STR, "resellerId": MPN,
             "customerId": GUID}),
    ("put", T + "/automation", "put_automation", "Monthly automation settings", AutomationIn, AutomationSettings,
     False, {}),
    ("get", T + "/automation", "get_automation", "Monthly automation settings", None, AutomationSettings, False, {}),
    ("get", T + "/calendar", "get_calendar", "The availability calendar", None, "object", False, {"months": INT}),
    ("post", T + "/margin-rules", "create_margin_rule", "Add a margin rule", MarginRuleIn, MarginRule, False, {}),
    ("get", T + "/margin-rules", "list_margin_rules", "Margin rules the caller may read", None, MarginRule, True,
     {"level": STR, "targetId": STR}),
    ("delete", T + "/margin-rules/{ruleId}", "delete_margin_rule", "Delete a margin rule", None, None, False, {}),
    ("put", T + "/resellers/{resellerMpnId}", "put_reseller_identifier", "A reseller's internal id",
     ResellerIdentifierIn, Identifier, False, {}),
    ("get", T + "/resellers/{resellerMpnId}", "get_reseller_identifier", "A reseller's internal id", None, Identifier,
     False, {}),
    ("put", T + "/customers/{customerId}", "put_customer_identifier", "A customer's internal id",
     CustomerIdentifierIn, Identifier, False, {}),
    ("get", T + "/customers/{customerId}", "get_customer_identifier", "A customer's internal id", None, Identifier,
     False, {}),
    ("put", T + "/subscriptions/{subscriptionId}", "put_subscription_identifier",
     "A subscription's internal id and PO number", SubscriptionIdentifierIn, Identifier, False, {}),
    ("get", T + "/subscriptions/{subscriptionId}", "get_subscription_identifier",
     "A subscription's internal id and PO number", None, Identifier, False, {}),
    ("get", T + "/identifiers", "list_identifiers", "Identifiers the caller may read", None, Identifier, True, {}),
    ("post", T + "/identifiers:import", "import_identifiers_csv", "Import identifiers from CSV", "csv", ImportResult,
     False, {}),
    ("get", T + "/principals", "list_principals", "Who has which role in the tenant", None, Principal, True, {}),
    ("get", T + "/principals/{objectId}", "get_principal", "A principal", None, Principal, False, {}),
    ("put", T + "/principals/{objectId}", "put_principal", "Grant a role", PrincipalIn, Principal, False, {}),
    ("delete", T + "/principals/{objectId}", "delete_principal", "Revoke a role", None, None, False, {}),
    ("get", T + "/audit", "list_audit", "Download links issued in a date range", None, AuditEntry, True,
     {"from": STR, "to": STR}),
    ("get", "/me", "get_me", "The caller's roles and scopes in each tenant", None, "object", False, {}),
    ("get", "/health", "health", "Liveness (no token)", None, "object", False, {}),
    ("get", "/web/config", "web_config", "The web front end's public sign-in settings (no token)", None, "object",
     False, {}),
    ("get", "/app/{path}", "web_assets", "The web front end's files (no token)", None, "html", False, {}),
    ("get", "/openapi.json", "openapi_document", "This document (no token)", None, "object", False, {}),
]
PATH_PARAMS = {"tenantId": GUID, "fileId": GUID, "ruleId": GUID, "objectId": GUID, "customerId": GUID,
               "subscriptionId": GUID, "resellerMpnId": MPN, "invoiceId": INVOICE, "version": INT,
               "path": {"type": "string", "maxLength": 200}}
ANONYMOUS_PATHS = {"/health", "/openapi.json", "/web/config", "/app/{path}"}


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    models: list[BaseModel] = []
    for _, _, _, _, body, response, _, _ in ROUTES:
        if isinstance(body, type) and (body, "validation") not in models:
            models.append((body, "validation"))  # type: ignore[arg-type]
        if isinstance(response, type) and (response, "serialization") not in models:
            models.append((response, "serialization"))  # type: ignore[arg-type]
    keys, defs = models_json_schema(models, by_alias=True, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    problem = {"description": "RFC 9457 problem", "content": {"application/problem+json": {"schema": {
        "$ref": "#/components/schemas/Problem"}}}}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, name, summary, body, response, is_list, query in ROUTES:
        op: dict[str, Any] = {"operationId": name, "summary": summary, "parameters": [], "responses": {}}
        for param in [p.strip("{}") for p in path.replace(":", "/").split("/") if p.startswith("{")]:
            op["parameters"].append({"name": param, "in": "path", "required": True, "schema": PATH_PARAMS[param]})
        for param, schema in query.items():
            op["parameters"].append({"name": param, "in": "query", "required": False, "schema": schema})
        if body == "csv":
            op["requestBody"] = {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
        elif body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": keys[(body, "validation")]}}}
        if response is None:
            ok = "204" if method == "delete" else "302"
            op["responses"][ok] = {"description": "No content" if ok == "204" else "Redirect to the link"}
            if ok == "302":
                op["responses"]["200"] = {"description": "With Accept: application/json, the link as JSON",
                                          "content": {"application/json": {"schema": {"type": "object", "properties": {
                                              "url": {"type": "string"}, "expiresAt": {"type": "string"}}}}}}
        else:
            if response == "html":
                op["responses"]["200"] = {"description": "The page or an asset", "content": {"text/html": {
                    "schema": {"type": "string"}}}}
                paths.setdefault(path, {})[method] = {**op, "security": []}
                continue
            schema = ({"type": "object"} if response == "object" else keys[(response, "serialization")])
            if is_list:
                schema = {"type": "object", "properties": {"items": {"type": "array", "items": schema}}}
            op["responses"]["202" if method == "post" and name != "create_margin_rule" and name != "import_identifiers_csv"
                            else "201" if name == "create_margin_rule" else "200"] = {
                "description": "OK", "content": {"application/json": {"schema": schema}}}
        if name == "get_charges":  # the invoice's lines are being ingested: poll Location after Retry-After
            op["responses"]["202"] = {"description": "Ingest queued; poll Location", "content": {"application/json": {
                "schema": {"type": "object", "properties": {"status": {"type": "string"},
                                                            "retryAfter": {"type": "integer"}}}}}}
        for status in ("400", "401", "403", "404", "409") if path not in ANONYMOUS_PATHS else ():
            op["responses"][status] = problem
        if path in ANONYMOUS_PATHS:
            op["security"] = []
        paths.setdefault(path, {})[method] = op
    schemas = dict(defs.get("$defs", {}))
    schemas["Problem"] = {"type": "object", "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"}, "errors": {"type": "array", "items": {
            "type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "CSP reconciliation files", "version": "1.0.0",
                 "description": "Entra ID bearer tokens (audience: the API app registration) on every route but "
                                "/health and /openapi.json. Roles: partnerAdmin, partnerReader, reseller, customer."},
        "servers": [{"url": "/api"}],
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
                       "schemas": schemas},
        "paths": paths,
    }


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(document()), status_code=200, mimetype="application/json",
                             headers={"Cache-Control": "public, max-age=300"})
