"""Export records in Table Storage (`Exports`, PK tenant, RK export id), ETag-guarded like file records."""

from __future__ import annotations

from typing import Any

from shared.adapters.repositories import GuardedTable, from_entity, to_entity
from shared.adapters.storage import Storage
from shared.core.exports import ExportRecord


def _encode(record: ExportRecord) -> dict[str, Any]:
    return to_entity(record, record.tenant_id, record.id, keys=("tenant_id", "id"))


def _decode(entity: dict[str, Any]) -> ExportRecord:
    return from_entity(ExportRecord, entity, tenant_id=entity["PartitionKey"], id=entity["RowKey"])


class ExportRepository(GuardedTable[ExportRecord]):
    def __init__(self, storage: Storage) -> None:
        super().__init__(storage.table("Exports"), _encode, _decode)

    def list_for(self, tenant_id: str, file_id: str) -> list[ExportRecord]:
        rows = self.table.query_entities("PartitionKey eq @pk and file_id eq @file",
                                         parameters={"pk": tenant_id, "file": file_id})
        return [_decode(e) for e in rows]
