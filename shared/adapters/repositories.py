"""Table Storage repositories: tenants, file records and their versions, automation settings, invoices seen.

Every write that changes a file's status is guarded by the entity's ETag, so two deliveries of the same queue
message, or a regeneration racing a worker, cannot both win. Queries are parameterised; keys are validated by
the caller's models before they get here.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from pydantic import BaseModel

from shared.core.models import FileRecord, Tenant
from shared.adapters.storage import Storage

TENANTS_PARTITION = "tenants"
JSON_FIELDS = ("totals", "csv_format", "unmapped")  # nested models, stored as JSON text


M = TypeVar("M", bound=BaseModel)


class Conflict(Exception):
    """The entity changed since it was read (ETag mismatch) or already exists."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _clean(entity: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey") and not k.startswith("odata")}


def to_entity(model: BaseModel, partition: str, row: str, *, keys: Iterable[str] = (),
              json_fields: Iterable[str] = ()) -> dict[str, Any]:
    """A model as a Table entity: scalars as properties (datetimes typed), nested values as JSON text."""
    json_fields = tuple(json_fields)
    data = model.model_dump(mode="json", exclude={*keys, *json_fields}, exclude_none=True)
    for name, value in model:
        if isinstance(value, datetime):
            data[name] = value
    dumped = model.model_dump(mode="json", include=set(json_fields))
    for name in json_fields:
        if dumped.get(name) is not None:
            data[f"{name}_json"] = json.dumps(dumped[name])
    return {"PartitionKey": partition, "RowKey": row, **data}


def from_entity(cls: type[M], entity: dict[str, Any], *, json_fields: Iterable[str] = (), **keys: Any) -> M:
    data = _clean(entity)
    for name in json_fields:
        raw = data.pop(f"{name}_json", None)
        if raw:
            data[name] = json.loads(raw)
    return cls.model_validate({**data, **keys})


class GuardedTable(Generic[M]):
    """What every status entity needs: a conditional insert, a read with its ETag, an ETag-guarded replace."""

    def __init__(self, table: TableClient, encode: Callable[[M], dict[str, Any]],
                 decode: Callable[[dict[str, Any]], M]) -> None:
        self.table, self.encode, self.decode = table, encode, decode

    def create(self, item: M) -> str:
        """Insert; raises Conflict if the entity exists. Returns the ETag."""
        entity = self.encode(item)
        try:
            return self.table.create_entity(entity)["etag"]
        except ResourceExistsError as exc:
            raise Conflict(entity["RowKey"]) from exc

    def get(self, partition: str, row: str) -> tuple[M, str] | None:
        try:
            entity = self.table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None
        return self.decode(entity), entity.metadata["etag"]

    def replace(self, item: M, etag: str) -> str:
        """Write only if nobody changed the entity since `etag` was read. Returns the new ETag."""
        entity = self.encode(item)
        try:
            meta = self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                            match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise Conflict(entity["RowKey"]) from exc
        return meta["etag"]


def _tenant(entity: dict[str, Any]) -> Tenant:
    return from_entity(Tenant, entity, json_fields=("csv_format",), tenant_id=entity["RowKey"])


class TenantRepository:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Tenants")

    def upsert(self, tenant: Tenant) -> None:
        entity = to_entity(tenant, TENANTS_PARTITION, tenant.tenant_id, keys={"tenant_id"},
                           json_fields=("csv_format",))
        self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def get(self, tenant_id: str) -> Tenant | None:
        try:
            entity = self.table.get_entity(TENANTS_PARTITION, tenant_id)
        except ResourceNotFoundError:
            return None
        return _tenant(entity)

    def list(self) -> list[Tenant]:
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": TENANTS_PARTITION})
        return [_tenant(e) for e in rows]


def _record_to_entity(record: FileRecord) -> dict[str, Any]:
    return to_entity(record, record.tenant_id, record.id, keys={"id", "tenant_id"}, json_fields=JSON_FIELDS)


def _entity_to_record(entity: dict[str, Any]) -> FileRecord:
    return from_entity(FileRecord, entity, json_fields=JSON_FIELDS, id=entity["RowKey"],
                       tenant_id=entity["PartitionKey"])


