"""Retention: superseded file versions are deleted RETENTION_DAYS after a newer version replaced them.

A version's age counts from when it was superseded (the next version's creation), not from when it was made:
a year-old version replaced yesterday stays downloadable for the whole retention period. The current version of
a file is never deleted, nor its approved version (what resellers and customers see), nor the newest
Available version while a newer one is not Available itself (Queued,
Processing, Failed, or held as NeedsReview), nor anything of a file whose current record cannot be read. A
version's blobs (its folder: every attempt's file and whatever was stored beside it) go first, then its record; a
crash in between leaves a record whose blobs are gone, and the next run deletes it.

Orphans: an attempt that lost (a lapsed lease, a crash after its commit) may leave blobs no record names. Once
they are older than ORPHAN_GRACE (no attempt runs that long), the run deletes every blob of a kept file whose
folder is not the folder of a version the file record or its history names.

Snapshots: an invoice snapshot (Microsoft's lines as Parquet) is deleted once no kept file version, current or
older, was made from it and it is not the newest Ready snapshot of its invoice and type.

Each tenant, and each file, is its own step: a failure is logged and counted, and the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from azure.core.exceptions import ResourceNotFoundError

from shared.app.context import AppContext
from shared.core.models import FileRecord, FileStatus
from shared.adapters.repositories import VersionRepository, utcnow
from shared.adapters.snapshot_store import invoice_prefix

log = logging.getLogger(__name__)


ORPHAN_GRACE = timedelta(days=1)


@dataclass
class RetentionRun:
    deleted: list[tuple[str, int]] = field(default_factory=list)  # (file id, version)
    blobs_deleted: int = 0
    orphans_deleted: int = 0
    failures: int = 0  # tenants or files whose step failed (logged); the others went on
    snapshots_deleted: list[str] = field(default_factory=list)


def superseded_at(version: FileRecord, later: Iterable[FileRecord]) -> datetime | None:
    """When the first newer version was created (None: nothing newer, it is the current one)."""
    times = [v.created_at for v in later if v.version > version.version]
    return min(times) if times else None


def expired_versions(versions: Iterable[FileRecord], current: FileRecord, cutoff: datetime) -> list[FileRecord]:
    """The versions retention may delete: older than the current one and superseded before `cutoff`."""
    versions = list(versions)
    everything = versions + [current]
    available = [v.version for v in everything if v.status == FileStatus.AVAILABLE and v.version <= current.version]
    newest_available = max(available, default=None)
    out = []
    for v in versions:
        if v.version >= current.version or (v.blob_name and v.blob_name == current.blob_name):
            continue
        if v.version in (newest_available, current.approved_version):  # the last good file; what others see
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
        try:
            purge_tenant(ctx, tenant.tenant_id, cutoff, run)
            sweep_orphans(ctx, tenant.tenant_id, now - ORPHAN_GRACE, run)
            purge_snapshots(ctx, tenant.tenant_id, run, now)  # after the versions: theirs may now be unreferenced
        except Exception:
            run.failures += 1
            log.exception("retention failed for tenant %s", tenant.tenant_id, extra={"tenant": tenant.tenant_id})
    log.info("retention removed %d versions (%d blobs), %d orphaned blobs, %d snapshots; %d failures",
             len(run.deleted), run.blobs_deleted, run.orphans_deleted, len(run.snapshots_deleted), run.failures)
    return run


def purge_tenant(ctx: AppContext, tenant_id: str, cutoff: datetime, run: RetentionRun) -> None:
    repo = VersionRepository(ctx.storage)
    by_file: dict[str, list[FileRecord]] = {}
    for version in repo.list(tenant_id):
        by_file.setdefault(version.id, []).append(version)
    for file_id, versions in by_file.items():
        try:
            purge_file(ctx, repo, tenant_id, file_id, versions, cutoff, run)
        except Exception:
            run.failures += 1
            log.exception("retention failed for file %s", file_id, extra={"tenant": tenant_id, "file": file_id})


def purge_file(ctx: AppContext, repo: VersionRepository, tenant_id: str, file_id: str, versions: list[FileRecord],
               cutoff: datetime, run: RetentionRun) -> None:
    loaded = ctx.files.get(tenant_id, file_id)
    if loaded is None:
        return  # without the current record nothing proves which version is current: keep everything
    for version in expired_versions(versions, loaded[0], cutoff):
        run.blobs_deleted += delete_blobs(ctx, version)
        repo.delete(tenant_id, file_id, version.version)
        run.deleted.append((file_id, version.version))
        log.info("retention deleted version %d of %s", version.version, file_id,
                 extra={"tenant": tenant_id, "file": file_id, "invoice": version.invoice_id})


def sweep_orphans(ctx: AppContext, tenant_id: str, older_than: datetime, run: RetentionRun) -> None:
    """Delete blobs of the tenant's files that no kept version names (attempts that lost), once old enough."""
    kept: dict[str, set[str]] = {}
    for record in ctx.files.list(tenant_id):
        kept.setdefault(record.id, set()).add(_folder(record.blob_name))
    for version in VersionRepository(ctx.storage).list(tenant_id):
        kept.setdefault(version.id, set()).add(_folder(version.blob_name))
    container = ctx.storage.files
    for blob in container.list_blobs(name_starts_with=f"{tenant_id}/"):
        parts = blob.name.split("/")
        if len(parts) < 4 or parts[2] not in kept or blob.last_modified is None or blob.last_modified >= older_than:
            continue  # not a file's blob, a file without a record (kept whole), or possibly a running attempt's
        if _folder(blob.name) in kept[parts[2]]:
            continue
        try:
            container.delete_blob(blob.name, delete_snapshots="include")
            run.orphans_deleted += 1
            log.info("retention deleted orphaned blob %s", blob.name, extra={"tenant": tenant_id, "file": parts[2]})
        except ResourceNotFoundError:
            pass


