"""Shared fixtures: real Azurite, the real Partner Center simulator, and an app context isolated per test."""

from __future__ import annotations

import uuid
import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import hypothesis  # noqa: F401  (imported early: a late first import under pytest's rewriter trips a CPython 3.11.7 bug)

import pytest

from devtools.azurite import Azurite
from devtools.tokens import APP_ROLES, LocalIssuer
from shared.app.context import AppContext
from shared.adapters.settings import Settings, reset_settings
from shared.adapters.storage import Storage

SECRET_SETTING = "PC_SECRET_TEST"
DEFAULT_TENANT = "0000aaaa-0000-4000-8000-000000000000"  # the caller's tenant when a route names none
ADMIN_OID = "ad000000-0000-4000-8000-0000000000ad"

_issuer: LocalIssuer | None = None


def local_issuer() -> LocalIssuer:
    """One token issuer for the whole session (started on first use; the session fixture stops it)."""
    global _issuer
    if _issuer is None:
        _issuer = LocalIssuer().start()
    return _issuer


@pytest.fixture(scope="session")
def issuer() -> Iterator[LocalIssuer]:
    yield local_issuer()
    global _issuer
    if _issuer is not None:
        _issuer.stop()
        _issuer = None


def auth_env() -> dict[str, str]:
    """The settings that make the app trust the session's local issuer."""
    iss = local_issuer()
    return {"AUTH_LOCAL_ISSUER": iss.issuer, "AUTH_AUDIENCES": iss.audience}


def token_for(tenant_id: str, role: str | None = "partnerAdmin", object_id: str = ADMIN_OID, *,
              app: bool = False) -> str:
    """A token from the session issuer: `role` is an app role short name (partnerAdmin, partnerReader) or None
    (a caller whose access comes only from a stored principal)."""
    roles = [APP_ROLES[role]] if role else []
    return local_issuer().mint(object_id, tenant_id.lower(), roles, app=app)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as az:
        yield az


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory):
    from devtools.simulator import Simulator

    simulator = Simulator(seed=7, size=3000, rows_per_blob=1000, workdir=str(tmp_path_factory.mktemp("sim")))
    simulator.start()
    yield simulator
    simulator.stop()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def app_env(azurite: Azurite, issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """App settings for one test: its own container, queue and tables in the shared Azurite."""
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "FILES_CONTAINER": unique("files-"),
        "GENERATION_QUEUE": unique("gen-"),
        "TABLE_PREFIX": unique("t"),
        "PC_BACKOFF_BASE_SECONDS": "0.01",
        "PC_BACKOFF_CAP_SECONDS": "0.05",
        "EXPORT_POLL_SECONDS": "0.05",
        # One instance per file and per ingest here: these tests' crash points and message counts are the
        # one-instance path's. tests/app/test_fanout.py, test_fanout_processes.py, test_ingest_fanout.py and
        # test_ingest_fanout_processes.py turn the fan-out on (its production default is 2 parts or blobs).
        "FANOUT_MIN_PARTS": "0",
        **auth_env(),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    from shared.app.context import reset_context

    reset_context()
    yield env
    reset_settings()
    reset_context()


@pytest.fixture
def ctx(app_env: dict[str, str]) -> AppContext:
    settings = Settings()  # type: ignore[call-arg]
    storage = Storage(settings)
    storage.ensure()
    return AppContext(settings, storage)


@pytest.fixture
def sim_env(sim, app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the app at the simulator, with the tenant's secret in the app setting its record names."""
    for key, value in {**sim.env(), SECRET_SETTING: sim.client_secret}.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    sim.faults.reset()
    return {**app_env, **sim.env()}


@pytest.fixture(scope="session")
def functions() -> dict[str, Any]:
    import function_app

    # The worker calls get_functions() exactly once; a second call raises (reference §2.4).
    return {f.get_function_name(): f for f in function_app.app.get_functions()}


ADMIN = object()  # call()'s default token: a partner admin (app role) of the route's tenant


def call(functions: dict[str, Any], name: str, method: str, *, route: dict[str, str] | None = None,
         body: Any = None, params: dict[str, str] | None = None, raw: bytes | None = None,
         token: Any = ADMIN, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """Call a function as the host would. `token`: by default a partner admin of the route's tenant (or of
    DEFAULT_TENANT); a token string to send that one; None to send no Authorization header."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is ADMIN:
        tenant = (route or {}).get("tenantId") or DEFAULT_TENANT
        token = token_for(tenant if _is_guid(tenant) else DEFAULT_TENANT)
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    req = func.HttpRequest(method, "http://localhost/api/x", params=params or {}, route_params=route or {},
                           body=data, headers=sent)
    return functions[name].get_user_function()(req)


def _is_guid(value: str) -> bool:
    import re

    return bool(re.fullmatch(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", value))


def problem(resp: func.HttpResponse) -> dict[str, Any]:
    assert resp.mimetype == "application/problem+json", resp.get_body()
    return json.loads(resp.get_body())




@pytest.fixture
def webhook_env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Webhooks with a short retry plan (1 s between attempts, a 1 s timeout), their own delivery queue, and the
    local encrypted secret store's key. Ask for it before `ctx`."""
    import base64
    import os

    env = {"WEBHOOK_QUEUE": unique("hooks-"), "WEBHOOK_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode(),
           "WEBHOOK_TIMEOUT_SECONDS": "1", "WEBHOOK_RETRY_BASE_SECONDS": "1", "WEBHOOK_RETRY_FACTOR": "1",
           "WEBHOOK_RETRY_CAP_SECONDS": "1", "WEBHOOK_RETRY_WINDOW_SECONDS": "60"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    from shared.app.context import reset_context

    reset_context()
    return {**app_env, **env}


def deliver_all(ctx: AppContext, done: Any, timeout: float = 60.0) -> None:
    """Run the webhook delivery worker over its queue (messages appear after their retry delays) until `done()`."""
    import time

    from shared.app import webhooks

    queue = ctx.storage.queue(ctx.settings.webhook_queue)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = list(queue.receive_messages(visibility_timeout=30, max_messages=16))
        for msg in batch:
            webhooks.deliver(ctx, msg.content)
            queue.delete_message(msg)
        if not batch:
            if done():
                return
            time.sleep(0.2)
    raise AssertionError("webhook deliveries did not settle in time")
