"""Issue 15, defects 4, 5 and 8: one tenant's bad data does not stop the others; invoices are not frozen at
discovery; retention never deletes the last good file. Against Azurite and the Partner Center simulator."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import requests

from shared.adapters import invoices
from shared.adapters.partner_center.transport import Credentials
from shared.adapters.repositories import InvoiceRepository, utcnow
from shared.app import tenants
from shared.app import automation, file_requests, ingest, retention, versions
from shared.app.context import AppContext
from shared.core.margins import MarginRule
from shared.core.columns import FileType
from shared.core.models import AutomationIn, FileStatus, InvoiceState, TenantIn
from tests.app.crash_points import listed_versions, version_url
from tests.app.test_automation import NOW, drain, files_of, setup
from tests.conftest import SECRET_SETTING

TENANTS = [f"00000000-0000-4000-8000-00000000000{n}" for n in (1, 2, 3)]  # polled in this order


def three_tenants(ctx: AppContext, sim, monkeypatch: pytest.MonkeyPatch) -> str:
    """Three partners with automation on. The simulator is one Microsoft account, so each partner's sign-in is
    pointed at its tenant (the one stand-in here: three real Partner Center accounts cannot run locally)."""
    real = Credentials
    monkeypatch.setattr(invoices, "Credentials", lambda tenant, *rest: real(sim.tenant_id, *rest))
    for tenant in TENANTS:
        tenants.put_tenant(ctx, tenant, TenantIn(display_name=tenant[-1], client_id=sim.client_id,
                                                       client_secret_setting=SECRET_SETTING))
        automation.put_automation(ctx, tenant, AutomationIn(enabled=True, file_types=["onetime"],
                                                            reseller_views=True, start_from="2026-11-01"))
    return str(sim.faults.publish_next_invoice()["id"])


def store_rule_written_before_ids_were_checked(ctx: AppContext, tenant: str, target: str) -> None:
    rule = MarginRule(id=str(uuid.uuid4()), level="reseller", target_id=target, percent="10",
                      effective_from="2020-01-01")
    ctx.rules.table.create_entity({"PartitionKey": tenant, "RowKey": rule.id,
                                   **rule.model_dump(mode="json", exclude={"id"}, exclude_none=True)})


def test_a_bad_reseller_rule_in_the_first_tenant_does_not_stop_the_others(sim_env, ctx, sim, monkeypatch) -> None:
    invoice = three_tenants(ctx, sim, monkeypatch)
    store_rule_written_before_ids_were_checked(ctx, TENANTS[0], "1" * 11)  # 11 digits: no file request takes it
    runs = automation.poll(ctx, NOW)
    assert [r.tenant_id for r in runs] == TENANTS and all(r.error is None for r in runs)
    drain(ctx)
    for tenant in TENANTS:  # the bad rule gets no reseller view; everything else is made
        (made,) = files_of(ctx, tenant, invoice)
        assert (made.view.value, made.status) == ("partner", FileStatus.AVAILABLE), made.error


def test_one_tenants_and_one_invoices_failure_is_counted_and_the_rest_go_on(sim_env, ctx, sim, monkeypatch) -> None:
    invoice = three_tenants(ctx, sim, monkeypatch)
    # the first tenant's Invoices table holds an entity it cannot read; the second's an invoice id no file
    # request accepts (beside the good one): each is logged and counted, the rest is done
    ctx.storage.table("Invoices").create_entity({"PartitionKey": TENANTS[0], "RowKey": "G1",
                                                 "discovered_at": "not a date"})
    InvoiceRepository(ctx.storage).create(InvoiceState(
        tenant_id=TENANTS[1], invoice_id="G-1", billing_period_start="2026-11-01", file_types=["onetime"],
        discovered_at=utcnow()))
    runs = automation.poll(ctx, NOW)
    assert [(r.tenant_id, r.failures) for r in runs] == [(TENANTS[0], 1), (TENANTS[1], 1), (TENANTS[2], 0)]
    assert runs[0].error and "G-1" in runs[1].error
    drain(ctx)
    for tenant in TENANTS[1:]:
        assert [f.status for f in files_of(ctx, tenant, invoice)] == [FileStatus.AVAILABLE]


def test_an_invoice_listed_without_its_file_types_gets_them_later(sim_env, ctx, sim, monkeypatch) -> None:
    """Defect 8: the poller brings recorded invoices up to date until their files exist."""
    tenant, invoice = setup(ctx, sim, file_types=["onetime"])
    real = invoices.list_invoices
    first_listing = True

    def listing(client):
        summaries = real(client)
        if first_listing:  # Microsoft lists the new invoice before its details are in
            return [s.model_copy(update={"file_types": []}) if s.id.upper() == invoice else s for s in summaries]
        return summaries

    monkeypatch.setattr(invoices, "list_invoices", listing)
    assert automation.poll(ctx, NOW)[0].new_invoices.count(invoice) == 1
    assert files_of(ctx, tenant, invoice) == []
    first_listing = False
    (run,) = automation.poll(ctx, NOW)
    (made,) = files_of(ctx, tenant, invoice)
    assert run.requested == [made.id] and made.invoice_type.value == "onetime"
    state, _ = InvoiceRepository(ctx.storage).get(tenant, invoice)
    assert [t.value for t in state.file_types] == ["onetime", "dailyratedusage"]


def test_an_invoice_without_a_billing_period_start_is_made_despite_start_from(sim_env, ctx, sim,
                                                                             monkeypatch) -> None:
    """Defect 8: with startFrom set, an invoice listed without its billing-period start is still made."""
    tenant, invoice = setup(ctx, sim, file_types=["onetime"])
    real = invoices.list_invoices
    monkeypatch.setattr(invoices, "list_invoices", lambda client: [
        s.model_copy(update={"billing_period_start": None}) if s.id.upper() == invoice else s
        for s in real(client)])
    (run,) = automation.poll(ctx, NOW)
    (made,) = files_of(ctx, tenant, invoice)
    assert run.requested == [made.id]  # and only it: older invoices started before startFrom
    drain(ctx)
    assert files_of(ctx, tenant, invoice)[0].status == FileStatus.AVAILABLE


@pytest.mark.parametrize("newer", ["Queued", "Processing", "Failed", "NeedsReview", "Available"])
def test_retention_keeps_the_newest_available_version_whatever_the_newer_one(sim_env, ctx, sim, newer) -> None:
    """Defect 5: a superseded version goes after RETENTION_DAYS, except the newest Available one while the
    current version is not Available (still being made, failed, or held for review). A regeneration reads the
    invoice's snapshot: it fails when Microsoft, asked for the revised data the poller saw, answers 500; it is held
    for review when blocking findings are switched on for a snapshot whose data has an error."""
    tenant, invoice = setup(ctx, sim, file_types=["onetime"])
    if newer == "NeedsReview":
        sim.faults.defect(invoice, "total")  # found by the ingest's validation; not blocking yet
    automation.poll(ctx, NOW)
    drain(ctx)
    (first,) = files_of(ctx, tenant, invoice)
    file_requests.regenerate(ctx, tenant, first.id)
    if newer == "Processing":  # a worker is on it
        record, etag = ctx.files.get(tenant, first.id)
        record.status, record.lease_until = FileStatus.PROCESSING, utcnow() + timedelta(minutes=5)
        ctx.files.replace(record, etag)
    elif newer == "Failed":
        ingest.note_revision(ctx, tenant, invoice, FileType.ONETIME, "a-revised-etag")  # as the poller's check
        sim.faults.fail_invoice(invoice)
        drain(ctx, last_delivery=True)
    elif newer == "NeedsReview":
        ctx.settings.validation_blocks = True
        drain(ctx)
    elif newer == "Available":
        drain(ctx)
    current, _ = ctx.files.get(tenant, first.id)
    assert (current.version, current.status.value) == (2, newer)

    run = retention.purge(ctx, utcnow() + timedelta(days=401))
    listed = [v["version"] for v in listed_versions(ctx, tenant, first.id)]
    if newer == "Available":
        assert run.deleted == [(first.id, 1)] and listed == [2]
        return
    assert run.deleted == [] and listed == [1, 2]
    url = version_url(ctx, tenant, first.id, 1)
    assert requests.get(url, timeout=30).status_code == 200
