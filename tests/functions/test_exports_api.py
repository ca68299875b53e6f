"""Billing exports through the HTTP routes, as a reseller would use them: request (202, Location), the queue job,
status, and the audited short-lived link; the export checked to the cent against the reseller's own file."""

from __future__ import annotations

import json
from shared.core.money import Decimal

import requests

from shared.app import file_requests
from shared.core.access import PrincipalIn, Role
from shared.core.models import FileRequest
from tests.app.test_exports import run_exports
from tests.app.test_generation import download_rows, invoice_id, register, run_queue
from tests.conftest import call, token_for

RESELLER_OID = "0f000000-0000-4000-8000-0000000000e1"


def test_a_reseller_exports_its_own_view_and_only_that(functions, sim_env, ctx, sim) -> None:
    tenant = register(ctx, sim)
    inv = invoice_id(sim)
    partner, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type="onetime", invoice_id=inv))
    assert run_queue(ctx) == 1
    lines = download_rows(ctx, tenant, partner.id)
    reseller = next(x["ResellerMpnId"] for x in lines if x["ResellerMpnId"] not in ("", "0", "-1"))
    ctx.principals.put(tenant, RESELLER_OID, PrincipalIn(role=Role.RESELLER, reseller_ids=[reseller]))
    token = token_for(tenant, role=None, object_id=RESELLER_OID)
    body = {"invoiceType": "onetime", "invoiceId": inv, "view": "reseller", "resellerId": reseller}
    resp = call(functions, "request_file", "POST", route={"tenantId": tenant}, body=body, token=token)
    own_id = json.loads(resp.get_body())["id"]
    assert run_queue(ctx) == 1

    # the partner's file does not exist for the reseller, nor do its exports
    hidden = call(functions, "request_export", "POST", route={"tenantId": tenant, "fileId": partner.id},
                  body={"kind": "billing"}, token=token)
    assert hidden.status_code == 404
    route = {"tenantId": tenant, "fileId": own_id}
    resp = call(functions, "request_export", "POST", route=route, body={"kind": "billing", "format": "json"},
                token=token)
    assert resp.status_code == 202, resp.get_body()
    export = json.loads(resp.get_body())
    assert export["status"] == "Queued" and resp.headers["Location"].endswith(export["id"])
    bad = call(functions, "request_export", "POST", route=route, body={"kind": "focus"}, token=token)
    assert bad.status_code == 400  # FOCUS is for daily rated usage
    waiting = call(functions, "download_export", "GET", route={**route, "exportId": export["id"]}, token=token)
    assert waiting.status_code == 409
    assert run_exports(ctx) == 1
    status = json.loads(call(functions, "get_export", "GET", route={**route, "exportId": export["id"]},
                             token=token).get_body())
    assert status["status"] == "Available" and "blobName" not in status
    link = call(functions, "download_export", "GET", route={**route, "exportId": export["id"]}, token=token,
                headers={"Accept": "application/json"})
    assert link.status_code == 200
    doc = requests.get(json.loads(link.get_body())["url"], timeout=30).json()
    own = [x for x in lines if x["ResellerMpnId"] == reseller]
    assert Decimal(doc["total"]) == sum(Decimal(x["CustomerSubtotal"]) for x in own) == Decimal(status["amount"])
    assert doc["view"] == "reseller" and {x["ResellerMpnId"] for x in doc["lines"]} == {reseller}
    from datetime import timedelta

    from shared.adapters.repositories import utcnow

    entries, _ = ctx.audit.between(tenant, utcnow() - timedelta(hours=1), utcnow() + timedelta(minutes=1))
    assert [e.kind for e in entries].count("export-billing") == 1  # the link was audited like a file's
    listed = json.loads(call(functions, "list_exports", "GET", route=route, token=token).get_body())["items"]
    assert [e["id"] for e in listed] == [export["id"]]
