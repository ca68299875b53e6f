"""Retention: superseded file versions are deleted RETENTION_DAYS after a newer version replaced them.

A version's age counts from when it was superseded (the next version's creation), not from when it was made:
a year-old version replaced yesterday stays downloadable for the whole retention period. The current version of
a file is never deleted, nor anything of a file whose current record cannot be read. A version's blobs (the file
and whatever the worker stored beside it in the version's folder) go first, then its record; a crash in between
leaves a record whose blobs are gone, and the next run deletes it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from azure.core.exceptions import ResourceNotFoundError

from shared.app.context import AppContext
from shared.core.models import FileRecord
from shared.adapters.repositories import VersionRepository, utcnow
from shared.adapters.snapshot_store import invoice_prefix

log = logging.getLogger(__name__)


@dataclass
class RetentionRun:
    deleted: list[tuple[str, int]] = field(default_factory=list)  # (file id, version)
    blobs_deleted: int = 0
    snapshots_deleted: list[str] = field(default_factory=list)


def superseded_at(version: FileRecord, later: Iterable[FileRecord]) -> datetime | None:
    """When the first newer version was created (None: nothing newer, it is the current one)."""
    times = [v.created_at for v in later if v.version > version.version]
    return min(times) if times else None


def expired_versions(versions: Iterable[FileRecord], current: FileRecord, cutoff: datetime) -> list[FileRecord]:
    """The versions retention may delete: older than the current one and superseded before `cutoff`."""
    versions = list(versions)
    everything = versions + [current]
    out = []
    for v in versions:
        if v.version >= current.version or (v.blob_name and v.blob_name == current.blob_name):
            continue
        replaced = superseded_at(v, everything)
        if replaced is not None and replaced < cutoff:
            out.append(v)
    return out


def version_folder(version: FileRecord) -> str:
    """The blob folder of one version (shared/app/generation.py names blobs `{tenant}/{invoice}/{file}/vNNNN/…`)."""
    return f"{version.tenant_id}/{version.invoice_id}/{version.id}/v{version.version:04d}/"


def purge(ctx: AppContext, now: datetime | None = None) -> RetentionRun:
    """One retention run over every tenant."""
    now = now or utcnow()
    cutoff = now - timedelta(days=ctx.settings.retention_days)
    run = RetentionRun()
    for tenant in ctx.tenants.list():
        purge_tenant(ctx, tenant.tenant_id, cutoff, run)
    log.info("retention removed %d versions (%d blobs)", len(run.deleted), run.blobs_deleted)
    return run


def purge_tenant(ctx: AppContext, tenant_id: str, cutoff: datetime, run: RetentionRun) -> None:
    repo = VersionRepository(ctx.storage)
    by_file: dict[str, list[FileRecord]] = {}
    for version in repo.list(tenant_id):
        by_file.setdefault(version.id, []).append(version)
    for file_id, versions in by_file.items():
        loaded = ctx.files.get(tenant_id, file_id)
        if loaded is None:
            continue  # without the current record nothing proves which version is current: keep everything
        for version in expired_versions(versions, loaded[0], cutoff):
            run.blobs_deleted += delete_blobs(ctx, version)
            repo.delete(tenant_id, file_id, version.version)
            run.deleted.append((file_id, version.version))
            log.info("retention deleted version %d of %s", version.version, file_id,
                     extra={"tenant": tenant_id, "file": file_id, "invoice": version.invoice_id})
    purge_snapshots(ctx, tenant_id, run)


def purge_snapshots(ctx: AppContext, tenant_id: str, run: RetentionRun, now: datetime | None = None) -> None:
    """Delete the invoice snapshots that nothing refers to any more: no kept file version (current or older)
    was made from them, and none is the newest Ready snapshot of its invoice and type. Nothing of an invoice and
    type whose ingest is under way is touched (its new parts have no reference yet)."""
    now = now or utcnow()
    keep = {v.snapshot_id for v in VersionRepository(ctx.storage).list(tenant_id)}
    keep |= {f.snapshot_id for f in ctx.files.list(tenant_id)}
    busy: set[str] = set()
    for record in ctx.snapshots.list(tenant_id):
        keep.add(record.snapshot_id)
        if record.lease_until is not None and record.lease_until > now or record.status == "Ingesting":
            busy.add(invoice_prefix(tenant_id, record.invoice_id, record.invoice_type))
    for snapshot_id in sorted(ctx.snapshots.snapshot_ids(tenant_id) - keep):
        if any(snapshot_id.startswith(prefix) for prefix in busy):
            continue
        run.blobs_deleted += ctx.snapshots.delete(snapshot_id)
        run.snapshots_deleted.append(snapshot_id)
        log.info("retention deleted snapshot %s", snapshot_id, extra={"tenant": tenant_id})


def delete_blobs(ctx: AppContext, version: FileRecord) -> int:
    """Delete every blob in the version's folder (and its recorded blob, wherever it is). Returns how many."""
    container = ctx.storage.files
    names = {b.name for b in container.list_blobs(name_starts_with=version_folder(version))}
    if version.blob_name:
        names.add(version.blob_name)
    deleted = 0
    for name in sorted(names):
        try:
            container.delete_blob(name, delete_snapshots="include")
            deleted += 1
        except ResourceNotFoundError:
            pass  # already gone (a crashed earlier run)
    return deleted
