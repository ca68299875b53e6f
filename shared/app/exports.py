"""Billing exports: a billing summary (CSV / XLSX / JSON) or a FOCUS 1.2 export (CSV / Parquet) of one file version.

HTTP requests stay short: `request_export` writes a Queued record and a message on the exports queue
(`{GENERATION_QUEUE}-exports`) and answers 202; `ExportJob` (the queue trigger) reads the version's blob — the
view exactly as the file holds it — streams it through the summary or the FOCUS mapping, writes the export beside
the version (`…/v0001/exports/{kind}.{ext}`) and marks the record Available with the total it billed. The export
id is derived from (file, version, kind, format), so a repeated request returns the same export; the job is
idempotent (deterministic blob name, ETag-guarded status) and a redelivered message for a settled export does
nothing. The download is the same audited short-lived SAS link as the file's.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

import pyarrow as pa
from azure.core.exceptions import ResourceNotFoundError
from pydantic import BaseModel, ValidationError

from shared.adapters.file_readers import READABLE_FORMATS, Unreadable, read_version
from shared.adapters.file_writers import BlockBlobSink, CsvWriter, ParquetWriter
from shared.adapters.repositories import Conflict, utcnow
from shared.app import downloads
from shared.app.context import AppContext
from shared.app.downloads import Link, Requester
from shared.core import focus
from shared.core.billing import BillingSummary, total
from shared.core.columns import FileType, layout_for
from shared.core.exports import FORMATS, ExportFormat, ExportIn, ExportKind, ExportRecord, ExportStatus, export_id_for
from shared.core.models import DOWNLOADABLE_STATUSES, FileRecord, View
from shared.core.money import Decimal, arrow_text, plain
from shared.core.problems import Problem, bad_request, conflict, not_found

log = logging.getLogger(__name__)

CONTENT_TYPES = {ExportFormat.CSV: "text/csv; charset=utf-8", ExportFormat.JSON: "application/json",
                 ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                 ExportFormat.PARQUET: "application/vnd.apache.parquet"}


class ExportMessage(BaseModel):
    tenantId: str
    exportId: str


def queue_name(ctx: AppContext) -> str:
    return f"{ctx.settings.generation_queue}-exports"


# ---- the request ------------------------------------------------------------------------------------------------

def _version(ctx: AppContext, record: FileRecord, version: int | None) -> FileRecord:
    if version is None or version == record.version:
        found = record
    else:
        found = next((v for v in ctx.files.list_versions(record.tenant_id, record.id) if v.version == version), None)
        if found is None:
            raise not_found(f"Version {version} of reconciliation file {record.id}")
    if found.status not in DOWNLOADABLE_STATUSES or not found.blob_name:
        raise conflict(f"Version {found.version} is {found.status.value}; an export is made from an Available file.")
    return found


def request_export(ctx: AppContext, record: FileRecord, body: ExportIn) -> tuple[ExportRecord, bool]:
    """Queue an export of a file version the caller may read; returns (record, created)."""
    if body.format not in FORMATS[body.kind]:
        allowed = ", ".join(f.value for f in FORMATS[body.kind])
        raise bad_request(f"A {body.kind.value} export is written as {allowed}.", "format")
    if body.kind == ExportKind.FOCUS and record.invoice_type != FileType.DAILY:
        raise bad_request("FOCUS exports are made from daily rated usage files.", "kind")
    version = _version(ctx, record, body.version)
    if version.format not in READABLE_FORMATS:
        raise Problem(409, "Not exportable", "Exports are made from CSV or Parquet files (an Excel file holds amounts "
                      "at 16 significant digits only): request the same view as csv or parquet.")
    export = ExportRecord(id=export_id_for(record.tenant_id, record.id, version.version, body.kind, body.format),
                          tenant_id=record.tenant_id, file_id=record.id, version=version.version, kind=body.kind,
                          format=body.format, status=ExportStatus.QUEUED, created_at=utcnow())
    try:
        ctx.exports.create(export)
    except Conflict:
        existing, etag = ctx.exports.get(record.tenant_id, export.id)  # type: ignore[misc]
        if existing.status == ExportStatus.FAILED:  # asked again after a failure: try once more
            existing.status, existing.error, existing.attempts = ExportStatus.QUEUED, None, 0
            try:
                ctx.exports.replace(existing, etag)
            except Conflict:
                return existing, False
        if existing.status == ExportStatus.QUEUED:
            _enqueue(ctx, existing)
        return existing, False
    _enqueue(ctx, export)
    return export, True


def _enqueue(ctx: AppContext, export: ExportRecord) -> None:
    ctx.storage.queue(queue_name(ctx)).send_message(
        json.dumps({"tenantId": export.tenant_id, "exportId": export.id}))


def get_export(ctx: AppContext, record: FileRecord, export_id: str) -> ExportRecord:
    loaded = ctx.exports.get(record.tenant_id, export_id.lower())
    if loaded is None or loaded[0].file_id != record.id:
        raise not_found(f"Export {export_id}")
    return loaded[0]


def list_exports(ctx: AppContext, record: FileRecord) -> list[ExportRecord]:
    return sorted(ctx.exports.list_for(record.tenant_id, record.id), key=lambda e: e.created_at, reverse=True)


def export_link(ctx: AppContext, record: FileRecord, export_id: str, who: Requester) -> Link:
    """The export's short-lived link, audited like the file's (`export-billing` / `export-focus`)."""
    export = get_export(ctx, record, export_id)
    if export.status != ExportStatus.AVAILABLE or not export.blob_name:
        raise conflict(f"The export is {export.status.value}; there is nothing to download yet.")
    return downloads.blob_link(ctx, record, export.version, f"export-{export.kind.value}", who, export.blob_name,
                               export.file_name or f"export.{export.format.value}")


# ---- the job ----------------------------------------------------------------------------------------------------

class ExportJob:
    """The exports queue's handler: one message -> one export written, at most once in effect."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def handle(self, body: str, dequeue_count: int = 1) -> None:
        try:
            msg = ExportMessage.model_validate_json(body)
        except ValidationError:
            log.error("dropping an export message that is not ours: %.200s", body)
            return
        loaded = self.ctx.exports.get(msg.tenantId, msg.exportId)
        if loaded is None or loaded[0].status in (ExportStatus.AVAILABLE, ExportStatus.FAILED):
            return
        export, etag = loaded
        export.status, export.attempts = ExportStatus.PROCESSING, export.attempts + 1
        try:
            etag = self.ctx.exports.replace(export, etag)
        except Conflict:
            return  # another delivery took it; if it dies, the message comes back
        try:
            self._make(export)
        except (Unreadable, Problem, ValueError, pa.ArrowInvalid) as exc:  # the data cannot make this export
            self._settle(export, etag, ExportStatus.FAILED, error=str(exc))
            return
        except ResourceNotFoundError:
            self._settle(export, etag, ExportStatus.FAILED, error="The file version's blob is gone; regenerate it.")
            return
        except Exception as exc:
            if dequeue_count >= self.ctx.settings.max_dequeue_count:
                self._settle(export, etag, ExportStatus.FAILED, error=f"Gave up after repeated attempts "
                                                                     f"({type(exc).__name__}).")
                return
            export.status = ExportStatus.QUEUED
            try:
                self.ctx.exports.replace(export, etag)
            except Conflict:
                pass
            raise
        self._settle(export, etag, ExportStatus.AVAILABLE)

    def _settle(self, export: ExportRecord, etag: str, status: ExportStatus, error: str | None = None) -> None:
        export.status, export.error, export.completed_at = status, error, utcnow()
        try:
            self.ctx.exports.replace(export, etag)
        except Conflict:
            log.warning("export %s changed meanwhile", export.id)

    def _make(self, export: ExportRecord) -> None:
        ctx = self.ctx
        loaded = ctx.files.get(export.tenant_id, export.file_id)
        if loaded is None:
            raise ValueError("The file of this export no longer exists.")
        version = _version(ctx, loaded[0], export.version)
        layout = layout_for(version.invoice_type)
        batches = read_version(ctx.storage.files.get_blob_client(version.blob_name), layout, version.format,
                               version.csv_format)
        folder = version.blob_name.rsplit("/", 1)[0]  # type: ignore[union-attr]
        stem = (version.file_name or "export").rsplit("_v", 1)[0]
        export.file_name = f"{stem}_v{version.version}_{export.kind.value}.{export.format.value}"
        export.blob_name = f"{folder}/exports/{export.kind.value}.{export.format.value}"
        blob = ctx.storage.files.get_blob_client(export.blob_name)
        if export.kind == ExportKind.BILLING:
            self._billing(export, version, layout, batches, blob)
        else:
            self._focus(export, version, batches, blob)

    def _billing(self, export: ExportRecord, version: FileRecord, layout, batches, blob) -> None:
        summary = BillingSummary(layout, version.view, version.invoice_id)
        lines = 0
        for batch in batches:
            lines += batch.num_rows
            summary.add(batch)
        table = summary.table()
        data = render_summary(table, export.format, version)
        from azure.storage.blob import ContentSettings

        blob.upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type=CONTENT_TYPES[export.format]))
        currencies = set(table.column("Currency").drop_null().to_pylist())
        export.rows, export.source_lines, export.amount = table.num_rows, lines, total(table)
        export.currency = currencies.pop() if len(currencies) == 1 else None

    def _focus(self, export: ExportRecord, version: FileRecord, batches, blob) -> None:
        sink = BlockBlobSink(blob, self.ctx.settings.block_size_bytes)
        csv = export.format == ExportFormat.CSV
        writer = CsvWriter(sink, columns=focus.SCHEMA.names) if csv else ParquetWriter(sink)
        issuer = self._issuer(version)
        rows, amount, currencies = 0, Decimal(0), set()
        writer.begin_segment(0)
        for batch in batches:
            out = focus.focus_batch(batch, version.view, issuer)
            rows += out.num_rows
            amount += total(pa.Table.from_batches([out]), "BilledCost") if out.num_rows else Decimal(0)
            currencies |= set(out.column("BillingCurrency").drop_null().to_pylist())
            writer.write(focus.iso_text(out) if csv else out)
        writer.end_segment()
        writer.finish({"tenant": export.tenant_id, "file": export.file_id, "version": str(export.version),
                       "focus": focus.VERSION})
        export.rows = export.source_lines = rows
        export.amount = amount
        export.currency = currencies.pop() if len(currencies) == 1 else None

    def _issuer(self, version: FileRecord) -> str:
        """Who issues the invoice at the view's price: the partner (its tenant's name), or the reseller (its name
        from the identifiers, else its MPN id)."""
        if version.view == View.RESELLER and version.reseller_id:
            try:
                name = self.ctx.identifiers.get(version.tenant_id, "reseller", version.reseller_id).name
            except Problem:
                name = None
            return name or f"Reseller {version.reseller_id}"
        tenant = self.ctx.tenants.get(version.tenant_id)
        return tenant.display_name if tenant else version.tenant_id

    def handle_poison(self, body: str) -> None:
        try:
            msg = ExportMessage.model_validate_json(body)
        except ValidationError:
            return
        loaded = self.ctx.exports.get(msg.tenantId, msg.exportId)
        if loaded is None or loaded[0].status in (ExportStatus.AVAILABLE, ExportStatus.FAILED):
            return
        self._settle(loaded[0], loaded[1], ExportStatus.FAILED, error="Gave up after repeated attempts.")


