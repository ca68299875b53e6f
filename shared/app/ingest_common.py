"""What an ingest on one instance (shared/app/ingest.py) and an ingest fanned out per export blob
(shared/app/ingest_fanout.py, shared/app/ingest_fanin.py) share: the plan the lines pass through, the waiters'
exception, and how a snapshot's findings, summary and manifest are written. One copy, so both write the same bytes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa

from shared.app.context import AppContext
from shared.core.columns import FileType
from shared.core.models import DataSource, FileStatus, View
from shared.core.reach import ReachCollector
from shared.core.reconcile import Tally
from shared.core.validation import Report, Validator, add_months
from shared.adapters.snapshot_parts import total_sums
from shared.adapters.snapshot_store import FINDINGS, MANIFEST, SUMMARY, SnapshotRecord

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)  # renewed by a heartbeat (or by each part of a fan-out); a dead ingest is taken over
WAIT_SECONDS = 15  # how long a file that waits for another worker's ingest sleeps before it looks again


class SnapshotBusy(Exception):
    """Another worker is ingesting this snapshot: look again in `retry_after` seconds."""

    def __init__(self, retry_after: int = WAIT_SECONDS) -> None:
        super().__init__(f"snapshot being ingested elsewhere; looking again in {retry_after} s")
        self.retry_after = retry_after


class NotIngestible(Exception):
    """Retrying cannot help (no such invoice, no such type, no such tenant)."""


@dataclass
class IngestPlan:
    """The builder's plan while ingesting: Microsoft's lines pass unchanged; validation and reach look at them."""

    validator: Validator
    reach: ReachCollector

    def begin_segment(self) -> None:
        self.validator.begin_segment()

    def end_segment(self) -> None:
        self.validator.end_segment()

    def process(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, Tally]:
        self.validator.check(batch)
        self.reach.add(batch)
        return batch, Tally(rows=batch.num_rows)


def write_snapshot(ctx: AppContext, record: SnapshotRecord, snapshot_id: str, invoice: dict, validator: Validator,
                   report: Report, parts: list[dict[str, Any]], rows: int, kind: DataSource,
                   data_version: str | None, fetched_at: datetime) -> None:
    """findings.csv, summary.json, then manifest.json (last: a snapshot is there once its manifest is)."""
    store = ctx.snapshots
    start = billing_start(invoice)
    store.write_bytes(snapshot_id, FINDINGS, report.csv_bytes())
    store.write_json(snapshot_id, SUMMARY, {**validator.summary(), "billingPeriodStart":
                                            start.isoformat() if start else None})
    manifest = {
        "format": 1, "snapshotId": snapshot_id, "tenantId": record.tenant_id, "invoiceId": record.invoice_id,
        "invoiceType": record.invoice_type, "dataVersion": data_version, "source": kind.value,
        "fetchedAt": fetched_at.isoformat(), "rows": rows, "parts": parts, "sums": total_sums(parts),
        "findings": report.totals(), "invoice": invoice,
    }
    store.write_json(snapshot_id, MANIFEST, manifest)
    log.info("snapshot %s: %d rows in %d parts", snapshot_id, rows, len(parts),
             extra={"tenant": record.tenant_id, "invoice": record.invoice_id})


def previous_summary(ctx: AppContext, tenant_id: str, file_type: FileType, start: date | None,
                     invoice_id: str) -> dict | None:
    """summary.json of the previous month's partner-view file of the same type (month-over-month validation)."""
    if start is None:
        return None
    wanted = add_months(start, -1)
    candidates = [r for status in (FileStatus.AVAILABLE, FileStatus.NEEDS_REVIEW)
                  for r in ctx.files.list(tenant_id, invoice_type=file_type.value, view=View.PARTNER.value,
                                          status=status.value)
                  if r.invoice_id != invoice_id and r.blob_name and r.billing_period_start
                  and (r.billing_period_start.year, r.billing_period_start.month) == (wanted.year, wanted.month)]
    for prior in sorted(candidates, key=lambda r: r.completed_at or r.created_at, reverse=True):
        try:
            data = ctx.storage.files.get_blob_client(
                prior.blob_name.rsplit("/", 1)[0] + "/summary.json").download_blob().readall()
            return {**json.loads(data), "invoiceId": prior.invoice_id}
        except Exception:  # an older version made before summaries existed: nothing to compare
            log.info("no summary for previous file %s", prior.id)
    return None


def billing_start(invoice: dict) -> date | None:
    raw = invoice.get("billingPeriodStartDate") if isinstance(invoice, dict) else None
    try:
        return date.fromisoformat(str(raw)[:10]) if raw else None
    except ValueError:
        return None
