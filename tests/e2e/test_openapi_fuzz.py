"""Schemathesis against the app's own OpenAPI document, over real HTTP (the local Functions host, Azurite, the
simulator), as a partner admin of a registered tenant: a bounded number of generated requests per operation, and
none may get a 5xx. Requires schemathesis (requirements-dev.txt)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, settings  # noqa: E402

from functions.openapi_api import document  # noqa: E402
from tests.conftest import SECRET_SETTING, auth_env, token_for, unique  # noqa: E402

schema = schemathesis.openapi.from_dict(document())
OTHER = "0f0f0f0f-0000-4000-8000-0000000000f0"  # put_tenant is fuzzed on a tenant of its own


@pytest.fixture(scope="module")
def fuzz_host(azurite, sim, issuer) -> Iterator[dict[str, str]]:
    from devtools.localhost import LocalHost
    from shared.app import tenants
    from shared.app.context import get_context, reset_context
    from shared.core.models import TenantIn
    from shared.adapters.settings import reset_settings

    from devtools.stack import DEFAULT_SETTINGS

    env = {**DEFAULT_SETTINGS, "AzureWebJobsStorage": azurite.connection_string, "FILES_CONTAINER": unique("files-"),
           "GENERATION_QUEUE": unique("gen-"),
           "TABLE_PREFIX": unique("t"), **auth_env(), **sim.env(),
           SECRET_SETTING: sim.client_secret, "PC_MAX_RETRIES": "0", "LOG_LEVEL": "WARNING"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        reset_settings()
        reset_context()
        ctx = get_context()
        tenants.put_tenant(ctx, sim.tenant_id, TenantIn(display_name="Sim", client_id=sim.client_id,
                                                        client_secret_setting=SECRET_SETTING))
        host = LocalHost(module="function_app", port=0, enable_queues=False, enable_timers=False).start()
        try:
            yield {"api": f"{host.url}/api", "tenant": sim.tenant_id}
        finally:
            host.stop()
            reset_settings()
            reset_context()


@schema.parametrize()
@settings(max_examples=6, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case, fuzz_host) -> None:
    if case.method.upper() != case.operation.method.upper():
        return  # an undeclared method probes the development web server (TRACE → 501), not the app
    tenant = fuzz_host["tenant"]
    if case.path_parameters and "tenantId" in case.path_parameters:
        # the admin's own tenant (another tenant is only ever 404); put_tenant on a tenant of its own
        tenant = OTHER if case.operation.definition.raw.get("operationId") == "put_tenant" else tenant
        case.path_parameters["tenantId"] = tenant
    response = case.call(base_url=fuzz_host["api"], headers={"Authorization": f"Bearer {token_for(tenant)}"},
                         timeout=30, allow_redirects=False)
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:300])


# ---- hostile inputs (issue 14 #8, #9): deeply nested, oversized and newline-terminated ----------------------------
# Every operation of the document, each input made hostile one at a time from a request that is otherwise valid:
# a body nested 100,000 deep (400), a body one byte over the cap (413), each id in the path with a trailing
# newline (400), each query parameter newline-terminated and oversized (a 4xx or an answer, never a 5xx).

GUID = "0f0f0f0f-0000-4000-8000-0000000000aa"
VALID_PATH = {"fileId": GUID, "ruleId": GUID, "customerId": GUID, "subscriptionId": GUID, "objectId": GUID,
              "resellerMpnId": "1234567", "invoiceId": "G000000001", "version": "1", "path": "index.html"}
VALID_QUERY = {"invoiceId": "G000000001", "pageSize": "10", "resellerId": "1234567", "customerId": GUID,
               "months": "3", "invoiceType": "onetime", "status": "Available", "severity": "error",
               "rule": "TOTAL_FORMULA", "type": "onetime", "view": "partner", "level": "reseller",
               "targetId": "1234567", "from": "2026-01-01", "to": "2026-02-01", "continuationToken": "x"}
NOT_IDS = {"path"}  # the page's asset path: a page route falls back to index.html


def _operations() -> list:
    return [result.ok() for result in schema.get_all_operations()]


def _send(op, fuzz_host, path: dict[str, str], query: dict[str, str] | None = None, body: bytes | None = None):
    import requests
    from urllib.parse import quote

    tenant = OTHER if op.definition.raw.get("operationId") == "put_tenant" else fuzz_host["tenant"]
    params = {p.name: (tenant if p.name == "tenantId" else VALID_PATH.get(p.name, "x"))
              for p in op.iter_parameters() if p.location.value == "path"}
    params.update(path)
    media = next(iter((op.definition.raw.get("requestBody") or {}).get("content", {})), None)
    extra = {"media_type": media, "body": b""} if media else {}
    case = op.Case(path_parameters={k: quote(v, safe="") for k, v in params.items()}, query=query or {}, **extra)
    kwargs = case.as_transport_kwargs(base_url=fuzz_host["api"],
                                      headers={"Authorization": f"Bearer {token_for(tenant)}"})
    kwargs.pop("json", None)
    if body is not None:
        kwargs["data"] = body
    return requests.request(timeout=60, allow_redirects=False, **kwargs)


@pytest.mark.parametrize("op", _operations(), ids=lambda op: f"{op.method.upper()} {op.path}")
def test_hostile_inputs_get_a_client_error(op, fuzz_host) -> None:
    from functions.http_support import MAX_BODY_BYTES

    failures = []

    def expect(label: str, response, allowed: range) -> None:
        if response.status_code not in allowed:
            failures.append((label, response.status_code, response.text[:200]))
        elif 400 <= response.status_code < 500 and response.headers.get("Content-Type", "").startswith(
                "application/json"):
            failures.append((label, "a 4xx that is not problem+json", response.text[:200]))

    if op.definition.raw.get("requestBody"):
        deep = b"[" * 100_000 + b"]" * 100_000
        expect("nested body", _send(op, fuzz_host, {}, body=deep), range(400, 401))
        limit = 10 * MAX_BODY_BYTES if op.path.endswith("identifiers:import") else MAX_BODY_BYTES
        big = b'{"displayName": "' + b"x" * limit + b'"}'
        expect("oversized body", _send(op, fuzz_host, {}, body=big), range(413, 414))
    for p in op.iter_parameters():
        if p.location.value == "path" and p.name in VALID_PATH | {"tenantId": ""}:
            value = fuzz_host["tenant"] if p.name == "tenantId" else VALID_PATH[p.name]
            allowed = range(200, 500) if p.name in NOT_IDS else range(400, 401)
            expect(f"{p.name} newline", _send(op, fuzz_host, {p.name: value + "\n"}), allowed)
        if p.location.value == "query":
            value = VALID_QUERY.get(p.name, "x")
            expect(f"{p.name} newline", _send(op, fuzz_host, {}, query={p.name: value + "\n"}), range(200, 500))
            expect(f"{p.name} oversized", _send(op, fuzz_host, {}, query={p.name: value * 4000}), range(200, 500))
    assert not failures, failures
