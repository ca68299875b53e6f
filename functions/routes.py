"""The HTTP API's one route table: each HTTP function is declared here once, with its route, method, access action
and request/response models. Everything else follows from it: `http_support.handles` registers a handler on its
Blueprint from its entry (the function's name is the key), `http_support.ROUTE_POLICY` is the policy the routes
enforce, and `openapi_api.document` is the OpenAPI document.

To add a route: add a `Route` here, then write the handler in a Blueprint module under `@handles(bp)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.adapters.audit import AuditEntry
from shared.adapters.invoices import InvoiceSummary
from shared.adapters.pricing import (CustomerIdentifierIn, Identifier, ImportResult, ResellerIdentifierIn,
                                     SubscriptionIdentifierIn)
from shared.core.access import Action, Principal, PrincipalIn
from shared.core.exports import ExportIn, ExportRecord
from shared.core.margins import MarginRule, MarginRuleIn
from shared.core.models import (INVOICE_ID_PATTERN, MPN_ID_PATTERN, AutomationIn, AutomationSettings,
                                BulkRegenerateIn, FileRecord, FileRequest, Tenant, TenantIn)
from shared.core.notifications import Webhook, WebhookIn
from shared.core.preview import MarginRuleEnd, RulePreviewIn
from shared.core.usage import Budget, BudgetIn

# JSON schemas of path and query parameters, from the same patterns the models and handlers check.
GUID = {"type": "string", "format": "uuid"}
MPN = {"type": "string", "pattern": MPN_ID_PATTERN}
INVOICE = {"type": "string", "pattern": INVOICE_ID_PATTERN}
INT = {"type": "string", "pattern": "^[0-9]+$"}
STR = {"type": "string", "maxLength": 200}
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "tenantId": GUID, "fileId": GUID, "ruleId": GUID, "objectId": GUID, "customerId": GUID, "subscriptionId": GUID, "exportId": GUID,
    "resellerMpnId": MPN, "invoiceId": INVOICE, "version": INT, "path": STR,
    "webhookId": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}}

# What a request or response carries besides a pydantic model.
CSV = "csv"  # body: text/csv
OBJECT = "object"  # response: a JSON object the document does not model further
HTML = "html"  # response: the web front end's page or an asset
Body = type | str | None


@dataclass(frozen=True)
class Route:
    """One HTTP function. `action` None: anonymous (no token, no policy). `scoped`: the handler narrows the action
    to a scope it learns from the body, a stored record or list items; otherwise the action is checked on the whole
    tenant before the handler runs. `response` None: no JSON body (`status` says which: 204, or 302 to a link);
    `many`: the response is `{"items": [response, ...]}`; `quota`: the route may answer 429 (FILE_REQUESTS_PER_HOUR);
    `pending`: the route may answer 202 with Location and Retry-After while its data is being fetched."""

    name: str
    method: str
    path: str  # as the host routes it, below /api
    summary: str
    action: Action | None
    scoped: bool = False
    body: Body = None
    response: Body = None
    many: bool = False
    status: int = 200
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    quota: bool = False  # counts against a reseller's or customer's hourly quota (429 with Retry-After)
    pending: bool = False  # 202 + Location while the data is fetched (charges: the invoice's snapshot is ingested)

    @property
    def openapi_path(self) -> str:
        """`/tenants/{tenantId}`; a catch-all `{*path}` is a plain path parameter in OpenAPI."""
        return "/" + self.path.replace("{*", "{")

    @property
    def path_params(self) -> list[str]:
        return [p.strip("{*}") for p in self.path.replace(":", "/").split("/") if p.startswith("{")]


T = "tenants/{tenantId}"
F = T + "/reconciliation-files"
FILE = F + "/{fileId}"
PAGE = {"pageSize": INT, "continuationToken": STR}
A = Action
SCOPED = True  # `Route.scoped`: the handler narrows the action to what it touches


def _identifier_routes() -> list[Route]:
    out = []
    for kind, param, model, what in [("reseller", "resellerMpnId", ResellerIdentifierIn, "A reseller's internal id"),
                                     ("customer", "customerId", CustomerIdentifierIn, "A customer's internal id"),
                                     ("subscription", "subscriptionId", SubscriptionIdentifierIn,
                                      "A subscription's internal id and PO number")]:
        path = f"{T}/{kind}s/{{{param}}}"
        owner = {} if kind == "reseller" else {"ownerResellerId": MPN}  # whose identifier (a reseller's own lines)
        out += [Route(f"put_{kind}_identifier", "PUT", path, what, A.IDENTIFIERS_WRITE, SCOPED, model, Identifier,
                      query=owner),
                Route(f"get_{kind}_identifier", "GET", path, what, A.IDENTIFIERS_READ, SCOPED, None, Identifier,
                      query=owner)]
    return out


ROUTES: list[Route] = [
    # tenants and reconciliation files (http_api)
    Route("health", "GET", "health", "Liveness (no token)", None, response=OBJECT),
    Route("put_tenant", "PUT", T, "Register or update a partner tenant", A.TENANT_WRITE, body=TenantIn,
          response=Tenant),
    Route("list_tenants", "GET", "tenants", "The tenants the caller may read", A.TENANT_READ, SCOPED, response=Tenant,
          many=True),
    Route("get_tenant", "GET", T, "A tenant", A.TENANT_READ, response=Tenant),
    Route("request_file", "POST", F, "Request a reconciliation file", A.FILES_REQUEST, SCOPED, FileRequest, FileRecord,
          status=202, quota=True),
    Route("list_files", "GET", F, "Files the caller may read", A.FILES_READ, SCOPED, response=FileRecord, many=True,
          query={"invoiceType": STR, "status": STR, "invoiceId": INVOICE}),
    Route("get_file", "GET", FILE, "A file's status", A.FILES_READ, SCOPED, response=FileRecord),
    Route("download", "GET", FILE + "/download", "302 to a short-lived read-only link", A.FILES_READ, SCOPED,
          status=302),
    Route("list_findings", "GET", FILE + "/findings", "Charge-validation findings", A.FILES_READ, SCOPED,
          response=OBJECT, query={"severity": STR, "rule": STR, **PAGE}),
    Route("download_findings", "GET", FILE + "/findings/download", "302 to findings.csv", A.FILES_READ, SCOPED,
          status=302),
    Route("regenerate", "POST", FILE + "/regenerate", "Make a new version", A.FILES_REGENERATE, SCOPED,
          response=FileRecord, status=202, quota=True),
    Route("list_invoices", "GET", T + "/invoices", "Microsoft's invoices", A.INVOICES_READ, response=InvoiceSummary,
          many=True),
    Route("get_charges", "GET", T + "/invoices/{invoiceId}/charges", "A page of an invoice's charges",
          A.CHARGES_READ, SCOPED, response=OBJECT,
          query={"type": STR, **PAGE, "view": STR, "resellerId": MPN, "customerId": GUID}, pending=True),
    # monthly automation (automation_api)
    Route("put_automation", "PUT", T + "/automation", "Monthly automation settings", A.TENANT_WRITE,
          body=AutomationIn, response=AutomationSettings),
    Route("get_automation", "GET", T + "/automation", "Monthly automation settings", A.TENANT_READ,
          response=AutomationSettings),
    Route("get_calendar", "GET", T + "/calendar", "The availability calendar", A.TENANT_READ, response=OBJECT,
          query={"months": INT}),
    Route("list_file_versions", "GET", FILE + "/versions", "A file's versions", A.FILES_READ, SCOPED,
          response=OBJECT, many=True),
    Route("download_file_version", "GET", FILE + "/versions/{version}/download", "302 to a version's file",
          A.FILES_READ, SCOPED, status=302),
    Route("regenerate_files", "POST", F + ":regenerate", "Regenerate a selection", A.FILES_REGENERATE,
          body=BulkRegenerateIn, response=FileRecord, many=True, status=202),
    # billing exports of a file version (exports_api)
    Route("request_export", "POST", FILE + "/exports", "Request a billing summary or FOCUS export of a version",
          A.FILES_READ, SCOPED, ExportIn, ExportRecord, status=202),
    Route("list_exports", "GET", FILE + "/exports", "A file's exports", A.FILES_READ, SCOPED,
          response=ExportRecord, many=True),
    Route("get_export", "GET", FILE + "/exports/{exportId}", "An export's status", A.FILES_READ, SCOPED,
          response=ExportRecord),
    Route("download_export", "GET", FILE + "/exports/{exportId}/download", "302 to the export's short-lived link",
          A.FILES_READ, SCOPED, status=302),
    # pricing configuration (config_api)
    Route("create_margin_rule", "POST", T + "/margin-rules", "Add a margin rule", A.RULES_WRITE, SCOPED, MarginRuleIn,
          MarginRule, status=201),
    Route("list_margin_rules", "GET", T + "/margin-rules", "Margin rules the caller may read", A.RULES_READ, SCOPED,
          response=MarginRule, many=True, query={"level": STR, "targetId": STR}),
    Route("delete_margin_rule", "DELETE", T + "/margin-rules/{ruleId}", "Delete a margin rule", A.RULES_WRITE, SCOPED,
          status=204),
    *_identifier_routes(),
    Route("patch_margin_rule", "PATCH", T + "/margin-rules/{ruleId}", "End-date a rule (If-Match: its ETag)",
          A.RULES_WRITE, SCOPED, MarginRuleEnd, MarginRule),
    Route("preview_margin_rule", "POST", T + "/margin-rules:preview",
          "A rule's effect on the latest invoice, per customer", A.RULES_WRITE, SCOPED, RulePreviewIn, OBJECT),
    Route("list_names", "GET", T + "/names", "Resellers, customers and subscriptions by name", A.RULES_READ, SCOPED,
          response=OBJECT, many=True, query={"q": STR, "kind": STR, "ids": STR, "top": INT}),
    Route("list_identifiers", "GET", T + "/identifiers", "Identifiers the caller may read", A.IDENTIFIERS_READ, SCOPED,
          response=Identifier, many=True),
    Route("import_identifiers_csv", "POST", T + "/identifiers:import", "Import identifiers from CSV",
          A.IDENTIFIERS_WRITE, body=CSV, response=ImportResult),
    # notifications, approval and consumption budgets (notifications_api)
    Route("put_webhook", "PUT", T + "/webhooks/{webhookId}", "Register or update a webhook endpoint (the signing "
          "secret is in the answer when it is created, and never again)", A.WEBHOOKS_MANAGE, SCOPED, WebhookIn,
          Webhook),
    Route("list_webhooks", "GET", T + "/webhooks", "Webhook endpoints the caller manages", A.WEBHOOKS_MANAGE, SCOPED,
          response=Webhook, many=True),
    Route("get_webhook", "GET", T + "/webhooks/{webhookId}", "A webhook endpoint", A.WEBHOOKS_MANAGE, SCOPED,
          response=Webhook),
    Route("delete_webhook", "DELETE", T + "/webhooks/{webhookId}", "Delete a webhook endpoint and its secret",
          A.WEBHOOKS_MANAGE, SCOPED, status=204),
    Route("list_webhook_deliveries", "GET", T + "/webhooks/{webhookId}/deliveries",
          "The endpoint's deliveries, newest first, with each attempt's status code", A.WEBHOOKS_MANAGE, SCOPED,
          response=OBJECT, many=True, query={"limit": INT}),
    Route("approve_file_version", "POST", FILE + "/versions/{version}:approve",
          "Approve a version for resellers and customers (partner admins)", A.FILES_APPROVE, response=FileRecord),
    Route("put_budget", "PUT", T + "/customers/{customerId}/budget",
          "A customer's monthly consumption budget and spike threshold", A.RULES_WRITE, SCOPED, BudgetIn, Budget),
    Route("get_budget", "GET", T + "/customers/{customerId}/budget", "A customer's consumption budget",
          A.RULES_READ, SCOPED, response=Budget),
    Route("delete_budget", "DELETE", T + "/customers/{customerId}/budget", "Remove a customer's budget",
          A.RULES_WRITE, SCOPED, status=204),
    Route("list_usage_alerts", "GET", T + "/alerts", "Consumption alerts raised, newest first", A.RULES_READ, SCOPED,
          response=OBJECT, many=True),
    # who may do what (access_api)
    Route("list_principals", "GET", T + "/principals", "Who has which role in the tenant", A.PRINCIPALS_READ,
          response=Principal, many=True),
    Route("get_principal", "GET", T + "/principals/{objectId}", "A principal", A.PRINCIPALS_READ,
          response=Principal),
    Route("put_principal", "PUT", T + "/principals/{objectId}", "Grant a role", A.PRINCIPALS_MANAGE,
          body=PrincipalIn, response=Principal),
    Route("delete_principal", "DELETE", T + "/principals/{objectId}", "Revoke a role", A.PRINCIPALS_MANAGE,
          status=204),
    Route("list_audit", "GET", T + "/audit", "Download links issued in a date range", A.AUDIT_READ,
          response=AuditEntry, many=True, query={"from": STR, "to": STR}),
    Route("get_me", "GET", "me", "The caller's roles and scopes in each tenant", A.SELF_READ, SCOPED,
          response=OBJECT),
    # anonymous: the web front end (web_app) and this document (openapi_api)
    Route("web_config", "GET", "web/config", "The web front end's public sign-in settings (no token)", None,
          response=OBJECT),
    Route("web_assets", "GET", "app/{*path}", "The web front end's files (no token)", None, response=HTML),
    Route("openapi_document", "GET", "openapi.json", "This document (no token)", None, response=OBJECT),
]



def by_name(routes: list[Route]) -> dict[str, Route]:
    """The table keyed by function name: the Functions host knows a function by it, so it names one route."""
    index: dict[str, Route] = {}
    for route in routes:
        if route.name in index:
            raise ValueError(f"two routes named {route.name}")
        index[route.name] = route
    return index


BY_NAME = by_name(ROUTES)


def location(name: str, **params: str) -> str:
    """The URL path of a route's resource, for a Location header: `location("get_file", tenantId=…, fileId=…)`."""
    return "/api/" + BY_NAME[name].path.format(**params)
