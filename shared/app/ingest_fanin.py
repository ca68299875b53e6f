"""Ingest fan-in: the part that finds every export blob of a fanned-out ingest done (ingest_fanout.py) finishes the
snapshot, once, exactly as the one-instance ingest would have.

- One finisher: a claim on the run's counter row (shared/adapters/file_parts.py `claim_commit`) of a minute, renewed
  every 20 s while it works (with the snapshot's lease); another finds it finishing (and looks again later) or
  finished (nothing to do: a redelivered last part after Ready is a no-op). A finisher that died is repeated by the
  last part's redelivered message once its claim lapses: within a minute, however long a live one takes.
- The parts' validation states are handed to one Validator in part order, each moved by the rows of the parts
  before it (shared/core/validation/part_state.py); a part that took another exchange rate as its reference than
  the parts before it is checked again from its Parquet part with theirs. Every part's key hashes go into one
  DuplicateSpill at their lines (memory flat); `finish` then finds the duplicates across parts, the invoice total
  and the month-over-month changes. findings.csv, summary.json and manifest.json (last) are written as the
  one-instance ingest writes them (shared/app/ingest_common.py), and the record is marked Ready, ETag-guarded.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from shared.app.context import AppContext
from shared.app.heartbeat import kept_alive
from shared.app.ingest_common import LEASE, previous_summary, billing_start, write_snapshot
from shared.core.columns import FileType, layout_for
from shared.core.models import DataSource
from shared.core.money import Decimal
from shared.core.validation import Validator
from shared.core.validation.duplicates import MemoryDuplicates
from shared.core.validation.line_checks import State
from shared.core.validation.part_state import decode_state, moved, rate_conflicts
from shared.adapters.duplicate_spill import DuplicateSpill
from shared.adapters.file_parts import IngestRunKey, PartDone
from shared.adapters.ingest_parts import feed, folder, forget, load_part, part_batches
from shared.adapters.repositories import Conflict, utcnow
from shared.adapters.snapshot_store import SnapshotRecord, SnapshotStatus, snapshot_prefix

log = logging.getLogger(__name__)

FANIN_SECONDS = 60  # a finisher's claim, renewed every third of it while it works; a dead one's lapses


class FanInBusy(Exception):
    """Another worker is finishing this snapshot: look again in `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"being finished elsewhere; look again in {retry_after:.0f} s")
        self.retry_after = int(retry_after) + 1


def current(record: SnapshotRecord, key: IngestRunKey) -> bool:
    """The record is still this attempt's fan-out (not Ready, Failed, or a newer attempt)."""
    return record.attempts == key.attempt and record.fanned_out()


def renew(ctx: AppContext, key: IngestRunKey, rows: int | None = None) -> None:
    """The record's lease renewed (and the rows done so far shown): counts only grow."""
    for _ in range(20):
        loaded = ctx.snapshots.get(key.tenant_id, key.invoice_id, key.invoice_type)
        if loaded is None or not current(loaded[0], key):
            return
        record, etag = loaded
        record.lease_until = utcnow() + LEASE
        if rows is not None and rows > (record.rows or 0):
            record.rows = rows
        try:
            ctx.snapshots.replace(record, etag)
            return
        except Conflict:
            continue


def complete(ctx: AppContext, key: IngestRunKey) -> None:
    loaded = ctx.snapshots.get(key.tenant_id, key.invoice_id, key.invoice_type)
    if loaded is None or not current(loaded[0], key):
        return  # Ready already (finished by another), failed, or replaced by a newer attempt
    record = loaded[0]
    parts = ctx.file_parts.finished(key)
    if len(parts) < (record.parts_total or 0):
        return
    claim = ctx.file_parts.claim_commit(key, FANIN_SECONDS)
    if not isinstance(claim, str):
        raise FanInBusy(claim)
    if claim == "committed":
        return

    def keep() -> None:
        ctx.file_parts.renew_commit(key, FANIN_SECONDS)
        renew(ctx, key)

    renew(ctx, key)
    with kept_alive(keep, timedelta(seconds=FANIN_SECONDS / 3), f"fan-in of {key.partition}"):
        _finish(ctx, key, record, parts)


def _finish(ctx: AppContext, key: IngestRunKey, record: SnapshotRecord, parts: list[PartDone]) -> None:
    """Merge the parts' states and write the snapshot's findings, summary and manifest; mark it Ready."""
    snapshot_id = snapshot_prefix(record.tenant_id, record.invoice_id, record.invoice_type, record.fanout_version)
    base = folder(snapshot_id, key.attempt)
    run = json.loads(ctx.storage.files.get_blob_client(f"{base}/run.json").download_blob().readall())
    invoice: dict[str, Any] = run["invoice"]
    file_type = FileType(record.invoice_type)
    layout = layout_for(file_type)
    settings = ctx.settings
    validator = Validator(layout, invoice_id=record.invoice_id, cap=settings.validation_max_findings,
                          duplicates=DuplicateSpill())
    entries = [p.tally["entry"] for p in parts]
    try:
        offset = 0
        for part, entry in zip(parts, entries):
            saved = load_part(ctx.storage.files, base, part.part)
            state = decode_state(saved["state"])
            if rate_conflicts(state, validator.done.rates):
                state = _recheck(ctx, validator, snapshot_id, entry, saved["state"]["batches"])
            validator.begin_segment()
            feed(ctx.storage.files, base, saved, validator.duplicates, offset)
            validator.seg = moved(state, offset)
            validator.end_segment()
            offset += state.rows
        previous = previous_summary(ctx, record.tenant_id, file_type, billing_start(invoice), record.invoice_id)
        report = validator.finish(invoice, previous, Decimal(str(settings.validation_change_threshold_percent)))
    finally:
        validator.close()
    rows = sum(p.rows for p in parts)
    write_snapshot(ctx, record, snapshot_id, invoice, validator, report, [e for e in entries if e], rows,
                   DataSource.GRAPH, run["dataVersion"], _when(run["fetchedAt"]))
    _mark_ready(ctx, key, snapshot_id, rows, run["dataVersion"], run["fetchedAt"])
    ctx.file_parts.mark_committed(key)
    try:
        forget(ctx.storage.files, base)
    except Exception as exc:  # noqa: BLE001  (best effort: retention removes the snapshot's blobs with it)
        log.warning("could not delete the ingest parts' leftovers of %s: %s", snapshot_id, exc)


def _recheck(ctx: AppContext, merged: Validator, snapshot_id: str, entry: dict | None,
             batches: list[int]) -> State:
    """A part checked again from its Parquet part, in the batches it was checked in, with the exchange rates the
    parts before it established (its duplicates are already stored: a throwaway store takes them here)."""
    again = Validator(merged.layout, invoice_id=merged.invoice_id, cap=merged.cap, duplicates=MemoryDuplicates())
    again.done.rates = dict(merged.done.rates)
    again.begin_segment()
    if entry is not None:
        for batch in part_batches(ctx.storage.files, snapshot_id, entry, batches):
            again.check(batch)
    state = again.seg
    again.close()
    log.info("snapshot %s: part %s checked again with the earlier parts' exchange rates", snapshot_id,
             entry and entry.get("part"))
    return state


def _mark_ready(ctx: AppContext, key: IngestRunKey, snapshot_id: str, rows: int, data_version: str | None,
                fetched_at: str) -> None:
    for _ in range(20):  # a part's lease renewal may land between our read and our write: read again
        loaded = ctx.snapshots.get(key.tenant_id, key.invoice_id, key.invoice_type)
        if loaded is None or not current(loaded[0], key):
            return
        record, etag = loaded
        record.status, record.snapshot_id, record.rows = SnapshotStatus.READY, snapshot_id, rows
        record.data_version, record.fetched_at = data_version, _when(fetched_at)
        record.lease_until = record.wanted = record.wanted_operation = record.error = None
        record.parts_total = record.fanout_operation = record.fanout_version = None
        try:
            ctx.snapshots.replace(record, etag)
            log.info("snapshot %s Ready from its fanned-out parts", snapshot_id)
            return
        except Conflict:
            continue
    raise RuntimeError(f"snapshot {snapshot_id}: could not mark it Ready")


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)
