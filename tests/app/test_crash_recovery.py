"""Issue 15: a crash at any write of a generation or a regeneration is recovered, with nothing lost or stuck.

Each case kills the process once at one write point (tests/app/crash_points.py: a raised BaseException stands for
the kill), then lets the platform go on as it would: the queue redelivers, a client polls the status. The file
must end Available and exact line by line (nothing here can make it fail), with every version listed and
downloadable (also once the crashed version has been replaced by a newer one), and no orphan blob left after
retention. Against Azurite and the Partner Center simulator.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import requests

from shared.app import automation, file_requests, generation, heartbeat, retention, versions
from shared.adapters.repositories import utcnow
from shared.app.context import AppContext
from shared.core.models import AutomationIn, FileRequest, FileStatus
from tests.app.crash_points import (
    listed_versions,
    FILE_TYPE,
    REQUEST_POINTS,
    WORKER_POINTS,
    Crasher,
    Kill,
    arm,
    assert_exact,
    assert_versions_whole,
    blob_folders,
    csv_rows,
    run_host,
    version_folders,
)
from tests.app.test_generation import invoice_id, register


@pytest.fixture
def fast(sim, monkeypatch: pytest.MonkeyPatch) -> None:
    """Minutes become a second: the worker's lease (renewed every 20 ms: a regeneration from the invoice's
    snapshot asks nothing of Microsoft and is over in a fraction of a second, yet renews at least once) and the
    time after which a Queued file with no message is sent again; Microsoft's export asks to poll again at once."""
    monkeypatch.setattr(sim.export_options, "retry_after", 0)
    monkeypatch.setattr(generation, "LEASE", timedelta(seconds=0.6))
    monkeypatch.setattr(heartbeat, "PROGRESS_EVERY", timedelta(seconds=0.02))
    monkeypatch.setattr(file_requests, "REQUEUE_AFTER", timedelta(seconds=1))


def request(ctx: AppContext, sim) -> tuple[str, str, str]:
    tenant, inv = register(ctx, sim), invoice_id(sim)
    record, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type=FILE_TYPE, invoice_id=inv))
    return tenant, inv, record.id


def settle_and_check(ctx: AppContext, sim, tenant: str, inv: str, file_id: str, crasher: Crasher,
                     versions_before: int) -> None:
    record = run_host(ctx, tenant, file_id)
    assert crasher.fired, "the crash point was never reached"
    assert record.status == FileStatus.AVAILABLE, record.error
    assert record.version == versions_before + 1
    url, _ = file_requests.download_link(ctx, tenant, file_id)
    rows = csv_rows(requests.get(url, timeout=30).content)
    assert_exact(rows, sim, inv)
    assert record.row_count == len(rows)
    count = versions_before + 1
    if versions_before == 0:  # the crashed version replaced by a newer one: still listed, still downloadable
        file_requests.regenerate(ctx, tenant, file_id, reason="after the crash")
        run_host(ctx, tenant, file_id)
        count += 1
    assert_versions_whole(ctx, sim, tenant, file_id, inv, count)
    # retention (a day later: the grace for attempts still running) leaves exactly the versions' own blobs
    run = retention.purge(ctx, utcnow() + timedelta(days=2))
    assert run.deleted == [] and run.failures == 0
    assert blob_folders(ctx, tenant) == version_folders(ctx, tenant, file_id)
    assert_versions_whole(ctx, sim, tenant, file_id, inv, count)


@pytest.mark.parametrize("point", list(WORKER_POINTS))
def test_a_crash_in_the_first_generation_is_recovered(sim_env, ctx, sim, monkeypatch, fast, point) -> None:
    crasher = Crasher(monkeypatch)
    arm(crasher, ctx, WORKER_POINTS[point], point)
    tenant, inv, file_id = request(ctx, sim)
    settle_and_check(ctx, sim, tenant, inv, file_id, crasher, versions_before=0)


@pytest.mark.parametrize("point", list(WORKER_POINTS) + list(REQUEST_POINTS))
def test_a_crash_in_a_regeneration_is_recovered(sim_env, ctx, sim, monkeypatch, fast, point) -> None:
    tenant, inv, file_id = request(ctx, sim)
    run_host(ctx, tenant, file_id)
    crasher = Crasher(monkeypatch)
    if point in REQUEST_POINTS:  # the regeneration itself dies (the client saw no answer)
        arm(crasher, ctx, REQUEST_POINTS[point], point)
        with pytest.raises(Kill):
            file_requests.regenerate(ctx, tenant, file_id, reason="margins changed")
        record, _ = ctx.files.get(tenant, file_id)
        if record.version == 1:  # died before the record changed: the client, answerless, asks again
            file_requests.regenerate(ctx, tenant, file_id, reason="margins changed")
    else:  # the worker making the new version dies
        file_requests.regenerate(ctx, tenant, file_id, reason="margins changed")
        arm(crasher, ctx, WORKER_POINTS[point], point)
    settle_and_check(ctx, sim, tenant, inv, file_id, crasher, versions_before=1)


def test_a_crash_before_the_first_enqueue_is_recovered(sim_env, ctx, sim, monkeypatch, fast) -> None:
    crasher = Crasher(monkeypatch)
    arm(crasher, ctx, REQUEST_POINTS["regenerate: enqueue"], "request: enqueue")
    with pytest.raises(Kill):
        request(ctx, sim)
    tenant, inv = sim.tenant_id, invoice_id(sim)
    (record,) = ctx.files.list(tenant)
    assert record.status == FileStatus.QUEUED and ctx.storage.queue().peek_messages() == []
    settle_and_check(ctx, sim, tenant, inv, record.id, crasher, versions_before=0)


def test_a_stranded_regeneration_is_sent_again_by_the_poller_alone(sim_env, ctx, sim, monkeypatch, fast) -> None:
    """Defect 2: the record written Queued as v2, the process killed before the message. Nothing reads the file;
    the next poller run sends the message again (once, however many runs), and v2 is made."""
    tenant, inv, file_id = request(ctx, sim)
    run_host(ctx, tenant, file_id)
    # automation on, but asking for no files of its own (startFrom in the future): only the recovery acts
    automation.put_automation(ctx, tenant, AutomationIn(enabled=True, file_types=[FILE_TYPE],
                                                        start_from="2999-01-01"))
    crasher = Crasher(monkeypatch)
    arm(crasher, ctx, REQUEST_POINTS["regenerate: enqueue"], "regenerate: enqueue")
    with pytest.raises(Kill):
        file_requests.regenerate(ctx, tenant, file_id)
    queue = ctx.storage.queue()
    assert queue.peek_messages() == []
    automation.poll(ctx)  # too early: the message may still be on its way
    assert queue.peek_messages() == []
    time.sleep(1.1)
    automation.poll(ctx)
    automation.poll(ctx)
    (message,) = queue.peek_messages(max_messages=32)
    assert json.loads(message.content) == {"tenantId": tenant, "fileId": file_id, "version": 2}
    record = run_host(ctx, tenant, file_id)
    assert (record.status, record.version) == (FileStatus.AVAILABLE, 2)
    assert [v["version"] for v in listed_versions(ctx, tenant, file_id)] == [1, 2]
