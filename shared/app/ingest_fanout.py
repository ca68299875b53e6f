"""Ingest fan-out: a Graph export of many blobs is ingested blob by blob, one queue message per blob, on as many
instances as the queue scales to; the part that finds every blob done finishes the snapshot (ingest_fanin.py).

- The worker that claimed the snapshot record (shared/app/ingest.py) makes the export as always (one per invoice and
  type), writes the run's `run.json` (the invoice, when the ingest started) under the snapshot prefix, opens the
  attempt's counter (shared/adapters/file_parts.py, as the derivation fan-out does), records on the snapshot record
  the parts, the export's operation URL and its eTag (never a SAS link: those are credentials), and sends
  `{"ingestPart": {tenantId, invoiceId, invoiceType, snapshotId, attempt, part}}` per blob. It and every other
  caller then wait for the snapshot (`SnapshotBusy`), as for any ingest under way.
- A part reads the manifest again through the recorded operation (a status read, no new export; expired links: a
  fresh export, accepted only at the same eTag), downloads its blob only, and runs it through the builder, the
  IngestPlan and the PartWriter of the one-instance path (part number = blob number: the same Parquet names and
  bytes), validating with lines from 0 and indexing reseller reach (idempotent upserts). It stores its validation
  state and duplicate-key hashes (shared/adapters/ingest_parts.py), then marks itself done and advances the
  counter in one transaction: a part is counted once; a done part is never computed again; one that died half way
  is computed again from its start (deterministic names overwrite).
- The snapshot record's lease is renewed by every part that starts or finishes, and every third of the lease while
  one computes (shared/app/heartbeat.py `kept_alive`); a fan-out whose lease lapsed is resumed by the next caller of `ensure` (missing parts sent again), not restarted.
- V1 pages and exports of fewer blobs than FANOUT_MIN_PARTS stay on one instance.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from shared.app import ingest_fanin
from shared.app.builder import build
from shared.adapters.memory import release_memory
from shared.app.context import AppContext
from shared.app.heartbeat import Heartbeat, LeaseLost, kept_alive
from shared.app.ingest_common import LEASE, WAIT_SECONDS, IngestPlan, NotIngestible, SnapshotBusy
from shared.app.ingest_fanin import current, renew
from shared.app.part_slots import part_slot
from shared.core.columns import FileType, layout_for
from shared.core.reach import ReachCollector
from shared.core.reconcile import Tally
from shared.core.validation import Validator
from shared.core.validation.part_state import encode_state
from shared.adapters.file_parts import IngestRunKey
from shared.adapters.ingest_parts import PartDuplicates, folder, save_part
from shared.adapters.invoices import client_for
from shared.adapters.partner_center.transport import NotFound
from shared.adapters.repositories import Conflict, utcnow
from shared.adapters.snapshot_parts import PartWriter
from shared.adapters.snapshot_store import SnapshotRecord, SnapshotStatus, snapshot_prefix
from shared.adapters.sources import DataChanged, GraphExportSource, Source, recorded_export
from shared.adapters.storage import through_outage

log = logging.getLogger(__name__)

# Test hook (tests/app/test_ingest_fanout_processes.py): a worker process with these set sleeps after the second
# batch of that part (its blob downloaded, its Parquet part half written), so a test can SIGKILL it there.
PAUSE_PART, PAUSE_SECONDS = "INGEST_TEST_PAUSE_PART", "INGEST_TEST_PAUSE_SECONDS"
RENEW_EVERY = LEASE / 3  # while a part computes, however long its blob takes


class FannedOut(SnapshotBusy):
    """This caller fanned the ingest out: the parts make the snapshot; it waits like any other caller."""


class IngestPartRef(BaseModel):
    tenantId: str = Field(min_length=1, max_length=100)
    invoiceId: str = Field(min_length=1, max_length=100)
    invoiceType: FileType
    snapshotId: str = Field(min_length=1, max_length=500)
    attempt: int = Field(ge=1)
    part: int = Field(ge=0)


class IngestPartMessage(BaseModel):
    ingestPart: IngestPartRef


def payload_of(body: str) -> IngestPartMessage | None:
    """An ingest part's message, or None for anything else."""
    if '"ingestPart"' not in body:
        return None
    try:
        return IngestPartMessage.model_validate_json(body)
    except ValidationError:
        return None


def run_key(record: SnapshotRecord) -> IngestRunKey:
    return IngestRunKey(record.tenant_id, record.invoice_id, record.invoice_type, record.attempts)


def can_fan_out(ctx: AppContext, source: Source) -> bool:
    minimum = ctx.settings.fanout_min_parts
    return (isinstance(source, GraphExportSource) and source.only is None and bool(minimum)
            and bool(source.manifest.operation) and len(source.manifest.blobs) >= max(2, minimum))