def _folder(blob_name: str | None) -> str:
    return blob_name.rsplit("/", 1)[0] + "/" if blob_name else ""


def purge_snapshots(ctx: AppContext, tenant_id: str, run: RetentionRun, now: datetime | None = None) -> None:
    """Delete the invoice snapshots that nothing refers to any more: no kept file version (current or older)
    was made from them, and none is the newest Ready snapshot of its invoice and type. Nothing of an invoice and
    type whose ingest is under way is touched (its new parts have no reference yet)."""
    now = now or utcnow()
    keep = {v.snapshot_id for v in VersionRepository(ctx.storage).list(tenant_id)}
    keep |= {f.snapshot_id for f in ctx.files.list(tenant_id)}
    busy: set[str] = set()
    ingesting: set[tuple[str, str]] = set()
    for record in ctx.snapshots.list(tenant_id):
        keep.add(record.snapshot_id)
        if record.lease_until is not None and record.lease_until > now or record.status == "Ingesting":
            busy.add(invoice_prefix(tenant_id, record.invoice_id, record.invoice_type))
            ingesting.add((record.invoice_id.upper(), record.invoice_type))
    ctx.file_parts.delete_ingest_runs(tenant_id, ingesting)  # settled ingest fan-outs' part rows
    for snapshot_id in sorted(ctx.snapshots.snapshot_ids(tenant_id) - keep):
        if any(snapshot_id.startswith(prefix) for prefix in busy):
            continue
        run.blobs_deleted += ctx.snapshots.delete(snapshot_id)
        run.snapshots_deleted.append(snapshot_id)
        log.info("retention deleted snapshot %s", snapshot_id, extra={"tenant": tenant_id})


def delete_blobs(ctx: AppContext, version: FileRecord) -> int:
    """Delete every blob in the version's folder (every attempt's). A blob the version's row names elsewhere is
    not the version's own (older rows of a Failed version named their predecessor's file): it stays."""
    container = ctx.storage.files
    names = {b.name for b in container.list_blobs(name_starts_with=version_folder(version))}
    deleted = 0
    for name in sorted(names):
        try:
            container.delete_blob(name, delete_snapshots="include")
            deleted += 1
        except ResourceNotFoundError:
            pass  # already gone (a crashed earlier run)
    ctx.file_parts.delete_runs(version.tenant_id, version.id, version.version)  # a fanned-out version's part rows
    return deleted
