"""The availability calendar: when Microsoft's data of each type and period should be there, whether it is, and
our files for it (`GET /tenants/{t}/calendar`); the poller logs the late ones with the same reckoning."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date

from shared.adapters.repositories import InvoiceRepository, utcnow
from shared.app import events, tenants
from shared.app.context import AppContext
from shared.core import availability
from shared.core.columns import FileType
from shared.core.models import FileRecord, InvoiceState

log = logging.getLogger(__name__)


def known_invoices(states: Iterable[InvoiceState]) -> list[availability.KnownInvoice]:
    return [availability.KnownInvoice(s.invoice_id, s.billing_period_start, tuple(s.file_types)) for s in states]


def known_files(files: Iterable[FileRecord]) -> list[availability.KnownFile]:
    return [availability.KnownFile(f.id, f.invoice_id, f.invoice_type, f.status.value, f.version) for f in files]


def log_late(ctx: AppContext, tenant_id: str, anniversary_day: int | None, today: date, months: int,
             states: Iterable[InvoiceState], files: Iterable[FileRecord], notify: bool = False) -> list[str]:
    """One warning line per file type whose data Microsoft has not published by its expected date; with `notify`
    (the poller) also invoice.late, once per type and period."""
    entries = availability.build(today, months, anniversary_day, known_invoices(states), known_files(files))
    late: dict[FileType, list[availability.Period]] = {}
    for entry in entries:
        if entry.late:
            late.setdefault(entry.period.file_type, []).append(entry.period)
            if notify:
                p = entry.period
                events.invoice_late(ctx, tenant_id, p.file_type.value, p.start, p.end, p.expected)
    for file_type, periods in late.items():
        text = ", ".join(f"{p.start}..{p.end} (expected {p.expected})" for p in periods)
        log.warning("late: Microsoft has not published %s data for %s", file_type.value, text,
                    extra={"tenant": tenant_id})
    return [t.value for t in late]


def calendar_view(ctx: AppContext, tenant_id: str, months: int, today: date | None = None) -> dict:
    """`GET /tenants/{t}/calendar`: per type and period the expected date, the invoice, our files, late or not."""
    tenant = tenants.require_tenant(ctx, tenant_id)
    today = today or utcnow().date()
    states = InvoiceRepository(ctx.storage).list(tenant.tenant_id)
    files = list(ctx.files.list(tenant.tenant_id))
    anniversary = tenant.billing_anniversary_day
    log_late(ctx, tenant.tenant_id, anniversary, today, months, states, files)
    entries = availability.build(today, months, anniversary, known_invoices(states), known_files(files))
    return {"tenantId": tenant.tenant_id, "today": today.isoformat(), "months": months,
            "billingAnniversaryDay": anniversary, "items": [entry_json(e) for e in entries]}


def entry_json(entry: availability.Entry) -> dict:
    p = entry.period
    return {"fileType": p.file_type.value, "periodStart": p.start.isoformat(), "periodEnd": p.end.isoformat(),
            "expectedDate": p.expected.isoformat(), "invoiceAppeared": bool(entry.invoice_ids),
            "invoiceIds": entry.invoice_ids, "filesExist": bool(entry.files), "late": entry.late,
            "files": [{"id": f.id, "invoiceId": f.invoice_id, "status": f.status, "version": f.version}
                      for f in entry.files]}
