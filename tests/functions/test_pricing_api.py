"""Margin rules and identifiers through the HTTP handlers: validation, overlap refusal, the CSV import."""

from __future__ import annotations

import json

import pytest

from tests.conftest import call, problem

TENANT = "11111111-2222-3333-4444-555555555555"
CUSTOMER = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SUBSCRIPTION = "bbbbbbbb-cccc-dddd-eeee-ffffffffffff"


@pytest.fixture
def tenant(functions, ctx) -> str:
    body = {"displayName": "T", "clientId": CUSTOMER, "clientSecretSetting": "PC_SECRET_X"}
    assert call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, body=body).status_code == 201
    return TENANT


def rule(**kw) -> dict:
    return {"level": "reseller", "targetId": "1234567", "percent": "10", "effectiveFrom": "2026-01-01", **kw}


def test_rules_create_list_delete(functions, tenant) -> None:
    resp = call(functions, "create_margin_rule", "POST", route={"tenantId": tenant}, body=rule(percent=12.5))
    assert resp.status_code == 201
    created = json.loads(resp.get_body())
    assert created["percent"] == "12.5" and created["level"] == "reseller"
    listed = json.loads(call(functions, "list_margin_rules", "GET", route={"tenantId": tenant},
                             params={"level": "reseller", "targetId": "1234567"}).get_body())["items"]
    assert [r["id"] for r in listed] == [created["id"]]
    route = {"tenantId": tenant, "ruleId": created["id"]}
    assert call(functions, "delete_margin_rule", "DELETE", route=route).status_code == 204
    assert call(functions, "delete_margin_rule", "DELETE", route=route).status_code == 404


def test_overlapping_rule_is_409_but_a_following_one_is_fine(functions, tenant) -> None:
    first = rule(effectiveTo="2026-07-01")
    assert call(functions, "create_margin_rule", "POST", route={"tenantId": tenant}, body=first).status_code == 201
    clash = rule(effectiveFrom="2026-06-30")
    assert call(functions, "create_margin_rule", "POST", route={"tenantId": tenant}, body=clash).status_code == 409
    after = rule(effectiveFrom="2026-07-01", percent="11")  # effectiveTo is exclusive
    assert call(functions, "create_margin_rule", "POST", route={"tenantId": tenant}, body=after).status_code == 201
    product = rule(effectiveFrom="2026-03-01", productId="CFQ7TTC0LH18")  # another product: no overlap
    assert call(functions, "create_margin_rule", "POST", route={"tenantId": tenant}, body=product).status_code == 201


@pytest.mark.parametrize("body,field", [
    (rule(percent="-100"), "percent"),
    (rule(percent="1000.5"), "percent"),
    (rule(percent="1.23456"), "percent"),
    (rule(percent="ten"), "percent"),
    (rule(level="partner"), "level"),
    (rule(effectiveTo="2025-12-31"), None),
    (rule(targetId="0"), None),
    (rule(extra=1), "extra"),
])
def test_bad_rules_are_400(functions, tenant, body, field) -> None:
    resp = call(functions, "create_margin_rule", "POST", route={"tenantId": tenant}, body=body)
    assert resp.status_code == 400
    fields = {e["field"] for e in problem(resp)["errors"]}
    assert field in fields or field is None


def test_identifiers_put_and_get(functions, tenant) -> None:
    route = {"tenantId": tenant, "subscriptionId": SUBSCRIPTION.upper()}
    resp = call(functions, "put_subscription_identifier", "PUT", route=route,
                body={"internalId": "SUB-1", "poNumber": "PO-77"})
    assert resp.status_code == 200
    got = json.loads(call(functions, "get_subscription_identifier", "GET", route=route).get_body())
    assert got == {"kind": "subscription", "id": SUBSCRIPTION, "internalId": "SUB-1", "poNumber": "PO-77"}
    bad = call(functions, "put_customer_identifier", "PUT", route={"tenantId": tenant, "customerId": "nope"},
               body={"internalId": "C"})
    assert bad.status_code == 400
    missing = call(functions, "get_reseller_identifier", "GET", route={"tenantId": tenant, "resellerMpnId": "42"})
    assert missing.status_code == 404


def test_csv_import_is_all_or_nothing_and_reports_every_bad_row(functions, tenant) -> None:
    good = ("kind,id,internalId,name,poNumber\n"
            f"reseller,1234567,R-1,Fabrikam,\ncustomer,{CUSTOMER},C-1,,\nsubscription,{SUBSCRIPTION},S-1,,PO-9\n")
    bad = good + "customer,not-a-guid,C-2,,\nplanet,1,X,,\nreseller,1234567,R-dup,,\ncustomer," + CUSTOMER.replace(
        "a", "b") + ",,,PO-1\n"
    resp = call(functions, "import_identifiers_csv", "POST", route={"tenantId": tenant}, raw=bad.encode())
    assert resp.status_code == 400
    lines = sorted(e["line"] for e in problem(resp)["errors"])
    assert lines == [5, 6, 7, 8]
    assert json.loads(call(functions, "list_identifiers", "GET", route={"tenantId": tenant}).get_body())["items"] == []
    resp = call(functions, "import_identifiers_csv", "POST", route={"tenantId": tenant}, raw=good.encode())
    assert json.loads(resp.get_body()) == {"imported": 3, "resellers": 1, "customers": 1, "subscriptions": 1}


def test_csv_import_with_a_wrong_header_is_400(functions, tenant) -> None:
    resp = call(functions, "import_identifiers_csv", "POST", route={"tenantId": tenant},
                raw=b"type,identifier\nreseller,1\n")
    assert resp.status_code == 400 and problem(resp)["errors"][0]["field"] == "header"
