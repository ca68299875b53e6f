"""The margins page's API: names from Microsoft's lines (searchable, scoped), the rule preview computed by the margin
engine on the latest invoice, and end-dating a rule in one conditional PATCH."""

from __future__ import annotations

import json
from collections import defaultdict
from shared.core.money import ROUND_HALF_UP, Decimal

import pytest

from shared.app import file_requests
from shared.core.access import PrincipalIn, Role
from shared.core.models import FileRequest
from tests.app.test_generation import download_rows, invoice_id, register, run_queue
from tests.conftest import call, problem, token_for

RESELLER_OID = "0f000000-0000-4000-8000-0000000000f7"


@pytest.fixture
def made(sim_env, ctx, sim, functions) -> dict:
    """A tenant with the latest invoice's partner-view One Time file made by the worker (names indexed)."""
    tenant = register(ctx, sim)
    record, _ = file_requests.request_file(ctx, tenant, FileRequest(invoice_type="onetime", invoice_id=invoice_id(sim)))
    assert run_queue(ctx) == 1
    lines = download_rows(ctx, tenant, record.id)
    return {"tenant": tenant, "lines": lines, "ctx": ctx, "file": record.id}


def names(functions, tenant: str, token=None, **params) -> list[dict]:
    kw = {"token": token} if token else {}
    resp = call(functions, "list_names", "GET", route={"tenantId": tenant}, params=params, **kw)
    assert resp.status_code == 200, resp.get_body()
    return json.loads(resp.get_body())["items"]


def test_names_come_from_the_lines_and_are_searchable(functions, made) -> None:
    tenant, lines = made["tenant"], made["lines"]
    line = next(x for x in lines if x["CustomerName"])
    word = line["CustomerName"].split()[0].lower()
    found = names(functions, tenant, q=word, kind="customer", top="100")
    assert found and all(word in x["name"].lower() for x in found)
    assert line["CustomerId"].lower() in {x["id"] for x in found if word in line["CustomerName"].lower()}
    subs = names(functions, tenant, q=line["SubscriptionId"], kind="subscription")
    assert [(s["id"], s["customerId"], s["name"]) for s in subs] == [
        (line["SubscriptionId"].lower(), line["CustomerId"].lower(), line["SubscriptionDescription"])]
    resellers = {x["ResellerMpnId"] for x in lines if x["ResellerMpnId"] not in ("", "0", "-1")}
    assert {x["id"] for x in names(functions, tenant, kind="reseller", top="100")} == resellers
    picked = names(functions, tenant, ids=f"{line['CustomerId'].upper()},{line['SubscriptionId']}", top="100")
    assert {(x["kind"], x["id"]) for x in picked} == {("customer", line["CustomerId"].lower()),
                                                      ("subscription", line["SubscriptionId"].lower())}
    bad = call(functions, "list_names", "GET", route={"tenantId": tenant}, params={"top": "0"})
    assert bad.status_code == 400 and problem(bad)["errors"][0]["field"] == "top"


def test_a_reseller_finds_only_its_own_customers_and_subscriptions(functions, made) -> None:
    tenant, lines, ctx = made["tenant"], made["lines"], made["ctx"]
    reseller = next(x["ResellerMpnId"] for x in lines if x["ResellerMpnId"] not in ("", "0", "-1"))
    ctx.principals.put(tenant, RESELLER_OID, PrincipalIn(role=Role.RESELLER, reseller_ids=[reseller]))
    token = token_for(tenant, role=None, object_id=RESELLER_OID)
    seen = names(functions, tenant, token=token, top="100")
    own_subs = {x["SubscriptionId"].lower() for x in lines if x["ResellerMpnId"] == reseller}
    assert seen and {x["kind"] for x in seen} <= {"customer", "subscription"}  # never reseller level
    assert {x["id"] for x in seen if x["kind"] == "subscription"} <= own_subs


def test_preview_is_the_margin_engine_on_the_latest_invoice(functions, made) -> None:
    tenant, lines = made["tenant"], made["lines"]
    line = next(x for x in lines if x["ResellerMpnId"] in ("", "0", "-1") and Decimal(x["Subtotal"]) != 0)
    customer = line["CustomerId"].lower()
    body = {"level": "customer", "targetId": customer, "percent": "12.5", "effectiveFrom": "2000-01-01"}
    resp = call(functions, "preview_margin_rule", "POST", route={"tenantId": tenant}, body=body)
    assert resp.status_code == 200, resp.get_body()
    got = json.loads(resp.get_body())
    own = [x for x in lines if x["CustomerId"].lower() == customer]
    assert got["invoiceId"] == line["InvoiceNumber"] and got["lines"] == len(own)
    (row,) = got["customers"]
    today = sum(Decimal(x["CustomerSubtotal"]) for x in own)
    new = sum((Decimal(x["ResellerSubtotal"]) * Decimal("1.125")).quantize(Decimal("0.01"), ROUND_HALF_UP)
              for x in own)
    assert (Decimal(row["customer"]["today"]), Decimal(row["customer"]["new"])) == (today, new)
    assert Decimal(row["customer"]["difference"]) == new - today != 0
    assert row["reseller"]["difference"] == "0"  # a customer rule leaves the reseller's price alone
    # saving it and previewing again is refused like the save itself: it would overlap
    assert call(functions, "create_margin_rule", "POST", route={"tenantId": tenant}, body=body).status_code == 201
    again = call(functions, "preview_margin_rule", "POST", route={"tenantId": tenant}, body=body)
    assert again.status_code == 409


