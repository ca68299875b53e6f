"""Consumption alerts: customers' monthly budgets (in the customer's price) and spike thresholds, checked when a
partner-view daily-rated-usage file is made (the poller makes unbilled-current ones as usage arrives), raised as
`usage.budgetExceeded` (once per customer and month) and `usage.spike` (once per customer and day) through
`events.publish` (their ids say what happened, so a file made again raises nothing twice)."""

from __future__ import annotations

from shared.adapters.budgets import AlertRepository, BudgetRepository
from shared.app import events
from shared.app.context import AppContext
from shared.core.models import FileRecord
from shared.core.notifications import Event, EventScope, EventType, event_id
from shared.core.problems import not_found
from shared.core.usage import Alert, Budget, BudgetIn, UsageCollector, alerts

KINDS = {"budgetExceeded": EventType.USAGE_BUDGET_EXCEEDED, "spike": EventType.USAGE_SPIKE}


def put_budget(ctx: AppContext, tenant_id: str, customer_id: str, body: BudgetIn) -> Budget:
    budget = Budget(tenant_id=tenant_id, customer_id=customer_id.lower(), **body.model_dump())
    BudgetRepository(ctx.storage).put(budget)
    return budget


def get_budget(ctx: AppContext, tenant_id: str, customer_id: str) -> Budget:
    budget = BudgetRepository(ctx.storage).get(tenant_id, customer_id.lower())
    if budget is None:
        raise not_found(f"The budget of customer {customer_id}")
    return budget


def delete_budget(ctx: AppContext, tenant_id: str, customer_id: str) -> None:
    get_budget(ctx, tenant_id, customer_id)
    BudgetRepository(ctx.storage).delete(tenant_id, customer_id.lower())


def budgeted_customers(ctx: AppContext, tenant_id: str) -> set[str]:
    """The customers the tenant has a budget for: the only ones whose daily usage an alert can read."""
    return {b.customer_id for b in BudgetRepository(ctx.storage).list(tenant_id)}


def check(ctx: AppContext, record: FileRecord, usage: UsageCollector) -> int:
    """Evaluate every budgeted customer the file has usage of: record each alert once (`Alerts` table) and publish
    it. Returns how many alerts are new."""
    budgets = BudgetRepository(ctx.storage).list(record.tenant_id)
    if not budgets:
        return 0
    daily, raised = usage.daily(b.customer_id for b in budgets), 0
    for budget in budgets:
        days = daily.get(budget.customer_id)
        if not days:
            continue
        resellers = usage.resellers.get(budget.customer_id, set())
        reseller = next(iter(resellers)) if len(resellers) == 1 else None  # its reseller hears of it too
        for alert in alerts(budget, days):
            event = usage_event(record, alert, reseller)
            raised += AlertRepository(ctx.storage).record(record.tenant_id, event.id, alert.kind, alert.customer_id,
                                                          alert.key, event.data, event.time)
            events.publish(ctx, event)  # again after a crash in between: queues nothing twice
    return raised


def list_alerts(ctx: AppContext, tenant_id: str, limit: int = 200) -> list[dict]:
    """The alerts raised in the tenant, newest first (the Overview page shows them)."""
    return AlertRepository(ctx.storage).list(tenant_id, limit)


def usage_event(record: FileRecord, alert: Alert, reseller: str | None) -> Event:
    kind = KINDS[alert.kind]
    return Event(id=event_id(record.tenant_id, kind.value, alert.customer_id, alert.key), type=kind,
                 tenant_id=record.tenant_id, subject=f"customers/{alert.customer_id}/usage/{alert.key}",
                 time=events.utcnow(), scope=EventScope(None, reseller, alert.customer_id),
                 data={**alert.data, "currency": record.currency, "fileId": record.id,
                       "invoiceId": record.invoice_id})
