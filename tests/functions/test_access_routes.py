"""Sign-in and authorization as the routes enforce them: every HTTP function goes through `api` with a declared
action (or is deliberately anonymous), a missing or bad token is 401 with a challenge, outsiders get 404."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.http_support import ANONYMOUS_FUNCTIONS, ROUTE_POLICY
from shared.adapters.settings import Settings, refuse_auth_disabled_in_azure
from tests.conftest import call, problem, token_for

TENANT = "aaaaaaaa-1111-4000-8000-000000000001"
OTHER = "bbbbbbbb-2222-4000-8000-000000000002"
TENANT_BODY = {"displayName": "Contoso", "clientId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
               "clientSecretSetting": "PC_SECRET_CONTOSO"}
USER = "0b0b0b0b-0000-4000-8000-00000000000b"


def http_functions(functions: dict[str, Any]) -> dict[str, dict]:
    return {n: f.get_trigger().get_dict_repr() for n, f in functions.items()
            if f.get_trigger().get_binding_name() == "httpTrigger"}


def test_every_http_function_has_a_policy_entry(functions) -> None:
    http = http_functions(functions)
    missing = sorted(set(http) - set(ROUTE_POLICY) - ANONYMOUS_FUNCTIONS)
    assert not missing, f"HTTP functions without a declared action (use @api(Action…)): {missing}"
    assert set(ROUTE_POLICY) <= set(http), "a policy entry for a function the app does not index"
    for name, binding in http.items():  # tokens, not function keys, guard the routes
        assert str(binding["authLevel"].value).lower() == "anonymous", name


@pytest.mark.parametrize("header,error", [
    (None, None), ("Basic dXNlcjpwYXNz", None), ("Bearer not-a-jwt", "invalid_token"),
    ("Bearer a.b.c", "invalid_token"),
])
def test_every_route_refuses_a_missing_or_bad_token_with_a_challenge(functions, ctx, header, error) -> None:
    for name in ROUTE_POLICY:
        route = {"tenantId": TENANT, "fileId": TENANT, "ruleId": TENANT, "objectId": USER, "version": "1",
                 "invoiceId": "G1", "resellerMpnId": "1234567", "customerId": TENANT, "subscriptionId": TENANT}
        headers = {"Authorization": header} if header else {}
        resp = call(functions, name, "GET", route=route, token=None, headers=headers)
        assert resp.status_code == 401, name
        challenge = resp.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer")
        assert (f'error="{error}"' in challenge) if error else challenge == "Bearer"
        assert problem(resp)["status"] == 401


def test_expired_token_and_wrong_audience_are_401(functions, ctx) -> None:
    from tests.conftest import local_issuer

    iss = local_issuer()
    expired = iss.mint(USER, TENANT, ["Reconciliation.PartnerAdmin"], not_before=0, lifetime=60)
    wrong_aud = iss.mint(USER, TENANT, ["Reconciliation.PartnerAdmin"], audience="api://someone-else")
    for token in (expired, wrong_aud):
        resp = call(functions, "get_tenant", "GET", route={"tenantId": TENANT}, token=token)
        assert resp.status_code == 401 and "invalid_token" in resp.headers["WWW-Authenticate"]


def test_health_stays_anonymous(functions) -> None:
    resp = functions["health"].get_user_function()(
        __import__("azure.functions").functions.HttpRequest("GET", "http://localhost/api/health", body=b""))
    assert resp.status_code == 200


def test_other_tenant_is_404_not_403_before_the_body_is_read(functions, ctx) -> None:
    assert call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, body=TENANT_BODY).status_code == 201
    outsider = token_for(OTHER)  # a partner admin, but of another tenant
    for name, method, body in [("get_tenant", "GET", None), ("put_tenant", "PUT", {"garbage": True}),
                               ("request_file", "POST", {"not": "valid"}), ("list_files", "GET", None)]:
        resp = call(functions, name, method, route={"tenantId": TENANT}, body=body, token=outsider)
        assert resp.status_code == 404, name
        assert problem(resp)["detail"] == f"Tenant {TENANT} was not found."
    # the same words as a tenant that does not exist, for its own admin
    missing = call(functions, "get_tenant", "GET", route={"tenantId": OTHER})
    assert problem(missing)["detail"] == f"Tenant {OTHER} was not found."


def test_principal_routes_and_a_reader_cannot_write(functions, ctx) -> None:
    call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, body=TENANT_BODY)
    route = {"tenantId": TENANT, "objectId": USER}
    created = call(functions, "put_principal", "PUT", route=route, body={"role": "partnerReader"})
    assert created.status_code == 201 and created.headers["ETag"]
    assert json.loads(created.get_body())["role"] == "partnerReader"
    stale = call(functions, "put_principal", "PUT", route=route, body={"role": "partnerAdmin"},
                 headers={"If-Match": 'W/"datetime\'2000-01-01T00%3A00%3A00Z\'"'})
    assert stale.status_code == 409
    listed = json.loads(call(functions, "list_principals", "GET", route={"tenantId": TENANT}).get_body())
    assert [p["objectId"] for p in listed["items"]] == [USER]

    reader = token_for(TENANT, role=None, object_id=USER)  # no app role: the stored principal decides
    assert call(functions, "get_tenant", "GET", route={"tenantId": TENANT}, token=reader).status_code == 200
    assert call(functions, "list_principals", "GET", route={"tenantId": TENANT}, token=reader).status_code == 200
    denied = call(functions, "put_principal", "PUT", route={"tenantId": TENANT, "objectId": OTHER},
                  body={"role": "partnerAdmin"}, token=reader)
    assert denied.status_code == 403
    assert call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, body=TENANT_BODY,
                token=reader).status_code == 403

    assert call(functions, "delete_principal", "DELETE", route=route).status_code == 204
    assert call(functions, "delete_principal", "DELETE", route=route).status_code == 404
    assert call(functions, "get_tenant", "GET", route={"tenantId": TENANT}, token=reader).status_code == 404
    bad = call(functions, "put_principal", "PUT", route=route, body={"role": "reseller"})
    assert bad.status_code == 400


def test_auth_disabled_is_refused_in_azure(monkeypatch) -> None:
    refuse_auth_disabled_in_azure({"AUTH_DISABLED": "true"})  # locally: allowed
    refuse_auth_disabled_in_azure({"WEBSITE_SITE_NAME": "app"})  # in Azure without it: fine
    for marker in ("WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME"):
        with pytest.raises(RuntimeError):
            refuse_auth_disabled_in_azure({"AUTH_DISABLED": "true", marker: "x"})
        monkeypatch.setenv(marker, "x")
        monkeypatch.setenv("AUTH_DISABLED", "true")
        with pytest.raises(Exception):
            Settings()  # type: ignore[call-arg]
        monkeypatch.delenv(marker)


def test_auth_config_from_settings(monkeypatch) -> None:
    monkeypatch.setenv("AUTH_AUDIENCES", " c1d2e3f4-0000-4000-8000-000000000000 , api://recon ")
    monkeypatch.setenv("AUTH_ALLOWED_TENANTS", f"{TENANT.upper()},{OTHER}")
    monkeypatch.delenv("AUTH_LOCAL_ISSUER", raising=False)
    config = Settings().auth_config()  # type: ignore[call-arg]
    assert config.audiences == ("c1d2e3f4-0000-4000-8000-000000000000", "api://recon")
    assert config.allowed_tenants == {TENANT, OTHER} and config.local_issuer is None
    assert config.jwks_ttl == 3600 and config.leeway == 120
    monkeypatch.setenv("AUTH_AUDIENCES", "")
    with pytest.raises(ValueError):
        Settings().auth_config()  # type: ignore[call-arg]


def test_without_audiences_every_route_fails_closed(functions, ctx, monkeypatch) -> None:
    from shared.app.context import reset_context
    from shared.adapters.settings import reset_settings

    monkeypatch.setenv("AUTH_AUDIENCES", "")
    reset_settings()
    reset_context()
    resp = call(functions, "get_tenant", "GET", route={"tenantId": TENANT})
    assert resp.status_code == 500 and "Traceback" not in resp.get_body().decode()


def test_auth_disabled_locally_acts_as_a_partner_admin(functions, ctx, monkeypatch) -> None:
    from shared.app.context import reset_context
    from shared.adapters.settings import reset_settings

    monkeypatch.setenv("AUTH_DISABLED", "true")
    reset_settings()
    reset_context()
    assert call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, body=TENANT_BODY,
                token=None).status_code == 201
    listed = json.loads(call(functions, "list_tenants", "GET", token=None).get_body())["items"]
    assert [t["tenantId"] for t in listed] == [TENANT]


def test_openapi_document_is_anonymous_and_covers_every_route(functions) -> None:
    import azure.functions as func

    resp = functions["openapi_document"].get_user_function()(
        func.HttpRequest("GET", "http://localhost/api/openapi.json", body=b""))
    assert resp.status_code == 200
    doc = json.loads(resp.get_body())
    assert doc["openapi"].startswith("3.1") and doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    indexed = set()
    for binding in http_functions(functions).values():
        for method in binding["methods"]:
            # a catch-all `{*path}` is a plain path parameter in OpenAPI
            indexed.add(("/" + binding["route"].replace("{*", "{"), str(method.value)))
    assert documented == indexed
    names = {op["operationId"] for ops in doc["paths"].values() for op in ops.values()}
    assert names == set(http_functions(functions))
    text = json.dumps(doc)  # every $ref resolves
    for ref in set(__import__("re").findall(r'"\$ref": "#/components/schemas/([^"]+)"', text)):
        assert ref in doc["components"]["schemas"], ref
    request = doc["paths"]["/tenants/{tenantId}/reconciliation-files"]["post"]["requestBody"]
    schema = request["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/FileRequest"}
    assert doc["components"]["schemas"]["FileRequest"]["additionalProperties"] is False  # unknown fields refused
    assert "clientSecret" not in text.replace("clientSecretSetting", "")
    # an invoice id is documented with the pattern the models and handlers check (they used to differ)
    from shared.core.models import INVOICE_ID_PATTERN, FileRequest

    invoice_params = [p["schema"] for ops in doc["paths"].values() for op in ops.values()
                      for p in op["parameters"] if p["name"] == "invoiceId"]
    assert len(invoice_params) == 2 and all(s["pattern"] == INVOICE_ID_PATTERN for s in invoice_params)
    assert FileRequest.model_json_schema()["properties"]["invoiceId"]["pattern"] == INVOICE_ID_PATTERN


def test_a_principal_of_one_tenant_gets_404_in_another(functions, ctx) -> None:
    for tenant in (TENANT, OTHER):
        call(functions, "put_tenant", "PUT", route={"tenantId": tenant}, body=TENANT_BODY)
    call(functions, "put_principal", "PUT", route={"tenantId": TENANT, "objectId": USER},
         body={"role": "reseller", "resellerIds": ["1234567"]})
    call(functions, "put_principal", "PUT", route={"tenantId": OTHER, "objectId": "0a0a0a0a-0000-4000-8000-00000000000a"},
         body={"role": "partnerAdmin"})
    reseller = token_for(TENANT, role=None, object_id=USER)
    own = call(functions, "list_files", "GET", route={"tenantId": TENANT}, token=reseller)
    assert own.status_code == 200
    assert call(functions, "get_tenant", "GET", route={"tenantId": TENANT}, token=reseller).status_code == 403
    for name, method in [("get_tenant", "GET"), ("list_files", "GET"), ("list_principals", "GET"),
                         ("request_file", "POST"), ("list_audit", "GET")]:
        resp = call(functions, name, method, route={"tenantId": OTHER}, token=reseller,
                    body={"invoiceType": "onetime", "invoiceId": "G1", "view": "reseller", "resellerId": "1234567"})
        assert resp.status_code == 404, name
    # the same object id coming with a token from the other tenant is still only what tenant A granted in A
    from_other = token_for(OTHER, role=None, object_id=USER)
    assert call(functions, "list_principals", "GET", route={"tenantId": OTHER}, token=from_other).status_code == 404


def test_a_scoped_route_that_forgets_its_check_fails_closed(ctx) -> None:
    import azure.functions as func

    from functions.http_support import api, json_response
    from functions.routes import Route
    from shared.core.access import Action

    def forgetful(req: func.HttpRequest) -> func.HttpResponse:
        return json_response({"secret": "lines"})

    wrapped = api(Route("forgetful", "GET", "x/{tenantId}", "", Action.FILES_READ, scoped=True))(forgetful)
    req = func.HttpRequest("GET", "http://localhost/api/x", route_params={"tenantId": TENANT}, body=b"",
                           headers={"Authorization": f"Bearer {token_for(TENANT)}"})
    resp = wrapped(req)
    assert resp.status_code == 500 and b"lines" not in resp.get_body()


def test_a_route_is_declared_once_in_the_table_and_registered_from_it(functions) -> None:
    """One name, one route; a handler the table does not declare cannot be registered; every HTTP function the
    app indexes came through `handles` with its table entry, so its route, method and policy are the table's."""
    import azure.functions as func

    from functions.http_support import handles
    from functions.routes import BY_NAME, ROUTES, by_name

    with pytest.raises(ValueError):
        by_name([ROUTES[0], ROUTES[0]])

    def undeclared(req: func.HttpRequest) -> func.HttpResponse:
        raise AssertionError("never registered")

    with pytest.raises(LookupError):
        handles(func.Blueprint())(undeclared)
    http = http_functions(functions)
    assert set(http) == set(BY_NAME)
    for name, binding in http.items():
        route = BY_NAME[name]
        assert functions[name].get_user_function().route is route, name
        assert (binding["route"], [str(m.value) for m in binding["methods"]]) == (route.path, [route.method])
        assert (name in ROUTE_POLICY) == (route.action is not None)
        if route.action is not None:
            assert (ROUTE_POLICY[name].action, ROUTE_POLICY[name].scoped) == (route.action, route.scoped)
