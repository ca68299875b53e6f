"""Monthly automation: the invoice poller, revision following, transient retries (the calendar is in
`invoice_calendar`, versions and bulk regeneration in `versions`).

Every poller run derives its work from stored state, never from "what the last run did":

1. list Microsoft's invoices and record each new one (conditional insert into the Invoices table);
2. for every known invoice, request the files the tenant's automation asks for that the invoice entity does not
   list as requested yet (`file_requests.request_file` is idempotent: the same request names the same file, and a
   still-Queued file is queued again, which the worker dedupes);
3. within the revision window, ask the Graph export again and regenerate a file once when its eTag changed;
4. retry Failed files whose cause was transient, up to a cap;
5. send again the message of a file left Queued with none (a crash between its record and its enqueue).

A recorded invoice is brought up to date from each listing (file types, billing period) until its files exist.
Failures are isolated: one tenant's, or one invoice's, error is logged and counted on its `TenantRun`, and the
others go on.

Decisions that create a new version (3, 4) are first *claimed* on the invoice entity with an ETag-guarded write,
so two runs racing cannot both make one; the claim names the version it moves past, so a run that crashed after
claiming is completed by the next one. Overlapping runs, a past-due run or a crash between two steps therefore
neither lose a file nor make one twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from shared.adapters import invoices

from shared.app import events, file_requests, ingest, invoice_calendar, tenants
from shared.core.columns import FileType
from shared.app.context import AppContext
from shared.adapters.invoices import InvoiceSummary
from shared.core.models import (
    DOWNLOADABLE_STATUSES,
    MPN_ID_PATTERN,
    SETTLED_STATUSES,
    AutomationIn,
    AutomationSettings,
    Claim,
    FileRecord,
    FileRequest,
    FileStatus,
    InvoiceState,
    View,
)
from shared.adapters.partner_center.client import Manifest, PartnerCenterClient
from shared.adapters.partner_center.transport import PartnerCenterError
from shared.core.problems import Problem
from shared.adapters.repositories import (
    AutomationRepository,
    Conflict,
    InvoiceRepository,
    utcnow,
)

log = logging.getLogger(__name__)

REVISABLE_TYPES = (FileType.ONETIME, FileType.DAILY)  # new commerce, served by the Graph export
UPDATE_ATTEMPTS = 20

AfterRecord = Callable[[InvoiceState], None]


@dataclass
class TenantRun:
    """What one poller run did for one tenant (for logs and tests)."""

    tenant_id: str
    new_invoices: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    revised: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    error: str | None = None
    failures: int = 0  # invoices (or the whole tenant) whose step failed this run; logged, the others went on


# ---- automation settings -------------------------------------------------------------------------------------

def automation_repo(ctx: AppContext) -> AutomationRepository:
    return AutomationRepository(ctx.storage)


def invoice_repo(ctx: AppContext) -> InvoiceRepository:
    return InvoiceRepository(ctx.storage)


def put_automation(ctx: AppContext, tenant_id: str, body: AutomationIn) -> AutomationSettings:
    tenant = tenants.require_tenant(ctx, tenant_id)
    settings = AutomationSettings(tenant_id=tenant.tenant_id, updated_at=utcnow(), **body.model_dump())
    automation_repo(ctx).upsert(settings)
    return settings


def get_automation(ctx: AppContext, tenant_id: str) -> AutomationSettings:
    tenant = tenants.require_tenant(ctx, tenant_id)
    return automation_repo(ctx).get(tenant.tenant_id) or AutomationSettings(tenant_id=tenant.tenant_id)


# ---- which files an invoice gets -----------------------------------------------------------------------------

def selection_key(req: FileRequest) -> str:
    """Names a wanted file on the invoice entity (the file id itself also depends on the tenant's CSV format)."""
    scope = req.reseller_id or req.customer_id or ""
    return f"{req.invoice_type.value}:{req.view.value}:{scope}:{req.format.value}"


def wanted_files(auto: AutomationSettings, state: InvoiceState,
                 resellers: Iterable[str] = ()) -> dict[str, FileRequest]:
    """The files automation makes for an invoice: every type it has (or the configured ones) in the partner view,
    CSV; with `resellerViews`, also a reseller view per type for every reseller that has a margin rule."""
    if not auto.enabled:
        return {}
    # Without a billing-period start only a period that ended before `startFrom` keeps it out: a missing file is
    # worse than one more.
    if auto.start_from and (state.billing_period_start or state.billing_period_end or auto.start_from) < \
            auto.start_from:
        return {}
    types = [t for t in state.file_types if auto.file_types is None or t in auto.file_types]
    requests = [FileRequest(invoice_type=t, invoice_id=state.invoice_id, view=View.PARTNER) for t in types]
    if auto.reseller_views:
        valid = sorted({r for r in resellers if re.fullmatch(MPN_ID_PATTERN, r)})
        for bad in sorted(set(resellers) - set(valid)):  # a rule stored before MPN ids were checked
            log.warning("margin rule for reseller %r: not an MPN id, no reseller view is made for it", bad[:20],
                        extra={"tenant": state.tenant_id, "invoice": state.invoice_id})
        requests += [FileRequest(invoice_type=t, invoice_id=state.invoice_id, view=View.RESELLER, reseller_id=r)
                     for t in types for r in valid]
    return {selection_key(r): r for r in requests}


def in_revision_window(state: InvoiceState, today: date, window_days: int) -> bool:
    """Microsoft revises usage for about two weeks after the period ends."""
    end = state.billing_period_end
    return end is not None and today <= end + timedelta(days=window_days)


# ---- the poller ----------------------------------------------------------------------------------------------

def poll(ctx: AppContext, now: datetime | None = None, *, after_record: AfterRecord | None = None) -> list[TenantRun]:
    """One poller run over every tenant with automation on. A failing tenant does not stop the others."""
    now = now or utcnow()
    runs = []
    for auto in automation_repo(ctx).list_enabled():
        run = TenantRun(auto.tenant_id)
        try:
            poll_tenant(ctx, auto, now, run, after_record)
        except (PartnerCenterError, Problem) as exc:
            run.error, run.failures = str(exc), run.failures + 1
            log.warning("invoice poll failed for tenant %s: %s", auto.tenant_id, exc,
                        extra={"tenant": auto.tenant_id})
        except Exception as exc:  # a bug or bad stored data: logged and counted; the next tenant still runs
            run.error, run.failures = f"{type(exc).__name__}: {exc}", run.failures + 1
            log.exception("invoice poll failed for tenant %s", auto.tenant_id, extra={"tenant": auto.tenant_id})
        runs.append(run)
    return runs


def isolated(run: TenantRun, invoice_id: str, step: Callable[[], None]) -> None:
    """One invoice's step; its failure is logged and counted, and the tenant's other invoices go on."""
    try:
        step()
    except Exception as exc:
        run.failures += 1
        run.error = run.error or f"invoice {invoice_id}: {type(exc).__name__}: {exc}"
        log.exception("invoice poll step failed for invoice %s", invoice_id,
                      extra={"tenant": run.tenant_id, "invoice": invoice_id})


def poll_tenant(ctx: AppContext, auto: AutomationSettings, now: datetime, run: TenantRun,
                after_record: AfterRecord | None = None) -> None:
    tenant = tenants.require_tenant(ctx, auto.tenant_id)
    client = invoices.client_for(tenant, ctx.settings)
    discover(ctx, tenant.tenant_id, invoices.list_invoices(client), now, run, after_record)
    states = invoice_repo(ctx).list(tenant.tenant_id)
    for state in states:
        isolated(run, state.invoice_id, lambda state=state: detected_and_requested(ctx, auto, state, run))
    files = list(ctx.files.list(tenant.tenant_id))
    for state in states:
        own = [f for f in files if f.invoice_id == state.invoice_id]
        isolated(run, state.invoice_id, lambda state=state, own=own: keep_going(ctx, client, state, own, now, run))
    run.late = invoice_calendar.log_late(ctx, tenant.tenant_id, tenant.billing_anniversary_day, now.date(), 2, states,
                                         files, notify=True)


def detected_and_requested(ctx: AppContext, auto: AutomationSettings, state: InvoiceState, run: TenantRun) -> None:
    """invoice.detected (once per invoice: the event id is derived from it), then the files the tenant asks for."""
    events.invoice_detected(ctx, state, since=auto.start_from)
    request_missing(ctx, auto, state, run)


def keep_going(ctx: AppContext, client: PartnerCenterClient, state: InvoiceState, files: list[FileRecord],
               now: datetime, run: TenantRun) -> None:
    """Move an invoice's files on: lost messages re-sent, claimed regenerations finished, revisions, retries."""
    for record in files:
        loaded = ctx.files.get(record.tenant_id, record.id) if file_requests.is_stranded(record, now) else None
        if loaded is not None:
            file_requests.requeue_if_stranded(ctx, *loaded)
    complete_claims(ctx, state, files)
    if ctx.settings.follow_revisions and in_revision_window(state, now.date(), ctx.settings.revision_window_days):
        follow_revisions(ctx, client, state, files, run)
    retry_transient(ctx, state, files, run)


def state_of(tenant_id: str, summary: InvoiceSummary, now: datetime) -> InvoiceState:
    def day(value: datetime | None) -> date | None:
        return value.date() if value else None

    return InvoiceState(tenant_id=tenant_id, invoice_id=summary.id.upper(), document_type=summary.document_type,
                        invoice_date=summary.invoice_date, billing_period_start=day(summary.billing_period_start),
                        billing_period_end=day(summary.billing_period_end), file_types=summary.file_types,
                        discovered_at=now, announced=False)


def discover(ctx: AppContext, tenant_id: str, summaries: Iterable[InvoiceSummary], now: datetime, run: TenantRun,
             after_record: AfterRecord | None = None) -> None:
    """Record each invoice not seen before (a conditional insert: a racing run's insert simply loses), and bring
    a recorded one up to date when Microsoft now says more about it (its file types, its billing period)."""
    repo = invoice_repo(ctx)
    for summary in summaries:
        state = state_of(tenant_id, summary, now)
        try:
            repo.create(state)
        except Conflict:
            update_invoice(ctx, tenant_id, state.invoice_id, lambda fresh, new=state: refreshed(fresh, new))
            continue
        run.new_invoices.append(state.invoice_id)
        log.info("new invoice %s (%s to %s)", state.invoice_id, state.billing_period_start,
                 state.billing_period_end, extra={"tenant": tenant_id, "invoice": state.invoice_id})
        if after_record:
            after_record(state)


def refreshed(fresh: InvoiceState, listed: InvoiceState) -> bool:
    """Take what the listing now knows that the record lacks; True if anything changed."""
    changed = False
    for name in ("document_type", "invoice_date", "billing_period_start", "billing_period_end"):
        if getattr(listed, name) is not None and getattr(fresh, name) != getattr(listed, name):
            setattr(fresh, name, getattr(listed, name))
            changed = True
    types = fresh.file_types + [t for t in listed.file_types if t not in fresh.file_types]
    if types != fresh.file_types:
        fresh.file_types, changed = types, True
    return changed


def update_invoice(ctx: AppContext, tenant_id: str, invoice_id: str,
                   change: Callable[[InvoiceState], bool]) -> bool:
    """Read, change, write back ETag-guarded; on a race read again. `change` returns False when there is nothing
    to do on the fresh state (another run did it): then nothing is written and False is returned."""
    repo = invoice_repo(ctx)
    for _ in range(UPDATE_ATTEMPTS):
        loaded = repo.get(tenant_id, invoice_id)
        if loaded is None:
            return False
        state, etag = loaded
        if not change(state):
            return False
        try:
            repo.replace(state, etag)
            return True
        except Conflict:
            continue
    raise RuntimeError(f"invoice {invoice_id} kept changing; giving up this run")


def request_missing(ctx: AppContext, auto: AutomationSettings, state: InvoiceState, run: TenantRun) -> None:
    """Request the wanted files the invoice entity does not list yet; then list them (the request comes first, so a
    crash in between only means the idempotent request is made again next run)."""
    resellers = [r.target_id for r in ctx.rules.list(state.tenant_id, "reseller")] if auto.reseller_views else []
    for key, req in wanted_files(auto, state, resellers).items():
        if key in state.requested:
            continue
        record, created = file_requests.request_file(ctx, state.tenant_id, req)
        if created:
            run.requested.append(record.id)

        def mark(fresh: InvoiceState, key: str = key, file_id: str = record.id) -> bool:
            if fresh.requested.get(key) == file_id:
                return False
            fresh.requested[key] = file_id
            return True

        update_invoice(ctx, state.tenant_id, state.invoice_id, mark)
        state.requested[key] = record.id


# ---- new versions: claimed first, then made --------------------------------------------------------------------

def regenerate_from(ctx: AppContext, tenant_id: str, file_id: str, from_version: int, reason: str) -> bool:
    """Make the next version unless the file already moved past `from_version` or is busy."""
    loaded = ctx.files.get(tenant_id, file_id)
    if loaded is None:
        return False
    record, _ = loaded
    if record.version != from_version or record.status not in SETTLED_STATUSES:
        return False
    try:
        file_requests.regenerate(ctx, tenant_id, file_id, reason=reason)
    except Problem:  # 409: another run regenerated it between our read and its write
        return False
    return True


def claim(ctx: AppContext, state: InvoiceState, record: FileRecord, reason: str,
          note: Callable[[InvoiceState], bool]) -> bool:
    """Claim the regeneration of `record`'s current version on the invoice entity; True if this run won."""

    def change(fresh: InvoiceState) -> bool:
        pending = fresh.pending.get(record.id)
        if pending is not None and pending.from_version >= record.version:
            return False  # another run already decided on this version
        if not note(fresh):
            return False
        fresh.pending[record.id] = Claim(from_version=record.version, reason=reason)
        return True

    return update_invoice(ctx, state.tenant_id, state.invoice_id, change)


def complete_claims(ctx: AppContext, state: InvoiceState, files: list[FileRecord]) -> None:
    """Finish regenerations a crashed run claimed but did not start (the file is still at the claimed version)."""
    by_id = {f.id: f for f in files}
    for file_id, pending in state.pending.items():
        record = by_id.get(file_id)
        if record and record.version == pending.from_version and \
                record.status in SETTLED_STATUSES:
            regenerate_from(ctx, state.tenant_id, file_id, pending.from_version, pending.reason)


def follow_revisions(ctx: AppContext, client: PartnerCenterClient, state: InvoiceState, files: list[FileRecord],
                     run: TenantRun) -> None:
    """Regenerate, once per new eTag, each Graph-made file whose export Microsoft has revised since."""
    candidates = [f for f in files if f.invoice_type in REVISABLE_TYPES and f.status in DOWNLOADABLE_STATUSES
                  and f.source is not None and f.source.value == "graph"]
    exports: dict[FileType, Manifest | None] = {}
    for record in candidates:
        if record.invoice_type not in exports:
            exports[record.invoice_type] = current_export(client, record.invoice_type, state.invoice_id)
        export = exports[record.invoice_type]
        etag = export.etag if export is not None else None
        if not etag or etag == record.data_version or state.revisions.get(record.id) == etag:
            continue
        # the snapshot is stale; its next ingest reads this export (its operation), not a new one
        ingest.note_revision(ctx, state.tenant_id, state.invoice_id, record.invoice_type, etag, export.operation)
        reason = f"Microsoft revised the data (eTag {etag})"
        events.data_revised(ctx, record, etag)

        def note(fresh: InvoiceState, file_id: str = record.id, etag: str = etag) -> bool:
            if fresh.revisions.get(file_id) == etag:
                return False
            fresh.revisions[file_id] = etag
            return True

        if claim(ctx, state, record, reason, note) and \
                regenerate_from(ctx, state.tenant_id, record.id, record.version, reason):
            run.revised.append(record.id)
            log.info("%s; regenerating %s", reason, record.id,
                     extra={"tenant": state.tenant_id, "file": record.id, "invoice": state.invoice_id})


def current_export(client: PartnerCenterClient, file_type: FileType, invoice_id: str) -> Manifest | None:
    """Microsoft's export now, for its eTag (None when it cannot be had right now; the next run asks again)."""
    try:
        return client.export(file_type.value, invoice_id)
    except PartnerCenterError as exc:
        log.warning("could not check %s %s for revisions: %s", file_type.value, invoice_id, exc)
        return None


def retry_transient(ctx: AppContext, state: InvoiceState, files: list[FileRecord], run: TenantRun) -> None:
    """Failed files whose cause may pass get a new version, up to TRANSIENT_RETRY_CAP times per file."""
    cap = ctx.settings.transient_retry_cap
    for record in files:
        if record.status != FileStatus.FAILED or not record.transient:
            continue
        if state.retries.get(record.id, 0) >= cap:
            continue
        reason = f"automatic retry {state.retries.get(record.id, 0) + 1} of {cap} after: {record.error}"

        def note(fresh: InvoiceState, file_id: str = record.id) -> bool:
            count = fresh.retries.get(file_id, 0)
            if count >= cap:
                return False
            fresh.retries[file_id] = count + 1
            return True

        if claim(ctx, state, record, reason, note) and \
                regenerate_from(ctx, state.tenant_id, record.id, record.version, reason):
            run.retried.append(record.id)
