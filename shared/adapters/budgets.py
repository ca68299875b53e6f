"""Customers' consumption budgets and the alerts raised, in Table Storage: `Budgets` (PK tenant, RK customer id)
and `Alerts` (PK tenant, RK the event id: a conditional insert, so each alert is recorded once)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.repositories import from_entity, to_entity
from shared.adapters.storage import Storage
from shared.core.usage import Budget


def _budget(entity: dict[str, Any]) -> Budget:
    return from_entity(Budget, entity, tenant_id=entity["PartitionKey"], customer_id=entity["RowKey"])


class BudgetRepository:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Budgets")

    def put(self, budget: Budget) -> None:
        self.table.upsert_entity(to_entity(budget, budget.tenant_id, budget.customer_id,
                                           keys={"tenant_id", "customer_id"}), mode=UpdateMode.REPLACE)

    def get(self, tenant_id: str, customer_id: str) -> Budget | None:
        try:
            return _budget(self.table.get_entity(tenant_id, customer_id))
        except ResourceNotFoundError:
            return None

    def list(self, tenant_id: str) -> list[Budget]:
        return [_budget(e) for e in self.table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id})]

    def delete(self, tenant_id: str, customer_id: str) -> None:
        self.table.delete_entity(tenant_id, customer_id)


class AlertRepository:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Alerts")

    def record(self, tenant_id: str, event_id: str, kind: str, customer_id: str, key: str, data: dict,
               raised_at: datetime) -> bool:
        """True when this alert is new; False when it was raised before."""
        try:
            self.table.create_entity({"PartitionKey": tenant_id, "RowKey": event_id, "kind": kind,
                                      "customer_id": customer_id, "key": key, "data_json": json.dumps(data),
                                      "raised_at": raised_at})
        except ResourceExistsError:
            return False
        return True

    def list(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id})
        items = [{"id": e["RowKey"], "kind": e["kind"], "customerId": e["customer_id"], "key": e["key"],
                  "raisedAt": e["raised_at"].isoformat(), "data": json.loads(e["data_json"])} for e in rows]
        return sorted(items, key=lambda a: a["raisedAt"], reverse=True)[:limit]


