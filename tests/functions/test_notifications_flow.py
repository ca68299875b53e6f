"""The partner's month through the API, on the simulator, with a real signed-webhook receiver: the poller finds
a new invoice -> invoice.detected; the files are made -> file.available; a reseller cannot download its file
until a partner admin approves it, then can (and hears file.approved); a margin change and a regeneration make a
new version that waits for approval while the reseller still downloads the approved one."""

from __future__ import annotations

import json

import pytest

from shared.app import tenants
from shared.app import automation
from shared.core.access import PrincipalIn, Role
from shared.core.margins import MarginRuleIn
from shared.core.models import FileStatus
from tests.app.test_automation import NOW, drain, setup
from tests.conftest import ADMIN_OID, call, deliver_all, problem, token_for
from tests.webhook_receiver import Receiver, dump

RESELLER_OID = "0f000000-0000-4000-8000-0000000000f1"
CUSTOMER_OID = "0c000000-0000-4000-8000-0000000000c1"


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def body(resp) -> dict:
    assert resp.status_code < 400, resp.get_body()
    return json.loads(resp.get_body())


def test_signed_events_and_approval_through_the_month(sim_env, webhook_env, ctx, sim, functions, receiver) -> None:
    tenant, invoice = setup(ctx, sim, file_types=["onetime"], reseller_views=True)
    rows = [r for r in sim.iter_rows(invoice, "onetime") if r["ResellerMpnId"] not in (None, "", "0")]
    reseller, customer = rows[0]["ResellerMpnId"], rows[0]["CustomerId"].lower()
    ctx.rules.create(tenant, MarginRuleIn(level="reseller", target_id=reseller, percent="10",
                                          effective_from="2020-01-01"))
    ctx.principals.put(tenant, RESELLER_OID, PrincipalIn(role=Role.RESELLER, reseller_ids=[reseller]))
    ctx.principals.put(tenant, CUSTOMER_OID, PrincipalIn(role=Role.CUSTOMER, customer_ids=[customer]))
    as_reseller = token_for(tenant, role=None, object_id=RESELLER_OID)
    as_customer = token_for(tenant, role=None, object_id=CUSTOMER_OID)
    t = {"tenantId": tenant}

    everything = ["invoice.detected", "invoice.late", "file.available", "file.failed", "file.needsReview",
                  "file.approved", "data.revised"]
    erp = body(call(functions, "put_webhook", "PUT", route={**t, "webhookId": "erp"},
                    body={"url": receiver.url("erp"), "events": everything, "description": "ERP"}))
    receiver.secrets["erp"] = erp["secret"]
    assert "secretName" not in erp
    again = call(functions, "put_webhook", "PUT", route={**t, "webhookId": "erp"},
                 body={"url": receiver.url("erp"), "events": everything})
    assert again.status_code == 200 and "secret" not in body(again)  # the secret is shown once only
    mine = call(functions, "put_webhook", "PUT", route={**t, "webhookId": "r1"}, token=as_reseller,
                body={"url": receiver.url("r1"), "events": ["file.approved"]})
    assert mine.status_code == 201 and body(mine)["resellerIds"] == [reseller]
    receiver.secrets["r1"] = body(mine)["secret"]
    assert call(functions, "get_webhook", "GET", route={**t, "webhookId": "erp"}, token=as_reseller).status_code == 404
    assert call(functions, "put_webhook", "PUT", route={**t, "webhookId": "x"}, token=as_customer,
                body={"url": receiver.url("x"), "events": ["file.approved"]}).status_code == 403
    listed = body(call(functions, "list_webhooks", "GET", route=t, token=as_reseller))["items"]
    assert [h["id"] for h in listed] == ["r1"]

    # the poller sees the invoice; the worker makes the partner and reseller files
    automation.poll(ctx, NOW)
    drain(ctx)
    deliver_all(ctx, lambda: len(receiver.by_type("erp", "file.available")) == 2)
    detected = receiver.by_type("erp", "invoice.detected")
    assert [e["data"]["invoiceId"] for e in detected] == [invoice], dump(receiver)
    automation.poll(ctx, NOW)  # a second run announces nothing again
    deliver_all(ctx, lambda: True)
    assert len(receiver.by_type("erp", "invoice.detected")) == 1
    files = {f.view.value: f for f in ctx.files.list(tenant, invoice_id=invoice)}
    mine_file = files["reseller"]
    assert mine_file.status == FileStatus.AVAILABLE and mine_file.approved_version is None
    f = {**t, "fileId": mine_file.id}
    assert receiver.events("r1") == []  # nothing the reseller can see yet

    # before approval the reseller sees that the file exists, nothing else, and cannot download it
    assert problem(call(functions, "download", "GET", route=f, token=as_reseller))["status"] == 409
    seen = body(call(functions, "get_file", "GET", route=f, token=as_reseller))
    assert seen["status"] == "AwaitingApproval" and "totals" not in seen and "rowCount" not in seen
    assert body(call(functions, "list_files", "GET", route=t, token=as_reseller))["items"] == []
    charges = {"type": "onetime", "view": "reseller", "resellerId": reseller, "pageSize": "5"}
    assert call(functions, "get_charges", "GET", route={**t, "invoiceId": invoice}, params=charges,
                token=as_reseller).status_code == 409
    approve = {**f, "version": "1"}
    assert call(functions, "approve_file_version", "POST", route=approve, token=as_reseller).status_code == 403

    approved = body(call(functions, "approve_file_version", "POST", route=approve))
    assert (approved["approvedVersion"], approved["approvedBy"]) == (1, ADMIN_OID) and approved["approvedAt"]
    link = call(functions, "download", "GET", route=f, token=as_reseller)
    assert link.status_code == 302 and "/v0001/" in link.headers["Location"]
    assert [x["id"] for x in body(call(functions, "list_files", "GET", route=t, token=as_reseller))["items"]] == \
        [mine_file.id]
    assert call(functions, "get_charges", "GET", route={**t, "invoiceId": invoice}, params=charges,
                token=as_reseller).status_code == 200
    every = {**charges, "pageSize": "2000"}
    route_c = {**t, "invoiceId": invoice}
    v1_lines = body(call(functions, "get_charges", "GET", route=route_c, params=every, token=as_reseller))["items"]
    deliver_all(ctx, lambda: len(receiver.events("r1")) == 1)
    told = receiver.events("r1")[0]
    assert (told["type"], told["data"]["fileId"], told["data"]["version"]) == ("file.approved", mine_file.id, 1)

    # a margin change and a regeneration: v2 waits for approval, the reseller still gets v1
    ctx.rules.create(tenant, MarginRuleIn(level="customer", target_id=customer, percent="7",
                                          effective_from="2020-01-01"))
    assert call(functions, "regenerate", "POST", route=f).status_code == 202
    drain(ctx)
    partner_sees = body(call(functions, "get_file", "GET", route=f))
    assert (partner_sees["version"], partner_sees["status"], partner_sees["approvedVersion"]) == (2, "Available", 1)
    reseller_sees = body(call(functions, "get_file", "GET", route=f, token=as_reseller))
    assert reseller_sees["version"] == 1 and reseller_sees["totals"] != partner_sees["totals"]
    link = call(functions, "download", "GET", route=f, token=as_reseller)
    assert link.status_code == 302 and "/v0001/" in link.headers["Location"]
    versions = body(call(functions, "list_file_versions", "GET", route=f, token=as_reseller))["items"]
    assert [(v["version"], v["approved"]) for v in versions] == [(1, True)]
    assert call(functions, "download_file_version", "GET", route={**f, "version": "2"},
                token=as_reseller).status_code == 404
    # the charges API shows the reseller the approved figures too, not what today's rules make
    now_lines = body(call(functions, "get_charges", "GET", route=route_c, params=every))["items"]
    assert now_lines != v1_lines  # the partner sees the new margin at once
    assert any(x["CustomerId"].lower() == customer for x in v1_lines)
    assert body(call(functions, "get_charges", "GET", route=route_c, params=every, token=as_reseller))["items"] \
        == v1_lines
    partner_versions = body(call(functions, "list_file_versions", "GET", route=f))["items"]
    assert [(v["version"], v["approved"]) for v in partner_versions] == [(1, True), (2, False)]

    body(call(functions, "approve_file_version", "POST", route={**f, "version": "2"}))
    link = call(functions, "download", "GET", route=f, token=as_reseller)
    assert "/v0002/" in link.headers["Location"]
    assert body(call(functions, "get_charges", "GET", route=route_c, params=every, token=as_reseller))["items"] \
        == now_lines  # approved: the new figures
    deliver_all(ctx, lambda: len(receiver.events("r1")) == 2)
    assert all(a["verified"] for a in receiver.attempts), dump(receiver)
    log = body(call(functions, "list_webhook_deliveries", "GET", route={**t, "webhookId": "erp"}))["items"]
    assert log and all(d["status"] == "Delivered" and d["attempts"][-1]["statusCode"] == 200 for d in log)


