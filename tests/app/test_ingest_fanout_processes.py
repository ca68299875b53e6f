"""The ingest fan-out with real worker processes (devtools/fanout_workers.py: the local Functions host's queue trigger
in each, as on separate instances), real Azurite and the simulator: one is SIGKILLed half way through an export
blob's part; two others finish the snapshot. Counted at the simulator: one export, each blob downloaded once but
the killed part's, downloaded twice."""

from __future__ import annotations

import os
import signal
from collections import Counter
from urllib.parse import urlparse

from shared.adapters.file_parts import IngestRunKey
from shared.adapters.invoices import client_for
from shared.app import ingest
from shared.app.ingest_fanout import PAUSE_PART, PAUSE_SECONDS
from shared.core.columns import FileType
from tests.app.test_fanout import small_batches
from tests.app.test_fanout_processes import wait_for, workers  # noqa: F401
from tests.app.test_ingest_fanout import DAILY, blob_downloads, comparable, pair, snapshot_bytes  # noqa: F401


def test_a_worker_killed_half_way_through_an_ingest_part_costs_that_blob_only(pair, sim, workers, monkeypatch):
    """Process A takes the ingest message, fans it out and works through the parts; it sleeps half way through
    part 1 (a test hook: its blob downloaded, two batches parsed), by which time the other parts are done; it is
    SIGKILLed there. Processes B and C finish the snapshot from the queue (part 1's message comes back when A's
    lease on it lapses)."""
    tenant, inv, one, fan = pair
    small_batches(monkeypatch)  # the reference in batches of 200 lines, as the worker processes read (their hook)
    single = ingest.ensure(one, tenant, inv, DAILY)
    parts = len(single.manifest["parts"])
    monkeypatch.setenv("FANOUT_MIN_PARTS", "2")  # the worker processes' settings come from the environment
    seen = len(sim.requests)
    # two parts at once in A (its second message slot works through the others while part 1 sleeps)
    a = workers.start(**{PAUSE_PART: "1", PAUSE_SECONDS: "300", "FANOUT_PARTS_AT_ONCE": "2"})
    ingest.request(fan, tenant, inv, FileType.DAILY)
    record = wait_for(lambda: (r := fan.snapshots.get(tenant, inv, DAILY.value)[0]).fanned_out() and r,
                      what="the fan-out")
    key = IngestRunKey(tenant, inv, DAILY.value, record.attempts)
    manifest = client_for(fan.tenants.get(tenant), fan.settings).wait_for_export(record.fanout_operation)
    killed_blob = urlparse(manifest.blobs[1].url).path  # a status read: neither an export nor a download

    def half_way() -> bool:
        others = all(fan.file_parts.is_done(key, p) for p in range(parts) if p != 1)
        return others and fan.file_parts.starts(key).get(1) == 1 and blob_downloads(sim, seen)[killed_blob] == 1

    wait_for(half_way, what="part 1 half way and the others done")
    assert not fan.file_parts.is_done(key, 1)
    shown = fan.snapshots.get(tenant, inv, DAILY.value)[0]
    others = sum(p["rows"] for i, p in enumerate(single.manifest["parts"]) if i != 1)
    assert shown.fanned_out() and shown.rows == others and shown.parts_total == parts
    os.kill(a.pid, signal.SIGKILL)
    a.join(timeout=10)
    workers.start()
    workers.start()
    made = wait_for(lambda: ingest.current(fan, tenant, inv, DAILY), seconds=120, what="the snapshot")
    assert comparable(made.manifest) == comparable(single.manifest)
    assert snapshot_bytes(fan, made) == snapshot_bytes(one, single)
    starts = fan.file_parts.starts(key)
    assert starts == {**{p: 1 for p in range(parts)}, 1: 2}, starts  # only the killed part was computed again
    downloads = blob_downloads(sim, seen)
    assert downloads[killed_blob] == 2 and sorted(downloads.values()) == [1] * (parts - 1) + [2], downloads
    assert sim.counts(seen)["export"] == 1
    record = fan.snapshots.get(tenant, inv, DAILY.value)[0]
    assert record.attempts == key.attempt and record.ready() and not record.fanned_out()
    print(f"\nparts: {parts}; computations per part: {starts}; blob downloads: {sorted(Counter(downloads).values())}")
