"""Monthly automation against Azurite and the Partner Center simulator, with the clock passed in.

A new invoice yields its configured files exactly once (racing pollers, a crash after the record); a revised export
yields exactly one new version; transient failures are retried up to the cap; retention deletes superseded versions
past their time and nothing else; the HTTP routes follow the API's conventions.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
import requests

from shared.app import automation

from shared.app import retention

from shared.app import file_requests
from shared.app.context import AppContext
from shared.app.generation import Worker
from shared.core.models import AutomationIn, FileStatus, TenantIn
from shared.adapters.repositories import InvoiceRepository, VersionRepository, utcnow
from tests.conftest import SECRET_SETTING, problem

NOW = datetime(2026, 12, 9, 6, 0, tzinfo=UTC)  # the simulator's next invoice is for November 2026


class Crash(Exception):
    pass


def setup(ctx: AppContext, sim, **auto: Any) -> tuple[str, str]:
    """Register the simulator's tenant, switch automation on for November 2026 onwards, publish that invoice."""
    file_requests.put_tenant(ctx, sim.tenant_id, TenantIn(display_name="Sim", client_id=sim.client_id,
                                                    client_secret_setting=SECRET_SETTING,
                                                    billing_anniversary_day=12))
    automation.put_automation(ctx, sim.tenant_id, AutomationIn(enabled=True, start_from="2026-11-01", **auto))
    return sim.tenant_id, str(sim.faults.publish_next_invoice()["id"])


def drain(ctx: AppContext, last_delivery: bool = False) -> int:
    """Handle every queued message (as the last delivery when asked, so transient failures settle as Failed)."""
    worker, queue, handled = Worker(ctx), ctx.storage.queue(), 0
    while True:
        batch = list(queue.receive_messages(visibility_timeout=60, max_messages=32))
        if not batch:
            return handled
        for msg in batch:
            count = ctx.settings.max_dequeue_count if last_delivery else msg.dequeue_count
            worker.handle(msg.content, count)
            queue.delete_message(msg)
            handled += 1


def files_of(ctx: AppContext, tenant: str, invoice: str):
    return sorted(ctx.files.list(tenant, invoice_id=invoice), key=lambda f: f.invoice_type.value)


def race(ctx: AppContext, now: datetime, threads: int = 2) -> list:
    barrier, results, errors = threading.Barrier(threads), [], []

    def run() -> None:
        barrier.wait()
        try:
            results.extend(automation.poll(ctx, now))
        except Exception as exc:  # noqa: BLE001  (re-raised by the assert below)
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert not errors, errors
    return results


def test_new_invoice_yields_its_files_once_despite_a_crash_and_racing_runs(sim_env, ctx, sim) -> None:
    tenant, invoice = setup(ctx, sim)

    def crash_after_record(state) -> None:
        if state.invoice_id == invoice:
            raise Crash("host died between the invoice record and the enqueue")

    with pytest.raises(Crash):
        automation.poll(ctx, NOW, after_record=crash_after_record)
    assert InvoiceRepository(ctx.storage).get(tenant, invoice) is not None
    assert files_of(ctx, tenant, invoice) == []

    runs = race(ctx, NOW)
    assert sorted(i for r in runs for i in r.requested) == sorted(f.id for f in files_of(ctx, tenant, invoice))
    files = files_of(ctx, tenant, invoice)
    assert [f.invoice_type.value for f in files] == ["dailyratedusage", "onetime"]
    assert all(f.status == FileStatus.QUEUED and f.version == 1 for f in files)
    state, _ = InvoiceRepository(ctx.storage).get(tenant, invoice)
    assert sorted(state.requested.values()) == sorted(f.id for f in files)
    # older invoices are recorded (the calendar shows them) but not back-filled before startFrom
    assert len(InvoiceRepository(ctx.storage).list(tenant)) == len(sim.invoices())
    assert len(list(ctx.files.list(tenant))) == 2

    drain(ctx)
    again = automation.poll(ctx, NOW)  # a repeated (or past-due) run: nothing new
    assert again[0].requested == again[0].revised == again[0].retried == []
    for f in files_of(ctx, tenant, invoice):
        assert (f.status, f.version, f.attempts) == (FileStatus.AVAILABLE, 1, 1), f.error
        assert len(ctx.files.list_versions(tenant, f.id)) == 1


