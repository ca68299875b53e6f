"""The generation worker end to end: Azurite for storage, the Partner Center simulator for Microsoft.

Covers the slice's promises: the file ties out to the simulator's invoice to the cent through both API
generations, with faults injected; redelivery never yields a second file or a wrong status; the poison path
leaves a reason a person can act on.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
import requests

from shared.app import file_requests, tenants
from shared.app.context import AppContext
from shared.app.generation import Worker, snapshot_name_for
from shared.core.models import FileRequest, FileStatus, TenantIn
from shared.adapters.settings import Settings
from tests.conftest import SECRET_SETTING


def register(ctx: AppContext, sim) -> str:
    tenants.put_tenant(ctx, sim.tenant_id, TenantIn(display_name="Sim", client_id=sim.client_id,
                                                    client_secret_setting=SECRET_SETTING))
    return sim.tenant_id


def invoice_id(sim, prefix: str = "G") -> str:
    return next(i["id"] for i in sim.invoices() if i["id"].startswith(prefix) and i.get("documentType") == "invoice")


def run_queue(ctx: AppContext, worker: Worker | None = None) -> int:
    """Drain the generation queue the way the host would (dequeue count included). Returns messages handled."""
    worker = worker or Worker(ctx)
    queue = ctx.storage.queue()
    handled = 0
    for msg in queue.receive_messages(visibility_timeout=60):
        worker.handle(msg.content, msg.dequeue_count)
        queue.delete_message(msg)
        handled += 1
    return handled


def download_rows(ctx: AppContext, tenant: str, file_id: str) -> list[dict[str, str]]:
    url, _ = file_requests.download_link(ctx, tenant, file_id)
    data = requests.get(url, timeout=30).content
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def generate(ctx: AppContext, sim, file_type: str, inv: str) -> tuple[str, dict]:
    tenant = register(ctx, sim)
    record, created = file_requests.request_file(ctx, tenant, FileRequest(invoice_type=file_type, invoice_id=inv))
    assert created
    assert run_queue(ctx) == 1
    got, _ = ctx.files.get(tenant, record.id)
    return tenant, got


def assert_ties_out(ctx: AppContext, sim, file_type: str, inv: str, record) -> list[dict[str, str]]:
    from shared.core.columns import layout_for

    layout = layout_for(file_type)
    expected = sim.expected(inv, file_type)
    assert record.status == FileStatus.AVAILABLE, record.error
    assert record.row_count == expected.rows
    assert record.totals.cost == expected.cost_total
    rows = download_rows(ctx, record.tenant_id, record.id)
    assert len(rows) == expected.rows
    assert sum(Decimal(r[layout.cost_column] or 0) for r in rows) == expected.cost_total
    assert list(rows[0].keys())[: len(layout.columns)] == list(layout.columns)
    return rows


@pytest.mark.parametrize("file_type", ["onetime", "dailyratedusage"])
def test_new_commerce_file_from_graph_export_ties_out(sim_env, ctx, sim, file_type) -> None:
    inv = invoice_id(sim)
    _, record = generate(ctx, sim, file_type, inv)
    assert record.source == "graph" and record.data_version
    rows = assert_ties_out(ctx, sim, file_type, inv, record)
    if file_type == "onetime":
        invoice = next(i for i in sim.invoices() if i["id"] == inv)
        assert record.invoice_total == Decimal(str(invoice["totalCharges"]))
        assert record.totals.microsoft_total == record.invoice_total  # the file ties out to the invoice
        expected = {r["ReferenceId"]: r for r in sim.iter_rows(inv, "onetime")}
        for row in rows:
            want = expected[row["ReferenceId"]]
            assert Decimal(row["Subtotal"]) == Decimal(want["Subtotal"])
            assert row["CustomerId"] == want["CustomerId"]


@pytest.mark.parametrize("file_type", ["onetime", "dailyratedusage"])
def test_same_file_through_partner_center_v1_paging(sim_env, ctx, sim, monkeypatch, file_type) -> None:
    monkeypatch.setenv("ONETIME_GRAPH_FROM", "2999-01-01")
    monkeypatch.setenv("DAILY_USAGE_GRAPH_FROM", "2999-01-01")
    ctx.settings = Settings()  # type: ignore[call-arg]
    inv = invoice_id(sim)
    _, record = generate(ctx, sim, file_type, inv)
    assert record.source == "v1"
    assert_ties_out(ctx, sim, file_type, inv, record)


@pytest.mark.parametrize("file_type", ["license", "usage"])
def test_legacy_files_through_offset_paging(sim_env, ctx, sim, file_type) -> None:
    inv = invoice_id(sim, "D")
    _, record = generate(ctx, sim, file_type, inv)
    assert record.source == "v1"
    assert_ties_out(ctx, sim, file_type, inv, record)


@pytest.mark.parametrize("file_type,prefix", [("onetime", "G"), ("dailyratedusage", "G"), ("license", "D"),
                                              ("usage", "D")])
def test_throttling_and_server_errors_are_retried_with_the_same_request_id(sim_env, ctx, sim, file_type,
                                                                            prefix) -> None:
    inv = invoice_id(sim, prefix)
    seen = len(sim.requests)  # the simulator's log spans the whole session
    sim.faults.throttle(3, retry_after=0, path_prefix="/v1")  # Partner Center and Graph (/v1.0) alike
    sim.faults.server_error(2, status=503, retry_after=0, path_prefix="/v1")
    _, record = generate(ctx, sim, file_type, inv)
    assert_ties_out(ctx, sim, file_type, inv, record)
    log = sim.requests[seen:]
    retried = [r for r in log if r.status in (429, 503)]
    assert len(retried) == 5
    for failed in retried:
        request_id = failed.headers.get("ms-requestid")
        assert request_id
        follow = [r for r in log if r.headers.get("ms-requestid") == request_id and r.status < 400]
        assert follow, "a retried request must reuse its MS-RequestId"


def test_truncated_blob_and_expired_sas_are_recovered(sim_env, ctx, sim) -> None:
    import glob
    import tempfile

    downloads = f"{tempfile.gettempdir()}/export-*.json.gz"
    before = set(glob.glob(downloads))
    inv = invoice_id(sim)
    sim.faults.truncate_blobs(1)
    sim.faults.expire_sas(1)
    _, record = generate(ctx, sim, "dailyratedusage", inv)
    assert_ties_out(ctx, sim, "dailyratedusage", inv, record)
    # every blob downloaded (also one downloaded ahead under a link that then expired) is deleted: a download
    # ahead is dropped when it ends, which may be a moment after the file is made (bounded wait, then fail)
    import time

    deadline = time.monotonic() + 15
    while set(glob.glob(downloads)) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(glob.glob(downloads)) <= before


def test_redelivered_message_never_makes_a_second_file(sim_env, ctx, sim) -> None:
    tenant = register(ctx, sim)
    inv = invoice_id(sim)
    record, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type="onetime", invoice_id=inv))
    message = json.dumps({"tenantId": tenant, "fileId": record.id, "version": 1})
    worker = Worker(ctx)
    worker.handle(message, 1)
    first, etag = ctx.files.get(tenant, record.id)
    worker.handle(message, 2)  # the queue delivered it again
    again, etag2 = ctx.files.get(tenant, record.id)
    assert etag2 == etag and again.version == 1 and again.status == FileStatus.AVAILABLE
    blobs = [b.name for b in ctx.storage.files.list_blobs(name_starts_with=f"{tenant}/")]
    assert {b.rsplit("/", 1)[0] for b in blobs} == {first.blob_name.rsplit("/", 1)[0]}  # one version folder
    assert first.blob_name in blobs and snapshot_name_for(first.blob_name) in blobs


def test_regenerate_makes_a_new_version_and_keeps_the_old(sim_env, ctx, sim) -> None:
    inv = invoice_id(sim)
    tenant, first = generate(ctx, sim, "onetime", inv)
    second = file_requests.regenerate(ctx, tenant, first.id)
    assert second.version == 2 and second.status == FileStatus.QUEUED
    stale = json.dumps({"tenantId": tenant, "fileId": first.id, "version": 1})
    Worker(ctx).handle(stale, 1)  # an old message must not touch the new version
    assert ctx.files.get(tenant, first.id)[0].status == FileStatus.QUEUED
    run_queue(ctx)
    done, _ = ctx.files.get(tenant, first.id)
    assert done.status == FileStatus.AVAILABLE and done.version == 2 and done.blob_name != first.blob_name
    assert ctx.storage.files.get_blob_client(first.blob_name).exists()
    assert [v.version for v in ctx.files.list_versions(tenant, first.id)] == [1, 2]


def test_persistent_failure_ends_failed_with_a_reason_after_max_dequeues(sim_env, ctx, sim) -> None:
    tenant = register(ctx, sim)
    inv = invoice_id(sim)
    record, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type="onetime", invoice_id=inv))
    message = json.dumps({"tenantId": tenant, "fileId": record.id, "version": 1})
    sim.faults.fail_invoice(inv)
    worker = Worker(ctx)
    try:
        for attempt in range(1, ctx.settings.max_dequeue_count):
            with pytest.raises(Exception):
                worker.handle(message, attempt)
            noted, _ = ctx.files.get(tenant, record.id)
            assert noted.status == FileStatus.PROCESSING and noted.error
        worker.handle(message, ctx.settings.max_dequeue_count)  # the last try settles it
    finally:
        sim.faults.reset()
    failed, _ = ctx.files.get(tenant, record.id)
    assert failed.status == FileStatus.FAILED and "Microsoft" in failed.error
    assert not list(ctx.storage.files.list_blobs(name_starts_with=f"{tenant}/"))


def test_poison_handler_marks_failed_with_last_reason(sim_env, ctx, sim) -> None:
    tenant = register(ctx, sim)
    record, etag = None, None
    rec, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type="onetime", invoice_id=invoice_id(sim)))
    record, etag = ctx.files.get(tenant, rec.id)
    record.status, record.error = FileStatus.PROCESSING, "Microsoft kept answering HTTP 500"
    ctx.files.replace(record, etag)
    Worker(ctx).handle_poison(json.dumps({"tenantId": tenant, "fileId": rec.id, "version": 1}))
    failed, _ = ctx.files.get(tenant, rec.id)
    assert failed.status == FileStatus.FAILED and "HTTP 500" in failed.error


def test_no_data_is_retried_then_fails_with_microsofts_reason(sim_env, ctx, sim) -> None:
    from shared.adapters.partner_center.transport import NoDataAvailable

    tenant = register(ctx, sim)
    inv = invoice_id(sim)
    record, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type="dailyratedusage", invoice_id=inv))
    message = json.dumps({"tenantId": tenant, "fileId": record.id, "version": 1})
    sim.faults.no_data(inv)
    try:
        with pytest.raises(NoDataAvailable):
            Worker(ctx).handle(message, 1)  # transient: the queue tries again later
        Worker(ctx).handle(message, ctx.settings.max_dequeue_count)
    finally:
        sim.faults.reset()
    failed, _ = ctx.files.get(tenant, record.id)
    assert failed.status == FileStatus.FAILED and "no data available" in failed.error.lower()


def test_unknown_invoice_fails_at_once_with_its_id(sim_env, ctx, sim) -> None:
    _, missing = generate(ctx, sim, "onetime", "G999999999")
    assert missing.status == FileStatus.FAILED and "G999999999" in missing.error


def test_type_the_invoice_does_not_have_fails_clearly(sim_env, ctx, sim) -> None:
    _, record = generate(ctx, sim, "license", invoice_id(sim, "G"))
    assert record.status == FileStatus.FAILED and "no license charges" in record.error


@pytest.mark.parametrize("period", ["current", "last"])
def test_unbilled_daily_usage_before_the_invoice_exists(sim_env, ctx, sim, period) -> None:
    tenant = register(ctx, sim)
    req = FileRequest(invoice_type="dailyratedusage", invoice_id=f"unbilled-{period}", currency="eur")
    record, _ = file_requests.request_file(ctx, tenant, req)
    run_queue(ctx)
    done, _ = ctx.files.get(tenant, record.id)
    expected = sim.unbilled_expected(period, "dailyratedusage")
    assert done.status == FileStatus.AVAILABLE, done.error
    assert done.row_count == expected.rows and done.totals.cost == expected.cost_total
    assert done.invoice_id == f"UNBILLED-{period.upper()}" and done.source == "graph"


def test_unbilled_needs_a_currency_and_a_new_commerce_type(sim_env, ctx, sim) -> None:
    from shared.core.problems import Problem

    tenant = register(ctx, sim)
    for req in (FileRequest(invoice_type="dailyratedusage", invoice_id="unbilled-current"),
                FileRequest(invoice_type="license", invoice_id="unbilled-current", currency="EUR")):
        with pytest.raises(Problem) as err:
            file_requests.request_file(ctx, tenant, req)
        assert err.value.status == 400


def test_xlsx_too_big_for_a_sheet_is_refused_before_any_work(sim_env, ctx, sim, monkeypatch) -> None:
    from shared.adapters import file_writers
    from shared.core.problems import Problem

    inv = invoice_id(sim)
    tenant, csv_record = generate(ctx, sim, "onetime", inv)
    monkeypatch.setattr(file_requests, "XLSX_MAX_ROWS", csv_record.row_count - 1)
    with pytest.raises(Problem) as err:
        file_requests.request_file(ctx, tenant, FileRequest(invoice_type="onetime", invoice_id=inv, format="xlsx"))
    assert err.value.status == 422 and err.value.errors[0]["field"] == "format"
    assert ctx.storage.queue().peek_messages() == []
    # Not counted before (no earlier daily usage file): the generation finds out and says so.
    record, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type="dailyratedusage", invoice_id=inv,
                                                              format="xlsx"))
    monkeypatch.setattr(file_writers, "XLSX_MAX_ROWS", 10)
    run_queue(ctx)
    failed, _ = ctx.files.get(tenant, record.id)
    assert failed.status == FileStatus.FAILED and "Excel" in failed.error and failed.transient is False


def test_a_duplicate_delivery_during_a_live_lease_leaves_a_delayed_copy(sim_env, ctx, sim) -> None:
    from datetime import timedelta

    from shared.adapters.repositories import utcnow

    tenant = register(ctx, sim)
    record, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type="onetime", invoice_id=invoice_id(sim)))
    queue = ctx.storage.queue()
    for msg in queue.receive_messages():
        queue.delete_message(msg)
    running, etag = ctx.files.get(tenant, record.id)
    running.status, running.lease_until = FileStatus.PROCESSING, utcnow() + timedelta(minutes=3)
    ctx.files.replace(running, etag)
    message = json.dumps({"tenantId": tenant, "fileId": record.id, "version": 1})
    Worker(ctx).handle(message, 1)  # another delivery holds the lease: no race, no retry burnt
    Worker(ctx).handle_poison(message)  # nor does the poison handler fail a file that is being made
    still, _ = ctx.files.get(tenant, record.id)
    assert still.status == FileStatus.PROCESSING and still.attempts == 0
    assert queue.peek_messages() == []  # the copies wait until the lease can have ended
    assert queue.get_queue_properties().approximate_message_count == 2