def test_auto_approval_for_files_without_error_findings(sim_env, webhook_env, ctx, sim, functions, receiver) -> None:
    from shared.app import file_requests
    from shared.core.models import TenantIn
    from tests.conftest import SECRET_SETTING

    tenant, invoice = setup(ctx, sim, file_types=["onetime"])
    tenants.put_tenant(ctx, tenant, TenantIn(display_name="Sim", client_id=sim.client_id,
                                                   client_secret_setting=SECRET_SETTING, auto_approve=True))
    erp = body(call(functions, "put_webhook", "PUT", route={"tenantId": tenant, "webhookId": "erp"},
                    body={"url": receiver.url("erp"), "events": ["file.available", "file.approved"]}))
    receiver.secrets["erp"] = erp["secret"]
    automation.poll(ctx, NOW)
    drain(ctx)
    record = next(iter(ctx.files.list(tenant, invoice_id=invoice)))
    assert record.findings["error"] == 0
    assert (record.approved_version, record.approved_by) == (1, "automatic")
    deliver_all(ctx, lambda: len(receiver.events("erp")) == 2)
    assert sorted(e["type"] for e in receiver.events("erp")) == ["file.approved", "file.available"]


def test_a_budget_below_a_customers_usage_raises_budget_exceeded_once(sim_env, webhook_env, ctx, sim, functions,
                                                                      receiver) -> None:
    from collections import defaultdict
    from decimal import ROUND_HALF_UP, Decimal

    from shared.app import file_requests
    from shared.app.generation import Worker
    from shared.core.models import FileRequest

    tenant, invoice = setup(ctx, sim, file_types=["onetime"])
    spent: dict[str, Decimal] = defaultdict(Decimal)  # the customer's price with no margins: cost to 6 places
    for row in sim.iter_rows(invoice, "dailyratedusage"):
        spent[row["CustomerId"].lower()] += Decimal(str(row["BillingPreTaxTotal"])).quantize(
            Decimal("0.000001"), ROUND_HALF_UP)
    over, under = sorted(spent, key=spent.get)[-1], sorted(spent, key=spent.get)[0]
    t = {"tenantId": tenant}
    assert call(functions, "put_budget", "PUT", route={**t, "customerId": over},
                body={"monthlyBudget": str(spent[over] - Decimal("0.01"))}).status_code == 200
    assert call(functions, "put_budget", "PUT", route={**t, "customerId": under},
                body={"monthlyBudget": str(spent[under])}).status_code == 200  # reached, not exceeded
    bad = problem(call(functions, "put_budget", "PUT", route={**t, "customerId": over}, body={"monthlyBudget": "-1"}))
    assert bad["status"] == 400 and "monthlyBudget" in json.dumps(bad)
    hook = body(call(functions, "put_webhook", "PUT", route={**t, "webhookId": "finops"},
                     body={"url": receiver.url("finops"), "events": ["usage.budgetExceeded", "usage.spike"]}))
    receiver.secrets["finops"] = hook["secret"]

    record, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type="dailyratedusage",
                                                                    invoice_id=invoice))
    drain(ctx)
    assert call(functions, "regenerate", "POST", route={**t, "fileId": record.id}).status_code == 202
    drain(ctx)  # the same usage again: nothing new is raised
    Worker(ctx).handle(json.dumps({"tenantId": tenant, "fileId": record.id, "version": 2}))  # a redelivery
    deliver_all(ctx, lambda: all(d.status.value != "Pending" for d in ctx.deliveries.list(tenant, "finops", 50)))
    got = receiver.by_type("finops", "usage.budgetExceeded")
    assert len(got) == 1, dump(receiver)
    data = got[0]["data"]
    assert (data["customerId"], data["spent"], data["over"]) == (over, str(spent[over].normalize()), "0.01")
    assert len(ctx.deliveries.list(tenant, "finops", 50)) == len(receiver.events("finops"))
    raised = body(call(functions, "list_usage_alerts", "GET", route=t))["items"]
    assert [(a["kind"], a["customerId"], a["data"]["spent"]) for a in raised] == \
        [("budgetExceeded", over, str(spent[over].normalize()))]