# ---- the claimer: fan out ----------------------------------------------------------------------------------------

def start(ctx: AppContext, record: SnapshotRecord, beat: Heartbeat, source: GraphExportSource, invoice: dict,
          snapshot_id: str, started: datetime) -> None:
    """Write the run, open its counter, record the parts on the snapshot record and send one message per blob;
    raises FannedOut (the caller waits for the snapshot like any other)."""
    key, total = run_key(record), len(source.manifest.blobs)
    base = folder(snapshot_id, record.attempts)
    ctx.storage.files.get_blob_client(f"{base}/run.json").upload_blob(json.dumps(
        {"invoice": invoice, "fetchedAt": started.isoformat(), "dataVersion": source.data_version,
         "parts": total}, default=str).encode(), overwrite=True)
    ctx.file_parts.open_run(key, total)
    beat.check()
    etag = beat.stop()
    record.parts_total, record.fanout_operation, record.fanout_version = total, source.manifest.operation, \
        source.data_version
    record.lease_until = utcnow() + LEASE
    try:
        ctx.snapshots.replace(record, etag)
    except Conflict as exc:
        beat.lost = True
        raise LeaseLost(f"snapshot {record.invoice_id} {record.invoice_type} was taken over") from exc
    send_parts(ctx, key, snapshot_id, range(total))
    log.info("ingest of %s %s fanned out in %d parts (attempt %d)", record.invoice_id, record.invoice_type, total,
             record.attempts, extra={"tenant": record.tenant_id, "invoice": record.invoice_id})
    raise FannedOut(WAIT_SECONDS)


def send_parts(ctx: AppContext, key: IngestRunKey, snapshot_id: str, parts: Any) -> None:
    queue = ctx.storage.queue()
    for part in parts:
        ref = IngestPartRef(tenantId=key.tenant_id, invoiceId=key.invoice_id, invoiceType=FileType(key.invoice_type),
                            snapshotId=snapshot_id, attempt=key.attempt, part=part)
        queue.send_message(IngestPartMessage(ingestPart=ref).model_dump_json())


def resume(ctx: AppContext, record: SnapshotRecord, etag: str) -> None:
    """A fan-out whose lease lapsed (its claimer died while sending, or every part message is stuck): the parts not
    done are sent again (a done part never runs twice); all done, the snapshot is finished here."""
    key = run_key(record)
    record.lease_until = utcnow() + LEASE
    try:
        ctx.snapshots.replace(record, etag)
    except Conflict:
        return  # a part just moved it on: the fan-out is alive
    snapshot_id = snapshot_prefix(record.tenant_id, record.invoice_id, record.invoice_type, record.fanout_version)
    ctx.file_parts.open_run(key, record.parts_total or 0)  # the claimer may have died before (idempotent)
    progress = ctx.file_parts.progress(key)
    assert progress is not None
    if progress.done >= progress.total:
        try:
            ingest_fanin.complete(ctx, key)
        except ingest_fanin.FanInBusy:
            pass
        return
    done = {p.part for p in ctx.file_parts.finished(key)}
    missing = [p for p in range(progress.total) if p not in done]
    log.info("snapshot %s: resuming its fan-out, %d parts sent again", snapshot_id, len(missing))
    send_parts(ctx, key, snapshot_id, missing)


# ---- a part's message --------------------------------------------------------------------------------------------

def handle_part(ctx: AppContext, msg: IngestPartMessage) -> None:
    ref = msg.ingestPart
    key = IngestRunKey(ref.tenantId, ref.invoiceId, ref.invoiceType.value, ref.attempt)
    loaded = ctx.snapshots.get(ref.tenantId, ref.invoiceId, ref.invoiceType.value)
    if loaded is None or not current(loaded[0], key):
        log.info("ingest part %d of %s: settled or replaced; nothing to do", ref.part, key.partition)
        return
    record = loaded[0]
    snapshot_id = snapshot_prefix(record.tenant_id, record.invoice_id, record.invoice_type, record.fanout_version)
    if ref.snapshotId != snapshot_id or ref.part >= (record.parts_total or 0):
        log.error("dropping ingest part %d of %s: not this run's (%s parts)", ref.part, key.partition,
                  record.parts_total)
        return
    if not ctx.file_parts.is_done(key, ref.part):
        with part_slot(ctx.settings):  # one part at a time per process: memory (shared/app/part_slots.py)
            if not _compute_and_complete(ctx, record, key, snapshot_id, ref.part):
                return
    progress = ctx.file_parts.progress(key)
    if progress is not None and progress.done >= progress.total:
        try:
            ingest_fanin.complete(ctx, key)
        except ingest_fanin.FanInBusy as busy:  # another worker is finishing it: look again once it must be done
            ctx.storage.queue().send_message(msg.model_dump_json(), visibility_timeout=busy.retry_after)


