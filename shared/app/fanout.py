"""Fan-out: a CSV file of a many-part snapshot is made part by part, one queue message per part, on as many
instances as the queue scales to; the last part to finish commits the file (shared/app/fanin.py).

- The worker that takes the file's message (shared/app/generation.py) claims the record as for any file, freezes
  the plan (the rules and identifiers, written as the version's `snapshot.json` before any part starts: every part
  computes with the same ones), opens the run's counter (shared/adapters/file_parts.py), writes `partsTotal` on the
  record, and sends one message per part: `{"part": {tenantId, fileId, version, attempt, part}}`.
- A part message computes that part's lines with the same FilePlan (margins, identifiers, view) through the same
  builder and CSV writer, and stages its blocks in the attempt's blob under the ids the one-instance path uses
  (segment = part, block index within it), so the committed file is byte for byte the same. Then, in one Table
  transaction, its row is marked done (blocks, rows, exact totals as text, columns) and the counter advanced.
- Duplicates and crashes: a part whose row is done is never computed again (its message only checks whether the
  file is complete); a part that died half way is computed again from its start, re-staging the same block ids.
  Names and usage (the margins page, consumption alerts) are written per part beside the file and merged by the
  fan-in exactly as one pass would have seen them.
- The record's lease is renewed every third of it while a part computes (shared/app/heartbeat.py `kept_alive`) and
  when a part finishes, so a slow part does not let a live fan-out look dead.
- XLSX and Parquet cannot be composed from blocks; they, unbilled files (no snapshot), snapshots of one part and
  parts a field appeared in half way (their CSV header would differ) stay on one instance.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, Iterator

from pydantic import BaseModel, Field, ValidationError

from shared.app import events, fanin
from shared.app.builder import build
from shared.app.context import AppContext
from shared.app.alerts import budgeted_customers
from shared.app.fanin import current, tally_json, usage_json
from shared.app.heartbeat import kept_alive
from shared.app.outputs import blob_name_for, snapshot_name_for
from shared.app.part_slots import part_slot
from shared.adapters.block_sink import block_id
from shared.adapters.file_parts import Progress, RunKey
from shared.adapters.file_writers import BlockBlobSink, writer_for
from shared.adapters.repositories import Conflict, utcnow
from shared.adapters.snapshot_parts import SnapshotSource, open_file
from shared.adapters.snapshot_store import Snapshot
from shared.adapters.sources import Segment
from shared.core.columns import FileType, layout_for
from shared.core.margins import Mappings, MarginRule
from shared.core.models import SETTLED_STATUSES, CsvFormat, FileFormat, FileRecord, View
from shared.core.names import NamesCollector
from shared.core.reconcile import FilePlan, Tally
from shared.core.usage import UsageCollector
from shared.core.views import columns_for

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)  # the record's lease, renewed by every part that finishes
RENEW_EVERY = LEASE / 3  # and by a part while it computes, however long it takes
# Test hook (tests/app/test_fanout_processes.py): a worker process with these set sleeps before staging the second
# block of that part, so a test can SIGKILL it half way through the part.
PAUSE_PART, PAUSE_SECONDS = "FANOUT_TEST_PAUSE_PART", "FANOUT_TEST_PAUSE_SECONDS"


class PartRef(BaseModel):
    tenantId: str = Field(min_length=1, max_length=100)
    fileId: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1)
    attempt: int = Field(ge=1)
    part: int = Field(ge=0)


class PartMessage(BaseModel):
    part: PartRef


def payload_of(body: str) -> PartMessage | None:
    """A part message, or None for anything else (a file or ingest message)."""
    if '"part"' not in body:
        return None
    try:
        return PartMessage.model_validate_json(body)
    except ValidationError:
        return None


def run_key(record: FileRecord) -> RunKey:
    return RunKey(record.tenant_id, record.id, record.version, record.attempts)


# ---- the file's message: fan out --------------------------------------------------------------------------------

def can_fan_out(ctx: AppContext, record: FileRecord, snapshot: Snapshot | None) -> bool:
    """CSV of a snapshot of enough parts, one Parquet file each, all of one schema (then every part's CSV has the
    columns, and the header, the one pass would have)."""
    minimum = ctx.settings.fanout_min_parts
    if snapshot is None or record.format != FileFormat.CSV or not minimum:
        return False
    parts = snapshot.manifest.get("parts") or []
    if len(parts) < max(2, minimum) or any(len(p["files"]) != 1 for p in parts):
        return False
    with ThreadPoolExecutor(max_workers=8) as pool:  # each a footer read by range (a few KB)
        schemas = list(pool.map(lambda i: open_file(ctx.storage.files, snapshot, i).schema_arrow,
                                range(len(parts))))
    if any(not s.equals(schemas[0]) for s in schemas[1:]):
        log.info("file %s: the snapshot's parts differ in fields; made on one instance", record.id)
        return False
    return True


def start(ctx: AppContext, record: FileRecord, etag: str, plan: FilePlan, snapshot: Snapshot) -> None:
    """Freeze the plan, open the run, mark the record and send one message per part. `etag` is the record's, held
    by this attempt (Conflict if another took it over)."""
    total = len(snapshot.manifest["parts"])
    ctx.storage.files.get_blob_client(snapshot_name_for(blob_name_for(record))).upload_blob(
        json.dumps(plan.snapshot(), indent=1, default=str).encode(), overwrite=True)
    key = run_key(record)
    ctx.file_parts.open_run(key, total)
    record.parts_total, record.parts_done, record.progress_rows = total, 0, 0
    record.lease_until = utcnow() + LEASE
    ctx.files.replace(record, etag)
    send_parts(ctx, key, range(total))
    log.info("file %s v%d fanned out in %d parts (attempt %d)", record.id, record.version, total, record.attempts)


def send_parts(ctx: AppContext, key: RunKey, parts: Any) -> None:
    queue = ctx.storage.queue()
    for part in parts:
        queue.send_message(PartMessage(part=PartRef(tenantId=key.tenant_id, fileId=key.file_id, version=key.version,
                                                    attempt=key.attempt, part=part)).model_dump_json())


def resume(ctx: AppContext, record: FileRecord, etag: str) -> None:
    """The file's message again, for a fan-out whose lease lapsed (its first worker died while sending the parts,
    or every part message is stuck): parts not done are sent again (a done part never runs twice); all done, the
    file is committed here."""
    key = run_key(record)
    record.lease_until = utcnow() + LEASE
    try:
        ctx.files.replace(record, etag)
    except Conflict:
        return  # a part just moved it on: the fan-out is alive
    progress = ctx.file_parts.progress(key)
    if progress is None:  # died before the run was opened: nothing was sent
        ctx.file_parts.open_run(key, record.parts_total or 0)
        progress = ctx.file_parts.progress(key)
    assert progress is not None
    if progress.done >= progress.total:
        fanin.complete(ctx, key)
        return
    done = {p.part for p in ctx.file_parts.finished(key)}
    missing = [p for p in range(progress.total) if p not in done]
    log.info("file %s v%d: resuming its fan-out, %d parts sent again", record.id, record.version, len(missing))
    send_parts(ctx, key, missing)


# ---- a part's message -------------------------------------------------------------------------------------------

def handle_part(ctx: AppContext, msg: PartMessage) -> None:
    ref = msg.part
    key = RunKey(ref.tenantId, ref.fileId, ref.version, ref.attempt)
    loaded = ctx.files.get(ref.tenantId, ref.fileId)
    if loaded is not None and _published(loaded[0], key):  # a crash may have come between publishing and the rest
        ctx.files.record_version(loaded[0])  # idempotent, as for a redelivered file message
        events.file_settled(ctx, loaded[0])
        return
    if loaded is None or not current(loaded[0], key):
        log.info("part %d of %s: the version or attempt is settled or replaced; nothing to do", ref.part,
                 key.partition)
        return
    record = loaded[0]
    if ref.part >= (record.parts_total or 0):
        log.error("dropping part %d of %s: the file has %s parts", ref.part, key.partition, record.parts_total)
        return
    if not ctx.file_parts.is_done(key, ref.part):
        with part_slot(ctx.settings):  # one part at a time per process: memory (shared/app/part_slots.py)
            _compute_and_complete(ctx, record, key, ref.part)
    progress = ctx.file_parts.progress(key)
    if progress is not None and progress.done >= progress.total:
        try:
            fanin.complete(ctx, key)
        except fanin.CommitBusy as busy:  # another worker is committing: look again once it must be done
            ctx.storage.queue().send_message(msg.model_dump_json(), visibility_timeout=busy.retry_after)


def _compute_and_complete(ctx: AppContext, record: FileRecord, key: RunKey, part: int) -> None:
    if ctx.file_parts.is_done(key, part):  # finished elsewhere while this message waited for its slot
        return
    starts = ctx.file_parts.begin(key, part)
    if starts > 1:
        log.warning("part %d of %s computed again (start %d)", part, key.partition, starts)
    with kept_alive(lambda: note_progress(ctx, key), RENEW_EVERY, f"part {part} of {key.partition}"):
        blocks, tally, columns, extras = compute_part(ctx, record, part)
    if extras is not None:
        ctx.storage.files.get_blob_client(fanin.extras_name(record, part)).upload_blob(
            json.dumps(extras).encode(), overwrite=True)
    progress = ctx.file_parts.complete(key, part, blocks, tally.rows, tally_json(tally), columns)
    if progress is not None:
        note_progress(ctx, key, progress)


def _published(record: FileRecord, key: RunKey) -> bool:
    return (record.version == key.version and record.attempts == key.attempt and record.parts_total is not None
            and record.status in SETTLED_STATUSES)


def compute_part(ctx: AppContext, record: FileRecord, part: int) -> tuple[int, Tally, list[str], dict | None]:
    """One part's lines into its staged blocks: (blocks, totals, CSV columns, names and usage of a partner view)."""
    snapshot = ctx.snapshots.load(record.snapshot_id or "")
    if snapshot is None:
        raise RuntimeError(f"snapshot {record.snapshot_id} of file {record.id} is gone")
    layout = layout_for(record.invoice_type)
    frozen = json.loads(ctx.storage.files.get_blob_client(snapshot_name_for(blob_name_for(record)))
                        .download_blob().readall())
    partner = record.view == View.PARTNER
    plan = FilePlan(layout, [MarginRule.model_validate(r) for r in frozen["rules"]],
                    mappings_from(frozen["mappings"]), record.view, record.reseller_id, record.customer_id,
                    names=NamesCollector(layout) if partner else None,
                    usage=UsageCollector(layout) if partner and layout.file_type == FileType.DAILY else None)
    sink = BlockBlobSink(ctx.storage.files.get_blob_client(blob_name_for(record)), ctx.settings.block_size_bytes,
                         before_stage=_pause_hook(part))
    writer = writer_for(record.format, sink, record.csv_format or CsvFormat(), layout.date_columns,
                        columns_for(layout, record.view))
    result = build(_PartSource(ctx, snapshot, part), plan, writer)
    blocks = sink.flush()
    extras = None
    if partner:
        extras = {"names": sorted(plan.names.keys) if plan.names is not None else [],
                  "usage": usage_json(plan.usage, budgeted_customers(ctx, record.tenant_id))
                  if plan.usage is not None else None}
    return len(blocks), result.totals, list(writer.columns), extras  # type: ignore[attr-defined]