class FileRepository:
    """File records (current version) and one history entity per finished version."""

    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Files")
        self.versions = storage.table("FileVersions")
        guarded = GuardedTable(self.table, _record_to_entity, _entity_to_record)
        self.create, self.get, self.replace = guarded.create, guarded.get, guarded.replace

    def list(self, tenant_id: str, **filters: str | None) -> Iterator[FileRecord]:
        clauses, params = ["PartitionKey eq @pk"], {"pk": tenant_id}
        for i, (field, value) in enumerate(sorted(filters.items())):
            if value is not None:
                clauses.append(f"{field} eq @p{i}")
                params[f"p{i}"] = value
        for entity in self.table.query_entities(" and ".join(clauses), parameters=params):
            yield _entity_to_record(entity)

    # ---- versions --------------------------------------------------------------------------------------------
    @staticmethod
    def _version_key(file_id: str, version: int) -> str:
        return f"{file_id}-v{version:05d}"

    def record_version(self, record: FileRecord) -> None:
        """Keep what this version was (idempotent: the same version writes the same entity)."""
        entity = _record_to_entity(record)
        entity["RowKey"] = self._version_key(record.id, record.version)
        entity["file_id"] = record.id
        self.versions.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def list_versions(self, tenant_id: str, file_id: str) -> list[FileRecord]:
        rows = self.versions.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": tenant_id, "lo": f"{file_id}-v", "hi": f"{file_id}-w"},
        )
        out = []
        for entity in rows:
            entity = dict(entity, RowKey=entity["file_id"])
            out.append(_entity_to_record(entity))
        return sorted(out, key=lambda r: r.version)


# ---- monthly automation ---------------------------------------------------------------------------------------

from shared.core.models import AutomationSettings, InvoiceState  # noqa: E402  (kept with the classes that use them)

AUTOMATION_PARTITION = "automation"  # in the Tenants table, beside the tenant records (PartitionKey "tenants")
_INVOICE_JSON_FIELDS = ("file_types", "requested", "revisions", "retries", "pending")


class AutomationRepository:
    """Per-tenant automation settings: one entity per tenant in the Tenants table, partition "automation"."""

    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Tenants")

    def upsert(self, settings: AutomationSettings) -> None:
        self.table.upsert_entity(to_entity(settings, AUTOMATION_PARTITION, settings.tenant_id, keys={"tenant_id"},
                                           json_fields=("file_types",)), mode=UpdateMode.REPLACE)

    def get(self, tenant_id: str) -> AutomationSettings | None:
        try:
            entity = self.table.get_entity(AUTOMATION_PARTITION, tenant_id)
        except ResourceNotFoundError:
            return None
        return self._settings(entity)

    def list_enabled(self) -> list[AutomationSettings]:
        rows = self.table.query_entities("PartitionKey eq @pk and enabled eq true",
                                         parameters={"pk": AUTOMATION_PARTITION})
        return [self._settings(e) for e in rows]

    @staticmethod
    def _settings(entity: dict[str, Any]) -> AutomationSettings:
        return from_entity(AutomationSettings, entity, json_fields=("file_types",), tenant_id=entity["RowKey"])


def _invoice_to_entity(state: InvoiceState) -> dict[str, Any]:
    return to_entity(state, state.tenant_id, state.invoice_id, keys={"tenant_id", "invoice_id"},
                     json_fields=_INVOICE_JSON_FIELDS)


def _entity_to_invoice(entity: dict[str, Any]) -> InvoiceState:
    return from_entity(InvoiceState, entity, json_fields=_INVOICE_JSON_FIELDS, tenant_id=entity["PartitionKey"],
                       invoice_id=entity["RowKey"])


class InvoiceRepository:
    """Invoices the poller has seen (Invoices table, PK tenant, RK invoice id). Inserts are conditional and
    replaces ETag-guarded, so racing pollers cannot overwrite each other's decisions."""

    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Invoices")
        guarded = GuardedTable(self.table, _invoice_to_entity, _entity_to_invoice)
        self.create, self.get, self.replace = guarded.create, guarded.get, guarded.replace

    def list(self, tenant_id: str) -> list[InvoiceState]:
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id})
        return [_entity_to_invoice(e) for e in rows]


class VersionRepository:
    """The FileVersions table seen from retention: every finished version of a tenant's files, and deletion."""

    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("FileVersions")

    def list(self, tenant_id: str) -> list[FileRecord]:
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id})
        return [_entity_to_record(dict(e, RowKey=e["file_id"])) for e in rows if "file_id" in e]

    def delete(self, tenant_id: str, file_id: str, version: int) -> None:
        """Idempotent: deleting a version that is already gone is fine."""
        self.table.delete_entity(tenant_id, FileRepository._version_key(file_id, version))
