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
