"""Timer Blueprint: the invoice poller and retention. Thin adapters over `shared.app.automation` / `shared.app.retention`.

Schedules are six-field NCRONTAB in UTC from app settings (`INVOICE_POLL_SCHEDULE`, default `0 0 */6 * * *`;
`RETENTION_SCHEDULE`, default `0 30 3 * * *`). A past-due run needs nothing special: both jobs derive their work
from stored state, so a late or overlapping run repeats nothing and skips nothing.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.app import automation

from shared.app import retention, webhooks
from shared.app.context import get_context

log = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%INVOICE_POLL_SCHEDULE%", run_on_startup=False, use_monitor=True)
def poll_invoices(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("invoice poll is past due; running now")
    runs = automation.poll(get_context())
    for run in runs:
        log.info("invoice poll: %d new invoices, %d files requested, %d revised, %d retried, %d failures%s",
                 len(run.new_invoices), len(run.requested), len(run.revised), len(run.retried), run.failures,
                 f", error: {run.error}" if run.error else "", extra={"tenant": run.tenant_id})


@bp.timer_trigger(arg_name="timer", schedule="%RETENTION_SCHEDULE%", run_on_startup=False, use_monitor=True)
def apply_retention(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("retention is past due; running now")
    retention.purge(get_context())
    webhooks.purge_delivery_log(get_context())
