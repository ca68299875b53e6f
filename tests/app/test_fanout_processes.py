"""The fan-out with real worker processes (devtools/fanout_workers.py: the local Functions host's queue trigger in
each, as on separate instances), real Azurite and the simulator: one is SIGKILLed half way through a part; two
drain the queue together."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from devtools import fanout_workers
from shared.adapters.file_parts import RunKey
from shared.app import file_requests, generation
from shared.app.fanout import PAUSE_PART, PAUSE_SECONDS
from shared.core.models import FileStatus
from tests.app.crash_points import assert_exact, csv_rows
from tests.app.test_fanout import DAILY, blob_bytes, daily, drain, fan, fanned, make, one_instance  # noqa: F401

SPAWN = multiprocessing.get_context("spawn")


class Workers:
    """Worker processes, each told its own extra environment; stopped (or killed) by the test."""

    def __init__(self) -> None:
        self.stop, self.ready, self.procs = SPAWN.Event(), SPAWN.Queue(), []

    def start(self, **extra: str) -> Any:
        env = {k: v for k, v in os.environ.items() if k != PAUSE_PART}
        proc = SPAWN.Process(target=fanout_workers.serve, args=({**env, **extra}, self.ready, self.stop))
        proc.start()
        assert self.ready.get(timeout=120) == proc.pid
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        self.stop.set()
        for proc in self.procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)


@pytest.fixture
def workers():
    pool = Workers()
    yield pool
    pool.close()


def wait_for(check, seconds: float = 90, what: str = "") -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def available(ctx, tenant: str, file_id: str):
    record = ctx.files.get(tenant, file_id)[0]
    assert record.status not in (FileStatus.FAILED, FileStatus.NEEDS_REVIEW), record.error
    return record if record.status == FileStatus.AVAILABLE else None


def test_a_worker_killed_half_way_through_a_part_costs_that_part_only(daily, fan, sim, workers) -> None:
    """Process A takes the file's message, fans it out and works through the parts; it sleeps after staging the
    first block of part 1 (a test hook), by which time the other parts are done; it is SIGKILLed there. Process B
    starts and finishes the file from the queue (part 1's message comes back when A's lease on it lapses)."""
    tenant, inv, _, snapshot = daily
    parts = len(snapshot.manifest["parts"])
    record = make(fan, tenant, inv)
    # two parts at once in A (its second message slot works through the others while part 1 sleeps)
    a = workers.start(**{PAUSE_PART: "1", PAUSE_SECONDS: "300", "FANOUT_PARTS_AT_ONCE": "2"})
    claimed = wait_for(lambda: (r := fan.files.get(tenant, record.id)[0]).parts_total and r, what="the fan-out")
    key = RunKey(tenant, record.id, claimed.version, claimed.attempts)
    blob = fan.storage.files.get_blob_client(generation.blob_name_for(claimed))

    def half_way() -> bool:
        others = all(fan.file_parts.is_done(key, p) for p in range(parts) if p != 1)
        try:
            staged = {b.id for b in blob.get_block_list("uncommitted")[1]}
        except ResourceNotFoundError:  # no block staged yet
            return False
        return others and "0000000200000000" in staged and "0000000200000001" not in staged

    wait_for(half_way, what="part 1 half staged and the others done")
    assert not fan.file_parts.is_done(key, 1)
    others = sum(p["rows"] for i, p in enumerate(snapshot.manifest["parts"]) if i != 1)
    wait_for(lambda: (r := fan.files.get(tenant, record.id)[0]).parts_done == parts - 1 and r, what="progress")
    shown = fan.files.get(tenant, record.id)[0]
    assert shown.status == FileStatus.PROCESSING and shown.progress_rows == others and shown.parts_total == parts
    os.kill(a.pid, signal.SIGKILL)
    a.join(timeout=10)
    workers.start()
    made = wait_for(lambda: available(fan, tenant, record.id), what="the file")
    expected = sim.expected(inv, DAILY)
    rows = csv_rows(blob_bytes(fan, made))
    assert_exact(rows, sim, inv)
    assert made.row_count == made.progress_rows == len(rows) == expected.rows
    assert made.totals.cost == expected.cost_total
    assert made.version == 1 and made.attempts == 1 and made.parts_done == made.parts_total == parts
    assert [v.version for v in fan.files.list_versions(tenant, record.id)] == [1]
    starts = fan.file_parts.starts(key)
    assert starts == {**{p: 1 for p in range(parts)}, 1: 2}, starts  # only the killed part was computed again
    print(f"\nparts: {parts}; computations per part: {starts}; parts redone: {sum(starts.values()) - parts}")


def test_two_worker_processes_drain_the_queue_together_into_the_exact_file(daily, fan, sim, workers) -> None:
    tenant, inv, _, snapshot = daily
    one_instance(fan)
    record = make(fan, tenant, inv)
    drain(fan)
    single = fan.files.get(tenant, record.id)[0]
    workers.start()
    workers.start()
    file_requests.regenerate(fan, tenant, record.id, "two processes")
    made = wait_for(lambda: available(fan, tenant, record.id), what="the file")
    assert made.version == 2 and made.parts_done == made.parts_total == len(snapshot.manifest["parts"])
    assert blob_bytes(fan, made) == blob_bytes(fan, single)
    assert made.totals == single.totals and made.row_count == single.row_count == sim.expected(inv, DAILY).rows
    assert_exact(csv_rows(blob_bytes(fan, made)), sim, inv)
    both = {p.part: p for p in fan.file_parts.finished(RunKey(tenant, record.id, 2, made.attempts))}
    assert sorted(both) == list(range(len(snapshot.manifest["parts"])))
