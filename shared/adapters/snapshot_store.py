"""Invoice snapshots in storage: where their Parquet parts live, their manifest, and their status record.

A snapshot is Microsoft's lines of one invoice and type at one data version, fetched once and kept. Every file,
view, format and charges page is derived from it, so Microsoft is asked again only when its data changes.

Blob layout (stable: external tables read it; Hive-style, so Spark and Fabric see the keys as columns):

    {FILES_CONTAINER}/snapshots/tenant={tenant}/invoice={invoice}/type={type}/version={version}/
        part-00000-00.parquet …   one part per export blob (or run of v1 pages); a second file of a part only
                                  when Microsoft's fields change half way through it
        manifest.json             parts, row counts, exact column sums, data version, source, fetched at
        findings.csv, summary.json  charge validation, run once while the snapshot was made

The status record (Table `Snapshots`, PartitionKey the tenant, RowKey `{invoice}|{type}`) is ETag-guarded: two
workers that need the same snapshot at once cannot both ingest it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from pydantic import BaseModel

from shared.adapters.repositories import Conflict, GuardedTable, from_entity, to_entity, utcnow
from shared.adapters.storage import Storage

ROOT = "snapshots"
V1_VERSION = "v1"  # v1 pages carry no eTag; a closed legacy invoice does not change
MANIFEST = "manifest.json"
FINDINGS = "findings.csv"
SUMMARY = "summary.json"

__all__ = ["Conflict", "SnapshotStatus", "SnapshotRecord", "Snapshot", "SnapshotStore", "snapshot_prefix",
           "version_key"]


class SnapshotStatus(StrEnum):
    QUEUED = "Queued"  # the charges API queued an ingest; any worker may claim it
    INGESTING = "Ingesting"
    READY = "Ready"
    FAILED = "Failed"


class SnapshotRecord(BaseModel):
    """The state of an invoice's snapshot of one type. `snapshot_id` is the newest Ready snapshot (kept while a
    newer one is ingested); `wanted` is a newer eTag the poller saw, which the next ingest fetches."""

    tenant_id: str
    invoice_id: str
    invoice_type: str
    status: SnapshotStatus
    snapshot_id: str | None = None
    data_version: str | None = None
    wanted: str | None = None
    wanted_operation: str | None = None  # the poller's export of `wanted` (a Graph operation URL, no secret in it)
    lease_until: datetime | None = None
    started_at: datetime | None = None
    fetched_at: datetime | None = None
    rows: int | None = None
    attempts: int = 0
    error: str | None = None
    # an ingest fanned out per export blob (shared/app/ingest_fanout.py): its parts, and the export they read again
    # (the operation URL, no SAS in it) at the data version (eTag) the attempt started with
    parts_total: int | None = None
    fanout_operation: str | None = None
    fanout_version: str | None = None

    def fanned_out(self) -> bool:
        return self.status == SnapshotStatus.INGESTING and bool(self.parts_total)

    def ready(self) -> bool:
        return self.snapshot_id is not None

    def stale(self) -> bool:
        """Microsoft published a newer version than the one kept (the poller saw its eTag)."""
        return bool(self.wanted) and self.wanted != self.data_version

    def ingesting(self, now: datetime) -> bool:
        return self.status == SnapshotStatus.INGESTING and self.lease_until is not None and self.lease_until > now


@dataclass(frozen=True)
class Snapshot:
    """A Ready snapshot: its id (the blob prefix) and its manifest."""

    id: str
    manifest: dict[str, Any]

    @property
    def data_version(self) -> str | None:
        return self.manifest.get("dataVersion")

    @property
    def source(self) -> str:
        return self.manifest["source"]

    @property
    def invoice(self) -> dict[str, Any]:
        return self.manifest.get("invoice") or {}

    @property
    def files(self) -> list[dict[str, Any]]:
        """The Parquet files in line order: every part's files, part by part."""
        return [f for part in self.manifest["parts"] for f in part["files"]]


def version_key(data_version: str | None) -> str:
    """A data version as a path segment: readable where the eTag allows, unique by a short hash."""
    if not data_version:
        return V1_VERSION
    readable = re.sub(r"[^A-Za-z0-9._-]", "", data_version)[:40]
    return f"{readable}-{hashlib.sha256(data_version.encode()).hexdigest()[:12]}"


