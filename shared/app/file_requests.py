"""What the HTTP API does, without HTTP: tenants, file requests, status, regeneration, download links.

The record is always written before its message is enqueued, so a message never points at nothing; a repeated
request for the same file returns the same record (and re-enqueues it if it is still waiting), so a client or a
timer that retries cannot create duplicates.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import Callable

from shared.app import charges, ingest
from shared.app.downloads import current_link
from shared.app.tenants import require_tenant

from shared.adapters import invoices
from shared.core.columns import CUSTOMER_VIEW_TYPES, FileType, layout_for
from shared.app.context import AppContext
from shared.adapters.invoices import InvoiceSummary
from shared.core.reconcile import FilePlan
from shared.adapters.file_writers import XLSX_MAX_ROWS
from shared.adapters.partner_center.transport import NotFound, PartnerCenterError
from shared.core.models import SETTLED_STATUSES, UNBILLED_PREFIX, ChargesScope, FileFormat, FileRecord, FileRequest, FileStatus, View
from shared.core.problems import Problem, bad_request, conflict, not_found
from shared.adapters.repositories import Conflict, utcnow
from shared.adapters.snapshot_store import invoice_prefix
from shared.app.generation import snapshot_name_for
from shared.core.margin_rules import Mappings, MarginRule
from azure.core.exceptions import ResourceNotFoundError

log = logging.getLogger(__name__)

FILE_ID_NAMESPACE = uuid.UUID("6b1f1c52-2f7e-4c1e-9d0e-6a8e3c9f4b21")
# A Queued version whose message has not been sent again for this long is presumed lost and re-queued (the
# generation queue delivers within seconds; a worker holding a file renews its lease every few seconds).
REQUEUE_AFTER = timedelta(minutes=5)
CHARGES_RETRY_SECONDS = 5  # how soon a client polls again while an invoice's lines are being ingested


# ---- files ---------------------------------------------------------------------------------------------------

def file_id_for(tenant_id: str, req: FileRequest) -> str:
    """The same request always names the same file: retries and overlapping timers cannot duplicate it."""
    csv = req.csv_format.model_dump_json() if req.csv_format else ""
    key = "|".join([tenant_id.lower(), req.invoice_id.upper(), req.invoice_type.value, req.view.value,
                    req.reseller_id or "", (req.customer_id or "").lower(), req.format.value, csv,
                    (req.currency or "").upper()])
    return str(uuid.uuid5(FILE_ID_NAMESPACE, key))


def _check_view(req: FileRequest) -> None:
    if req.view == View.RESELLER and not req.reseller_id:
        raise bad_request("A reseller view needs resellerId (the reseller's MPN id).", "resellerId")
    if req.view == View.CUSTOMER:
        if not req.customer_id:
            raise bad_request("A customer view needs customerId.", "customerId")
        if req.invoice_type not in CUSTOMER_VIEW_TYPES:
            raise bad_request("Customer views exist for onetime and license files only.", "view")
    if req.view == View.PARTNER and req.reseller_id:  # with a customer view it narrows to that reseller's lines
        raise bad_request("resellerId is only used with view=reseller or view=customer.", "resellerId")
    if req.view != View.CUSTOMER and req.customer_id:
        raise bad_request("customerId is only used with view=customer.", "customerId")
    if req.csv_format is not None and req.format.value != "csv":
        raise bad_request("csvFormat applies to CSV files only.", "csvFormat")
    if req.invoice_id.upper().startswith(UNBILLED_PREFIX):
        if req.invoice_type not in (FileType.ONETIME, FileType.DAILY):
            raise bad_request("Unbilled data exists for onetime and dailyratedusage only.", "invoiceType")
        if not req.currency:
            raise bad_request("Unbilled files need the billing currency (e.g. USD).", "currency")
    elif req.currency:
        raise bad_request("currency is only used with unbilled-current / unbilled-last.", "currency")


def take_quota(ctx: AppContext, tenant_id: str, viewer: View | str, object_id: str) -> None:
    """A reseller's or customer's file request (or regeneration) counts against its hourly quota: 429 with
    Retry-After when it is spent. Partner roles are not counted, and the timer's own requests never come here."""
    if View(viewer) != View.PARTNER:
        ctx.quotas.take(tenant_id, object_id)


