"""Table Storage repositories: tenants and file records.

Every write that changes a file's status is guarded by the entity's ETag, so two deliveries of the same queue
message, or a regeneration racing a worker, cannot both win. Queries are parameterised; keys are validated by
the caller's models before they get here.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterator

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.models import FileRecord, Tenant
from shared.storage import Storage

TENANTS_PARTITION = "tenants"
JSON_FIELDS = ("totals", "csv_format", "unmapped")  # nested models, stored as JSON text


class Conflict(Exception):
    """The entity changed since it was read (ETag mismatch) or already exists."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _clean(entity: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey") and not k.startswith("odata")}


def _tenant(tenant_id: str, entity: dict[str, Any]) -> Tenant:
    data = _clean(entity)
    raw = data.pop("csv_format_json", None)
    if raw:
        data["csv_format"] = json.loads(raw)
    return Tenant.model_validate({"tenant_id": tenant_id, **data})


class TenantRepository:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Tenants")

    def upsert(self, tenant: Tenant) -> None:
        entity = {"PartitionKey": TENANTS_PARTITION, "RowKey": tenant.tenant_id,
                  **tenant.model_dump(mode="json", exclude={"tenant_id", "csv_format"}, exclude_none=True)}
        if tenant.csv_format is not None:
            entity["csv_format_json"] = tenant.csv_format.model_dump_json(by_alias=True)
        self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def get(self, tenant_id: str) -> Tenant | None:
        try:
            entity = self.table.get_entity(TENANTS_PARTITION, tenant_id)
        except ResourceNotFoundError:
            return None
        return _tenant(tenant_id, entity)

    def list(self) -> list[Tenant]:
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": TENANTS_PARTITION})
        return [_tenant(e["RowKey"], e) for e in rows]


def _record_to_entity(record: FileRecord) -> dict[str, Any]:
    data = record.model_dump(mode="json", exclude={"id", "tenant_id", *JSON_FIELDS}, exclude_none=True)
    for key in ("created_at", "started_at", "completed_at", "lease_until"):
        value = getattr(record, key)
        if value is not None:
            data[key] = value
    for key in JSON_FIELDS:
        value = getattr(record, key)
        if value is not None:
            data[f"{key}_json"] = value.model_dump_json(by_alias=True)
    return {"PartitionKey": record.tenant_id, "RowKey": record.id, **data}


def _entity_to_record(entity: dict[str, Any]) -> FileRecord:
    data = _clean(entity)
    for key in JSON_FIELDS:
        raw = data.pop(f"{key}_json", None)
        if raw:
            data[key] = json.loads(raw)
    return FileRecord.model_validate({"id": entity["RowKey"], "tenant_id": entity["PartitionKey"], **data})


class FileRepository:
    """File records (current version) and one history entity per finished version."""

    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Files")
        self.versions = storage.table("FileVersions")

    def create(self, record: FileRecord) -> str:
        """Insert a new record; raises Conflict if a record with this id exists. Returns the ETag."""
        try:
            meta = self.table.create_entity(_record_to_entity(record))
        except ResourceExistsError as exc:
            raise Conflict(record.id) from exc
        return meta["etag"]

    def get(self, tenant_id: str, file_id: str) -> tuple[FileRecord, str] | None:
        try:
            entity = self.table.get_entity(tenant_id, file_id)
        except ResourceNotFoundError:
            return None
        return _entity_to_record(entity), entity.metadata["etag"]

    def replace(self, record: FileRecord, etag: str) -> str:
        """Write the record only if nobody changed it since `etag` was read. Returns the new ETag."""
        try:
            meta = self.table.update_entity(_record_to_entity(record), mode=UpdateMode.REPLACE, etag=etag,
                                            match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise Conflict(record.id) from exc
        return meta["etag"]

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

from shared.models import AutomationSettings, InvoiceState  # noqa: E402  (kept with the classes that use them)

AUTOMATION_PARTITION = "automation"  # in the Tenants table, beside the tenant records (PartitionKey "tenants")
_INVOICE_JSON_FIELDS = ("file_types", "requested", "revisions", "retries", "pending")


class AutomationRepository:
    """Per-tenant automation settings: one entity per tenant in the Tenants table, partition "automation"."""

    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Tenants")

    def upsert(self, settings: AutomationSettings) -> None:
        data = settings.model_dump(mode="json", exclude={"tenant_id", "file_types"}, exclude_none=True)
        if settings.file_types is not None:
            data["file_types_json"] = json.dumps([t.value for t in settings.file_types])
        self.table.upsert_entity({"PartitionKey": AUTOMATION_PARTITION, "RowKey": settings.tenant_id, **data},
                                 mode=UpdateMode.REPLACE)

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
        data = _clean(entity)
        raw = data.pop("file_types_json", None)
        data["file_types"] = json.loads(raw) if raw else None
        return AutomationSettings.model_validate({"tenant_id": entity["RowKey"], **data})


def _invoice_to_entity(state: InvoiceState) -> dict[str, Any]:
    data = state.model_dump(mode="json", exclude={"tenant_id", "invoice_id", *_INVOICE_JSON_FIELDS},
                            exclude_none=True)
    for key in ("invoice_date", "discovered_at"):
        if getattr(state, key) is not None:
            data[key] = getattr(state, key)
    for key in _INVOICE_JSON_FIELDS:
        data[f"{key}_json"] = json.dumps(state.model_dump(mode="json", include={key})[key])
    return {"PartitionKey": state.tenant_id, "RowKey": state.invoice_id, **data}


def _entity_to_invoice(entity: dict[str, Any]) -> InvoiceState:
    data = _clean(entity)
    for key in _INVOICE_JSON_FIELDS:
        raw = data.pop(f"{key}_json", None)
        if raw:
            data[key] = json.loads(raw)
    return InvoiceState.model_validate({"tenant_id": entity["PartitionKey"], "invoice_id": entity["RowKey"],
                                        **data})


class InvoiceRepository:
    """Invoices the poller has seen (Invoices table, PK tenant, RK invoice id). Inserts are conditional and
    replaces ETag-guarded, so racing pollers cannot overwrite each other's decisions."""

    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Invoices")

    def create(self, state: InvoiceState) -> str:
        """Insert; raises Conflict when the invoice is already recorded. Returns the ETag."""
        try:
            return self.table.create_entity(_invoice_to_entity(state))["etag"]
        except ResourceExistsError as exc:
            raise Conflict(state.invoice_id) from exc

    def get(self, tenant_id: str, invoice_id: str) -> tuple[InvoiceState, str] | None:
        try:
            entity = self.table.get_entity(tenant_id, invoice_id)
        except ResourceNotFoundError:
            return None
        return _entity_to_invoice(entity), entity.metadata["etag"]

    def replace(self, state: InvoiceState, etag: str) -> str:
        try:
            meta = self.table.update_entity(_invoice_to_entity(state), mode=UpdateMode.REPLACE, etag=etag,
                                            match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise Conflict(state.invoice_id) from exc
        return meta["etag"]

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
