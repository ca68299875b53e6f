"""The one way anything is announced: `publish(ctx, event)` fans an event out to the tenant's endpoints that want
it, as deliveries queued for `shared.app.webhooks.deliver`. It never calls an endpoint itself, so the places that
publish (the generation worker, the poller, approval) only pay one table query and a few small writes.

Event ids are derived from what happened (`shared.core.notifications.event_id`), and a delivery is created with a
conditional insert: publishing the same event again (a redelivered queue message, two racing pollers) queues
nothing new, so callers publish *after* their own write and simply publish again when they are retried.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from shared.adapters.repositories import Conflict, InvoiceRepository, utcnow
from shared.app.context import AppContext
from shared.core.models import FileRecord, FileStatus, InvoiceState
from shared.core.notifications import Delivery, DeliveryStatus, Event, EventScope, EventType, event_id

log = logging.getLogger(__name__)

AUTOMATIC_APPROVER = "automatic"  # `approvedBy` of a version approved by the tenant's auto-approval setting
SETTLED_EVENTS = {FileStatus.AVAILABLE: EventType.FILE_AVAILABLE, FileStatus.FAILED: EventType.FILE_FAILED,
                  FileStatus.NEEDS_REVIEW: EventType.FILE_NEEDS_REVIEW}


def cloudevent_json(event: Event) -> str:
    """The CloudEvents 1.0 structured JSON of an event (PyPI `cloudevents`); `source` names the tenant."""
    ce = CloudEvent({"id": event.id, "source": f"/tenants/{event.tenant_id}", "type": event.type.value,
                     "subject": event.subject, "time": event.time, "datacontenttype": "application/json"},
                    event.data)
    return JSONFormat().write(ce).decode("utf-8")


def webhook_id(event: Event) -> str:
    return "msg_" + event.id.replace("-", "")


def publish(ctx: AppContext, event: Event) -> int:
    """Queue one delivery per endpoint that wants the event; returns how many were queued now."""
    hooks = [h for h in ctx.webhooks.list(event.tenant_id) if h.wants(event)]
    if not hooks:
        return 0
    payload, queued = cloudevent_json(event), 0
    for hook in hooks:
        delivery = Delivery(tenant_id=event.tenant_id, endpoint_id=hook.id, id=webhook_id(event),
                            event_id=event.id, event_type=event.type, payload=payload, created_at=utcnow())
        try:
            ctx.deliveries.create(delivery)
        except Conflict:
            loaded = ctx.deliveries.get(event.tenant_id, hook.id, delivery.id)
            if loaded is None or loaded[0].status != DeliveryStatus.PENDING or loaded[0].attempt_count > 0:
                continue  # published before: delivered, retrying on its own, or given up
            # created but never tried: its message may have been lost in a crash; a duplicate is harmless (the
            # delivery worker claims each attempt with an ETag-guarded write)
        enqueue_delivery(ctx, event.tenant_id, hook.id, delivery.id, attempt=0, delay=0)
        queued += 1
    log.info("event %s %s: %d deliveries queued", event.type.value, event.id, queued,
             extra={"tenant": event.tenant_id})
    return queued


def enqueue_delivery(ctx: AppContext, tenant_id: str, endpoint_id: str, delivery_id: str, attempt: int,
                     delay: int) -> None:
    body = json.dumps({"tenantId": tenant_id, "endpointId": endpoint_id, "deliveryId": delivery_id,
                       "attempt": attempt})
    ctx.storage.queue(ctx.settings.webhook_queue).send_message(body, visibility_timeout=delay or None)


# ---- the events, built where they happen -------------------------------------------------------------------------

def _file_data(record: FileRecord) -> dict:
    return {"fileId": record.id, "version": record.version, "invoiceId": record.invoice_id,
            "invoiceType": record.invoice_type.value, "view": record.view.value, "resellerId": record.reseller_id,
            "customerId": record.customer_id, "status": record.status.value, "rowCount": record.row_count,
            "fileName": record.file_name, "reason": record.reason,
            "href": f"/api/tenants/{record.tenant_id}/reconciliation-files/{record.id}"}


def _file_event(kind: EventType, record: FileRecord, version: int, extra: dict | None = None) -> Event:
    return Event(id=event_id(record.tenant_id, kind.value, record.id, version), type=kind,
                 tenant_id=record.tenant_id, subject=f"reconciliation-files/{record.id}/versions/{version}",
                 data={**_file_data(record), "version": version, **(extra or {})}, time=utcnow(),
                 scope=EventScope(record.view.value, record.reseller_id, record.customer_id))


def file_settled(ctx: AppContext, record: FileRecord) -> None:
    """A version finished (Available, NeedsReview or Failed); with auto-approval it may be approved already."""
    kind = SETTLED_EVENTS.get(record.status)
    if kind is None:
        return
    extra = {"error": record.error, "transient": record.transient} if kind == EventType.FILE_FAILED else {}
    publish(ctx, _file_event(kind, record, record.version, extra))
    if record.approved_version == record.version and record.approved_by == AUTOMATIC_APPROVER:
        file_approved(ctx, record)


def file_approved(ctx: AppContext, record: FileRecord) -> None:
    version = record.approved_version or record.version
    publish(ctx, _file_event(EventType.FILE_APPROVED, record, version, {
        "approvedBy": record.approved_by, "approvedAt": _iso(record.approved_at)}))


def invoice_detected(ctx: AppContext, state: InvoiceState, since: date | None = None) -> None:
    """For an invoice the poller recorded (since events exist) and has not announced yet: publish, then note it on
    the invoice entity (ETag-guarded; a crash in between only publishes the same event again, which queues
    nothing new). Invoices before the automation's `startFrom` are history, not news: never announced."""
    if state.announced is not False:
        return
    if since is not None and (state.billing_period_start is None or state.billing_period_start < since):
        return
    publish(ctx, Event(id=event_id(state.tenant_id, EventType.INVOICE_DETECTED.value, state.invoice_id),
                       type=EventType.INVOICE_DETECTED, tenant_id=state.tenant_id,
                       subject=f"invoices/{state.invoice_id}", time=utcnow(), data={
                           "invoiceId": state.invoice_id, "documentType": state.document_type,
                           "invoiceDate": _iso(state.invoice_date),
                           "billingPeriodStart": _iso(state.billing_period_start),
                           "billingPeriodEnd": _iso(state.billing_period_end),
                           "fileTypes": [t.value for t in state.file_types]}))
    repo = InvoiceRepository(ctx.storage)
    for _ in range(5):
        loaded = repo.get(state.tenant_id, state.invoice_id)
        if loaded is None or loaded[0].announced is not False:
            break
        fresh, etag = loaded
        fresh.announced = True
        try:
            repo.replace(fresh, etag)
            break
        except Conflict:
            continue
    state.announced = True


def invoice_late(ctx: AppContext, tenant_id: str, file_type: str, start: date, end: date, expected: date) -> None:
    publish(ctx, Event(id=event_id(tenant_id, EventType.INVOICE_LATE.value, file_type, start),
                       type=EventType.INVOICE_LATE, tenant_id=tenant_id, subject=f"calendar/{file_type}/{start}",
                       time=utcnow(), data={"fileType": file_type, "periodStart": start.isoformat(),
                                            "periodEnd": end.isoformat(), "expectedDate": expected.isoformat()}))


def data_revised(ctx: AppContext, record: FileRecord, etag: str) -> None:
    publish(ctx, Event(id=event_id(record.tenant_id, EventType.DATA_REVISED.value, record.id, etag),
                       type=EventType.DATA_REVISED, tenant_id=record.tenant_id,
                       subject=f"reconciliation-files/{record.id}", time=utcnow(),
                       scope=EventScope(record.view.value, record.reseller_id, record.customer_id),
                       data={**_file_data(record), "previousDataVersion": record.data_version, "dataVersion": etag}))


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
