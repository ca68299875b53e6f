"""Invoices and the charges API, through the HTTP handlers, against the simulator."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.app.test_generation import run_queue
from tests.conftest import SECRET_SETTING, call, problem


def charges(functions, ctx, route: dict, params: dict):
    """A charges page; the first page of an invoice without a snapshot is 202 (its ingest queued): the worker
    runs the ingest, then the same request is asked again."""
    resp = call(functions, "get_charges", "GET", route=route, params=params)
    if resp.status_code == 202:
        assert run_queue(ctx) >= 1
        resp = call(functions, "get_charges", "GET", route=route, params=params)
    return resp


@pytest.fixture
def tenant(sim_env, functions, ctx, sim) -> str:
    body = {"displayName": "Sim", "clientId": sim.client_id, "clientSecretSetting": SECRET_SETTING}
    assert call(functions, "put_tenant", "PUT", route={"tenantId": sim.tenant_id}, body=body).status_code == 201
    return sim.tenant_id


def test_invoices_list_says_which_file_types_each_has(functions, tenant, sim) -> None:
    resp = call(functions, "list_invoices", "GET", route={"tenantId": tenant})
    assert resp.status_code == 200
    items = json.loads(resp.get_body())["items"]
    assert {i["id"] for i in items} == {i["id"] for i in sim.invoices()}
    by_id = {i["id"]: i for i in items}
    g = next(i for i in items if i["id"].startswith("G") and i["documentType"] == "invoice")
    d = next(i for i in items if i["id"].startswith("D"))
    assert g["fileTypes"] == ["onetime", "dailyratedusage"]
    assert set(d["fileTypes"]) == {"license", "usage"}
    raw = next(i for i in sim.invoices() if i["id"] == g["id"])
    assert Decimal(by_id[g["id"]]["totalCharges"]) == Decimal(str(raw["totalCharges"]))


def test_charges_page_through_a_whole_invoice_with_the_files_totals(functions, tenant, sim, ctx) -> None:
    invoice = next(i["id"] for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")
    expected = sim.expected(invoice, "onetime")
    token, rows, cost = None, 0, Decimal(0)
    for _ in range(100):
        params = {"type": "onetime", "pageSize": "37", **({"continuationToken": token} if token else {})}
        resp = charges(functions, ctx, {"tenantId": tenant, "invoiceId": invoice}, params)
        assert resp.status_code == 200, resp.get_body()
        page = json.loads(resp.get_body())
        assert len(page["items"]) <= 37
        rows += len(page["items"])
        cost += sum(Decimal(r["Subtotal"] or 0) for r in page["items"])
        token = page["continuationToken"]
        if not token:
            break
    assert rows == expected.rows and cost == expected.cost_total


@pytest.mark.parametrize("params,field", [
    ({"type": "onetime", "pageSize": "0"}, "pageSize"),
    ({"type": "onetime", "pageSize": "2001"}, "pageSize"),
    ({"type": "onetime", "pageSize": "ten"}, "pageSize"),
    ({"pageSize": "10"}, "type"),
    ({"type": "license"}, "type"),  # a new-commerce invoice has no legacy licence charges
    ({"type": "onetime", "continuationToken": "not-a-token"}, "continuationToken"),
])
def test_charges_bad_input_is_400(functions, tenant, sim, params, field) -> None:
    invoice = next(i["id"] for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")
    resp = call(functions, "get_charges", "GET", route={"tenantId": tenant, "invoiceId": invoice}, params=params)
    assert resp.status_code == 400
    assert field in {e["field"] for e in problem(resp)["errors"]}


def test_tampered_token_is_400(functions, tenant, sim, ctx) -> None:
    invoice = next(i["id"] for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")
    route = {"tenantId": tenant, "invoiceId": invoice}
    page = json.loads(charges(functions, ctx, route, {"type": "onetime", "pageSize": "5"}).get_body())
    token = page["continuationToken"]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    resp = call(functions, "get_charges", "GET", route=route,
                params={"type": "onetime", "pageSize": "5", "continuationToken": flipped})
    assert resp.status_code == 400


def test_charges_in_a_reseller_view_hide_the_partners_cost(functions, tenant, sim, ctx) -> None:
    invoice = next(i["id"] for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")
    reseller = next(r["ResellerMpnId"] for r in sim.iter_rows(invoice, "onetime")
                    if r["ResellerMpnId"] not in (None, "", "0"))
    expected = sum(1 for r in sim.iter_rows(invoice, "onetime") if r["ResellerMpnId"] == reseller)
    route = {"tenantId": tenant, "invoiceId": invoice}
    token, rows = None, []
    for _ in range(100):
        params = {"type": "onetime", "pageSize": "50", "view": "reseller", "resellerId": reseller,
                  **({"continuationToken": token} if token else {})}
        page = json.loads(charges(functions, ctx, route, params).get_body())
        rows += page["items"]
        token = page["continuationToken"]
        if not token:
            break
    assert len(rows) == expected
    assert all(r["ResellerMpnId"] == reseller for r in rows)
    assert not any("Subtotal" in r or "UnitPrice" in r or "ResellerMarginPercent" in r for r in rows)
    assert all("ResellerSubtotal" in r and "CustomerSubtotal" in r for r in rows)
    bad = call(functions, "get_charges", "GET", route=route,
               params={"type": "usage", "view": "customer", "customerId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"})
    assert bad.status_code == 400


def test_the_first_page_of_an_invoice_without_a_snapshot_is_202_with_a_location(functions, tenant, sim,
                                                                                 ctx) -> None:
    invoice = next(i["id"] for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")
    route, params = {"tenantId": tenant, "invoiceId": invoice}, {"type": "dailyratedusage", "pageSize": "10"}
    seen = len(sim.requests)
    resp = call(functions, "get_charges", "GET", route=route, params=params)
    assert resp.status_code == 202, resp.get_body()
    assert resp.headers["Location"] == f"/api/tenants/{tenant}/invoices/{invoice}/charges?type=dailyratedusage" \
                                       "&pageSize=10"
    assert int(resp.headers["Retry-After"]) > 0 and json.loads(resp.get_body())["status"] == "Queued"
    assert sim.counts(seen)["export"] == 0  # never an export inside the request
    assert run_queue(ctx) == 1
    resp = call(functions, "get_charges", "GET", route=route, params=params)
    assert resp.status_code == 200 and len(json.loads(resp.get_body())["items"]) == 10
