"""Crash injection for the recovery tests: a write point of the app is made to "kill the process" once.

A kill is stood for by `Kill`, a BaseException: no `except Exception` handler of the app runs after it (the worker's
error bookkeeping, the poller's isolation), only `finally` blocks and context managers, which here stop the
attempt's own threads the way a dying process stops them. By default the write lands first and the kill follows
(the harsher case: the effect is there, nothing after it ran); `after=False` kills before the write.

Write points are wrapped where the app meets storage: the Azure SDK's blob and queue clients and the file
repository's methods, so the tests name behaviours (a block staged, a commit, an enqueue, a record write), not the
app's internals, and survive a redesign of the code around them.
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobClient
from azure.storage.queue import QueueClient

from shared.app import downloads, file_requests, versions
from shared.app.downloads import Requester
from shared.core.access import Caller
from shared.app.context import AppContext
from shared.app.generation import Worker
from shared.core.models import SETTLED_STATUSES, FileRecord, FileStatus


class Kill(BaseException):
    """The process dies here."""


@dataclass
class Crasher:
    """Arms one kill at the `nth` call of a write that `match`es; `fired` tells whether it happened."""

    monkeypatch: pytest.MonkeyPatch
    armed: bool = False
    fired: str | None = None

    def wrap(self, owner: Any, attribute: str, name: str, match: Callable[..., bool] = lambda *a, **k: True,
             nth: int = 1, after: bool = True) -> None:
        original = getattr(owner, attribute)
        calls = 0

        def write(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            if not self.armed or not match(*args, **kwargs):
                return original(*args, **kwargs)
            calls += 1
            if calls != nth:
                return original(*args, **kwargs)
            self.armed, self.fired = False, name
            if after:
                original(*args, **kwargs)
            raise Kill(name)

        self.monkeypatch.setattr(owner, attribute, write)


def blob_named(suffix: str) -> Callable[..., bool]:
    return lambda blob, *a, **k: blob.blob_name.endswith(suffix)


def record_in(*statuses: FileStatus) -> Callable[..., bool]:
    return lambda record, *a, **k: record.status in statuses


# Every write of a generation (and so of a regeneration's worker). The test file's CSV is three segments of one
# block each; the header block is staged last, at the commit.
WORKER_POINTS: dict[str, dict[str, Any]] = {
    "record: Processing claim": dict(owner="files", attribute="replace", match=record_in(FileStatus.PROCESSING)),
    "record: lease renewal": dict(owner="files", attribute="replace", match=record_in(FileStatus.PROCESSING),
                                  nth=2),
    **{f"block stage {n}": dict(owner=BlobClient, attribute="stage_block", nth=n) for n in (1, 2, 3, 4)},
    "snapshot upload": dict(owner=BlobClient, attribute="upload_blob", match=blob_named("snapshot.json")),
    "findings upload": dict(owner=BlobClient, attribute="upload_blob", match=blob_named("findings.csv")),
    "summary upload": dict(owner=BlobClient, attribute="upload_blob", match=blob_named("summary.json")),
    "commit": dict(owner=BlobClient, attribute="commit_block_list"),
    "record: Available": dict(owner="files", attribute="replace", match=record_in(*SETTLED_STATUSES)),
    "version write": dict(owner="files", attribute="record_version"),
}

# The writes of a request or a regeneration itself (the HTTP side): the enqueue is killed before the message leaves.
REQUEST_POINTS: dict[str, dict[str, Any]] = {
    "regenerate: history write": dict(owner="files", attribute="record_version"),
    "regenerate: record write": dict(owner="files", attribute="replace", match=record_in(FileStatus.QUEUED)),
    "regenerate: enqueue": dict(owner=QueueClient, attribute="send_message", after=False),
}


def arm(crasher: Crasher, ctx: AppContext, point: dict[str, Any], name: str) -> None:
    spec = dict(point)
    owner = ctx.files if spec.pop("owner") == "files" else point["owner"]
    crasher.wrap(owner, spec.pop("attribute"), name, **spec)
    crasher.armed = True


def run_host(ctx: AppContext, tenant: str, file_id: str, seconds: float = 60) -> FileRecord:
    """What the platform does until the file settles: the queue delivers (a message whose handler died comes back
    after its visibility timeout), a client polls the file's status. Fails if the file stays unsettled."""
    queue, deadline = ctx.storage.queue(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        record, _ = file_requests.get_file(ctx, tenant, file_id)
        if record.status in SETTLED_STATUSES and not list(queue.peek_messages()):
            return record
        for msg in queue.receive_messages(visibility_timeout=1, max_messages=32):
            try:
                Worker(ctx).handle(msg.content, msg.dequeue_count)
            except BaseException:  # noqa: BLE001  (a kill or a failure: the message comes back)
                if msg.dequeue_count >= ctx.settings.max_dequeue_count:
                    Worker(ctx).handle_poison(msg.content)
                    queue.delete_message(msg)
                continue
            queue.delete_message(msg)
        time.sleep(0.1)
    record, _ = file_requests.get_file(ctx, tenant, file_id)
    raise AssertionError(f"file stuck: {record.status} v{record.version}, error {record.error!r}")


def deliver_until(ctx: AppContext, done: Callable[[], bool], seconds: float = 30, what: str = "the work") -> None:
    """What the platform does, one message at a time: a message whose handler died (`Kill`) comes back after its
    visibility timeout (a second), until `done()` holds once the queue is empty."""
    queue, worker = ctx.storage.queue(), Worker(ctx)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = list(queue.receive_messages(visibility_timeout=1, max_messages=1))
        if not batch:
            if done():
                return
            time.sleep(0.1)
            continue
        try:
            worker.handle(batch[0].content, batch[0].dequeue_count)
        except Kill:
            continue
        queue.delete_message(batch[0])
    raise AssertionError(f"{what} was not finished in {seconds:.0f} s")


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


FILE_TYPE = "dailyratedusage"  # three export blobs (segments) of the simulator's invoice, revisable


def lines(rows: Iterable[dict[str, str]]) -> Counter:
    """Daily usage lines as a multiset of what identifies and prices each (amounts exact)."""
    return Counter((r["EntitlementId"], r["UsageDate"], r["MeterId"], r["ResourceURI"], Decimal(r["Quantity"]),
                    Decimal(r["BillingPreTaxTotal"])) for r in rows)


def assert_exact(rows: list[dict[str, str]], sim: Any, invoice: str) -> None:
    """Line by line what the simulator's invoice holds now."""
    assert lines(rows) == lines(sim.iter_rows(invoice, FILE_TYPE)) and len(rows) == sim.expected(invoice,
                                                                                                    FILE_TYPE).rows


def listed_versions(ctx: AppContext, tenant: str, file_id: str) -> list[dict]:
    """The file's versions as the API lists them."""
    return versions.list_versions(ctx, file_requests.get_file(ctx, tenant, file_id)[0])


def version_url(ctx: AppContext, tenant: str, file_id: str, version: int) -> str:
    """A download link of one kept version, as the API issues it (audited)."""
    record = file_requests.get_file(ctx, tenant, file_id)[0]
    return downloads.version_link(ctx, record, version, Requester(Caller(object_id="test", tenant_id=tenant))).url


def assert_versions_whole(ctx: AppContext, sim: Any, tenant: str, file_id: str, invoice: str,
                          count: int) -> list[dict]:
    """Every version listed, each downloadable and exact."""
    listed = listed_versions(ctx, tenant, file_id)
    assert [v["version"] for v in listed] == list(range(1, count + 1))
    for v in listed:
        assert v["status"] == "Available" and v["downloadable"], v
        answer = requests.get(version_url(ctx, tenant, file_id, v["version"]), timeout=30)
        assert answer.status_code == 200
        assert_exact(csv_rows(answer.content), sim, invoice)
    return listed


def blob_folders(ctx: AppContext, tenant: str) -> set[str]:
    return {b.name.rsplit("/", 1)[0] for b in ctx.storage.files.list_blobs(name_starts_with=f"{tenant}/")}


def version_folders(ctx: AppContext, tenant: str, file_id: str) -> set[str]:
    record, _ = ctx.files.get(tenant, file_id)
    named = [record.blob_name] + [v.blob_name for v in ctx.files.list_versions(tenant, file_id)]
    return {name.rsplit("/", 1)[0] for name in named if name}