def request_file(ctx: AppContext, tenant_id: str, req: FileRequest,
                 charge: Callable[[], None] | None = None) -> tuple[FileRecord, bool]:
    """Queue a file; returns (record, created). An identical earlier request returns its record. `charge` (the
    caller's quota, `take_quota`) is called only for a request that is valid and makes new work: a refused
    request, or one answered with the existing file, costs nothing."""
    tenant = require_tenant(ctx, tenant_id)
    _check_view(req)
    if req.format == FileFormat.XLSX:
        _check_fits_a_sheet(ctx, tenant.tenant_id, req)
    if req.format.value == "csv" and req.csv_format is None and tenant.csv_format is not None:
        req = req.model_copy(update={"csv_format": tenant.csv_format})
    if charge is not None and ctx.files.get(tenant.tenant_id, file_id_for(tenant.tenant_id, req)) is None:
        charge()  # a 429 here creates nothing
    record = FileRecord(
        id=file_id_for(tenant.tenant_id, req), tenant_id=tenant.tenant_id, invoice_type=req.invoice_type,
        invoice_id=req.invoice_id.upper(), view=req.view, reseller_id=req.reseller_id,
        customer_id=(req.customer_id or None) and req.customer_id.lower(), format=req.format,
        csv_format=req.csv_format, currency=req.currency.upper() if req.currency else None,
        status=FileStatus.QUEUED, version=1, reason="requested", created_at=utcnow(), enqueued_at=utcnow(),
    )
    try:
        ctx.files.create(record)
    except Conflict:
        existing, _ = ctx.files.get(record.tenant_id, record.id)  # type: ignore[misc]
        if existing.status == FileStatus.QUEUED:
            enqueue(ctx, existing)  # the first enqueue may have been lost in a crash; the worker dedupes
        return existing, False
    enqueue(ctx, record)
    return record, True


def _check_fits_a_sheet(ctx: AppContext, tenant_id: str, req: FileRequest) -> None:
    """Refuse an XLSX that cannot fit one sheet, before any work, when the same lines were counted already (any
    earlier file of this invoice, type and view). Otherwise the generation fails with the same reason."""
    counted = [r.row_count for r in ctx.files.list(tenant_id, invoice_id=req.invoice_id.upper(),
                                                   invoice_type=req.invoice_type.value, view=req.view.value)
               if r.row_count is not None and r.reseller_id == req.reseller_id
               and r.customer_id == ((req.customer_id or None) and req.customer_id.lower())]
    if counted and max(counted) > XLSX_MAX_ROWS:
        raise Problem(422, "Too many rows for Excel", f"This file has {max(counted):,} lines; an Excel sheet holds "
                      f"{XLSX_MAX_ROWS:,}. Choose csv or parquet.", errors=[{"field": "format",
                                                                           "message": "too many rows for xlsx"}])


def enqueue(ctx: AppContext, record: FileRecord) -> None:
    message = json.dumps({"tenantId": record.tenant_id, "fileId": record.id, "version": record.version})
    ctx.storage.queue().send_message(message)
    log.info("queued %s %s v%d", record.invoice_type, record.invoice_id, record.version,
             extra={"tenant": record.tenant_id, "file": record.id, "invoice": record.invoice_id})


def get_file(ctx: AppContext, tenant_id: str, file_id: str) -> tuple[FileRecord, str]:
    """The record, after re-queueing it if its message was lost (reading a file is what a waiting client does)."""
    require_tenant(ctx, tenant_id)
    loaded = ctx.files.get(tenant_id.lower(), file_id.lower())
    if loaded is None:
        raise not_found(f"Reconciliation file {file_id}")
    return requeue_if_stranded(ctx, *loaded)


