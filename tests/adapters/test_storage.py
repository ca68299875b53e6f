"""Blob staging, the table repositories and the download link, over real connections to Azurite."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError

from shared.app.context import AppContext
from shared.core.models import FileRecord, FileStatus
from shared.adapters.repositories import Conflict
from shared.adapters.file_writers import BlockBlobSink


def test_blob_appears_only_at_commit_and_a_discarded_segment_leaves_no_trace(ctx: AppContext) -> None:
    blob = ctx.storage.files.get_blob_client("t/one.csv")
    sink = BlockBlobSink(blob, block_size=64 * 1024)
    sink.begin_segment(0)
    sink.write(b"a" * 100_000)  # crosses a block boundary
    sink.end_segment()
    sink.begin_segment(1)
    sink.write(b"garbage")
    sink.discard_segment()  # e.g. a truncated export blob, read again below
    sink.begin_segment(1)
    sink.write(b"b\n")
    sink.end_segment()
    with pytest.raises(ResourceNotFoundError):
        blob.get_blob_properties()
    sink.commit(b"h\n", "text/csv", {"rows": "2"})
    assert blob.download_blob().readall() == b"h\n" + b"a" * 100_000 + b"b\n"
    assert blob.get_blob_properties().metadata == {"rows": "2"}


def test_recommitting_the_same_version_rewrites_the_same_blob(ctx: AppContext) -> None:
    blob = ctx.storage.files.get_blob_client("t/two.csv")
    for _ in range(2):  # a redelivered message generates the same version again
        sink = BlockBlobSink(blob, block_size=1024)
        sink.begin_segment(0)
        sink.write(b"x,y\n")
        sink.end_segment()
        sink.commit(b"h\n", "text/csv", {})
    assert blob.download_blob().readall() == b"h\nx,y\n"


def _record(**kw) -> FileRecord:
    base = dict(id="f1", tenant_id="t1", invoice_type="onetime", invoice_id="G1", status=FileStatus.QUEUED,
                created_at=datetime.now(timezone.utc))
    return FileRecord(**{**base, **kw})


def test_file_record_updates_are_etag_guarded(ctx: AppContext) -> None:
    etag = ctx.files.create(_record())
    with pytest.raises(Conflict):
        ctx.files.create(_record())
    record, read_etag = ctx.files.get("t1", "f1")
    assert read_etag == etag
    record.status = FileStatus.PROCESSING
    new_etag = ctx.files.replace(record, etag)
    record.status = FileStatus.AVAILABLE
    with pytest.raises(Conflict):
        ctx.files.replace(record, etag)  # stale: somebody else wrote in between
    ctx.files.replace(record, new_etag)
    assert ctx.files.get("t1", "f1")[0].status == FileStatus.AVAILABLE


def test_list_filters_are_parameterised_not_injected(ctx: AppContext) -> None:
    ctx.files.create(_record())
    assert [r.id for r in ctx.files.list("t1", status="Queued")] == ["f1"]
    assert list(ctx.files.list("t1", status="Queued' or PartitionKey ne '")) == []


def _upload(ctx: AppContext, name: str, data: bytes = b"col\n1\n") -> None:
    ctx.storage.files.get_blob_client(name).upload_blob(data, overwrite=True)


def test_download_link_reads_one_blob_only_and_cannot_write(ctx: AppContext) -> None:
    _upload(ctx, "t/a.csv", b"secret,a\n")
    _upload(ctx, "t/b.csv", b"secret,b\n")
    url, expiry = ctx.links.url_for("t/a.csv", "a file.csv")
    assert expiry > datetime.now(timezone.utc)
    got = requests.get(url, timeout=10)
    assert got.status_code == 200 and got.content == b"secret,a\n"
    assert got.headers["Content-Disposition"].startswith('attachment; filename="a file.csv"')
    other = url.replace("/t/a.csv?", "/t/b.csv?")
    assert requests.get(other, timeout=10).status_code == 403
    write = requests.put(url, data=b"evil", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10)
    assert write.status_code == 403
    assert ctx.storage.files.get_blob_client("t/a.csv").download_blob().readall() == b"secret,a\n"


def test_download_link_expires(ctx: AppContext) -> None:
    _upload(ctx, "t/old.csv")
    long_ago = datetime.now(timezone.utc) - timedelta(hours=2)
    url, expiry = ctx.links.url_for("t/old.csv", "old.csv", minutes=15, now=long_ago)
    assert expiry < datetime.now(timezone.utc)
    assert requests.get(url, timeout=10).status_code == 403


# ---- through_outage: settling writes wait for storage to come back ------------------------------------------------

def test_a_settling_write_waits_through_an_outage_and_lands(monkeypatch) -> None:
    from azure.core.exceptions import ServiceRequestError

    from shared.adapters import storage as storage_module

    pauses: list[float] = []
    monkeypatch.setattr(storage_module.time, "sleep", pauses.append)
    calls = iter([ServiceRequestError("refused"), ServiceRequestError("refused"), "etag-3"])

    def write() -> str:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert storage_module.through_outage(write, "a test write") == "etag-3"
    assert pauses == [1.0, 2.0]  # growing pauses between the tries


def test_a_settling_write_gives_up_after_its_patience(monkeypatch) -> None:
    from azure.core.exceptions import ServiceRequestError

    from shared.adapters import storage as storage_module

    clock = [0.0]
    monkeypatch.setattr(storage_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(storage_module.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    tries = []

    def write() -> None:
        tries.append(clock[0])
        raise ServiceRequestError("refused")

    with pytest.raises(ServiceRequestError):
        storage_module.through_outage(write, "a test write", patience=20)
    assert clock[0] <= 20 and tries == [0.0, 1.0, 3.0, 7.0, 15.0]


def test_an_answer_from_storage_is_not_waited_for(monkeypatch) -> None:
    from azure.core.exceptions import ResourceModifiedError

    from shared.adapters import storage as storage_module

    monkeypatch.setattr(storage_module.time, "sleep", lambda s: pytest.fail("waited for a conflict"))

    def write() -> None:
        raise ResourceModifiedError("412")

    with pytest.raises(ResourceModifiedError):
        storage_module.through_outage(write, "a test write")
