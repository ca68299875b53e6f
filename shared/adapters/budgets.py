"""Customers' consumption budgets in Table Storage: `Budgets`, PK tenant, RK customer id."""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import ResourceNotFoundError
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