# ---- writing the summary ----------------------------------------------------------------------------------------

def render_summary(table: pa.Table, fmt: ExportFormat, version: FileRecord) -> bytes:
    """The summary as CSV (UTF-8 with BOM, plain decimal text), JSON (money as exact strings) or XLSX."""
    if fmt == ExportFormat.JSON:
        items = [{k: (plain(v) if isinstance(v, Decimal) else v) for k, v in row.items()}
                 for row in table.to_pylist()]
        doc = {"invoiceId": version.invoice_id, "invoiceType": version.invoice_type.value, "view": version.view.value,
               "resellerId": version.reseller_id, "customerId": version.customer_id, "fileId": version.id,
               "version": version.version, "total": plain(total(table)), "lines": items}
        return json.dumps(doc, indent=1, ensure_ascii=False).encode()
    if fmt == ExportFormat.XLSX:
        return _xlsx(table)
    text = pa.table({name: arrow_text(col.combine_chunks()) if pa.types.is_decimal(col.type) else col
                     for name, col in zip(table.column_names, table.columns)})
    import pyarrow.csv as pcsv

    out = io.BytesIO()
    pcsv.write_csv(text, out, pcsv.WriteOptions(quoting_style="needed"))
    return b"\xef\xbb\xbf" + out.getvalue()


def _xlsx(table: pa.Table) -> bytes:
    import xlsxwriter

    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_numbers": False, "strings_to_formulas": False,
                                     "strings_to_urls": False})
    sheet = book.add_worksheet("Billing summary")
    sheet.write_row(0, 0, table.column_names)
    for r, row in enumerate(table.to_pylist(), start=1):
        for c, name in enumerate(table.column_names):
            value = row[name]
            if value is None:
                continue
            if isinstance(value, Decimal):
                sheet.write_number(r, c, value.normalize())  # written from the decimal's own text (16 digits)
            elif isinstance(value, int):
                sheet.write_number(r, c, value)
            else:
                sheet.write_string(r, c, value)
    book.close()
    return out.getvalue()
