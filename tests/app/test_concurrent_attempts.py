"""Issue 15, defect 1: two workers on one file never publish a mix of two data versions.

Worker A's first export blob is slow (the simulator holds it 4 s) with a lease of one second, shorter than that
segment; meanwhile Microsoft revises the data and a duplicate delivery reaches worker B (its own host: its own
storage clients). Whatever happens, the published file is exactly one data version, line by line, and the record's
totals are the published file's.

- renewing: A's heartbeat keeps its lease through the slow segment, so B leaves a delayed copy and A publishes.
- stalled: A cannot renew (its Table Storage writes time out meanwhile), B takes the file over; it finds A's
  ingest of the invoice's snapshot under way, so it puts the file back to Queued and waits (a delayed message),
  then publishes from that snapshot; A, resuming, loses the final guarded write and discards its own blobs.

Either way the lines come from one snapshot: the data version A's ingest read (Microsoft's revision is picked up by
the poller's eTag check, as a new snapshot), fetched with exactly one export.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from azure.core.exceptions import ServiceRequestError

from shared.adapters.storage import Storage
from shared.app import file_requests, generation, ingest
from shared.app.context import AppContext
from shared.app.generation import Worker
from shared.core.models import FileRequest, FileStatus
from tests.app.crash_points import FILE_TYPE, blob_folders, csv_rows, lines, run_host
from tests.app.test_generation import invoice_id, register

SLOW_SEGMENT = 4.0  # seconds; the lease is 1


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("heartbeat", ["renewing", "stalled"])
def test_two_workers_publish_exactly_one_data_version(sim_env, ctx, sim, monkeypatch, heartbeat) -> None:
    monkeypatch.setattr(generation, "LEASE", timedelta(seconds=1))
    monkeypatch.setattr(sim.export_options, "retry_after", 0)
    monkeypatch.setattr(ingest, "WAIT_SECONDS", 1)  # a file waiting for an ingest looks again after a second
    tenant, inv = register(ctx, sim), invoice_id(sim)
    record, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type=FILE_TYPE, invoice_id=inv))
    message = json.dumps({"tenantId": tenant, "fileId": record.id, "version": 1})
    original = lines(sim.iter_rows(inv, FILE_TYPE))

    host_a = AppContext(ctx.settings, Storage(ctx.settings))  # worker A's own process and clients
    if heartbeat == "stalled":
        claim = host_a.files.replace
        writes = []

        def unreachable(record, etag):
            writes.append(record.status)
            if record.status == FileStatus.PROCESSING and len(writes) > 1:  # every renewal after the claim
                raise ServiceRequestError("Table Storage timed out")
            return claim(record, etag)

        monkeypatch.setattr(host_a.files, "replace", unreachable)

    seen = len(sim.requests)
    sim.faults.slow(1, delay=SLOW_SEGMENT, path_prefix="/blobs/")  # A's first export blob
    errors: list[BaseException] = []

    def worker_a() -> None:
        try:
            Worker(host_a).handle(message, 1)
        except BaseException as exc:  # noqa: BLE001  (asserted below)
            errors.append(exc)

    a = threading.Thread(target=worker_a)
    a.start()
    wait_for(lambda: ctx.files.get(tenant, record.id)[0].status == FileStatus.PROCESSING)
    claimed = time.monotonic()
    wait_for(lambda: any("/manifests/" in r.path for r in sim.requests[seen:]))
    sim.faults.revise(inv)  # Microsoft re-rates the invoice after A read the manifest
    revised = lines(sim.iter_rows(inv, FILE_TYPE))
    assert revised != original
    time.sleep(max(0.0, claimed + 1.5 - time.monotonic()))  # A's claim-time lease has run out by now
    Worker(ctx).handle(message, 2)  # the duplicate delivery, on worker B
    a.join(120)
    assert not a.is_alive()
    run_host(ctx, tenant, record.id)  # the platform goes on: B's delayed message (stalled) comes back

    published, _ = ctx.files.get(tenant, record.id)
    assert published.status == FileStatus.AVAILABLE, published.error
    url, _ = file_requests.download_link(ctx, tenant, record.id)
    rows = csv_rows(requests.get(url, timeout=30).content)
    assert lines(rows) in (original, revised), "the file mixes two data versions"
    assert lines(rows) == original  # the snapshot A's ingest made; B waited for it instead of racing it
    assert sim.counts(seen)["export"] == 1  # one ingest for both workers
    assert published.row_count == len(rows)
    assert published.totals.cost == sum(Decimal(r["BillingPreTaxTotal"]) for r in rows)
    assert blob_folders(ctx, tenant) == {published.blob_name.rsplit("/", 1)[0]}  # the loser kept nothing
    assert not errors, errors  # the loser stepped aside quietly (its delivery is acknowledged)
