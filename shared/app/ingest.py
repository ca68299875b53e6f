"""Ingest: Microsoft's lines of one invoice and type into a snapshot, once per data version.

The first work that needs the lines (a file, the charges API) makes the snapshot; everything after reads it. Charge
validation and the reseller reach index run here, once, over Microsoft's lines. Two workers that need the same
snapshot at once: the ETag-guarded record lets one ingest; the other gets `SnapshotBusy` and looks again later (a
delayed copy of its queue message, never a busy loop). The lease is renewed by a heartbeat thread
(shared/app/heartbeat.py), also while Microsoft's export is still being made (minutes without a line); a dead
ingest's lease runs out and the next worker takes over (the old one, if it still runs, learns it from its heartbeat
and steps aside as a waiter); a crash half way leaves parts that the retry overwrites (deterministic names) and no manifest, so nothing
half-made is ever read.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from shared.app import ingest_fanout
from shared.app.builder import build
from shared.app.context import AppContext
from shared.app.heartbeat import Heartbeat, LeaseLost
from shared.app.ingest_common import (LEASE, WAIT_SECONDS, IngestPlan, NotIngestible, SnapshotBusy,  # noqa: F401
                                      billing_start, previous_summary, write_snapshot)
from shared.core.columns import FileType, layout_for
from shared.core.models import DataSource
from shared.core.money import Decimal
from shared.core.reach import ReachCollector
from shared.core.validation import Validator
from shared.adapters.duplicate_spill import DuplicateSpill
from shared.adapters.invoices import client_for, file_types_of
from shared.adapters.partner_center.transport import NotFound
from shared.adapters.repositories import utcnow
from shared.adapters.snapshot_parts import V1_PART_ROWS, PartWriter
from shared.adapters.snapshot_store import Conflict, Snapshot, SnapshotRecord, SnapshotStatus, new_record, snapshot_prefix
from shared.adapters.sources import GraphExportSource, choose_source, recorded_export
from shared.adapters.storage import through_outage

log = logging.getLogger(__name__)

QUEUED_FOR = timedelta(minutes=2)  # an ingest the charges API queued: no second message meanwhile
MAX_WAIT_SECONDS = 120


class IngestMessage(BaseModel):
    tenantId: str
    invoiceId: str
    invoiceType: FileType


def current(ctx: AppContext, tenant_id: str, invoice_id: str, file_type: FileType) -> Snapshot | None:
    """The newest Ready snapshot (even while a newer one is being ingested), or None."""
    loaded = ctx.snapshots.get(tenant_id, invoice_id, file_type.value)
    if loaded is None or not loaded[0].ready():
        return None
    return ctx.snapshots.load(loaded[0].snapshot_id)  # type: ignore[arg-type]


def ensure(ctx: AppContext, tenant_id: str, invoice_id: str, file_type: FileType,
           progress: Callable[[int], None] | None = None) -> Snapshot:
    """The invoice's snapshot of this type: the Ready one, or one ingested now. Raises SnapshotBusy when another
    worker is ingesting it."""
    store, now = ctx.snapshots, utcnow()
    loaded = store.get(tenant_id, invoice_id, file_type.value)
    record, etag = loaded if loaded else (None, None)
    if record is not None:
        if record.ready() and not record.stale():
            snapshot = store.load(record.snapshot_id)  # type: ignore[arg-type]
            if snapshot is not None:
                return snapshot
        if record.ingesting(now):
            raise SnapshotBusy(_wait_for(record, now))
        if record.fanned_out():  # its lease lapsed: the parts not done are sent again, nothing is restarted
            ingest_fanout.resume(ctx, record, etag)  # type: ignore[arg-type]
            return _ready_or_busy(ctx, tenant_id, invoice_id, file_type)
    record = record or new_record(tenant_id, invoice_id, file_type.value)
    record.status, record.lease_until, record.started_at = SnapshotStatus.INGESTING, now + LEASE, now
    record.attempts += 1
    record.error = None
    record.parts_total = record.fanout_operation = record.fanout_version = None
    try:
        etag = store.replace(record, etag) if etag else store.create(record)
    except Conflict:  # another worker claimed it a moment ago
        raise SnapshotBusy(WAIT_SECONDS)
    beat = Heartbeat(store, record, etag, LEASE, rows_field="rows", name=f"snapshot {invoice_id} {file_type.value}")
    try:
        with beat:
            return _ingest(ctx, record, beat, progress)
    except ingest_fanout.FannedOut:
        raise  # the parts' messages make the snapshot; this caller waits like any other
    except LeaseLost:
        if beat.lost:  # another worker took this ingest over: wait for it like any other waiter
            raise SnapshotBusy(WAIT_SECONDS) from None
        _fail(ctx, record, beat.etag, "the file's attempt was taken over")
        raise
    except BaseException as exc:
        _fail(ctx, record, beat.etag, str(exc)[:500] or type(exc).__name__)
        raise


def _ready_or_busy(ctx: AppContext, tenant_id: str, invoice_id: str, file_type: FileType) -> Snapshot:
    """After resuming a fan-out: its snapshot if the resume finished it, else SnapshotBusy."""
    loaded = ctx.snapshots.get(tenant_id, invoice_id, file_type.value)
    if loaded is not None and loaded[0].ready() and not loaded[0].fanned_out():
        snapshot = ctx.snapshots.load(loaded[0].snapshot_id)  # type: ignore[arg-type]
        if snapshot is not None:
            return snapshot
    raise SnapshotBusy(WAIT_SECONDS)


def _fail(ctx: AppContext, record: SnapshotRecord, etag: str, reason: str) -> None:
    record.status, record.lease_until = SnapshotStatus.FAILED, None
    record.wanted_operation = None  # a retry starts a fresh export
    record.error = reason
    try:
        through_outage(lambda: ctx.snapshots.replace(record, etag),
                       f"recording the failed ingest of {record.invoice_id} {record.invoice_type}")
    except Conflict:
        log.warning("snapshot %s %s changed meanwhile; not marking it failed", record.invoice_id, record.invoice_type)


def _wait_for(record: SnapshotRecord, now) -> int:
    """How long a waiter sleeps: WAIT_SECONDS at first, then half the time the ingest has run so far (at most
    MAX_WAIT_SECONDS), so fifty files waiting for a ten-minute ingest do not wake every few seconds."""
    elapsed = (now - record.started_at).total_seconds() if record.started_at else 0
    return int(min(MAX_WAIT_SECONDS, max(WAIT_SECONDS, elapsed / 2)))


def _ingest(ctx: AppContext, record: SnapshotRecord, beat: Heartbeat,
            progress: Callable[[int], None] | None) -> Snapshot:
    store, settings = ctx.snapshots, ctx.settings
    tenant = ctx.tenants.get(record.tenant_id)
    if tenant is None:
        raise NotIngestible(f"Tenant {record.tenant_id} is not registered any more.")
    file_type = FileType(record.invoice_type)
    layout = layout_for(file_type)
    client = client_for(tenant, settings, correlation_id=f"{record.invoice_id}-{file_type.value}")
    try:
        invoice = client.get_invoice(record.invoice_id)
    except NotFound:
        raise NotIngestible(f"Microsoft has no invoice {record.invoice_id} for this tenant.")
    if file_type not in file_types_of(invoice):
        raise NotIngestible(f"Invoice {record.invoice_id} has no {file_type.value} charges.")
    if record.stale() and record.wanted_operation:
        # the export the poller's check made, read again (no second export)
        source = GraphExportSource(client, layout, recorded_export(client, layout, record.invoice_id,
                                                                   record.wanted_operation))
    else:
        source = choose_source(client, layout, invoice, settings)  # a Graph export starts here (its eTag)
    if record.ready() and source.data_version == record.data_version:
        # the poller saw another eTag, but Microsoft's export is the one kept: nothing new to fetch
        return _mark_ready(ctx, record, beat, record.snapshot_id, record.rows)  # type: ignore[arg-type]
    snapshot_id = snapshot_prefix(record.tenant_id, record.invoice_id, file_type.value, source.data_version)
    started = utcnow()
    if ingest_fanout.can_fan_out(ctx, source):  # one queue message per export blob, on as many instances
        ingest_fanout.start(ctx, record, beat, source, invoice, snapshot_id, started)  # type: ignore[arg-type]
    writer = PartWriter(store.container, snapshot_id, tuple(sorted(layout.decimal_columns)),
                        gather_rows=V1_PART_ROWS if source.kind == DataSource.V1 else 0)
    validator = Validator(layout, invoice_id=record.invoice_id, cap=settings.validation_max_findings,
                          duplicates=DuplicateSpill())  # every line's key hash on disk: memory flat in lines
    reach = ReachCollector(layout)
    indexer = ctx.reach.writer(record.tenant_id)

    def on_progress(rows: int) -> None:
        beat.rows = rows  # shown with the next renewal
        beat.check()  # taken over: stop here
        indexer.submit(reach.drain())
        if progress is not None:
            progress(rows)

    try:
        result = build(source, IngestPlan(validator, reach), writer, progress=on_progress)
        writer.finish({})
        indexer.submit(reach.drain())
        indexer.finish()
    except BaseException:
        indexer.close()
        writer.close()
        validator.close()
        raise
    try:
        previous = previous_summary(ctx, record.tenant_id, file_type, billing_start(invoice), record.invoice_id)
        report = validator.finish(invoice, previous, Decimal(str(settings.validation_change_threshold_percent)))
    finally:
        validator.close()
    write_snapshot(ctx, record, snapshot_id, invoice, validator, report, writer.manifest_parts(),
                   result.totals.rows, source.kind, source.data_version, started)
    return _mark_ready(ctx, record, beat, snapshot_id, result.totals.rows, source.data_version, started)


def _mark_ready(ctx: AppContext, record: SnapshotRecord, beat: Heartbeat, snapshot_id: str,
                rows: int | None, data_version: str | None = None, fetched_at=None) -> Snapshot:
    beat.check()
    etag = beat.stop()  # the heartbeat writes no more: the Ready write is the last of this ingest
    if fetched_at is not None:
        record.data_version, record.fetched_at = data_version, fetched_at
    record.status, record.snapshot_id, record.rows = SnapshotStatus.READY, snapshot_id, rows
    record.lease_until = record.wanted = record.wanted_operation = record.error = None
    try:
        beat.etag = ctx.snapshots.replace(record, etag)
    except Conflict as exc:  # another worker took the ingest over at the last moment: its result counts
        beat.lost = True
        raise LeaseLost(f"snapshot {record.invoice_id} {record.invoice_type} was taken over") from exc
    snapshot = ctx.snapshots.load(snapshot_id)
    if snapshot is None:
        raise RuntimeError(f"snapshot {snapshot_id} has no manifest")
    return snapshot


def note_revision(ctx: AppContext, tenant_id: str, invoice_id: str, file_type: FileType, etag: str,
                  operation: str | None = None) -> bool:
    """The poller saw Microsoft's export at `etag`: when the kept snapshot is older, the next ingest fetches it,
    from that same export (`operation`) while it can be read. Returns whether the snapshot is stale (ETag-guarded;
    repeating it changes nothing)."""
    loaded = ctx.snapshots.get(tenant_id, invoice_id, file_type.value)
    if loaded is None:
        return False
    record, etag_row = loaded
    if record.data_version == etag or (record.wanted == etag and record.wanted_operation == operation):
        return record.stale()
    record.wanted, record.wanted_operation = etag, operation
    try:
        ctx.snapshots.replace(record, etag_row)
    except Conflict:
        return note_revision(ctx, tenant_id, invoice_id, file_type, etag, operation)
    log.info("snapshot of %s %s is stale: Microsoft's eTag is now %s", invoice_id, file_type.value, etag,
             extra={"tenant": tenant_id, "invoice": invoice_id})
    return True


def request(ctx: AppContext, tenant_id: str, invoice_id: str, file_type: FileType) -> None:
    """Queue an ingest unless one is under way or was queued a moment ago (the charges API's first page)."""
    store, now = ctx.snapshots, utcnow()
    loaded = store.get(tenant_id, invoice_id, file_type.value)
    if loaded is not None:
        record, etag = loaded
        if record.lease_until is not None and record.lease_until > now:
            return  # being ingested, or queued a moment ago
    else:
        record, etag = new_record(tenant_id, invoice_id, file_type.value), None
    record.status, record.lease_until = SnapshotStatus.QUEUED, now + QUEUED_FOR
    try:
        etag = store.replace(record, etag) if etag else store.create(record)
    except Conflict:
        return  # someone else is queuing or ingesting it right now
    body = IngestMessage(tenantId=tenant_id.lower(), invoiceId=invoice_id.upper(), invoiceType=file_type)
    ctx.storage.queue().send_message(json.dumps({"ingest": body.model_dump(mode="json")}))


def payload_of(body: str) -> dict | None:
    """The payload of an ingest message ({"ingest": {...}}), None for anything else."""
    if '"ingest"' not in body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data.get("ingest") if isinstance(data, dict) and isinstance(data.get("ingest"), dict) else None


def handle_message(ctx: AppContext, payload: Any) -> None:
    """An ingest queued by the charges API. Busy: another worker is on it (its waiters look again). A failure is
    on the record (Failed, with its reason, shown to the polling client), whose next poll queues it again: the
    message is not retried by the queue."""
    try:
        msg = IngestMessage.model_validate(payload)
    except ValidationError:
        log.error("dropping an ingest message that is not ours: %.200s", payload)
        return
    try:
        ensure(ctx, msg.tenantId, msg.invoiceId, msg.invoiceType)
    except SnapshotBusy:
        log.info("ingest of %s %s already under way", msg.invoiceId, msg.invoiceType.value)
    except Exception as exc:  # noqa: BLE001  (recorded on the snapshot record by ensure)
        log.warning("ingest of %s %s failed: %s", msg.invoiceId, msg.invoiceType.value, exc,
                    extra={"tenant": msg.tenantId, "invoice": msg.invoiceId})