def test_invoice_late_once_per_period(sim_env, webhook_env, ctx, sim, functions, receiver) -> None:
    from datetime import UTC, datetime

    tenant, _ = setup(ctx, sim, file_types=["onetime"])
    hook = body(call(functions, "put_webhook", "PUT", route={"tenantId": tenant, "webhookId": "ops"},
                     body={"url": receiver.url("ops"), "events": ["invoice.late"]}))
    receiver.secrets["ops"] = hook["secret"]
    later = datetime(2027, 1, 10, 6, tzinfo=UTC)  # December's One Time invoice was due on 8 January
    automation.poll(ctx, NOW)  # nothing late yet
    automation.poll(ctx, later)
    automation.poll(ctx, later)  # a second run raises nothing again
    deliver_all(ctx, lambda: all(d.status.value != "Pending" for d in ctx.deliveries.list(tenant, "ops", 50)))
    late = [(e["data"]["fileType"], e["data"]["periodStart"], e["data"]["expectedDate"])
            for e in receiver.by_type("ops", "invoice.late")]
    assert ("onetime", "2026-12-01", "2027-01-08") in late
    assert len(late) == len(set(late)) == len(ctx.deliveries.list(tenant, "ops", 50))
    assert all(a["verified"] for a in receiver.attempts)