def test_a_revised_export_makes_exactly_one_new_version(sim_env, ctx, sim) -> None:
    tenant, invoice = setup(ctx, sim, file_types=["dailyratedusage"])
    automation.poll(ctx, NOW)
    drain(ctx)
    (first,) = files_of(ctx, tenant, invoice)
    assert first.status == FileStatus.AVAILABLE and first.source.value == "graph" and first.data_version

    sim.faults.revise(invoice)
    runs = race(ctx, NOW) + automation.poll(ctx, NOW)
    assert sum(len(r.revised) for r in runs) == 1
    (queued,) = files_of(ctx, tenant, invoice)
    assert queued.version == 2 and queued.reason.startswith("Microsoft revised the data (eTag ")
    drain(ctx)
    (second,) = files_of(ctx, tenant, invoice)
    assert second.status == FileStatus.AVAILABLE and second.data_version != first.data_version
    assert second.data_version in second.reason
    assert automation.poll(ctx, NOW)[0].revised == []

    sim.faults.revise(invoice)  # past the window (30 Nov + 15 days) revisions are no longer followed
    assert automation.poll(ctx, datetime(2026, 12, 16, tzinfo=UTC))[0].revised == []
    assert [v.version for v in ctx.files.list_versions(tenant, first.id)] == [1, 2]


def test_a_claimed_regeneration_lost_in_a_crash_is_completed_by_the_next_run(sim_env, ctx, sim,
                                                                              monkeypatch) -> None:
    tenant, invoice = setup(ctx, sim, file_types=["onetime"])
    automation.poll(ctx, NOW)
    drain(ctx)
    sim.faults.revise(invoice)
    real = automation.regenerate_from
    monkeypatch.setattr(automation, "regenerate_from", lambda *a, **k: (_ for _ in ()).throw(Crash("after claim")))
    with pytest.raises(Crash):
        automation.poll(ctx, NOW)
    monkeypatch.setattr(automation, "regenerate_from", real)
    automation.poll(ctx, NOW)
    automation.poll(ctx, NOW)
    (record,) = files_of(ctx, tenant, invoice)
    assert record.version == 2 and record.reason.startswith("Microsoft revised the data")


def test_transient_failures_are_retried_up_to_the_cap(sim_env, ctx, sim) -> None:
    ctx.settings.transient_retry_cap = 1
    tenant, invoice = setup(ctx, sim, file_types=["onetime"])
    sim.faults.no_data(invoice)
    automation.poll(ctx, NOW)
    drain(ctx, last_delivery=True)
    (failed,) = files_of(ctx, tenant, invoice)
    assert failed.status == FileStatus.FAILED and failed.transient

    assert automation.poll(ctx, NOW)[0].retried == [failed.id]
    (retry,) = files_of(ctx, tenant, invoice)
    assert retry.version == 2 and retry.reason.startswith("automatic retry 1 of 1")
    drain(ctx, last_delivery=True)
    assert automation.poll(ctx, NOW)[0].retried == []  # cap reached: a person decides now
    assert files_of(ctx, tenant, invoice)[0].status == FileStatus.FAILED