def is_stranded(record: FileRecord, now: datetime) -> bool:
    """Waiting with nothing working on it: Queued (or Processing with a lease long lapsed) and no message sent for
    REQUEUE_AFTER. A crash between the record write and the enqueue leaves exactly this."""
    if record.status == FileStatus.QUEUED:
        since = record.enqueued_at or record.created_at
    elif record.status == FileStatus.PROCESSING and record.lease_until is not None:
        since = max(record.lease_until, record.enqueued_at or record.lease_until)
    else:
        return False
    return since <= now - REQUEUE_AFTER


def requeue_if_stranded(ctx: AppContext, record: FileRecord, etag: str) -> tuple[FileRecord, str]:
    """Send a stranded version's message again. The ETag-guarded mark comes first, so of many readers at once
    only one sends it; an extra message is harmless anyway (the worker dedupes)."""
    now = utcnow()
    if not is_stranded(record, now):
        return record, etag
    record.enqueued_at = now
    try:
        etag = ctx.files.replace(record, etag)
    except Conflict:
        return ctx.files.get(record.tenant_id, record.id) or (record, etag)  # someone else moved it on
    log.warning("file %s v%d was %s with no message since %s; queued again", record.id, record.version,
                record.status, record.enqueued_at, extra={"tenant": record.tenant_id, "file": record.id,
                                                          "invoice": record.invoice_id})
    enqueue(ctx, record)
    return record, etag


def list_files(ctx: AppContext, tenant_id: str, invoice_type: str | None, status: str | None,
               invoice_id: str | None) -> list[FileRecord]:
    tenant = require_tenant(ctx, tenant_id)
    items = ctx.files.list(tenant.tenant_id, invoice_type=invoice_type, status=status,
                           invoice_id=invoice_id.upper() if invoice_id else None)
    return sorted(items, key=lambda r: r.created_at, reverse=True)


def regenerate(ctx: AppContext, tenant_id: str, file_id: str, reason: str = "regenerated on request") -> FileRecord:
    """Make the file again as a new version; earlier versions stay."""
    return new_version(ctx, *get_file(ctx, tenant_id, file_id), reason=reason)


def new_version(ctx: AppContext, record: FileRecord, etag: str, reason: str = "regenerated on request",
                charge: Callable[[], None] | None = None) -> FileRecord:
    """`regenerate` for a file already loaded (with the ETag it was read at): a concurrent change is a 409.
    `charge` (the caller's quota) is called once the regeneration is allowed, so a 409 costs nothing."""
    if record.status not in SETTLED_STATUSES:
        raise conflict(f"The file is {record.status}; it can be regenerated once it is settled (Available, "
                       "NeedsReview or Failed).")
    if charge is not None:
        charge()
    ctx.files.record_version(record)  # idempotent: the settled version is in the history before it is replaced
    record = record.model_copy(deep=True)
    record.version += 1
    record.status, record.reason, record.error, record.transient = FileStatus.QUEUED, reason, None, None
    record.created_at, record.started_at, record.completed_at = utcnow(), None, None
    record.row_count = record.progress_rows = record.parts_total = record.parts_done = None
    record.totals = record.findings = record.unmapped = record.undated_lines = record.no_cost_lines = None
    record.attempts = 0
    record.blob_name = record.file_name = record.lease_until = None  # the new version has no blob yet
    record.enqueued_at = record.created_at
    try:
        ctx.files.replace(record, etag)
    except Conflict:
        raise conflict("The file changed while regenerating it; look at its status and try again.")
    enqueue(ctx, record)
    return record


def download_link(ctx: AppContext, tenant_id: str, file_id: str) -> tuple[str, datetime]:
    """The current version's link by id, unaudited: for scripts and tests (the API's links are `downloads`')."""
    return current_link(ctx, get_file(ctx, tenant_id, file_id)[0])


# ---- invoices and charges ------------------------------------------------------------------------------------

def _microsoft_problem(exc: PartnerCenterError) -> Problem:
    if isinstance(exc, NotFound):
        return not_found("The invoice")
    return Problem(502, "Microsoft's API failed", str(exc))