def test_preview_of_a_reseller_rule_lists_each_customer_of_that_reseller(functions, made) -> None:
    tenant, lines = made["tenant"], made["lines"]
    reseller = next(x["ResellerMpnId"] for x in lines if x["ResellerMpnId"] not in ("", "0", "-1"))
    body = {"level": "reseller", "targetId": reseller, "percent": "3", "effectiveFrom": "2000-01-01"}
    got = json.loads(call(functions, "preview_margin_rule", "POST", route={"tenantId": tenant},
                          body=body).get_body())
    want: dict[str, Decimal] = defaultdict(Decimal)
    for x in lines:
        if x["ResellerMpnId"] == reseller:
            want[x["CustomerId"].lower()] += (Decimal(x["Subtotal"]) * Decimal("1.03")).quantize(
                Decimal("0.01"), ROUND_HALF_UP) - Decimal(x["ResellerSubtotal"])
    assert {c["customerId"]: Decimal(c["reseller"]["difference"]) for c in got["customers"]} == want
    assert Decimal(got["totals"]["reseller"]["difference"]) == sum(want.values())


def test_preview_without_a_file_is_409_and_a_bad_rule_400(functions, sim_env, ctx, sim) -> None:
    tenant = register(ctx, sim)
    body = {"level": "reseller", "targetId": "1234567", "percent": "3", "effectiveFrom": "2026-01-01"}
    assert call(functions, "preview_margin_rule", "POST", route={"tenantId": tenant}, body=body).status_code == 409
    bad = call(functions, "preview_margin_rule", "POST", route={"tenantId": tenant}, body={**body, "percent": "-100"})
    assert bad.status_code == 400 and problem(bad)["errors"][0]["field"] == "percent"


def test_end_dating_is_one_conditional_patch(functions, sim_env, ctx, sim) -> None:
    tenant = register(ctx, sim)
    route = {"tenantId": tenant}
    body = {"level": "reseller", "targetId": "1234567", "percent": "3", "effectiveFrom": "2026-01-01"}
    created = json.loads(call(functions, "create_margin_rule", "POST", route=route, body=body).get_body())
    listed = json.loads(call(functions, "list_margin_rules", "GET", route=route).get_body())["items"]
    assert listed[0]["etag"] == created["etag"]
    rule_route = {**route, "ruleId": created["id"]}
    end = {"effectiveTo": "2026-07-01"}
    missing = call(functions, "patch_margin_rule", "PATCH", route=rule_route, body=end)
    assert missing.status_code == 428
    stale = call(functions, "patch_margin_rule", "PATCH", route=rule_route, body=end, headers={"If-Match": 'W/"x"'})
    assert stale.status_code == 412
    early = call(functions, "patch_margin_rule", "PATCH", route=rule_route, body={"effectiveTo": "2025-12-31"},
                 headers={"If-Match": created["etag"]})
    assert early.status_code == 400 and problem(early)["errors"][0]["field"] == "effectiveTo"
    ok = call(functions, "patch_margin_rule", "PATCH", route=rule_route, body=end, headers={"If-Match": created["etag"]})
    assert ok.status_code == 200, ok.get_body()
    ended = json.loads(ok.get_body())
    assert ended["effectiveTo"] == "2026-07-01" and ended["id"] == created["id"] and ended["etag"] != created["etag"]
    # the old ETag no longer works: someone else's edit is never overwritten
    assert call(functions, "patch_margin_rule", "PATCH", route=rule_route, body={"effectiveTo": None},
                headers={"If-Match": created["etag"]}).status_code == 412
    # a following rule fits now; reopening the first would overlap it
    nxt = call(functions, "create_margin_rule", "POST", route=route, body={**body, "effectiveFrom": "2026-07-01"})
    assert nxt.status_code == 201
    reopen = call(functions, "patch_margin_rule", "PATCH", route=rule_route, body={"effectiveTo": None},
                  headers={"If-Match": ended["etag"]})
    assert reopen.status_code == 409
    listed = json.loads(call(functions, "list_margin_rules", "GET", route=route).get_body())["items"]
    assert [(r["effectiveFrom"], r.get("effectiveTo")) for r in listed] == [("2026-01-01", "2026-07-01"),
                                                                           ("2026-07-01", None)]