def test_retention_deletes_superseded_versions_only(sim_env, ctx, sim) -> None:
    tenant, invoice = setup(ctx, sim)
    automation.poll(ctx, NOW)
    drain(ctx)
    onetime = next(f for f in files_of(ctx, tenant, invoice) if f.invoice_type.value == "onetime")
    file_requests.regenerate(ctx, tenant, onetime.id)
    drain(ctx)
    v1 = ctx.files.list_versions(tenant, onetime.id)[0]
    blobs_before = sorted(b.name for b in ctx.storage.files.list_blobs())
    assert any(name.startswith(retention.version_folder(v1)) for name in blobs_before)

    assert retention.purge(ctx, utcnow() + timedelta(days=399)).deleted == []
    run = retention.purge(ctx, utcnow() + timedelta(days=401))
    assert run.deleted == [(onetime.id, 1)]
    blobs_after = sorted(b.name for b in ctx.storage.files.list_blobs())
    assert blobs_after == [n for n in blobs_before if not n.startswith(retention.version_folder(v1))]
    assert [v.version for v in ctx.files.list_versions(tenant, onetime.id)] == [2]
    versions = VersionRepository(ctx.storage).list(tenant)
    assert sorted((v.invoice_type.value, v.version) for v in versions) == [("dailyratedusage", 1), ("onetime", 2)]
    current, _ = ctx.files.get(tenant, onetime.id)
    assert requests.get(file_requests.download_link(ctx, tenant, onetime.id)[0], timeout=30).status_code == 200
    assert current.version == 2
    assert retention.purge(ctx, utcnow() + timedelta(days=10_000)).deleted == []  # current versions stay


# ---- HTTP ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def routes() -> dict[str, Any]:
    from functions import automation_api, timers

    # as function_app.py: registering the shared Blueprints here sets their auth level for the whole session
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.register_functions(automation_api.bp)
    app.register_functions(timers.bp)
    return {f.get_function_name(): f for f in app.get_functions()}


def call(routes: dict[str, Any], name: str, method: str, route: dict[str, str], body: Any = None,
         params: dict[str, str] | None = None) -> func.HttpResponse:
    from tests.conftest import call as call_as_admin

    return call_as_admin(routes, name, method, route=route, body=body, params=params)


def test_automation_settings_routes(sim_env, ctx, sim, routes) -> None:
    file_requests.put_tenant(ctx, sim.tenant_id, TenantIn(display_name="Sim", client_id=sim.client_id,
                                                    client_secret_setting=SECRET_SETTING))
    t = {"tenantId": sim.tenant_id}
    assert json.loads(call(routes, "get_automation", "GET", t).get_body())["enabled"] is False
    resp = call(routes, "put_automation", "PUT", t, {"enabled": True, "fileTypes": ["onetime"]})
    assert resp.status_code == 200, resp.get_body()
    got = json.loads(call(routes, "get_automation", "GET", t).get_body())
    assert (got["enabled"], got["fileTypes"], got["resellerViews"]) == (True, ["onetime"], False)
    bad = problem(call(routes, "put_automation", "PUT", t, {"enabled": True, "fileType": ["onetime"]}))
    assert bad["status"] == 400 and "fileType" in json.dumps(bad)


def test_reseller_views_for_every_reseller_with_a_rule(sim_env, ctx, sim) -> None:
    from shared.core.margins import MarginRuleIn

    tenant, invoice = setup(ctx, sim, file_types=["onetime"], reseller_views=True)
    reseller = next(r["ResellerMpnId"] for r in sim.iter_rows(invoice, "onetime")
                    if r["ResellerMpnId"] not in (None, "", "0"))
    ctx.rules.create(tenant, MarginRuleIn(level="reseller", target_id=reseller, percent="10",
                                          effective_from="2020-01-01"))
    automation.poll(ctx, NOW)
    automation.poll(ctx, NOW)  # a second run adds nothing
    drain(ctx)
    files = files_of(ctx, tenant, invoice)
    assert sorted((f.view.value, f.reseller_id) for f in files) == [("partner", None), ("reseller", reseller)]
    assert all(f.status == FileStatus.AVAILABLE and f.version == 1 for f in files)


