"""The generation worker: one queue message -> one version of one file, exactly once in effect.

Messages are delivered at least once. What makes that safe:
- the message names the file *and version*; a message for an older version, or for a version already finished,
  is acknowledged and ignored;
- every status change is an ETag-guarded replace of the file record, so two deliveries cannot both win;
- each attempt writes its blob (and findings, snapshot, summary) under its own folder, committed in one step only
  after every block is staged, so a crash leaves no half-written file behind, and two attempts never mix; the
  record names that blob only when the attempt wins the final guarded write (the loser discards its folder);
- a running generation holds a lease on the record, renewed by a heartbeat thread (shared/app/heartbeat.py): a
  duplicate delivery meanwhile leaves a delayed copy of the message and returns, instead of racing it;
- the version-history row is written after the record; a crash in between is repaired when the redelivered
  message finds the version settled, and by `regenerate` before it moves to the next version.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pydantic import BaseModel, ValidationError

from shared.app import alerts, approval, events, fanout, ingest, ingest_fanout
from shared.app.builder import build
from shared.app.heartbeat import Heartbeat, LeaseLost
from shared.app.ingest import NotIngestible, SnapshotBusy
from shared.app.outputs import (attempt_folder, billing_start, blob_name_for, copy_findings, file_name_for,  # noqa: F401
                                findings_name_for, iso_date, record_result, snapshot_name_for)
from shared.core.columns import FileType, layout_for
from shared.app.context import AppContext
from shared.core.money import Decimal
from shared.core.models import SETTLED_STATUSES, UNBILLED_PREFIX, CsvFormat, FileRecord, FileStatus, View
from shared.core.names import NamesCollector
from shared.core.reach import ReachCollector
from shared.core.usage import UsageCollector
from shared.core.reconcile import FilePlan
from shared.core.views import columns_for
from shared.adapters.invoices import client_for
from shared.adapters.partner_center.transport import NotFound, PartnerCenterError
from shared.adapters.microsoft_json import BadValue
from shared.adapters.repositories import Conflict, utcnow
from shared.adapters.sources import DataChanged, unbilled_source
from shared.adapters.storage import through_outage
from shared.core.validation import Report, Validator
from shared.adapters.duplicate_spill import DuplicateSpill
from shared.adapters.file_writers import BlockBlobSink, TooManyRows, writer_for
from shared.adapters.snapshot_parts import SnapshotSource
from shared.adapters.snapshot_store import Snapshot

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)  # renewed every few seconds by the heartbeat while the attempt runs

class GenerationMessage(BaseModel):
    tenantId: str
    fileId: str
    version: int


class PermanentFailure(Exception):
    """Retrying cannot help; the reason is written on the file for a person to act on."""


@dataclass
class Worker:
    ctx: AppContext

    def handle(self, body: str, dequeue_count: int = 1) -> None:
        blob_part = ingest_fanout.payload_of(body)
        if blob_part is not None:  # one export blob of an ingest fanned out per blob (same queue, same worker)
            ingest_fanout.handle_part(self.ctx, blob_part)
            return
        part = fanout.payload_of(body)
        if part is not None:  # one part of a file made part by part (same queue, same worker)
            fanout.handle_part(self.ctx, part)
            return
        payload = ingest.payload_of(body)
        if payload is not None:  # an ingest the charges API queued (same queue, same worker)
            ingest.handle_message(self.ctx, payload)
            return
        try:
            msg = GenerationMessage.model_validate_json(body)
        except ValidationError:
            log.error("dropping a generation message that is not ours: %.200s", body)
            return
        loaded = self.ctx.files.get(msg.tenantId, msg.fileId)
        if loaded is None:
            log.warning("file %s of tenant %s no longer exists; dropping message", msg.fileId, msg.tenantId)
            return
        record, etag = loaded
        extra = {"tenant": record.tenant_id, "file": record.id, "invoice": record.invoice_id}
        if record.version != msg.version or record.status in SETTLED_STATUSES:
            log.info("version %d already settled (record at v%d, %s); nothing to do", msg.version,
                     record.version, record.status, extra=extra)
            if record.version == msg.version:
                self.ctx.files.record_version(record)  # idempotent: repairs a history row lost in a crash
                events.file_settled(self.ctx, record)  # a crash may have come between settling and announcing it
            return
        now = utcnow()
        if record.status == FileStatus.PROCESSING and record.parts_total and not self._leased(record, now):
            fanout.resume(self.ctx, record, etag)  # a fan-out whose lease lapsed: its missing parts are sent again
            return
        if self._leased_elsewhere(record, body, now):
            return
        record.status, record.started_at, record.error = FileStatus.PROCESSING, now, None
        record.attempts += 1  # names this attempt's blobs: unique, since only one claim per ETag wins
        record.progress_rows, record.parts_total, record.parts_done = 0, None, None
        record.lease_until = now + LEASE
        try:
            etag = self.ctx.files.replace(record, etag)
        except Conflict:  # another delivery started a moment ago: look again once its lease can have ended
            self._look_again_later(body, LEASE.total_seconds())
            return
        log.info("generating %s %s v%d (attempt %d)", record.invoice_type, record.invoice_id, record.version,
                 record.attempts, extra=extra)
        heartbeat = Heartbeat(self.ctx.files, record, etag, LEASE)
        try:
            with heartbeat:
                if not self._generate(record, heartbeat):
                    return  # fanned out: the parts' messages make the file
        except LeaseLost:
            self._discard_attempt(record)
            log.warning("attempt %d of file %s v%d was taken over by another; its blobs are discarded",
                        record.attempts, record.id, record.version, extra=extra)
            return
        except SnapshotBusy as busy:  # another worker is ingesting this invoice's lines: wait for it, not race it
            self._release(record, heartbeat.etag)
            self._look_again_later(body, busy.retry_after)
            return
        except (PermanentFailure, NotFound, BadValue, TooManyRows, NotIngestible) as exc:
            self._finish_failed(record, heartbeat.etag, str(exc), transient=False)
            return
        except (PartnerCenterError, DataChanged) as exc:
            transient = getattr(exc, "transient", True)
            if not transient or dequeue_count >= self.ctx.settings.max_dequeue_count:
                self._finish_failed(record, heartbeat.etag, str(exc), transient=transient)
                return
            self._note_error(record, heartbeat.etag, str(exc))
            raise
        except Exception as exc:  # unexpected: keep the reason for the poison handler, let the queue retry
            log.exception("generation failed unexpectedly", extra=extra)
            self._note_error(record, heartbeat.etag, f"Internal error ({type(exc).__name__}); retrying.")
            raise
        log.info("file available: %d rows, cost %s", record.row_count or 0,
                 record.totals.cost if record.totals else None, extra=extra)
        events.file_settled(self.ctx, record)

    # ---- the work ---------------------------------------------------------------------------------------------
    def _generate(self, record: FileRecord, heartbeat: Heartbeat) -> bool:
        """Make the file here (True), or fan it out part by part (False: shared/app/fanout.py)."""
        ctx = self.ctx
        tenant = ctx.tenants.get(record.tenant_id)
        if tenant is None:
            raise PermanentFailure(f"Tenant {record.tenant_id} is not registered any more.")
        layout = layout_for(record.invoice_type)
        indexer = None

        def progress(rows: int) -> None:
            """Hand the rows so far to the heartbeat (it shows them and renews the lease on its own pace), stop
            if another attempt took over; hand the segment's new resellers and customers to the indexer, which
            writes them while the next segment streams."""
            heartbeat.rows = rows
            heartbeat.check()
            if indexer is not None:
                indexer.submit(reach.drain())  # type: ignore[union-attr]

        snapshot: Snapshot | None = None
        if record.invoice_id.startswith(UNBILLED_PREFIX):  # changes every day: read live, never kept
            client = client_for(tenant, ctx.settings, correlation_id=record.id)
            invoice, source = unbilled_source(client, layout, record)
        else:  # the invoice's snapshot: Microsoft is asked only if there is none yet (or a newer eTag)
            snapshot = ingest.ensure(ctx, record.tenant_id, record.invoice_id, record.invoice_type, progress)
            invoice, source = snapshot.invoice, SnapshotSource(ctx.storage.files, snapshot)
        record.source = source.kind
        record.data_version = source.data_version
        record.snapshot_id = snapshot.id if snapshot is not None else None
        blob_name = blob_name_for(record)
        sink = BlockBlobSink(ctx.storage.files.get_blob_client(blob_name), ctx.settings.block_size_bytes)
        csv_format = record.csv_format or CsvFormat()
        partner = record.view == View.PARTNER
        live = partner and snapshot is None  # a snapshot was validated and indexed once, when it was ingested
        validator = Validator(layout, invoice_id=record.invoice_id, cap=ctx.settings.validation_max_findings,
                              duplicates=DuplicateSpill()) if live else None  # key hashes on disk
        reach = ReachCollector(layout) if live else None  # partner views see every reseller's lines
        usage = UsageCollector(layout) if partner and layout.file_type == FileType.DAILY else None  # alerts
        plan = FilePlan(layout, ctx.rules.list(tenant.tenant_id), ctx.identifiers.mappings(tenant.tenant_id),
                        record.view, record.reseller_id, record.customer_id, validator=validator, reach=reach,
                        names=NamesCollector(layout) if partner else None, usage=usage)  # margins page, alerts
        record.billing_period_start = billing_start(invoice)
        if fanout.can_fan_out(ctx, record, snapshot):
            heartbeat.check()
            try:
                fanout.start(ctx, record, heartbeat.stop(), plan, snapshot)  # type: ignore[arg-type]
            except Conflict as exc:
                raise LeaseLost(f"file {record.id} v{record.version} was taken over before its fan-out") from exc
            return False
        writer = writer_for(record.format, sink, csv_format, layout.date_columns,
                            columns_for(layout, record.view))

        # which reseller serves which customer: written beside the streaming, done before the file is Available
        # (a failure retries the whole message; indexing again is harmless)
        indexer = ctx.reach.writer(record.tenant_id) if reach is not None else None

        try:
            result = build(source, plan, writer, progress=progress)
        except BaseException:
            if indexer is not None:
                indexer.close()
            if validator is not None:
                validator.close()
            raise
        with ThreadPoolExecutor(max_workers=1) as background:
            indexed = None
            if indexer is not None:
                indexer.submit(reach.drain())  # type: ignore[union-attr]
                indexed = background.submit(indexer.finish)  # while the file is committed
            ctx.storage.files.get_blob_client(snapshot_name_for(blob_name)).upload_blob(
                json.dumps(plan.snapshot(), indent=1, default=str).encode(), overwrite=True)
            report = self._validate(record, validator, invoice, blob_name) if validator is not None else \
                copy_findings(ctx, snapshot, blob_name) if partner and snapshot is not None else None
            writer.finish({"tenant": record.tenant_id, "file": record.id, "version": str(record.version),
                           "rows": str(result.totals.rows)})
            if indexed is not None:
                indexed.result()
        if plan.names is not None:  # the names the margins page offers (idempotent: a redelivery writes nothing)
            ctx.names.record(record.tenant_id, plan.names.entries())
        heartbeat.check()
        etag = heartbeat.stop()
        record_result(record, result.totals, invoice, report, ctx.settings.validation_blocks)
        approval.auto_approve(tenant, record)
        if usage is not None:
            alerts.check(ctx, record, usage)  # before the file is settled: a failure retries, nothing is lost
        record.data_version = source.data_version
        record.blob_name = blob_name
        record.file_name = file_name_for(record, writer.extension)
        record.lease_until = None
        try:  # only the attempt that wins this guarded write is published; a loser's blobs are its own
            heartbeat.etag = self.ctx.files.replace(record, etag)
        except Conflict as exc:
            raise LeaseLost(f"file {record.id} v{record.version} was finished by another attempt") from exc
        self.ctx.files.record_version(record)  # after a crash just before it, the settled path repairs it
        return True

    def _release(self, record: FileRecord, etag: str) -> None:
        """Back to Queued without spending an attempt: this delivery waits for another worker's ingest (it wrote
        no blob yet, so its attempt number is free again). Its delayed message is sent right after: a crash in
        between leaves a Queued file that the poller sends again after REQUEUE_AFTER."""
        record.status, record.started_at, record.lease_until = FileStatus.QUEUED, None, None
        record.attempts = max(0, record.attempts - 1)
        record.enqueued_at = utcnow()
        try:
            through_outage(lambda: self.ctx.files.replace(record, etag), f"releasing file {record.id}")
        except Conflict:
            pass

    def _validate(self, record: FileRecord, validator: Validator, invoice: dict, blob_name: str) -> Report:
        """Finish the validation that ran alongside the file; store findings.csv and summary.json beside it."""
        ctx = self.ctx
        previous = ingest.previous_summary(ctx, record.tenant_id, record.invoice_type, record.billing_period_start,
                                           record.invoice_id)
        report = validator.finish(invoice, previous, Decimal(str(ctx.settings.validation_change_threshold_percent)))
        folder = blob_name.rsplit("/", 1)[0]
        ctx.storage.files.get_blob_client(findings_name_for(blob_name)).upload_blob(report.csv_bytes(),
                                                                                    overwrite=True)
        ctx.storage.files.get_blob_client(folder + "/summary.json").upload_blob(
            json.dumps({**validator.summary(), "billingPeriodStart": iso_date(record.billing_period_start)},
                       indent=1).encode(), overwrite=True)
        return report

    def _finish_failed(self, record: FileRecord, etag: str, reason: str, transient: bool = False) -> None:
        record.status, record.error, record.completed_at = FileStatus.FAILED, reason, utcnow()
        record.transient = transient
        record.lease_until = None
        try:
            self.ctx.files.replace(record, etag)
            self.ctx.files.record_version(record)
        except Conflict:
            log.warning("file %s changed meanwhile; not marking it failed", record.id)
        else:
            events.file_settled(self.ctx, record)
        log.warning("file failed: %s", reason, extra={"tenant": record.tenant_id, "file": record.id,
                                                       "invoice": record.invoice_id})

    def _discard_attempt(self, record: FileRecord) -> None:
        """Delete what a losing attempt stored (best effort: retention sweeps what is left)."""
        folder = attempt_folder(record)
        try:
            for blob in self.ctx.storage.files.list_blobs(name_starts_with=folder):
                self.ctx.storage.files.delete_blob(blob.name)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not discard %s: %s", folder, exc)

    def _note_error(self, record: FileRecord, etag: str, reason: str) -> None:
        """Keep the last error on the record (for the poison handler) and release the lease for the retry."""
        record.error = reason
        record.lease_until = None
        try:
            through_outage(lambda: self.ctx.files.replace(record, etag), f"releasing file {record.id}")
        except Conflict:
            pass

    def handle_poison(self, body: str) -> None:
        """The queue gave up on a message: mark its file (or fanned-out ingest) Failed with the last reason we saw."""
        blob_part = ingest_fanout.payload_of(body)
        if blob_part is not None:  # one export blob kept failing: the snapshot cannot be made this attempt
            ref = blob_part.ingestPart
            ingest_fanout.fail(self.ctx, ingest_fanout.IngestRunKey(ref.tenantId, ref.invoiceId, ref.invoiceType.value,
                                                                    ref.attempt),
                               f"Gave up on export part {ref.part + 1} after repeated attempts.")
            return
        part = fanout.payload_of(body)
        if part is not None:  # one part kept failing: the file cannot be made
            loaded = self.ctx.files.get(part.part.tenantId, part.part.fileId)
            key = fanout.RunKey(part.part.tenantId, part.part.fileId, part.part.version, part.part.attempt)
            if loaded is not None and fanout.current(loaded[0], key):
                reason = loaded[0].error or "see the logs for this file id"
                self._finish_failed(loaded[0], loaded[1], f"Gave up on part {part.part.part + 1} after repeated "
                                                          f"attempts: {reason}")
            return
        try:
            msg = GenerationMessage.model_validate_json(body)
        except ValidationError:
            return
        loaded = self.ctx.files.get(msg.tenantId, msg.fileId)
        if loaded is None:
            return
        record, etag = loaded
        if record.version != msg.version or record.status in SETTLED_STATUSES:
            return
        if self._leased_elsewhere(record, body, utcnow()):
            return
        reason = record.error or "Generation kept failing; see the logs for this file id."
        self._finish_failed(record, etag, f"Gave up after repeated attempts: {reason}")


    def _leased_elsewhere(self, record: FileRecord, body: str, now: datetime) -> bool:
        """A running generation holds a lease (renewed as it progresses). A duplicate delivery meanwhile neither
        races it nor burns its own retries: it leaves a copy of the message to look again once the lease can have
        ended. If that generation finishes, the copy finds the version settled; if it died, the copy takes over."""
        if record.status != FileStatus.PROCESSING or not self._leased(record, now):
            return False
        self._look_again_later(body, (record.lease_until - now).total_seconds() + 5)
        log.info("file %s v%d is being generated by another delivery; looking again later", record.id,
                 record.version, extra={"tenant": record.tenant_id, "file": record.id, "invoice": record.invoice_id})
        return True

    @staticmethod
    def _leased(record: FileRecord, now: datetime) -> bool:
        return bool(record.lease_until and record.lease_until > now)

    def _look_again_later(self, body: str, seconds: float) -> None:
        self.ctx.storage.queue().send_message(body, visibility_timeout=int(min(seconds, 7 * 24 * 3600)))