def _pricing_of(ctx: AppContext, version: FileRecord) -> tuple[list[MarginRule] | None, Mappings | None]:
    """The rules and identifiers a file version was made with (its `snapshot.json`), or (None, None) for a
    version made before they were stored beside it (today's are used then)."""
    if not version.blob_name:
        return None, None
    try:
        raw = ctx.storage.files.get_blob_client(snapshot_name_for(version.blob_name)).download_blob().readall()
    except ResourceNotFoundError:
        log.warning("version %d of file %s has no pricing record; its charges use today's rules", version.version,
                    version.id, extra={"tenant": version.tenant_id, "file": version.id})
        return None, None
    data = json.loads(raw)
    return ([MarginRule.model_validate(r) for r in data.get("rules") or []],
            Mappings.from_snapshot(data.get("mappings") or {}))


def list_invoices(ctx: AppContext, tenant_id: str) -> list[InvoiceSummary]:
    tenant = require_tenant(ctx, tenant_id)
    try:
        return invoices.list_invoices(invoices.client_for(tenant, ctx.settings))
    except PartnerCenterError as exc:
        raise _microsoft_problem(exc)


def get_charges(ctx: AppContext, tenant_id: str, invoice_id: str, scope: ChargesScope, page_size: int,
                token: str | None, approved: FileRecord | None = None) -> dict:
    """A page of an invoice's charges, with the columns, margins and view a file of the same request has.

    Read from the invoice's snapshot. Without one, the invoice is checked with Microsoft, an ingest is queued and
    the answer is `{"pending": …}` (HTTP 202: poll again): never a Microsoft export inside an HTTP request. With
    `approved` (a reseller's or customer's call: the approved version of its file), the lines are the approved
    file's: read from the snapshot it was made from, with the rules and identifiers it was made with."""
    tenant = require_tenant(ctx, tenant_id)
    file_type = scope.invoice_type
    invoice_id = invoice_id.upper()
    _check_view(FileRequest(invoice_id=invoice_id, **scope.model_dump()))
    rules, mappings = _pricing_of(ctx, approved) if approved is not None else (None, None)
    plan = FilePlan(layout_for(file_type), ctx.rules.list(tenant.tenant_id) if rules is None else rules,
                    ctx.identifiers.mappings(tenant.tenant_id) if mappings is None else mappings,
                    scope.view, scope.reseller_id, scope.customer_id)
    pinned = approved.snapshot_id if approved is not None else None  # the approved version's data, not newer
    if token:
        snap_id, file, row = charges.token_start(ctx.settings, token,
                                                 invoice_prefix(tenant.tenant_id, invoice_id, file_type.value), plan)
        snapshot = ctx.snapshots.load(snap_id) if pinned in (None, snap_id) else None
        if snapshot is None:
            raise bad_request("These charges were replaced by newer data from Microsoft; start again without a "
                              "token.", "continuationToken")
        return charges.charges_page(ctx.storage.files, ctx.settings, snapshot, plan, page_size, file, row)
    if pinned is not None:
        snapshot = ctx.snapshots.load(pinned)
        if snapshot is None:
            raise conflict("The lines of the approved file are no longer kept; ask your partner to regenerate and "
                           "approve it.")
        return charges.charges_page(ctx.storage.files, ctx.settings, snapshot, plan, page_size)
    snapshot = ingest.current(ctx, tenant.tenant_id, invoice_id, file_type)
    if snapshot is not None:
        return charges.charges_page(ctx.storage.files, ctx.settings, snapshot, plan, page_size)
    try:
        invoice = invoices.client_for(tenant, ctx.settings).get_invoice(invoice_id)
    except PartnerCenterError as exc:
        raise _microsoft_problem(exc)
    if file_type not in invoices.file_types_of(invoice):
        raise bad_request(f"Invoice {invoice_id} has no {file_type.value} charges.", "type")
    ingest.request(ctx, tenant.tenant_id, invoice_id, file_type)
    loaded = ctx.snapshots.get(tenant.tenant_id, invoice_id, file_type.value)
    status = loaded[0] if loaded else None
    return {"pending": {"status": status.status.value if status else "Queued",
                        "rows": status.rows if status else None, "lastError": status.error if status else None,
                        "retryAfter": CHARGES_RETRY_SECONDS}}
