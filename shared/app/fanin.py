"""Fan-in: the part that finds every part of a fanned-out file done (shared/app/fanout.py) finishes the file.

- The block list is committed once, in part order, the header first (its columns are the parts' own: the same in
  every part that wrote a line): a claim on the run's counter row (shared/adapters/file_parts.py) lets one worker
  commit; another finds it committing (and looks again later) or committed (and goes on to publish).
- The totals are the parts' exact totals added up (Decimal text in each part's row); rows, findings (copied from
  the snapshot), names (merged as one pass over the parts in order would have seen them) and consumption alerts
  (each customer's daily usage, added up across parts) come out as the one-instance path makes them.
- The record is written Available with an ETag-guarded replace of the attempt's Processing record: a second
  committer finds it settled and stops, so the file is published, and announced, once.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

from shared.app import alerts, approval, events
from shared.app.context import AppContext
from shared.app.outputs import attempt_folder, blob_name_for, copy_findings, file_name_for, record_result
from shared.adapters.block_sink import HEADER_BLOCK, block_id, commit_blocks
from shared.adapters.file_parts import PartDone, RunKey
from shared.adapters.file_writers import CsvWriter, header_line
from shared.adapters.repositories import Conflict
from shared.core.columns import FileType, Layout, layout_for
from shared.core.models import CsvFormat, FileRecord, FileStatus, Totals, View
from shared.core.money import Decimal, add, plain
from shared.core.names import SEPARATOR, NameEntry, NamesCollector
from shared.core.reconcile import Tally
from shared.core.usage import UsageCollector

log = logging.getLogger(__name__)

COMMIT_SECONDS = 60  # a committer's claim; one that died is repeated after it


class CommitBusy(Exception):
    """Another worker is committing this file: look again in `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"being committed elsewhere; look again in {retry_after:.0f} s")
        self.retry_after = int(retry_after) + 1


def extras_name(record: FileRecord, part: int) -> str:
    """A partner-view part's names and usage, beside the file until the fan-in has merged them."""
    return f"{attempt_folder(record)}parts/p{part:05d}.json"


def current(record: FileRecord, key: RunKey) -> bool:
    return (record.version == key.version and record.attempts == key.attempt and record.parts_total is not None
            and record.status == FileStatus.PROCESSING)


def complete(ctx: AppContext, key: RunKey) -> None:
    loaded = ctx.files.get(key.tenant_id, key.file_id)
    if loaded is None or not current(loaded[0], key):
        return  # published already (by another committer), or replaced by a newer version or attempt
    record = loaded[0]
    parts = ctx.file_parts.finished(key)
    if len(parts) < (record.parts_total or 0):
        return
    totals = Tally()
    for part in parts:
        totals.add(tally_from(part.tally))
    blob_name = blob_name_for(record)
    claim = ctx.file_parts.claim_commit(key, COMMIT_SECONDS)
    if not isinstance(claim, str):
        raise CommitBusy(claim)
    if claim == "claimed":
        _commit(ctx, record, blob_name, parts, totals.rows)
        ctx.file_parts.mark_committed(key)
    snapshot = ctx.snapshots.load(record.snapshot_id or "")
    if snapshot is None:
        raise RuntimeError(f"snapshot {record.snapshot_id} of file {record.id} is gone")
    layout = layout_for(record.invoice_type)
    partner = record.view == View.PARTNER
    report = copy_findings(ctx, snapshot, blob_name) if partner else None
    usage = None
    if partner:
        extras = _extras(ctx, record, len(parts))
        ctx.names.record(record.tenant_id, merged_names(layout, [e["names"] for e in extras]))
        if layout.file_type == FileType.DAILY:
            usage = merged_usage([e["usage"] for e in extras])
    tenant = ctx.tenants.get(record.tenant_id)
    _publish(ctx, key, totals, snapshot.invoice, report, usage, tenant, blob_name)


def _commit(ctx: AppContext, record: FileRecord, blob_name: str, parts: list[PartDone], rows: int) -> None:
    written = [p.columns for p in parts if p.rows] or [parts[0].columns]
    if any(c != written[0] for c in written):
        raise RuntimeError(f"file {record.id}: parts wrote different columns; it cannot be composed")
    blob = ctx.storage.files.get_blob_client(blob_name)
    blob.stage_block(HEADER_BLOCK, header_line(written[0], (record.csv_format or CsvFormat()).delimiter),
                     validate_content=True)
    ids = [HEADER_BLOCK] + [block_id(p.part, n) for p in parts for n in range(p.blocks)]
    commit_blocks(blob, ids, CsvWriter.content_type, {"tenant": record.tenant_id, "file": record.id,
                                                      "version": str(record.version), "rows": str(rows)})
    log.info("file %s v%d committed from %d parts (%d blocks)", record.id, record.version, len(parts), len(ids))


def _publish(ctx: AppContext, key: RunKey, totals: Tally, invoice: dict, report: Any, usage: Any, tenant: Any,
             blob_name: str) -> None:
    alerted = False
    for _ in range(20):  # a part's progress note may land between our read and our write: read again
        loaded = ctx.files.get(key.tenant_id, key.file_id)
        if loaded is None or not current(loaded[0], key):
            return
        record, etag = loaded
        record_result(record, totals, invoice, report, ctx.settings.validation_blocks)
        if tenant is not None:
            approval.auto_approve(tenant, record)
        if usage is not None and not alerted:
            alerts.check(ctx, record, usage)  # before the file is settled: a failure retries, nothing is lost
            alerted = True
        record.blob_name, record.file_name = blob_name, file_name_for(record, CsvWriter.extension)
        record.lease_until, record.parts_done = None, record.parts_total
        try:
            ctx.files.replace(record, etag)
        except Conflict:
            continue
        ctx.files.record_version(record)
        events.file_settled(ctx, record)
        _forget_extras(ctx, record)
        log.info("file available: %d rows from %s parts", totals.rows, record.parts_total)
        return
    raise RuntimeError(f"file {key.file_id}: could not write its record")


def _extras(ctx: AppContext, record: FileRecord, count: int) -> list[dict[str, Any]]:
    def load(part: int) -> dict[str, Any]:
        blob = ctx.storage.files.get_blob_client(extras_name(record, part))
        return json.loads(blob.download_blob().readall())

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(load, range(count)))


def _forget_extras(ctx: AppContext, record: FileRecord) -> None:
    """Best effort: retention sweeps what is left (a blob outside the version's folder, a day old)."""
    try:
        for blob in ctx.storage.files.list_blobs(name_starts_with=f"{attempt_folder(record)}parts/"):
            ctx.storage.files.delete_blob(blob.name)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not delete the parts' names and usage of %s: %s", record.id, exc)


# ---- what a part hands the fan-in, and how it adds up -------------------------------------------------------------

TALLY_COUNTS = ("rows", "unmapped_customer_lines", "unmapped_subscription_lines", "undated_lines", "no_cost_lines")


def tally_json(tally: Tally) -> dict[str, Any]:
    return {**{n: getattr(tally, n) for n in TALLY_COUNTS}, "sums": tally.sums.model_dump(mode="json"),
            "first_unmapped_customer": tally.first_unmapped_customer,
            "first_unmapped_subscription": tally.first_unmapped_subscription}


def tally_from(data: dict[str, Any]) -> Tally:
    return Tally(**{n: int(data[n]) for n in TALLY_COUNTS}, sums=Totals.model_validate(data["sums"]),
                 first_unmapped_customer=data.get("first_unmapped_customer"),
                 first_unmapped_subscription=data.get("first_unmapped_subscription"))


def usage_json(usage: UsageCollector, customers: set[str]) -> dict[str, Any]:
    """A part's daily usage of the budgeted `customers` only: the alerts read nothing else (`alerts.check`), and
    every customer's every day, as text, would cost a part ~100 MB of Python objects at 100,000 lines."""
    return {"daily": {c: {d.isoformat(): plain(v) for d, v in days.items()}
                      for c, days in usage.daily(customers).items()},
            "resellers": {c: sorted(r) for c, r in usage.resellers.items() if c in customers}}


@dataclass
class MergedUsage:
    """What `alerts.check` reads of a UsageCollector, added up over the parts."""

    days: dict[str, dict[date, Decimal]]
    resellers: dict[str, set[str]]

    def daily(self, customers: Iterable[str] | None = None) -> dict[str, dict[date, Decimal]]:
        """As `UsageCollector.daily`: every customer, or only `customers` (the budgeted ones)."""
        if customers is None:
            return self.days
        wanted = set(customers)
        return {c: days for c, days in self.days.items() if c in wanted}


def merged_usage(parts: list[dict[str, Any] | None]) -> MergedUsage:
    days: dict[str, dict[date, Decimal]] = defaultdict(dict)
    resellers: dict[str, set[str]] = defaultdict(set)
    for part in parts:
        for customer, amounts in (part or {}).get("daily", {}).items():
            mine = days[customer]
            for day, amount in amounts.items():
                when = date.fromisoformat(day)
                mine[when] = add(mine[when], Decimal(amount)) if when in mine else Decimal(amount)
        for customer, sold_by in (part or {}).get("resellers", {}).items():
            resellers[customer].update(sold_by)
    return MergedUsage(days, resellers)


def merged_names(layout: Layout, parts: list[list[str]]) -> list[NameEntry]:
    """A one-pass NamesCollector keeps, for each subscription (or customer without one), what the first lines
    naming it show: here, that is the first part (in order) naming it, and within it the same first batch."""
    seen: set[str] = set()
    keys: set[str] = set()
    for part in parts:
        groups: dict[str, list[str]] = defaultdict(list)
        for key in part:
            groups[_subject(key)].append(key)
        for subject, found in groups.items():
            if subject not in seen:
                keys.update(found)
        seen.update(groups)
    return NamesCollector(layout, keys=keys).entries()


def _subject(key: str) -> str:
    """What NamesCollector groups a line by: its subscription, or its customer when it has none."""
    fields = key.split(SEPARATOR)
    if len(fields) != 5:
        return key
    return fields[3] if fields[3] != "" else fields[1]
