"""What a generation leaves beside its lines, shared by the one-instance path (shared/app/generation.py) and the
fan-out (shared/app/fanout.py, shared/app/fanin.py): where an attempt's blobs go, the findings copied from the
snapshot, and how a finished file's record is filled from its totals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.app.context import AppContext
from shared.adapters.repositories import utcnow
from shared.adapters.snapshot_store import FINDINGS, SUMMARY, Snapshot
from shared.core.columns import FileType
from shared.core.models import FileRecord, FileStatus, Unmapped, View
from shared.core.money import exact_sum, to_decimal
from shared.core.reconcile import Tally


class _Report(Protocol):
    """What a record needs of a validation report: its counts (`Report` and a snapshot's findings alike)."""

    def totals(self) -> dict: ...


def record_result(record: FileRecord, totals: Tally, invoice: dict, report: "_Report | None" = None,
                  blocks: bool = False) -> None:
    partner = record.view == View.PARTNER
    record.status = FileStatus.AVAILABLE
    record.findings = report.totals() if report is not None else None
    if report is not None and blocks and record.findings["error"]:
        record.status = FileStatus.NEEDS_REVIEW
    record.completed_at = utcnow()
    record.row_count = record.progress_rows = totals.rows
    record.totals = totals.sums.for_view(partner)
    total = invoice.get("totalCharges")
    record.invoice_total = to_decimal(total) if partner else None
    whole_invoice = partner and record.invoice_type == FileType.ONETIME
    record.invoice_difference = (exact_sum((record.invoice_total, totals.sums.microsoft_total.copy_negate()))
                                 if whole_invoice and record.invoice_total is not None else None)
    record.unmapped = Unmapped(customer_lines=totals.unmapped_customer_lines,
                               first_customer_id=totals.first_unmapped_customer,
                               subscription_lines=totals.unmapped_subscription_lines,
                               first_subscription_id=totals.first_unmapped_subscription)
    record.undated_lines = totals.undated_lines
    record.no_cost_lines = totals.no_cost_lines


@dataclass
class _SnapshotReport:
    """The validation of a snapshot, as a partner-view file's record carries it."""

    counts: dict

    def totals(self) -> dict:
        return self.counts


def copy_findings(ctx: AppContext, snapshot: Snapshot, blob_name: str) -> _SnapshotReport | None:
    """A partner-view file carries its snapshot's findings.csv and summary.json beside it, as it always did."""
    folder = blob_name.rsplit("/", 1)[0]
    for name, target in ((FINDINGS, findings_name_for(blob_name)), (SUMMARY, folder + "/summary.json")):
        data = ctx.snapshots.read_bytes(snapshot.id, name)
        if data is not None:
            ctx.storage.files.get_blob_client(target).upload_blob(data, overwrite=True)
    counts = snapshot.manifest.get("findings")
    return _SnapshotReport(counts) if counts is not None else None


def file_name_for(record: FileRecord, extension: str = "csv") -> str:
    """Names the view's scope: a customer view narrowed to one reseller's lines carries both ids, so it never
    shares a name with the whole customer's view."""
    scope = [i for i in (record.reseller_id, record.customer_id) if i]
    parts = [record.invoice_id, record.invoice_type.value, record.view.value, *scope]
    return "_".join(parts) + f"_v{record.version}.{extension}"


def findings_name_for(blob_name: str) -> str:
    """The validation findings of a version, stored beside it."""
    return blob_name.rsplit("/", 1)[0] + "/findings.csv"


def billing_start(invoice: dict):
    from datetime import date

    raw = invoice.get("billingPeriodStartDate") if isinstance(invoice, dict) else None
    try:
        return date.fromisoformat(str(raw)[:10]) if raw else None
    except ValueError:
        return None


def iso_date(value) -> str | None:
    return value.isoformat() if value is not None else None


def snapshot_name_for(blob_name: str) -> str:
    """The rules and mappings a version was made with, stored beside it."""
    return blob_name.rsplit("/", 1)[0] + "/snapshot.json"


def attempt_folder(record: FileRecord) -> str:
    """Each attempt at a version writes under its own folder (`…/vNNNN/aNN/`): two attempts that overlap (a lease
    that lapsed, a duplicate delivery) never stage blocks into, or commit, each other's blob. Retention deletes a
    version's folder with all its attempts, and sweeps the attempts that lost."""
    return f"{record.tenant_id}/{record.invoice_id}/{record.id}/v{record.version:04d}/a{record.attempts:02d}/"


def blob_name_for(record: FileRecord) -> str:
    """The file of this attempt; the record names it only once this attempt has won the final guarded write."""
    return attempt_folder(record) + file_name_for(record, record.format.value)