def invoice_prefix(tenant_id: str, invoice_id: str, invoice_type: str) -> str:
    """Where every snapshot (data version) of an invoice's lines of one type lives."""
    return f"{ROOT}/tenant={tenant_id.lower()}/invoice={invoice_id.upper()}/type={invoice_type}/"


def snapshot_prefix(tenant_id: str, invoice_id: str, invoice_type: str, data_version: str | None) -> str:
    return f"{invoice_prefix(tenant_id, invoice_id, invoice_type)}version={version_key(data_version)}"


def _row_key(invoice_id: str, invoice_type: str) -> str:
    return f"{invoice_id.upper()}|{invoice_type}"


def _encode(record: SnapshotRecord) -> dict[str, Any]:
    return to_entity(record, record.tenant_id.lower(), _row_key(record.invoice_id, record.invoice_type),
                     keys={"tenant_id"})


def _decode(entity: dict[str, Any]) -> SnapshotRecord:
    return from_entity(SnapshotRecord, entity, tenant_id=entity["PartitionKey"])


class SnapshotStore:
    """The Snapshots table and the snapshot blobs in the files container."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.records = GuardedTable(storage.table("Snapshots"), _encode, _decode)

    @property
    def container(self):
        return self.storage.files

    # ---- the record -------------------------------------------------------------------------------------------
    def get(self, tenant_id: str, invoice_id: str, invoice_type: str) -> tuple[SnapshotRecord, str] | None:
        return self.records.get(tenant_id.lower(), _row_key(invoice_id, invoice_type))

    def create(self, record: SnapshotRecord) -> str:
        return self.records.create(record)

    def replace(self, record: SnapshotRecord, etag: str) -> str:
        return self.records.replace(record, etag)

    def list(self, tenant_id: str) -> list[SnapshotRecord]:
        rows = self.records.table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id.lower()})
        return [_decode(e) for e in rows]

    # ---- the blobs --------------------------------------------------------------------------------------------
    def write_json(self, snapshot_id: str, name: str, data: Any) -> None:
        body = json.dumps(data, indent=1, sort_keys=True, default=str).encode()
        self.container.get_blob_client(f"{snapshot_id}/{name}").upload_blob(body, overwrite=True)

    def write_bytes(self, snapshot_id: str, name: str, data: bytes) -> None:
        self.container.get_blob_client(f"{snapshot_id}/{name}").upload_blob(data, overwrite=True)

    def read_bytes(self, snapshot_id: str, name: str) -> bytes | None:
        try:
            return self.container.get_blob_client(f"{snapshot_id}/{name}").download_blob().readall()
        except ResourceNotFoundError:
            return None

    def load(self, snapshot_id: str) -> Snapshot | None:
        """A snapshot by id, or None when its manifest is not there (never written, or deleted by retention)."""
        raw = self.read_bytes(snapshot_id, MANIFEST)
        return Snapshot(snapshot_id, json.loads(raw)) if raw is not None else None

    def snapshot_ids(self, tenant_id: str) -> set[str]:
        """Every snapshot of a tenant with a blob in storage (complete or not)."""
        prefix = f"{ROOT}/tenant={tenant_id.lower()}/"
        return {b.name.rsplit("/", 1)[0] for b in self.container.list_blobs(name_starts_with=prefix)}

    def delete(self, snapshot_id: str) -> int:
        """Delete a snapshot's blobs, manifest last (a crash half way leaves it findable for the next run)."""
        names = [b.name for b in self.container.list_blobs(name_starts_with=snapshot_id + "/")]
        names.sort(key=lambda n: n.endswith("/" + MANIFEST))
        for name in names:
            try:
                self.container.delete_blob(name)
            except ResourceNotFoundError:
                pass
        return len(names)


def new_record(tenant_id: str, invoice_id: str, invoice_type: str) -> SnapshotRecord:
    return SnapshotRecord(tenant_id=tenant_id.lower(), invoice_id=invoice_id.upper(), invoice_type=invoice_type,
                          status=SnapshotStatus.INGESTING, started_at=utcnow())