def test_data_revised_once_per_etag(sim_env, webhook_env, ctx, sim, functions, receiver) -> None:
    tenant, invoice = setup(ctx, sim, file_types=["onetime"])
    hook = body(call(functions, "put_webhook", "PUT", route={"tenantId": tenant, "webhookId": "ops"},
                     body={"url": receiver.url("ops"), "events": ["data.revised", "file.available"]}))
    receiver.secrets["ops"] = hook["secret"]
    automation.poll(ctx, NOW)
    drain(ctx)
    (first,) = ctx.files.list(tenant, invoice_id=invoice)
    sim.faults.revise(invoice)
    automation.poll(ctx, NOW)
    automation.poll(ctx, NOW)
    drain(ctx)
    deliver_all(ctx, lambda: len(receiver.by_type("ops", "file.available")) == 2)
    revised = receiver.by_type("ops", "data.revised")
    assert len(revised) == 1, dump(receiver)
    (second,) = ctx.files.list(tenant, invoice_id=invoice)
    assert revised[0]["data"]["previousDataVersion"] == first.data_version
    assert revised[0]["data"]["dataVersion"] == second.data_version != first.data_version
    assert [e["data"]["version"] for e in receiver.by_type("ops", "file.available")] in ([1, 2], [2, 1])


def test_unbilled_current_usage_raises_alerts_too(sim_env, webhook_env, ctx, sim, functions, receiver) -> None:
    """The current month's usage before its invoice exists (unbilled-current, the Graph export)."""
    from collections import defaultdict
    from decimal import ROUND_HALF_UP, Decimal

    from devtools.simulator.ledger import FileType as SimType
    from shared.app import file_requests
    from shared.core.models import FileRequest

    tenant, _ = setup(ctx, sim, file_types=["onetime"])
    spent: dict[str, Decimal] = defaultdict(Decimal)
    for _, row in sim.ledger.rows(sim.ledger.unbilled["current"][SimType("dailyratedusage")]):
        spent[row["CustomerId"].lower()] += Decimal(str(row["BillingPreTaxTotal"])).quantize(
            Decimal("0.000001"), ROUND_HALF_UP)
    customer = max(spent, key=spent.get)
    assert call(functions, "put_budget", "PUT", route={"tenantId": tenant, "customerId": customer},
                body={"monthlyBudget": "1"}).status_code == 200
    hook = body(call(functions, "put_webhook", "PUT", route={"tenantId": tenant, "webhookId": "finops"},
                     body={"url": receiver.url("finops"), "events": ["usage.budgetExceeded"]}))
    receiver.secrets["finops"] = hook["secret"]
    file_requests.request_file(ctx, tenant, FileRequest(invoice_type="dailyratedusage",
                                                        invoice_id="unbilled-current", currency="EUR"))
    drain(ctx)
    deliver_all(ctx, lambda: len(receiver.events("finops")) >= 1)
    (got,) = receiver.by_type("finops", "usage.budgetExceeded")
    assert (got["data"]["customerId"], got["data"]["currency"]) == (customer, "EUR")
    assert Decimal(got["data"]["spent"]) == spent[customer]


def test_file_failed_with_its_reason(sim_env, webhook_env, ctx, sim, functions, receiver) -> None:
    from shared.app import file_requests
    from shared.core.models import FileRequest

    tenant, invoice = setup(ctx, sim, file_types=["onetime"])
    hook = body(call(functions, "put_webhook", "PUT", route={"tenantId": tenant, "webhookId": "ops"},
                     body={"url": receiver.url("ops"), "events": ["file.failed"]}))
    receiver.secrets["ops"] = hook["secret"]
    sim.faults.fail_invoice(invoice)
    record, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type="onetime", invoice_id=invoice))
    drain(ctx, last_delivery=True)
    deliver_all(ctx, lambda: len(receiver.events("ops")) == 1)
    (failed,) = receiver.events("ops")
    assert (failed["type"], failed["data"]["fileId"], failed["data"]["status"]) == ("file.failed", record.id, "Failed")
    assert failed["data"]["error"] and failed["data"]["transient"] is not None
