"""Validation inside the worker: Azurite and the simulator. Clean files have no error findings; an injected
defect shows up on the record, in the findings API and in findings.csv beside the file; VALIDATION_BLOCKS holds
a file as NeedsReview, which partners can still download."""

from __future__ import annotations

import json

import pytest
import requests

from shared.app import file_requests

from shared.app import findings
from shared.core.models import FileRequest, FileStatus
from tests.conftest import call
from tests.app.test_generation import invoice_id, register, run_queue


def _make(ctx, sim, file_type: str, inv: str):
    tenant = register(ctx, sim)
    record, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type=file_type, invoice_id=inv))
    run_queue(ctx)
    got, _ = ctx.files.get(tenant, record.id)
    return tenant, got


@pytest.mark.parametrize("file_type,prefix", [("onetime", "G"), ("dailyratedusage", "G"), ("license", "D"),
                                              ("usage", "D")])
def test_clean_files_have_no_error_findings(sim_env, ctx, sim, file_type, prefix) -> None:
    tenant, record = _make(ctx, sim, file_type, invoice_id(sim, prefix))
    assert record.status == FileStatus.AVAILABLE, record.error
    assert record.findings is not None and record.findings["error"] == 0, record.findings
    summary = ctx.storage.files.get_blob_client(record.blob_name.rsplit("/", 1)[0] + "/summary.json")
    assert json.loads(summary.download_blob().readall())["subscriptions"]


@pytest.mark.parametrize("kind,rule", [("subtotal", "SUBTOTAL_FORMULA"), ("duplicate_reference", "DUPLICATE_REFERENCE"),
                                       ("over_credit", "OVER_CREDIT")])
def test_defect_is_found_through_graph(sim_env, ctx, sim, kind, rule) -> None:
    inv = invoice_id(sim)
    sim.faults.defect(inv, kind)
    tenant, record = _make(ctx, sim, "onetime", inv)
    assert record.status == FileStatus.AVAILABLE
    assert record.findings["byRule"][rule]["error"] == 1
    page = findings.findings_page(ctx, record, "error", rule, 50, None)
    assert len(page["items"]) == 1 and page["items"][0]["key"]["ReferenceId"]


def test_defect_through_v1_blocks_when_asked_and_the_api_serves_findings(sim_env, ctx, sim, functions,
                                                                         monkeypatch) -> None:
    monkeypatch.setenv("ONETIME_GRAPH_FROM", "2099-01-01")
    monkeypatch.setenv("VALIDATION_BLOCKS", "true")
    from shared.app.context import get_context, reset_context
    from shared.adapters.settings import reset_settings

    reset_settings()
    reset_context()
    ctx = get_context()
    inv = invoice_id(sim)
    sim.faults.defect(inv, "charge_cycle")
    tenant, record = _make(ctx, sim, "onetime", inv)
    assert record.source.value == "v1"
    assert record.status == FileStatus.NEEDS_REVIEW
    assert record.findings["byRule"]["CHARGE_CYCLE"] == {"error": 1}
    route = {"tenantId": tenant, "fileId": record.id}
    resp = call(functions, "list_findings", "GET", route=route, params={"severity": "error", "pageSize": "1"})
    assert resp.status_code == 200, resp.get_body()
    body = json.loads(resp.get_body())
    assert [f["rule"] for f in body["items"]] == ["CHARGE_CYCLE"]
    resp = call(functions, "list_findings", "GET", route=route, params={"pageSize": "1"})
    token = json.loads(resp.get_body())["continuationToken"]
    if token:
        nxt = call(functions, "list_findings", "GET", route=route, params={"pageSize": "1", "continuationToken": token})
        assert nxt.status_code == 200
    assert call(functions, "list_findings", "GET", route=route, params={"severity": "bad"}).status_code == 400
    for name in ("download", "download_findings"):
        resp = call(functions, name, "GET", route=route)
        assert resp.status_code == 302, resp.get_body()
        assert requests.get(resp.headers["Location"], timeout=30).status_code == 200


def test_month_over_month_uses_the_previous_file(sim_env, ctx, sim, monkeypatch) -> None:
    monkeypatch.setenv("VALIDATION_CHANGE_THRESHOLD_PERCENT", "1")
    from shared.app.context import get_context, reset_context
    from shared.adapters.settings import reset_settings

    reset_settings()
    reset_context()
    ctx = get_context()
    months = sorted((i for i in sim.invoices() if i["id"].startswith("G") and i.get("documentType") == "invoice"),
                    key=lambda i: i["billingPeriodStartDate"])
    _make(ctx, sim, "dailyratedusage", months[-2]["id"])
    _, record = _make(ctx, sim, "dailyratedusage", months[-1]["id"])
    assert record.findings["byRule"].get("MONTH_OVER_MONTH", {}).get("warning", 0) > 0
