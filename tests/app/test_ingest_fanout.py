"""Ingest fanned out per export blob (shared/app/ingest_fanout.py, ingest_fanin.py), against Azurite and the simulator.

The session's simulator publishes daily rated usage in export blobs of 1,000 lines, so one export has several
blobs. The reference is the one-instance ingest of the same invoice, made in a second, separate storage (its own
container, queue and tables): manifests, findings.csv, summary.json, the Parquet parts and a partner CSV derived
from each must be the same bytes. Defects put duplicates in one blob and across blobs (`duplicate_charge_far`: the
last line, in the last blob, copies the first) and findings in the first and the last blob (whose order against
the duplicates depends on each part's line offset).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from shared.adapters.file_parts import IngestRunKey
from shared.adapters.repositories import utcnow
from shared.adapters.storage import Storage
from shared.app import file_requests, ingest, ingest_fanin, ingest_fanout, retention
from shared.app.context import AppContext
from shared.app.generation import Worker
from shared.app.ingest import SnapshotBusy
from shared.core.columns import FileType
from shared.core.models import FileRequest, FileStatus
from shared.core.validation import read_findings_csv
from tests.app.test_generation import invoice_id, register
from tests.conftest import unique

DAILY = FileType.DAILY
DEFECTS = ("duplicate_charge", "missing_customer", "duplicate_charge_far", "missing_customer_far")


def with_settings(ctx: AppContext, **update: Any) -> AppContext:
    ctx.settings = ctx.settings.model_copy(update=update)
    return ctx


def separate(ctx: AppContext, **update: Any) -> AppContext:
    """Another app context in the same Azurite: its own container, queue and tables."""
    settings = ctx.settings.model_copy(update={"files_container": unique("files-"),
                                               "generation_queue": unique("gen-"), "table_prefix": unique("t"),
                                               **update})
    storage = Storage(settings)
    storage.ensure()
    return AppContext(settings, storage)


def drain(ctx: AppContext, limit: int = 200, before=None) -> Counter:
    """Every message on the queue, in turn, until none is left; returns their kinds. `before(content)` runs
    before each message is handled."""
    worker, queue, kinds = Worker(ctx), ctx.storage.queue(), Counter()
    for _ in range(limit):
        batch = list(queue.receive_messages(visibility_timeout=60, max_messages=1))
        if not batch:
            return kinds
        msg = batch[0]
        kinds[next(iter(json.loads(msg.content)))] += 1
        if before is not None:
            before(msg.content)
        worker.handle(msg.content, msg.dequeue_count)
        queue.delete_message(msg)
    raise AssertionError("the queue did not drain")


def blob(ctx: AppContext, name: str) -> bytes:
    return ctx.storage.files.get_blob_client(name).download_blob().readall()


def snapshot_bytes(ctx: AppContext, snapshot) -> dict[str, bytes]:
    """What the snapshot holds besides its manifest: findings, summary and every Parquet file, by name."""
    names = ["findings.csv", "summary.json"] + [f["name"] for f in snapshot.files]
    return {n: blob(ctx, f"{snapshot.id}/{n}") for n in names}


def comparable(manifest: dict) -> dict:
    return {k: manifest[k] for k in ("rows", "parts", "sums", "findings", "dataVersion", "source", "invoice",
                                     "snapshotId", "format")}


def blob_downloads(sim, since: int) -> Counter:
    return Counter(r.path for r in sim.requests[since:] if r.path.strip("/").split("/")[0] == "blobs")


@pytest.fixture
def pair(sim_env, ctx, sim):
    """A tenant in two storages: one that ingests on one instance, one that fans out (2 blobs or more)."""
    sim.faults.reset()
    for kind in DEFECTS:
        sim.faults.defect(invoice_id(sim), kind)
    fan = with_settings(ctx, fanout_min_parts=2)
    one = separate(ctx, fanout_min_parts=0)
    tenant = register(fan, sim)
    register(one, sim)
    yield tenant, invoice_id(sim), one, fan
    sim.faults.reset()


def fan_out(fan: AppContext, tenant: str, inv: str) -> int:
    """Start a fanned-out ingest as a caller of `ensure` does (it waits: SnapshotBusy); returns the parts."""
    with pytest.raises(SnapshotBusy):
        ingest.ensure(fan, tenant, inv, DAILY)
    record = fan.snapshots.get(tenant, inv, DAILY.value)[0]
    assert record.fanned_out() and record.parts_total and record.fanout_operation and record.fanout_version
    assert "sig=" not in record.fanout_operation.lower()  # an operation URL, never a SAS link
    with pytest.raises(SnapshotBusy):  # every other caller waits too
        ingest.ensure(fan, tenant, inv, DAILY)
    return record.parts_total


@pytest.mark.parametrize("cap", [2, 10_000])
def test_a_fanned_out_ingest_is_byte_for_byte_the_one_instance_ingest(pair, sim, cap) -> None:
    tenant, inv, one, fan = pair
    with_settings(one, validation_max_findings=cap)
    with_settings(fan, validation_max_findings=cap)
    seen = len(sim.requests)
    single = ingest.ensure(one, tenant, inv, DAILY)
    blobs = len(single.manifest["parts"])
    assert blobs >= 3 and single.source == "graph"
    assert sim.counts(seen)["export"] == 1

    seen = len(sim.requests)
    assert fan_out(fan, tenant, inv) == blobs
    assert drain(fan) == {"ingestPart": blobs}
    made = ingest.current(fan, tenant, inv, DAILY)
    assert made is not None and made.id == single.id
    counts = sim.counts(seen)
    assert counts["export"] == 1, counts  # the parts read the export's status again; no second export
    assert sorted(blob_downloads(sim, seen).values()) == [1] * blobs  # each blob once, by its own part

    assert comparable(made.manifest) == comparable(single.manifest)
    assert snapshot_bytes(fan, made) == snapshot_bytes(one, single)
    findings = read_findings_csv(blob(fan, f"{made.id}/findings.csv"))
    totals = made.manifest["findings"]
    assert totals["byRule"]["DUPLICATE_CHARGE"] == {"warning": 2}  # one within a blob, one across blobs
    assert totals["byRule"]["MISSING_CUSTOMER"] == {"warning": 2}  # one in the first blob, one in the last
    if cap == 2:
        assert totals["kept"] == len(findings) == 2 < totals["warning"]  # more findings than the cap
    else:
        last = list(sim.iter_rows(inv, DAILY.value))[-1]
        far = [f for f in findings if f["rule"] == "DUPLICATE_CHARGE"
               and f["key"].get("ResourceURI") == last.get("ResourceURI")]
        assert len(far) >= 1  # found across blobs: its first copy is in blob 0, it is in the last blob
    record = fan.snapshots.get(tenant, inv, DAILY.value)[0]
    assert record.ready() and not record.fanned_out() and record.rows == single.manifest["rows"]
    assert not list(fan.storage.files.list_blobs(name_starts_with=f"{made.id}/_ingest/"))

    # a partner CSV derived from each is the same file
    files = []
    for c in (one, fan):
        rec, _ = file_requests.request_file(c, tenant, FileRequest(invoice_type=DAILY.value, invoice_id=inv))
        drain(c)
        done = c.files.get(tenant, rec.id)[0]
        assert done.status in (FileStatus.AVAILABLE, FileStatus.NEEDS_REVIEW), done.error
        files.append((blob(c, done.blob_name), done.findings))
    assert files[0] == files[1]


def test_a_part_whose_exchange_rate_differs_from_the_earlier_parts_is_checked_again(pair, sim) -> None:
    """From the middle of the invoice on, every line has another exchange rate: one pass flags each of them against
    the first line's rate. The last blob, alone, sees only the new rate and flags none; the fan-in checks it again
    from its Parquet part with the earlier parts' rates, so the findings are one pass's."""
    tenant, inv, one, fan = pair
    sim.faults.defect(inv, "exchange_rate_tail")
    single = ingest.ensure(one, tenant, inv, DAILY)
    flagged = single.manifest["findings"]["byRule"]["EXCHANGE_RATE"]["error"]
    last_blob = single.manifest["parts"][-1]["rows"]
    assert flagged > last_blob  # the last blob's lines are flagged too (and some of the blob before)
    parts = fan_out(fan, tenant, inv)
    assert drain(fan) == {"ingestPart": parts}
    made = ingest.current(fan, tenant, inv, DAILY)
    assert comparable(made.manifest) == comparable(single.manifest)
    assert snapshot_bytes(fan, made) == snapshot_bytes(one, single)


def test_a_duplicated_part_counts_once_and_a_redelivered_last_part_finishes_nothing_again(pair, sim) -> None:
    tenant, inv, one, fan = pair
    single = ingest.ensure(one, tenant, inv, DAILY)
    seen = len(sim.requests)
    parts = fan_out(fan, tenant, inv)
    record = fan.snapshots.get(tenant, inv, DAILY.value)[0]
    key = IngestRunKey(tenant, inv, DAILY.value, record.attempts)
    copies: list[str] = []

    def duplicate_part_0(content: str) -> None:  # part 0's message delivered twice (the copy after the original)
        if '"part":0' in content.replace(" ", "") and not copies:
            copies.append(content)
            fan.storage.queue().send_message(content)

    assert drain(fan, before=duplicate_part_0) == {"ingestPart": parts + 1}
    assert fan.file_parts.starts(key) == {p: 1 for p in range(parts)}  # the copy computed nothing
    progress = fan.file_parts.progress(key)
    assert progress.done == progress.total == parts and progress.rows == single.manifest["rows"]
    assert sorted(blob_downloads(sim, seen).values()) == [1] * parts
    made = ingest.current(fan, tenant, inv, DAILY)
    assert comparable(made.manifest) == comparable(single.manifest)
    manifest_etag = fan.storage.files.get_blob_client(f"{made.id}/manifest.json").get_blob_properties().etag
    ready, ready_etag = fan.snapshots.get(tenant, inv, DAILY.value)

    # the last part again after Ready: no second fan-in, nothing written
    seen = len(sim.requests)
    last = ingest_fanout.IngestPartMessage(ingestPart=ingest_fanout.IngestPartRef(
        tenantId=tenant, invoiceId=inv, invoiceType=DAILY, snapshotId=made.id, attempt=key.attempt, part=parts - 1))
    fan.storage.queue().send_message(last.model_dump_json())
    assert drain(fan) == {"ingestPart": 1}
    assert fan.snapshots.get(tenant, inv, DAILY.value)[1] == ready_etag
    assert fan.storage.files.get_blob_client(f"{made.id}/manifest.json").get_blob_properties().etag == manifest_etag
    assert fan.file_parts.starts(key) == {p: 1 for p in range(parts)}
    assert sim.counts(seen) == Counter()


def test_single_blob_exports_and_v1_pages_stay_on_one_instance(pair, sim) -> None:
    tenant, inv, _, fan = pair
    with_settings(fan, fanout_min_parts=1000)  # more blobs than the export has: one instance
    snapshot = ingest.ensure(fan, tenant, inv, DAILY)
    assert len(snapshot.manifest["parts"]) >= 3 and not list(fan.storage.queue().peek_messages())
    legacy = invoice_id(sim, "D")
    with_settings(fan, fanout_min_parts=2)
    pages = ingest.ensure(fan, tenant, legacy, FileType.LICENSE)
    assert pages.source == "v1" and not list(fan.storage.queue().peek_messages())


def test_a_fan_out_whose_lease_lapsed_is_resumed_not_restarted(pair, sim) -> None:
    """The claimer died after sending its messages, and they were lost: the next caller of `ensure` finds the
    lease lapsed, sends the parts not done again (no new export), and the snapshot is made from them."""
    tenant, inv, one, fan = pair
    single = ingest.ensure(one, tenant, inv, DAILY)
    seen = len(sim.requests)
    parts = fan_out(fan, tenant, inv)
    queue = fan.storage.queue()
    first = [m for m in queue.receive_messages(max_messages=32, visibility_timeout=60)]
    assert len(first) == parts
    Worker(fan).handle(first[0].content)  # part 0 is done; the other messages are lost
    for m in first:
        queue.delete_message(m)
    loaded = fan.snapshots.get(tenant, inv, DAILY.value)
    record, etag = loaded
    record.lease_until = utcnow() - timedelta(seconds=1)
    fan.snapshots.replace(record, etag)
    with pytest.raises(SnapshotBusy):
        ingest.ensure(fan, tenant, inv, DAILY)  # resumes: the missing parts are sent again
    assert drain(fan) == {"ingestPart": parts - 1}
    made = ingest.current(fan, tenant, inv, DAILY)
    assert made is not None and comparable(made.manifest) == comparable(single.manifest)
    assert sim.counts(seen)["export"] == 1
    assert fan.snapshots.get(tenant, inv, DAILY.value)[0].attempts == record.attempts  # not restarted


def test_a_part_the_queue_gave_up_on_fails_the_ingest_and_the_next_caller_starts_afresh(pair, sim) -> None:
    tenant, inv, _, fan = pair
    parts = fan_out(fan, tenant, inv)
    queue = fan.storage.queue()
    messages = list(queue.receive_messages(max_messages=32, visibility_timeout=60))
    assert len(messages) == parts
    Worker(fan).handle_poison(messages[1].content)
    record = fan.snapshots.get(tenant, inv, DAILY.value)[0]
    assert record.status == "Failed" and "part 2" in record.error and not record.fanned_out()
    for m in messages:  # the other parts' messages find the attempt settled: nothing is computed
        Worker(fan).handle(m.content)
        queue.delete_message(m)
    key = IngestRunKey(tenant, inv, DAILY.value, record.attempts)
    assert fan.file_parts.starts(key) == {}
    with pytest.raises(SnapshotBusy):  # a new attempt (a new export), fanned out again
        ingest.ensure(fan, tenant, inv, DAILY)
    assert fan.snapshots.get(tenant, inv, DAILY.value)[0].attempts == record.attempts + 1
    assert drain(fan) == {"ingestPart": parts}
    assert ingest.current(fan, tenant, inv, DAILY) is not None


def test_retention_deletes_a_settled_ingest_fan_outs_part_rows_not_a_running_ones(pair, sim) -> None:
    tenant, inv, _, fan = pair
    parts = fan_out(fan, tenant, inv)
    record = fan.snapshots.get(tenant, inv, DAILY.value)[0]
    key = IngestRunKey(tenant, inv, DAILY.value, record.attempts)
    first = list(fan.storage.queue().receive_messages(max_messages=1, visibility_timeout=60))
    Worker(fan).handle(first[0].content)
    fan.storage.queue().delete_message(first[0])
    retention.purge_snapshots(fan, tenant, retention.RetentionRun())  # under way: its rows stay
    assert fan.file_parts.progress(key) is not None and len(fan.file_parts.starts(key)) == 1
    assert drain(fan) == {"ingestPart": parts - 1}
    snapshot = ingest.current(fan, tenant, inv, DAILY)
    assert snapshot is not None and fan.file_parts.starts(key) == {p: 1 for p in range(parts)}
    retention.purge_snapshots(fan, tenant, retention.RetentionRun())
    assert fan.file_parts.progress(key) is None and fan.file_parts.starts(key) == {}
    assert ingest.current(fan, tenant, inv, DAILY) == snapshot  # the snapshot itself is kept


def test_expired_links_are_renewed_by_a_fresh_export_at_the_same_etag(pair, sim) -> None:
    tenant, inv, one, fan = pair
    single = ingest.ensure(one, tenant, inv, DAILY)
    seen = len(sim.requests)
    sim.faults.expire_sas(1)  # the export's links have expired by the time the parts read its status again
    parts = fan_out(fan, tenant, inv)
    assert drain(fan) == {"ingestPart": parts}
    made = ingest.current(fan, tenant, inv, DAILY)
    assert made is not None and comparable(made.manifest) == comparable(single.manifest)
    assert snapshot_bytes(fan, made) == snapshot_bytes(one, single)
    assert sim.counts(seen)["export"] == 1 + parts  # the claimer's, and each part's fresh one (same eTag)


def test_a_fresh_export_at_another_etag_fails_the_ingest_and_the_next_caller_ingests_the_new_data(pair, sim) -> None:
    tenant, inv, _, fan = pair
    sim.faults.expire_sas(1)  # the export's links have expired by the time the parts read its status again
    parts = fan_out(fan, tenant, inv)
    first = fan.snapshots.get(tenant, inv, DAILY.value)[0]
    sim.faults.revise(inv)  # and Microsoft re-rated the invoice meanwhile: a fresh export has another eTag
    drain(fan)
    failed = fan.snapshots.get(tenant, inv, DAILY.value)[0]
    assert failed.status == "Failed" and "new data" in failed.error and failed.snapshot_id is None
    assert fan.file_parts.progress(IngestRunKey(tenant, inv, DAILY.value, first.attempts)).done < parts
    with pytest.raises(SnapshotBusy):
        ingest.ensure(fan, tenant, inv, DAILY)
    drain(fan)
    made = ingest.current(fan, tenant, inv, DAILY)
    assert made is not None and made.data_version != first.fanout_version
    assert made.manifest["rows"] == sim.expected(inv, DAILY.value).rows


def test_a_file_waits_for_the_fanned_out_ingest_and_is_made_from_it(pair, sim) -> None:
    """The file's worker claims the snapshot and fans the ingest out; it gets SnapshotBusy like any waiter: its
    file goes back to Queued (no attempt spent) with a delayed copy of its message, which finds the snapshot Ready."""
    tenant, inv, _, fan = pair
    rec, _ = file_requests.request_file(fan, tenant, FileRequest(invoice_type=DAILY.value, invoice_id=inv))
    kinds = drain(fan)
    parts = fan.snapshots.get(tenant, inv, DAILY.value)[0]
    assert ingest.current(fan, tenant, inv, DAILY) is not None
    assert kinds["ingestPart"] >= 3 and kinds["tenantId"] == 1, kinds  # the file's message, then every blob's
    waiting = fan.files.get(tenant, rec.id)[0]
    assert waiting.status == FileStatus.QUEUED and waiting.attempts == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and fan.files.get(tenant, rec.id)[0].status == FileStatus.QUEUED:
        drain(fan)  # the delayed copy of the file's message comes back (15 s)
        time.sleep(0.5)
    done = fan.files.get(tenant, rec.id)[0]
    assert done.status in (FileStatus.AVAILABLE, FileStatus.NEEDS_REVIEW), done.error
    assert done.snapshot_id == parts.snapshot_id and done.row_count == sim.expected(inv, DAILY.value).rows


def test_a_part_longer_than_the_lease_keeps_the_snapshots_lease(pair, sim, monkeypatch) -> None:
    """The snapshot record's lease is renewed while a part computes, not only when one starts or finishes: a blob
    slower than the lease would otherwise let the next caller resume the fan-out and send that part again."""
    tenant, inv, _, fan = pair
    monkeypatch.setattr(ingest_fanout, "RENEW_EVERY", timedelta(seconds=0.1))
    parts = fan_out(fan, tenant, inv)
    leases: list[tuple] = []
    real = ingest_fanout.compute_part

    def slow(ctx, record, snapshot_id, part):
        before = fan.snapshots.get(tenant, inv, DAILY.value)[0].lease_until
        time.sleep(0.6)
        leases.append((before, fan.snapshots.get(tenant, inv, DAILY.value)[0].lease_until))
        return real(ctx, record, snapshot_id, part)

    monkeypatch.setattr(ingest_fanout, "compute_part", slow)
    assert drain(fan) == {"ingestPart": parts}
    assert ingest.current(fan, tenant, inv, DAILY) is not None
    assert len(leases) == parts and all(after > before for before, after in leases), leases


def test_a_live_finisher_keeps_its_claim_and_a_dead_ones_is_taken_over(pair, sim, monkeypatch) -> None:
    """The fan-in's claim (a minute) is renewed while the finisher works: another worker looking in finds it busy
    however long it takes. A finisher that dies is repeated, once its claim lapses, by the last part's message
    coming back; no part is computed again."""
    from tests.app.crash_points import Kill, deliver_until

    tenant, inv, one, fan = pair
    single = ingest.ensure(one, tenant, inv, DAILY)
    monkeypatch.setattr(ingest_fanin, "FANIN_SECONDS", 0.3)
    parts = fan_out(fan, tenant, inv)
    key = IngestRunKey(tenant, inv, DAILY.value, fan.snapshots.get(tenant, inv, DAILY.value)[0].attempts)
    looked: list = []
    real = ingest_fanin.write_snapshot

    def slow_then_dies_once(*args, **kwargs):
        time.sleep(1.0)  # over three claims long
        looked.append(fan.file_parts.claim_commit(key, 0.3))  # another worker looks in meanwhile
        if len(looked) == 1:
            raise Kill("the finisher dies")
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_fanin, "write_snapshot", slow_then_dies_once)
    deliver_until(fan, lambda: ingest.current(fan, tenant, inv, DAILY) is not None, 60, "the snapshot")
    assert len(looked) == 2 and all(isinstance(x, float) for x in looked), looked  # busy both times, never taken
    assert fan.file_parts.starts(key) == {p: 1 for p in range(parts)}
    assert comparable(ingest.current(fan, tenant, inv, DAILY).manifest) == comparable(single.manifest)