def test_calendar_route(sim_env, ctx, sim, routes) -> None:
    tenant, invoice = setup(ctx, sim, file_types=["onetime"])
    automation.poll(ctx, NOW)
    t = {"tenantId": tenant}
    for months in ("0", "25", "x"):
        bad = problem(call(routes, "get_calendar", "GET", t, params={"months": months}))
        assert bad["status"] == 400 and "months" in json.dumps(bad)
    body = json.loads(call(routes, "get_calendar", "GET", t, params={"months": "24"}).get_body())
    assert body["billingAnniversaryDay"] == 12 and len(body["items"]) == 4 * 24
    today = datetime.now(UTC).date()
    items = automation.calendar_view(ctx, tenant, 3, today=NOW.date())["items"]
    october = next(i for i in items if i["fileType"] == "onetime" and i["periodStart"] == "2026-10-01")
    assert october["invoiceAppeared"] and not october["filesExist"] and not october["late"]
    november = next(i for i in items if i["fileType"] == "onetime" and i["periodStart"] == "2026-11-01")
    assert (november["expectedDate"], november["invoiceIds"], november["filesExist"]) == \
           ("2026-12-08", [invoice], True)
    # the legacy period 12 Nov – 11 Dec is not due before 14 Dec; 12 Oct – 11 Nov came (D0… invoice)
    licence = {i["periodStart"]: i for i in items if i["fileType"] == "license"}
    assert not licence["2026-11-12"]["late"] and licence["2026-10-12"]["invoiceAppeared"]
    assert today  # the route itself used the real clock above


def test_versions_bulk_regenerate_and_version_download_routes(sim_env, ctx, sim, routes) -> None:
    tenant, invoice = setup(ctx, sim, file_types=["onetime"])
    automation.poll(ctx, NOW)
    drain(ctx)
    t = {"tenantId": tenant}
    resp = call(routes, "regenerate_files", "POST", t, {"invoiceId": invoice, "invoiceType": "onetime"})
    assert resp.status_code == 202, resp.get_body()
    (item,) = json.loads(resp.get_body())["items"]
    assert (item["version"], item["reason"]) == (2, "bulk regeneration")
    again = json.loads(call(routes, "regenerate_files", "POST", t, {"invoiceId": invoice}).get_body())
    assert again["items"] == []  # the file is Queued now: nothing to regenerate
    assert problem(call(routes, "regenerate_files", "POST", t, {"invoiceKind": "x"}))["status"] == 400
    drain(ctx)

    f = {**t, "fileId": item["id"]}
    versions = json.loads(call(routes, "list_file_versions", "GET", f).get_body())["items"]
    assert [(v["version"], v["current"], v["reason"]) for v in versions] == \
           [(1, False, "requested"), (2, True, "bulk regeneration")]
    old = call(routes, "download_file_version", "GET", {**f, "version": "1"})
    assert old.status_code == 302 and "/v0001/" in old.headers["Location"]
    assert requests.get(old.headers["Location"], timeout=30).status_code == 200
    assert call(routes, "download_file_version", "GET", {**f, "version": "7"}).status_code == 404
    assert problem(call(routes, "download_file_version", "GET", {**f, "version": "x"}))["status"] == 400


def test_regenerate_route_is_not_taken_for_a_file_id() -> None:
    from devtools.localhost.routing import RouteTemplate

    bulk = RouteTemplate("tenants/{tenantId}/reconciliation-files:regenerate")
    one = RouteTemplate("tenants/{tenantId}/reconciliation-files/{fileId}")
    tenant = "9a0f6b5e-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
    assert bulk.match(f"tenants/{tenant}/reconciliation-files:regenerate") == {"tenantId": tenant}
    assert one.match(f"tenants/{tenant}/reconciliation-files:regenerate") is None
    assert bulk.match(f"tenants/{tenant}/reconciliation-files/{tenant}") is None


def test_timer_bindings(routes) -> None:
    bindings = {name: routes[name].get_bindings()[0].get_dict_repr() for name in ("poll_invoices", "apply_retention")}
    assert bindings["poll_invoices"]["schedule"] == "%INVOICE_POLL_SCHEDULE%"
    assert bindings["apply_retention"]["schedule"] == "%RETENTION_SCHEDULE%"
    assert all(b["useMonitor"] and not b["runOnStartup"] for b in bindings.values())
