"""Fan-out and fan-in of CSV derivation (shared/app/fanout.py, shared/app/fanin.py), against Azurite and the simulator.

The session's simulator publishes daily rated usage in export blobs of 1,000 lines, so its snapshot has several
parts; blocks are the smallest the settings allow (64 KiB), so each part stages several. The one-instance path is
the reference: the same snapshot, the same rules, made with FANOUT_MIN_PARTS=0.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import date
from decimal import Decimal

import pytest
from azure.storage.blob import BlobClient

from shared.adapters.file_parts import RunKey
from shared.adapters.pricing import Identifier
from shared.adapters.settings import Settings
from datetime import timedelta

from shared.app import fanin, fanout, file_requests, ingest
from shared.app.generation import Worker
from shared.core.columns import FileType
from shared.core.margins import MarginRuleIn
from shared.core.models import FileRequest, FileStatus
from shared.core.usage import BudgetIn
from tests.app.crash_points import assert_exact, csv_rows
from tests.app.test_generation import invoice_id, register

DAILY = "dailyratedusage"


def small_batches(monkeypatch) -> None:
    """Batches of 200 lines (not 6,144): the CSV writer writes a batch at a time, so a part of 1,000 lines stages
    several 64 KiB blocks, as a part of a real export does 4 MiB ones."""
    from shared.adapters import microsoft_json, snapshot_parts
    from shared.app import builder

    monkeypatch.setattr(snapshot_parts, "READ_BATCH_ROWS", 200)
    monkeypatch.setattr(microsoft_json, "FAST_BATCH_ROWS", 200)  # an export blob's part too (the pause hooks)
    monkeypatch.setattr(builder._batches, "__defaults__", (200,))


@pytest.fixture
def fan(sim_env, ctx, monkeypatch):
    """Fan-out on (2 parts or more), 64 KiB blocks, parts of several blocks."""
    small_batches(monkeypatch)
    monkeypatch.setenv("FANOUT_MIN_PARTS", "2")
    monkeypatch.setenv("BLOCK_SIZE_BYTES", str(64 * 1024))
    ctx.settings = Settings()  # type: ignore[call-arg]
    return ctx


def one_instance(ctx) -> None:
    ctx.settings = ctx.settings.model_copy(update={"fanout_min_parts": 0})


def fanned(ctx) -> None:
    ctx.settings = ctx.settings.model_copy(update={"fanout_min_parts": 2})


def drain(ctx, worker: Worker | None = None, limit: int = 200) -> list[str]:
    """Every message on the queue, in turn, until none is left; returns their kinds."""
    worker, queue, kinds = worker or Worker(ctx), ctx.storage.queue(), []
    for _ in range(limit):
        batch = list(queue.receive_messages(visibility_timeout=60, max_messages=1))
        if not batch:
            return kinds
        msg = batch[0]
        kinds.append("part" if '"part"' in msg.content else "file")
        worker.handle(msg.content, msg.dequeue_count)
        queue.delete_message(msg)
    raise AssertionError("the queue did not drain")


def margins(ctx, tenant: str, inv: str) -> str:
    """Rules and identifiers as a partner has them: a reseller rule changing mid-month, customer rules, internal
    ids for half the subscriptions. Returns the reseller with a rule."""
    rows = list(ctx_sim_rows(inv))
    resellers = sorted({r["Tier2MpnId"] for r in rows if (r.get("Tier2MpnId") or "").isdigit()
                        and r["Tier2MpnId"] != "0"})
    customers = sorted({r["CustomerId"] for r in rows if r.get("CustomerId")})
    subscriptions = sorted({r["EntitlementId"] for r in rows if r.get("EntitlementId")})
    for reseller in resellers[:3]:
        ctx.rules.create(tenant, MarginRuleIn(level="reseller", target_id=reseller, percent="10",
                                              effective_from=date(2020, 1, 1), effective_to=date(2026, 10, 16)))
        ctx.rules.create(tenant, MarginRuleIn(level="reseller", target_id=reseller, percent="12.5",
                                              effective_from=date(2026, 10, 16)))
    for customer in customers[::3]:
        ctx.rules.create(tenant, MarginRuleIn(level="customer", target_id=customer, percent="5.5",
                                              effective_from=date(2020, 1, 1)))
    ctx.identifiers.put_many(tenant, [Identifier(kind="subscription", id=s.lower(), internal_id=f"SUB-{n}",
                                                 po_number=f"PO-{n}") for n, s in enumerate(subscriptions[::2])])
    return resellers[0]


_SIM = {}


def ctx_sim_rows(inv: str):
    return _SIM["sim"].iter_rows(inv, DAILY)


@pytest.fixture
def daily(fan, sim):
    """A tenant with margins and the daily usage snapshot of its invoice (several parts)."""
    _SIM["sim"] = sim
    tenant, inv = register(fan, sim), invoice_id(sim)
    reseller = margins(fan, tenant, inv)
    with pytest.raises(ingest.SnapshotBusy):  # the ingest fans out per export blob too (shared/app/ingest_fanout.py)
        ingest.ensure(fan, tenant, inv, FileType.DAILY)
    drain(fan)
    snapshot = ingest.current(fan, tenant, inv, FileType.DAILY)
    assert len(snapshot.manifest["parts"]) >= 3, snapshot.manifest["parts"]
    return tenant, inv, reseller, snapshot


def blob_bytes(ctx, record) -> bytes:
    return ctx.storage.files.get_blob_client(record.blob_name).download_blob().readall()


def make(ctx, tenant: str, inv: str, **fields):
    record, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type=DAILY, invoice_id=inv, **fields))
    return record


@pytest.mark.parametrize("view", ["partner", "reseller"])
def test_a_fanned_out_file_is_byte_for_byte_the_one_instance_file(daily, fan, sim, view) -> None:
    tenant, inv, reseller, snapshot = daily
    fields = {"view": "reseller", "reseller_id": reseller} if view == "reseller" else {}
    one_instance(fan)
    record = make(fan, tenant, inv, **fields)
    assert drain(fan) == ["file"]
    single = fan.files.get(tenant, record.id)[0]
    assert single.status == FileStatus.AVAILABLE and single.parts_total is None

    fanned(fan)
    file_requests.regenerate(fan, tenant, record.id, "fan-out")
    kinds = drain(fan)
    parts = len(snapshot.manifest["parts"])
    assert kinds == ["file"] + ["part"] * parts
    made = fan.files.get(tenant, record.id)[0]
    assert made.status == FileStatus.AVAILABLE, made.error
    assert made.version == 2 and made.parts_total == made.parts_done == parts
    assert blob_bytes(fan, made) == blob_bytes(fan, single)
    assert made.row_count == made.progress_rows == single.row_count
    for name in ("totals", "unmapped", "undated_lines", "no_cost_lines", "findings", "invoice_total", "file_name",
                 "snapshot_id", "data_version", "billing_period_start"):
        got, want = getattr(made, name), getattr(single, name)
        assert got == want or name == "file_name" and got.replace("_v2.", "_v1.") == want, (name, got, want)
    if view == "partner":
        expected = sim.expected(inv, DAILY)
        assert made.row_count == expected.rows and made.totals.cost == expected.cost_total
        assert_exact(csv_rows(blob_bytes(fan, made)), sim, inv)
        folder = made.blob_name.rsplit("/", 1)[0]
        names = {b.name.rsplit("/", 1)[1] for b in fan.storage.files.list_blobs(name_starts_with=folder + "/")}
        assert names == {made.blob_name.rsplit("/", 1)[1], "snapshot.json", "findings.csv", "summary.json"}
    assert json.loads(fan.storage.files.get_blob_client(folder_of(made) + "snapshot.json").download_blob()
                      .readall()) == json.loads(fan.storage.files.get_blob_client(folder_of(single) + "snapshot.json")
                                                .download_blob().readall())
    starts = fan.file_parts.starts(RunKey(tenant, record.id, 2, made.attempts))
    assert starts == {p: 1 for p in range(parts)}


def folder_of(record) -> str:
    return record.blob_name.rsplit("/", 1)[0] + "/"


def test_names_and_usage_alerts_come_out_as_on_one_instance(daily, fan, sim) -> None:
    """The margins page's names index and consumption alerts, merged over the parts, equal one pass's."""
    from shared.adapters.budgets import AlertRepository
    from shared.app import alerts

    tenant, inv, _, _ = daily
    usage: Counter = Counter()
    for r in sim.iter_rows(inv, DAILY):
        usage[r["CustomerId"].lower()] += Decimal(r["BillingPreTaxTotal"] or 0)
    for customer, _ in usage.most_common(3):
        alerts.put_budget(fan, tenant, customer, BudgetIn(monthly_budget=Decimal("0.01"), spike_percent=Decimal("1")))

    def stored() -> tuple[list, list]:
        names = sorted(repr(e) for e in fan.names.list(tenant))
        raised = sorted((a["id"], a["kind"], a["customerId"], a["key"], json.dumps(a.get("data"), sort_keys=True))
                        for a in alerts.list_alerts(fan, tenant, 10_000))
        return names, raised

    def forget() -> None:  # so that the next file must write them by itself
        for table in (fan.names.table, AlertRepository(fan.storage).table):
            for e in list(table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant})):
                table.delete_entity(e["PartitionKey"], e["RowKey"])
        assert stored() == ([], [])

    one_instance(fan)
    record = make(fan, tenant, inv)
    drain(fan)
    single = stored()
    assert single[0] and single[1]
    forget()
    fanned(fan)
    file_requests.regenerate(fan, tenant, record.id, "fan-out")
    assert "part" in drain(fan)
    assert fan.files.get(tenant, record.id)[0].parts_total
    assert stored() == single


def test_a_duplicated_part_message_stages_nothing_twice_and_commits_once(daily, fan, sim, monkeypatch) -> None:
    tenant, inv, _, snapshot = daily
    record = make(fan, tenant, inv)
    queue = fan.storage.queue()
    (file_msg,) = list(queue.receive_messages(visibility_timeout=60, max_messages=1))
    Worker(fan).handle(file_msg.content, 1)
    queue.delete_message(file_msg)
    parts = list(queue.receive_messages(visibility_timeout=60, max_messages=32))
    assert len(parts) == len(snapshot.manifest["parts"])
    staged, commits = Counter(), []
    original_stage, original_commit = BlobClient.stage_block, BlobClient.commit_block_list
    monkeypatch.setattr(BlobClient, "stage_block", lambda self, block_id, *a, **k: (
        staged.update([block_id]), original_stage(self, block_id, *a, **k))[1])
    monkeypatch.setattr(BlobClient, "commit_block_list", lambda self, *a, **k: (
        commits.append(self.blob_name), original_commit(self, *a, **k))[1])
    worker = Worker(fan)
    worker.handle(parts[1].content, 1)
    blocks_of_part_1 = sum(1 for b in staged if b.startswith("00000002"))
    worker.handle(parts[1].content, 2)  # the same part again: its row is done
    assert sum(1 for b in staged if b.startswith("00000002")) == blocks_of_part_1 and blocks_of_part_1 > 1
    assert all(n == 1 for n in staged.values())
    for msg in parts:
        worker.handle(msg.content, 1)
    for msg in parts:  # every part delivered twice (the last ones after the commit)
        worker.handle(msg.content, 2)
        queue.delete_message(msg)
    assert drain(fan) == []
    made = fan.files.get(tenant, record.id)[0]
    assert made.status == FileStatus.AVAILABLE, made.error
    assert commits == [made.blob_name]
    assert all(n == 1 for b, n in staged.items() if b != "0" * 16), staged
    rows = csv_rows(blob_bytes(fan, made))
    assert_exact(rows, sim, inv)
    assert made.row_count == len(rows) == sim.expected(inv, DAILY).rows
    assert fan.file_parts.starts(RunKey(tenant, record.id, 1, made.attempts)) == \
        {p: 1 for p in range(len(parts))}
    assert len(fan.files.list_versions(tenant, record.id)) == 1


def settle(ctx, tenant: str, file_id: str, seconds: float = 30) -> None:
    """Deliver messages as the platform does until the file is Available and no message is left, not even an
    invisible one."""
    from tests.app.crash_points import deliver_until

    queue = ctx.storage.queue()
    deliver_until(ctx, lambda: ctx.files.get(tenant, file_id)[0].status == FileStatus.AVAILABLE
                  and not queue.get_queue_properties().approximate_message_count, seconds, f"file {file_id}")


def kill_once(monkeypatch, owner, attribute: str, when, after: bool = True) -> list:
    """The process dies at the first call of `owner.attribute` that `when(*args)` matches (after the write lands,
    or before it)."""
    from tests.app.crash_points import Kill

    original, fired = getattr(owner, attribute), []

    def call(*a, **k):
        if fired or not when(*a, **k):
            return original(*a, **k)
        fired.append(attribute)
        if after:
            original(*a, **k)
        raise Kill(attribute)

    monkeypatch.setattr(owner, attribute, call)
    return fired


def assert_made_once(ctx, sim, tenant: str, inv: str, file_id: str, parts: int, redone: dict | None = None) -> None:
    made = ctx.files.get(tenant, file_id)[0]
    assert made.status == FileStatus.AVAILABLE, made.error
    assert made.version == 1 and made.attempts == 1 and made.parts_done == made.parts_total == parts
    rows = csv_rows(blob_bytes(ctx, made))
    assert_exact(rows, sim, inv)
    assert made.row_count == made.progress_rows == len(rows) == sim.expected(inv, DAILY).rows
    assert made.totals.cost == sim.expected(inv, DAILY).cost_total
    assert [v.version for v in ctx.files.list_versions(tenant, file_id)] == [1]
    starts = ctx.file_parts.starts(RunKey(tenant, file_id, 1, 1))
    assert starts == {**{p: 1 for p in range(parts)}, **(redone or {})}, starts


def test_a_part_killed_half_way_is_redone_and_only_it(daily, fan, sim, monkeypatch) -> None:
    """In-process stand-in for the SIGKILL test (tests/app/test_fanout_processes.py): a part dies after staging
    its first block; the queue delivers it again; the others were computed once."""
    tenant, inv, _, snapshot = daily
    record = make(fan, tenant, inv)
    fired = kill_once(monkeypatch, BlobClient, "stage_block", lambda blob, ident, *a, **k: ident == "0000000200000000")
    settle(fan, tenant, record.id)
    assert fired
    assert_made_once(fan, sim, tenant, inv, record.id, len(snapshot.manifest["parts"]), {1: 2})


def test_a_crash_after_the_last_parts_row_before_the_commit_is_finished_by_its_redelivery(daily, fan, sim,
                                                                                          monkeypatch) -> None:
    tenant, inv, _, snapshot = daily
    record = make(fan, tenant, inv)
    fired = kill_once(monkeypatch, BlobClient, "commit_block_list", lambda *a, **k: True, after=False)
    monkeypatch.setattr(fanin, "COMMIT_SECONDS", 1)  # the dead committer's claim (a minute) lapses in a second
    settle(fan, tenant, record.id)
    assert fired
    assert_made_once(fan, sim, tenant, inv, record.id, len(snapshot.manifest["parts"]))


def test_a_crash_after_the_commit_before_the_record_publishes_the_same_file(daily, fan, sim, monkeypatch) -> None:
    tenant, inv, _, snapshot = daily
    record = make(fan, tenant, inv)
    fired = kill_once(monkeypatch, fan.files, "replace", lambda r, *a, **k: r.status == FileStatus.AVAILABLE)
    monkeypatch.setattr(fanin, "COMMIT_SECONDS", 1)
    settle(fan, tenant, record.id)
    assert fired
    assert_made_once(fan, sim, tenant, inv, record.id, len(snapshot.manifest["parts"]))


def test_the_files_worker_dying_while_sending_the_parts_is_resumed_not_restarted(daily, fan, sim,
                                                                                monkeypatch) -> None:
    """The file's worker sent the first part message and died: once the record's lease lapses, the file's message
    (redelivered) sends the parts not done again, in the same attempt."""
    from azure.storage.queue import QueueClient

    tenant, inv, _, snapshot = daily
    record = make(fan, tenant, inv)
    monkeypatch.setattr(fanout, "LEASE", timedelta(seconds=1))
    sent = []
    fired = kill_once(monkeypatch, QueueClient, "send_message",
                      lambda q, body, *a, **k: '"part"' in body and (sent.append(body) or len(sent) == 2),
                      after=False)
    settle(fan, tenant, record.id)
    assert fired
    assert_made_once(fan, sim, tenant, inv, record.id, len(snapshot.manifest["parts"]))


def test_retention_deletes_a_fanned_out_versions_part_rows(daily, fan) -> None:
    from datetime import timedelta

    from shared.adapters.repositories import utcnow
    from shared.app import retention

    tenant, inv, _, _ = daily
    record = make(fan, tenant, inv)
    drain(fan)
    first = fan.files.get(tenant, record.id)[0]
    key = RunKey(tenant, record.id, 1, first.attempts)
    assert first.parts_total and fan.file_parts.progress(key) is not None
    file_requests.regenerate(fan, tenant, record.id, "newer")
    drain(fan)
    run = retention.purge(fan, utcnow() + timedelta(days=fan.settings.retention_days + 1))
    assert run.deleted == [(record.id, 1)]
    assert fan.file_parts.progress(key) is None and fan.file_parts.starts(key) == {}
    assert fan.file_parts.progress(RunKey(tenant, record.id, 2, 1)) is not None  # the kept version's stay


def test_a_part_the_queue_gave_up_on_fails_the_file_with_a_reason(daily, fan) -> None:
    tenant, inv, _, _ = daily
    record = make(fan, tenant, inv)
    queue = fan.storage.queue()
    (file_msg,) = list(queue.receive_messages(visibility_timeout=60, max_messages=1))
    Worker(fan).handle(file_msg.content, 1)
    part = next(m for m in queue.receive_messages(visibility_timeout=60, max_messages=32) if '"part":1' in m.content)
    Worker(fan).handle_poison(part.content)
    failed = fan.files.get(tenant, record.id)[0]
    assert failed.status == FileStatus.FAILED and "Gave up on part 2" in failed.error
    Worker(fan).handle(part.content, 1)  # a late delivery of another part changes nothing
    assert fan.files.get(tenant, record.id)[0].status == FileStatus.FAILED


@pytest.mark.parametrize("at_once", [1, 2])
def test_one_process_computes_at_most_fanout_parts_at_once(daily, fan, monkeypatch, at_once) -> None:
    """Part messages delivered to one process side by side (host.json's batchSize 2) compute one after the other
    (FANOUT_PARTS_AT_ONCE=1): two parts side by side took past the 300 MB a worker may use."""
    import threading

    tenant, inv, _, snapshot = daily
    fan.settings = fan.settings.model_copy(update={"fanout_parts_at_once": at_once})
    record = make(fan, tenant, inv)
    queue = fan.storage.queue()
    (file_msg,) = list(queue.receive_messages(visibility_timeout=60, max_messages=1))
    Worker(fan).handle(file_msg.content, 1)
    queue.delete_message(file_msg)
    parts = list(queue.receive_messages(visibility_timeout=60, max_messages=32))
    running, most, guard = [0], [0], threading.Lock()
    real = fanout.compute_part

    def counted(*args, **kwargs):
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.3)  # long enough for the other thread to arrive while this part runs
            return real(*args, **kwargs)
        finally:
            with guard:
                running[0] -= 1

    monkeypatch.setattr(fanout, "compute_part", counted)
    threads = [threading.Thread(target=Worker(fan).handle, args=(m.content, 1)) for m in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for m in parts:
        queue.delete_message(m)
    drain(fan)
    assert most[0] == at_once
    made = fan.files.get(tenant, record.id)[0]
    assert made.status == FileStatus.AVAILABLE, made.error


def test_a_part_longer_than_the_lease_keeps_the_files_lease(daily, fan, monkeypatch) -> None:
    """The file's lease is renewed while a part computes, not only when one finishes: a part slower than the lease
    (a busy instance) would otherwise let the file look abandoned and have its parts sent again."""
    tenant, inv, _, _ = daily
    monkeypatch.setattr(fanout, "RENEW_EVERY", timedelta(seconds=0.1))
    record = make(fan, tenant, inv)
    leases: list[tuple] = []
    real = fanout.compute_part

    def slow(ctx, rec, part):
        before = fan.files.get(tenant, record.id)[0].lease_until
        time.sleep(0.6)
        leases.append((before, fan.files.get(tenant, record.id)[0].lease_until))
        return real(ctx, rec, part)

    monkeypatch.setattr(fanout, "compute_part", slow)
    drain(fan)
    made = fan.files.get(tenant, record.id)[0]
    assert made.status == FileStatus.AVAILABLE, made.error
    assert len(leases) == made.parts_total >= 3
    assert all(after > before for before, after in leases), leases