class _PartSource:
    """One part of a snapshot as a Source of one segment, numbered as in the whole snapshot (its block ids)."""

    def __init__(self, ctx: AppContext, snapshot: Snapshot, part: int) -> None:
        one = Snapshot(snapshot.id, {**snapshot.manifest, "parts": [snapshot.manifest["parts"][part]]})
        self.inner, self.part = SnapshotSource(ctx.storage.files, one), part
        self.kind, self.data_version = self.inner.kind, self.inner.data_version

    def segments(self) -> Iterator[Segment]:
        for segment in self.inner.segments():
            yield Segment(self.part, segment.read)

    def refresh(self) -> None:
        return None


def note_progress(ctx: AppContext, key: RunKey, progress: Progress | None = None) -> None:
    """The record's lease renewed, with the parts done and rows so far when given: counts only grow (a slower writer
    with older counts leaves the record alone)."""
    for _ in range(20):
        loaded = ctx.files.get(key.tenant_id, key.file_id)
        if loaded is None or not current(loaded[0], key):
            return
        record, etag = loaded
        if progress is not None:
            if (record.parts_done or 0) >= progress.done:
                return
            record.parts_done, record.progress_rows = progress.done, progress.rows
        record.lease_until = utcnow() + LEASE
        try:
            ctx.files.replace(record, etag)
            return
        except Conflict:
            continue


def _pause_hook(part: int):
    if os.environ.get(PAUSE_PART) != str(part):
        return None
    seconds = float(os.environ.get(PAUSE_SECONDS, "60"))

    def pause(ident: str) -> None:  # before the part's second block: its first is staged (or being staged)
        if ident == block_id(part, 1):
            log.warning("test hook: part %d sleeps %.0f s after its first block", part, seconds)
            time.sleep(seconds)

    return pause


def mappings_from(data: dict[str, Any]) -> Mappings:
    """The identifiers as `Mappings.snapshot()` wrote them."""
    return Mappings(resellers=dict(data.get("resellers", {})), customers=dict(data.get("customers", {})),
                    subscriptions=dict(data.get("subscriptions", {})), po_numbers=dict(data.get("poNumbers", {})),
                    owned={k: mappings_from(v) for k, v in (data.get("owned") or {}).items()})
