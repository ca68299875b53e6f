"""The real Partner Center client against the simulator: paging, sign-in failures, throttling, server errors,
slow answers, the retry budget and the per-tenant concurrency limit."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone

import pytest

from shared.adapters.invoices import client_for
from shared.core.models import Tenant
from shared.adapters.partner_center.client import PAGE_SIZE
from shared.adapters.partner_center.transport import PartnerCenterError
from shared.adapters.settings import Settings
from tests.conftest import SECRET_SETTING


def client(sim, monkeypatch: pytest.MonkeyPatch, secret_setting: str = SECRET_SETTING, **settings: str):
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    now = datetime.now(timezone.utc)
    tenant = Tenant(tenant_id=sim.tenant_id, display_name="Sim", client_id=sim.client_id,
                    client_secret_setting=secret_setting, created_at=now, updated_at=now)
    return client_for(tenant, Settings())  # type: ignore[call-arg]


def g_invoice(sim) -> str:
    return next(i["id"] for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")


@pytest.mark.parametrize("file_type,prefix", [("onetime", "G"), ("dailyratedusage", "G"), ("license", "D"),
                                              ("usage", "D")])
def test_pages_reach_every_line_and_never_exceed_2000(sim_env, sim, monkeypatch, file_type, prefix) -> None:
    c = client(sim, monkeypatch)
    invoice = next(i["id"] for i in sim.invoices() if i["id"].startswith(prefix) and i["documentType"] == "invoice")
    pages = list(c.line_item_pages(invoice, file_type))
    assert all(0 < len(p) <= PAGE_SIZE for p in pages)
    assert sum(len(p) for p in pages) == sim.expected(invoice, file_type).rows
    if file_type == "dailyratedusage":
        assert len(pages) >= 2  # 3000 rows: the seek paging really continued


def test_a_wrong_secret_is_a_clear_sign_in_error(sim_env, sim, monkeypatch) -> None:
    monkeypatch.setenv(SECRET_SETTING, "not-the-secret")
    from shared.adapters.partner_center import transport

    monkeypatch.setattr(transport, "_apps", {})  # no cached MSAL app with the right secret
    with pytest.raises(PartnerCenterError, match="Could not sign in"):
        client(sim, monkeypatch).get_invoice(g_invoice(sim))


def _sign_in_error(sim, monkeypatch: pytest.MonkeyPatch, setting: str) -> str:
    from shared.adapters.partner_center import transport

    monkeypatch.setattr(transport, "_apps", {})
    with pytest.raises(PartnerCenterError) as failed:
        client(sim, monkeypatch, secret_setting=setting).get_invoice(g_invoice(sim))
    return str(failed.value)


def test_sign_in_errors_never_tell_which_app_settings_exist(sim_env, sim, monkeypatch) -> None:
    """Issue 14 #10: a missing setting, a wrong secret, and a stored record naming a setting that is not a
    PC_SECRET_ one (AzureWebJobsStorage is set, PC_SECRET_NOPE is not) all get the same words."""
    monkeypatch.setenv("PC_SECRET_WRONG", "not-the-secret")
    monkeypatch.delenv("PC_SECRET_NOPE", raising=False)
    assert os.environ.get("AzureWebJobsStorage")
    wrong = _sign_in_error(sim, monkeypatch, "PC_SECRET_WRONG")
    missing = _sign_in_error(sim, monkeypatch, "PC_SECRET_NOPE")
    not_ours = _sign_in_error(sim, monkeypatch, "AzureWebJobsStorage")
    assert wrong == missing == not_ours
    assert "is not set" not in wrong and "NOPE" not in wrong and "AzureWebJobsStorage" not in wrong


def test_retry_after_is_honoured(sim_env, sim, monkeypatch) -> None:
    c = client(sim, monkeypatch)
    slept: list[float] = []
    c.t.sleep = slept.append
    sim.faults.throttle(2, retry_after=1)  # the shared budget's cool-down waits it out for real too
    assert c.get_invoice(g_invoice(sim))["id"]
    assert slept == [1.0, 1.0]


def test_server_errors_back_off_with_jitter_under_the_cap(sim_env, sim, monkeypatch) -> None:
    c = client(sim, monkeypatch, PC_BACKOFF_BASE_SECONDS="0.01", PC_BACKOFF_CAP_SECONDS="0.02")
    slept: list[float] = []
    c.t.sleep = slept.append
    sim.faults.server_error(3, status=500)
    assert c.get_invoice(g_invoice(sim))["id"]
    assert len(slept) == 3 and all(0 <= s <= 0.02 for s in slept)


def test_the_retry_budget_ends_in_a_transient_error(sim_env, sim, monkeypatch) -> None:
    c = client(sim, monkeypatch, PC_MAX_RETRIES="2")
    c.t.sleep = lambda s: None
    sim.faults.server_error(10, status=502)
    with pytest.raises(PartnerCenterError) as err:
        c.get_invoice(g_invoice(sim))
    assert err.value.transient and "gave up after 3 attempts" in str(err.value)
    sim.faults.reset()


def test_a_slow_answer_times_out_and_is_retried(sim_env, sim, monkeypatch) -> None:
    c = client(sim, monkeypatch, PC_TIMEOUT_SECONDS="0.3")
    c.t.sleep = lambda s: None
    sim.faults.slow(1, delay=1.0, path_prefix="/v1/invoices")
    assert c.get_invoice(g_invoice(sim))["id"]


def test_calls_per_tenant_never_exceed_the_limit(sim_env, sim, monkeypatch) -> None:
    from shared.adapters.partner_center import transport

    monkeypatch.setattr(transport, "_semaphores", {})
    c = client(sim, monkeypatch, PC_MAX_CONCURRENCY="2")
    invoice = g_invoice(sim)
    c.get_invoice(invoice)  # sign in first, so only the invoice calls are timed
    sim.faults.slow(6, delay=0.3, path_prefix="/v1/invoices")
    start = time.monotonic()
    threads = [threading.Thread(target=c.get_invoice, args=(invoice,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - start >= 0.85  # 6 calls, 2 at a time, 0.3 s each: at least three rounds


def test_entra_throttling_and_errors_during_sign_in_are_retried(sim_env, sim, monkeypatch) -> None:
    from shared.adapters.partner_center import transport

    monkeypatch.setattr(transport, "_apps", {})  # sign in from scratch: discovery and token calls
    c = client(sim, monkeypatch)
    c.t.sleep = lambda s: None
    sim.faults.throttle(2, retry_after=0, path_prefix=f"/{sim.tenant_id}")
    sim.faults.server_error(1, status=503, retry_after=0, path_prefix=f"/{sim.tenant_id}")
    assert c.get_invoice(g_invoice(sim))["id"]
