"""The names index in Table Storage: what Microsoft's lines call each reseller, customer and subscription.

Table `Names`, PartitionKey = tenant id, RowKey `{kind}|{id}` (kind reseller, customer or subscription; ids
validated, GUIDs lower-case), properties `name`, `customer_id` and `customer_name` (subscriptions), `reseller_ids`
(comma-separated MPN ids that sold it). Written by the worker after a partner-view file (only rows that are new or
changed, so a redelivered message or next month's file writes next to nothing); read by the names search.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from azure.data.tables import UpdateMode

from shared.adapters.storage import Storage
from shared.core.names import NameEntry

TABLE = "Names"
BATCH = 100


def _row(entry: NameEntry) -> dict[str, Any]:
    row: dict[str, Any] = {"RowKey": f"{entry.kind}|{entry.id}", "kind": entry.kind, "id": entry.id}
    for key, value in (("name", entry.name), ("customer_id", entry.customer_id),
                       ("customer_name", entry.customer_name)):
        if value:
            row[key] = value
    if entry.reseller_ids:
        row["reseller_ids"] = ",".join(entry.reseller_ids)
    return row


def _entry(entity: dict[str, Any]) -> NameEntry:
    resellers = tuple(r for r in str(entity.get("reseller_ids") or "").split(",") if r)
    return NameEntry(kind=entity["kind"], id=entity["id"], name=entity.get("name"),
                     customer_id=entity.get("customer_id"), customer_name=entity.get("customer_name"),
                     reseller_ids=resellers)


class NamesIndex:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table(TABLE)

    def list(self, tenant_id: str) -> list[NameEntry]:
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id.lower()})
        return [_entry(e) for e in rows]

    def record(self, tenant_id: str, entries: Iterable[NameEntry]) -> int:
        """Upsert what is new or changed (names as last seen; resellers added to those already known)."""
        tenant_id = tenant_id.lower()
        held = {f"{e.kind}|{e.id}": e for e in self.list(tenant_id)}
        rows = []
        for entry in entries:
            old = held.get(f"{entry.kind}|{entry.id}")
            if old is not None:
                resellers = tuple(sorted(set(old.reseller_ids) | set(entry.reseller_ids)))
                entry = NameEntry(entry.kind, entry.id, entry.name or old.name, entry.customer_id or old.customer_id,
                                  entry.customer_name or old.customer_name, resellers)
                if entry == old:
                    continue
            rows.append({"PartitionKey": tenant_id, **_row(entry)})
        ops = [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in rows]
        for start in range(0, len(ops), BATCH):
            self.table.submit_transaction(ops[start:start + BATCH])
        return len(rows)