def _compute_and_complete(ctx: AppContext, record: SnapshotRecord, key: IngestRunKey, snapshot_id: str,
                          part: int) -> bool:
    """The part computed and counted (unless another worker finished it while this message waited for its slot).
    False: the ingest failed for good (recorded)."""
    if ctx.file_parts.is_done(key, part):
        return True
    starts = ctx.file_parts.begin(key, part)
    if starts > 1:
        log.warning("ingest part %d of %s computed again (start %d)", part, key.partition, starts)
    renew(ctx, key)
    try:
        with kept_alive(lambda: renew(ctx, key), RENEW_EVERY, f"ingest part {part} of {key.partition}"):
            entry, rows = compute_part(ctx, record, snapshot_id, part)
    except (DataChanged, NotIngestible, NotFound) as exc:
        fail(ctx, key, str(exc)[:500])
        return False
    finally:
        release_memory()  # the part's freed buffers back to the kernel before the process takes the next part
    progress = ctx.file_parts.complete(key, part, 0, rows, {"entry": entry}, [])
    if progress is not None:
        renew(ctx, key, progress.rows)
    return True


def compute_part(ctx: AppContext, record: SnapshotRecord, snapshot_id: str, part: int) -> tuple[dict | None, int]:
    """One export blob into its Parquet part, its validation state and reach: (its manifest entry or None when
    the blob holds no line, its rows)."""
    settings = ctx.settings
    tenant = ctx.tenants.get(record.tenant_id)
    if tenant is None:
        raise NotIngestible(f"Tenant {record.tenant_id} is not registered any more.")
    layout = layout_for(FileType(record.invoice_type))
    client = client_for(tenant, settings, correlation_id=f"{record.invoice_id}-{record.invoice_type}-p{part}")
    export = recorded_export(client, layout, record.invoice_id, record.fanout_operation, record.fanout_version)
    source = GraphExportSource(client, layout, export, only=part)
    if source.data_version != record.fanout_version or len(source.manifest.blobs) != record.parts_total:
        raise DataChanged("Microsoft published new data for this invoice while its snapshot was being made.")
    writer = PartWriter(ctx.snapshots.container, snapshot_id, tuple(sorted(layout.decimal_columns)))
    dups = PartDuplicates()
    validator = Validator(layout, invoice_id=record.invoice_id, cap=settings.validation_max_findings,
                          duplicates=dups)
    reach = ReachCollector(layout)
    indexer = ctx.reach.writer(record.tenant_id)
    try:
        try:
            result = build(source, _PausingPlan(validator, reach, _pause_seconds(part)), writer)
            writer.finish({})
            indexer.submit(reach.drain())
            indexer.finish()
        except BaseException:
            indexer.close()
            writer.close()
            raise
        save_part(ctx.storage.files, folder(snapshot_id, record.attempts), part,
                  encode_state(validator.done, dups.batches), dups)
    finally:
        dups.close()
    entries = writer.manifest_parts()
    return (entries[0] if entries else None), result.totals.rows


def fail(ctx: AppContext, key: IngestRunKey, reason: str) -> None:
    """The fan-out cannot finish (the data changed, the tenant is gone, a part kept failing): the record is Failed
    with its reason (ETag-guarded), its parts' messages find it settled, and the next caller starts afresh."""
    for _ in range(20):
        loaded = ctx.snapshots.get(key.tenant_id, key.invoice_id, key.invoice_type)
        if loaded is None or not current(loaded[0], key):
            return
        record, etag = loaded
        record.status, record.lease_until, record.error = SnapshotStatus.FAILED, None, reason
        record.wanted_operation = record.parts_total = record.fanout_operation = record.fanout_version = None
        try:
            through_outage(lambda: ctx.snapshots.replace(record, etag), f"failing the ingest of {key.invoice_id}")
            log.warning("ingest of %s %s failed: %s", key.invoice_id, key.invoice_type, reason,
                        extra={"tenant": key.tenant_id, "invoice": key.invoice_id})
            return
        except Conflict:
            continue


@dataclass
class _PausingPlan(IngestPlan):
    """The ingest plan, with the test hook's sleep after the second batch."""

    pause: float = 0.0
    seen: int = 0

    def process(self, batch: Any) -> tuple[Any, Tally]:
        out = super().process(batch)
        self.seen += 1
        if self.pause and self.seen == 2:
            log.warning("test hook: an ingest part sleeps %.0f s half way", self.pause)
            time.sleep(self.pause)
        return out


def _pause_seconds(part: int) -> float:
    if os.environ.get(PAUSE_PART) != str(part):
        return 0.0
    return float(os.environ.get(PAUSE_SECONDS, "60"))
