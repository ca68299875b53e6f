"""Invoice snapshots: Microsoft's data is fetched once per invoice, type and data version; every file, view, format,
regeneration and charges page is derived from it. Counted at the simulator (`sim.counts`)."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from shared.adapters import snapshot_parts
from shared.app import automation, file_requests, ingest
from shared.app.generation import Worker
from shared.core.columns import FileType
from shared.core.margins import MarginRuleIn
from shared.core.models import ChargesScope, FileFormat, FileRequest, FileStatus
from shared.core.money import DECIMAL_TYPE
from tests.app.test_automation import NOW, drain, files_of, setup
from tests.app.test_generation import download_rows, invoice_id, register, run_queue


def request(ctx, tenant: str, inv: str, **fields) -> str:
    record, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_id=inv, **fields))
    return record.id


def page_all(ctx, tenant: str, inv: str, file_type: str, page_size: int, **view) -> list[dict]:
    scope = ChargesScope.model_validate({"invoiceType": file_type, **view})
    rows, token = [], None
    for _ in range(10_000):
        page = file_requests.get_charges(ctx, tenant, inv, scope, page_size, token)
        assert "pending" not in page, page
        assert len(page["items"]) <= page_size
        rows += page["items"]
        token = page["continuationToken"]
        if not token:
            return rows
    raise AssertionError("paging did not end")


def reseller_and_customer(sim, inv: str) -> tuple[str, str]:
    served = Counter((r["ResellerMpnId"], r["CustomerId"]) for r in sim.iter_rows(inv, "onetime")
                     if r["ResellerMpnId"] not in (None, "", "0", "-1"))
    return served.most_common(1)[0][0]


def test_every_file_view_format_regeneration_and_charges_page_comes_from_one_export(sim_env, ctx, sim) -> None:
    tenant, inv = register(ctx, sim), invoice_id(sim)
    expected = sim.expected(inv, "onetime")
    reseller, customer = reseller_and_customer(sim, inv)
    seen = len(sim.requests)

    partner = request(ctx, tenant, inv, invoice_type="onetime")
    assert run_queue(ctx) == 1
    first = sim.counts(seen)
    assert first["export"] == 1 and first["blob"] >= 1, first

    ids = [request(ctx, tenant, inv, invoice_type="onetime", view="reseller", reseller_id=reseller),
           request(ctx, tenant, inv, invoice_type="onetime", view="customer", customer_id=customer),
           request(ctx, tenant, inv, invoice_type="onetime", format=FileFormat.XLSX),
           request(ctx, tenant, inv, invoice_type="onetime", format=FileFormat.PARQUET)]
    assert run_queue(ctx) == 4
    ctx.rules.create(tenant, MarginRuleIn.model_validate({"level": "reseller", "targetId": reseller,
                                                          "percent": "10", "effectiveFrom": "2000-01-01"}))
    file_requests.regenerate(ctx, tenant, partner, "margin changed")
    assert run_queue(ctx) == 1
    charges = page_all(ctx, tenant, inv, "onetime", 37)
    views = page_all(ctx, tenant, inv, "onetime", 11, view="reseller", resellerId=reseller)

    counts = sim.counts(seen)
    assert counts == first, f"only the first file asked Microsoft; then {counts - first}"
    records = [ctx.files.get(tenant, i)[0] for i in [partner, *ids]]
    assert all(r.status == FileStatus.AVAILABLE for r in records), [r.error for r in records]
    assert len({(r.snapshot_id, r.data_version) for r in records}) == 1 and records[0].snapshot_id
    assert records[0].version == 2 and records[0].findings is not None
    rows = download_rows(ctx, tenant, partner)  # the regeneration has the new margin
    marked = [r for r in rows if r["ResellerMpnId"] == reseller]
    assert marked and all(r["ResellerMarginPercent"] == "10" for r in marked)
    assert len(charges) == len(rows) == expected.rows
    assert sum(Decimal(r["Subtotal"] or 0) for r in charges) == expected.cost_total
    assert [r["ReferenceId"] for r in charges] == [r["ReferenceId"] for r in rows]
    assert [r["ReferenceId"] for r in views] == [r["ReferenceId"] for r in marked]


def test_a_legacy_invoice_is_one_walk_of_the_v1_pages(sim_env, ctx, sim) -> None:
    tenant, inv = register(ctx, sim), invoice_id(sim, "D")
    seen = len(sim.requests)
    request(ctx, tenant, inv, invoice_type="license")
    run_queue(ctx)
    first = sim.counts(seen)
    assert first["page"] >= 1 and first["export"] == 0
    reseller = next(r["ResellerMpnId"] for r in sim.iter_rows(inv, "license") if r["ResellerMpnId"] not in
                    (None, "", "0", "-1"))
    request(ctx, tenant, inv, invoice_type="license", view="reseller", reseller_id=reseller)
    request(ctx, tenant, inv, invoice_type="license", format=FileFormat.PARQUET)
    run_queue(ctx)
    assert len(page_all(ctx, tenant, inv, "license", 500)) == sim.expected(inv, "license").rows
    assert sim.counts(seen) == first


def test_a_revised_etag_makes_exactly_one_more_snapshot_and_old_files_stay(sim_env, ctx, sim) -> None:
    tenant, inv = setup(ctx, sim, file_types=["dailyratedusage"])
    seen = len(sim.requests)
    automation.poll(ctx, NOW)
    drain(ctx)
    (first,) = files_of(ctx, tenant, inv)
    assert sim.counts(seen)["export"] == 1
    automation.poll(ctx, NOW)  # nothing changed: the poller's eTag check is its only export
    assert sim.counts(seen)["export"] == 2 and drain(ctx) == 0

    sim.faults.revise(inv)
    before = len(sim.requests)
    automation.poll(ctx, NOW)  # the eTag check sees the revision
    drain(ctx)
    counts = sim.counts(before)
    assert counts["export"] == 1, counts  # the poller's check; the ingest reads that same export's operation
    (second,) = files_of(ctx, tenant, inv)
    assert second.version == 2 and second.status == FileStatus.AVAILABLE
    assert second.snapshot_id != first.snapshot_id and second.data_version != first.data_version
    request(ctx, tenant, inv, invoice_type="dailyratedusage", format=FileFormat.PARQUET)
    drain(ctx)
    assert sim.counts(before)["export"] == 1  # a new file uses the newest snapshot, already there
    old = ctx.files.list_versions(tenant, first.id)[0]
    assert old.snapshot_id == first.snapshot_id and ctx.snapshots.load(first.snapshot_id) is not None
    assert ctx.snapshots.snapshot_ids(tenant) == {first.snapshot_id, second.snapshot_id}
    url, _ = file_requests.download_link(ctx, tenant, first.id)
    assert url  # the current version; the old one's blob is still there too
    assert ctx.storage.files.get_blob_client(old.blob_name).exists()

    # charges pinned to the first version (a reseller's approved file) read its snapshot, not the revision
    scope = ChargesScope.model_validate({"invoiceType": "dailyratedusage"})

    def every_line(approved=None) -> list[dict]:
        rows, token = [], None
        while True:
            page = file_requests.get_charges(ctx, tenant, inv, scope, 2000, token, approved=approved)
            rows, token = rows + page["items"], page["continuationToken"]
            if not token:
                return rows

    pinned, newest = every_line(approved=old), every_line()
    assert len(pinned) == old.row_count and pinned != newest
    assert sum(Decimal(x["Quantity"]) for x in pinned) != sum(Decimal(x["Quantity"]) for x in newest)
    first_new = file_requests.get_charges(ctx, tenant, inv, scope, 5, None)
    with pytest.raises(Exception) as refused:  # the revision's token cannot page the approved lines
        file_requests.get_charges(ctx, tenant, inv, scope, 5, first_new["continuationToken"], approved=old)
    assert getattr(refused.value, "status", None) == 400


def test_two_workers_needing_the_same_new_snapshot_make_one_ingest(sim_env, ctx, sim, monkeypatch) -> None:
    monkeypatch.setattr(ingest, "WAIT_SECONDS", 1)
    tenant, inv = register(ctx, sim), invoice_id(sim)
    reseller, _ = reseller_and_customer(sim, inv)
    ids = [request(ctx, tenant, inv, invoice_type="onetime"),
           request(ctx, tenant, inv, invoice_type="onetime", view="reseller", reseller_id=reseller)]
    messages = list(ctx.storage.queue().receive_messages(visibility_timeout=60, max_messages=2))
    assert len(messages) == 2
    sim.faults.slow(1, delay=1.5, path_prefix="/v1.0/reports")  # the export takes a while: the two overlap
    seen = len(sim.requests)
    barrier, errors = threading.Barrier(2), []

    def work(msg) -> None:
        barrier.wait()
        try:
            Worker(ctx).handle(msg.content, msg.dequeue_count)
            ctx.storage.queue().delete_message(msg)
        except Exception as exc:  # noqa: BLE001  (re-raised by the assert below)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(m,)) for m in messages]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    statuses = sorted(ctx.files.get(tenant, i)[0].status for i in ids)
    assert statuses == [FileStatus.AVAILABLE, FileStatus.QUEUED]  # the other one waits: a delayed copy, no loop
    time.sleep(1.5)  # the copy's visibility delay
    assert run_queue(ctx) == 1
    assert all(ctx.files.get(tenant, i)[0].status == FileStatus.AVAILABLE for i in ids)
    assert all(ctx.files.get(tenant, i)[0].attempts == 1 for i in ids)
    assert sim.counts(seen)["export"] == 1
    assert len(ctx.snapshots.snapshot_ids(tenant)) == 1


def test_an_ingest_keeps_its_lease_while_microsofts_export_is_made(sim_env, ctx, sim, monkeypatch) -> None:
    """Microsoft takes minutes to make an export, and no line arrives meanwhile: the ingest's heartbeat renews its
    lease all the same, so a second worker that needs the snapshot waits instead of starting a second export.
    (Renewed only as lines arrived, the lease lapsed during the export and the second worker ingested too.)"""
    monkeypatch.setattr(ingest, "LEASE", timedelta(seconds=1))
    tenant, inv = register(ctx, sim), invoice_id(sim)
    sim.faults.slow(1, delay=3.0, path_prefix="/v1.0/reports")  # the export: three leases long
    seen = len(sim.requests)
    made: list = []
    first = threading.Thread(target=lambda: made.append(ingest.ensure(ctx, tenant, inv, FileType.DAILY)))
    first.start()
    deadline = time.monotonic() + 30
    while (ctx.snapshots.get(tenant, inv, "dailyratedusage") or (None,))[0] is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(1.5)  # the claim-time lease has run out by now
    with pytest.raises(ingest.SnapshotBusy):
        ingest.ensure(ctx, tenant, inv, FileType.DAILY)
    first.join(60)
    assert made and made[0].manifest["rows"] == sim.expected(inv, "dailyratedusage").rows
    assert sim.counts(seen)["export"] == 1


def test_charges_without_a_snapshot_queue_an_ingest_and_answer_pending(sim_env, ctx, sim) -> None:
    tenant, inv = register(ctx, sim), invoice_id(sim)
    scope = ChargesScope.model_validate({"invoiceType": "dailyratedusage"})
    seen = len(sim.requests)
    first = file_requests.get_charges(ctx, tenant, inv, scope, 100, None)
    again = file_requests.get_charges(ctx, tenant, inv, scope, 100, None)
    assert first["pending"]["status"] == "Queued" and again["pending"]["retryAfter"] > 0
    assert sim.counts(seen)["export"] == 0  # no export inside the request
    assert run_queue(ctx) == 1  # one ingest queued for both
    rows = page_all(ctx, tenant, inv, "dailyratedusage", 2000)
    assert len(rows) == sim.expected(inv, "dailyratedusage").rows
    assert sim.counts(seen)["export"] == 1


def test_pages_start_mid_part_at_their_row_group(sim_env, ctx, sim, monkeypatch) -> None:
    monkeypatch.setattr(snapshot_parts, "ROW_GROUP_ROWS", 7)
    tenant, inv = register(ctx, sim), invoice_id(sim)
    reseller, customer = reseller_and_customer(sim, inv)
    snapshot = ingest.ensure(ctx, tenant, inv, FileType.ONETIME)
    first = snapshot.files[0]
    data = ctx.storage.files.get_blob_client(f"{snapshot.id}/{first['name']}").download_blob().readall()
    assert pq.ParquetFile(io.BytesIO(data)).num_row_groups > 2
    every = page_all(ctx, tenant, inv, "onetime", 2000)
    for size in (1, 6, 13):
        assert page_all(ctx, tenant, inv, "onetime", size) == every
    mine = [r["ReferenceId"] for r in every if r["CustomerId"] == customer and r["ResellerMpnId"] == reseller]
    got = page_all(ctx, tenant, inv, "onetime", 3, view="customer", customerId=customer, resellerId=reseller)
    assert [r["ReferenceId"] for r in got] == mine and mine


def test_the_manifest_has_parts_counts_exact_sums_and_microsofts_columns(sim_env, ctx, sim) -> None:
    tenant, inv = register(ctx, sim), invoice_id(sim)
    snapshot = ingest.ensure(ctx, tenant, inv, FileType.DAILY)
    m = snapshot.manifest
    expected = sim.expected(inv, "dailyratedusage")
    assert m["rows"] == expected.rows == sum(p["rows"] for p in m["parts"])
    assert Decimal(m["sums"]["BillingPreTaxTotal"]) == expected.cost_total
    assert m["source"] == "graph" and m["dataVersion"] and m["fetchedAt"] and m["invoiceId"] == inv
    assert snapshot.id.startswith(f"snapshots/tenant={tenant}/invoice={inv}/type=dailyratedusage/version=")
    name = f"{snapshot.id}/{snapshot.files[0]['name']}"
    schema = pq.ParquetFile(io.BytesIO(ctx.storage.files.get_blob_client(name).download_blob().readall())).schema_arrow
    assert str(schema.field("BillingPreTaxTotal").type) == str(DECIMAL_TYPE) == "decimal128(38, 20)"
    assert str(schema.field("CustomerId").type) == "string"
    record, _ = ctx.snapshots.get(tenant, inv, "dailyratedusage")
    assert record.status == "Ready" and record.snapshot_id == snapshot.id and record.rows == m["rows"]
    assert ingest.ensure(ctx, tenant, inv, FileType.DAILY).id == snapshot.id  # Ready: not again


def test_a_failed_ingest_is_marked_and_the_next_request_tries_again(sim_env, ctx, sim) -> None:
    tenant, inv = register(ctx, sim), invoice_id(sim)
    sim.faults.no_data(inv)
    with pytest.raises(Exception):
        ingest.ensure(ctx, tenant, inv, FileType.ONETIME)
    record, _ = ctx.snapshots.get(tenant, inv, "onetime")
    assert record.status == "Failed" and record.error and record.snapshot_id is None
    sim.faults.reset()
    assert ingest.ensure(ctx, tenant, inv, FileType.ONETIME).manifest["rows"] == sim.expected(inv, "onetime").rows


def test_unbilled_files_stay_live(sim_env, ctx, sim) -> None:
    tenant = register(ctx, sim)
    fid = request(ctx, tenant, "unbilled-current", invoice_type="dailyratedusage", currency="eur")
    run_queue(ctx)
    record = ctx.files.get(tenant, fid)[0]
    assert record.status == FileStatus.AVAILABLE and record.snapshot_id is None
    assert ctx.snapshots.snapshot_ids(tenant) == set()




def test_retention_deletes_snapshots_no_kept_version_refers_to(sim_env, ctx, sim) -> None:
    from datetime import timedelta

    from shared.adapters.repositories import utcnow
    from shared.app import retention

    tenant, inv = register(ctx, sim), invoice_id(sim)
    fid = request(ctx, tenant, inv, invoice_type="onetime")
    run_queue(ctx)
    old = ctx.files.get(tenant, fid)[0].snapshot_id
    sim.faults.revise(inv)
    assert ingest.note_revision(ctx, tenant, inv, FileType.ONETIME, "an eTag the poller saw")
    file_requests.regenerate(ctx, tenant, fid, "revised")
    run_queue(ctx)
    new = ctx.files.get(tenant, fid)[0].snapshot_id
    assert new != old and ctx.snapshots.snapshot_ids(tenant) == {old, new}

    assert retention.purge(ctx, utcnow()).snapshots_deleted == []  # version 1 is kept: so is its snapshot
    run = retention.purge(ctx, utcnow() + timedelta(days=ctx.settings.retention_days + 1))
    assert run.deleted == [(fid, 1)] and run.snapshots_deleted == [old]
    assert ctx.snapshots.snapshot_ids(tenant) == {new} and ctx.snapshots.load(old) is None
    assert file_requests.download_link(ctx, tenant, fid)  # the current version and its snapshot stay


def test_the_prefix_reads_as_one_hive_partitioned_parquet_table(sim_env, ctx, sim, tmp_path) -> None:
    """What an external table over the prefix sees (ADX, Spark, Fabric are not here: Arrow's dataset reader is)."""
    import pyarrow.dataset as ds

    tenant, inv = register(ctx, sim), invoice_id(sim)
    snapshot = ingest.ensure(ctx, tenant, inv, FileType.DAILY)
    files = []
    for blob in ctx.storage.files.list_blobs(name_starts_with="snapshots/"):
        target = tmp_path / blob.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(ctx.storage.files.get_blob_client(blob.name).download_blob().readall())
        if blob.name.endswith(".parquet"):
            files.append(str(target))
    table = ds.dataset(files, format="parquet", partitioning="hive",
                       partition_base_dir=str(tmp_path / "snapshots")).to_table()
    assert table.num_rows == snapshot.manifest["rows"]
    assert set(table.column("invoice").to_pylist()) == {inv} and set(table.column("type").to_pylist()) == \
        {"dailyratedusage"}
    total = table.column("BillingPreTaxTotal")
    assert str(total.type) == str(DECIMAL_TYPE) == "decimal128(38, 20)"
    assert sum((v for v in total.to_pylist() if v is not None), Decimal(0)) == \
        Decimal(snapshot.manifest["sums"]["BillingPreTaxTotal"]) == sim.expected(inv, "dailyratedusage").cost_total


def test_a_failed_ingest_for_the_charges_api_is_shown_and_queued_again_by_the_next_poll(sim_env, ctx, sim) -> None:
    tenant, inv = register(ctx, sim), invoice_id(sim)
    scope = ChargesScope.model_validate({"invoiceType": "onetime"})
    sim.faults.no_data(inv)
    assert file_requests.get_charges(ctx, tenant, inv, scope, 10, None)["pending"]["status"] == "Queued"
    assert run_queue(ctx) == 1  # the ingest fails; the message is done with (the record says why)
    record, _ = ctx.snapshots.get(tenant, inv, "onetime")
    assert record.status == "Failed" and "no data" in record.error.lower()
    sim.faults.reset()
    pending = file_requests.get_charges(ctx, tenant, inv, scope, 10, None)["pending"]
    assert pending["status"] == "Queued" and "no data" in pending["lastError"].lower()
    assert run_queue(ctx) == 1
    assert len(file_requests.get_charges(ctx, tenant, inv, scope, 10, None)["items"]) == 10


def test_a_revision_whose_export_cannot_be_read_again_is_exported_anew(sim_env, ctx, sim) -> None:
    tenant, inv = register(ctx, sim), invoice_id(sim)
    first = ingest.ensure(ctx, tenant, inv, FileType.ONETIME)
    sim.faults.revise(inv)
    gone = f"{sim.base_url}/v1.0/reports/partners/billing/operations/00000000-0000-4000-8000-000000000000"
    assert ingest.note_revision(ctx, tenant, inv, FileType.ONETIME, "an eTag the poller saw", gone)
    seen = len(sim.requests)
    second = ingest.ensure(ctx, tenant, inv, FileType.ONETIME)
    assert second.id != first.id and second.data_version != first.data_version
    assert sim.counts(seen)["export"] == 1  # the operation was gone (404): one new export
    record, _ = ctx.snapshots.get(tenant, inv, "onetime")
    assert record.wanted is None and record.wanted_operation is None and record.snapshot_id == second.id
