"""The call budget shared by every instance (shared/adapters/partner_center/budget.py), with real worker
processes, real Azurite and the real simulator, whose gauge counts the requests in flight at once."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from datetime import datetime, timezone

import pytest

from shared.adapters.invoices import client_for
from shared.adapters.partner_center import budget as budget_module
from shared.adapters.partner_center.budget import Budget, SlotUnavailable, budget_for
from shared.adapters.settings import Settings
from shared.core.models import Tenant
from tests.adapters import budget_workers
from tests.conftest import SECRET_SETTING

SPAWN = multiprocessing.get_context("spawn")  # fresh interpreters, like separate instances


@pytest.fixture
def shared_env(sim_env, sim, monkeypatch: pytest.MonkeyPatch):
    """Settings every process reads: a limit of 2 across instances, 2 per process, short leases."""
    env = {"PC_TENANT_CONCURRENCY": "2", "PC_MAX_CONCURRENCY": "2", "PC_LEASE_SECONDS": "1.5",
           "PC_SLOT_WAIT_SECONDS": "60", "BUDGET_TEST_TENANT": sim.tenant_id, "BUDGET_TEST_CLIENT": sim.client_id}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(budget_module, "_budgets", {})
    from shared.adapters.partner_center import transport

    monkeypatch.setattr(transport, "_semaphores", {})
    yield env
    sim.faults.reset()


def g_invoice(sim) -> str:
    return next(i["id"] for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")


class Workers:
    """`n` worker processes calling in a loop for `seconds` once all have started and signed in."""

    def __init__(self, n: int, invoice: str, seconds: float, threads: int, downloads: bool) -> None:
        self.go, ready, self.results = SPAWN.Event(), SPAWN.Queue(), SPAWN.Queue()
        self.procs = [SPAWN.Process(target=budget_workers.call_loop,
                                    args=(invoice, self.go, seconds, threads, downloads, ready, self.results))
                      for _ in range(n)]
        for p in self.procs:
            p.start()
        for _ in self.procs:
            ready.get(timeout=120)

    def start(self) -> float:
        self.go.set()
        return time.time()

    def finish(self) -> list[tuple[int, list]]:
        out = [self.results.get(timeout=120) for _ in self.procs]
        for p in self.procs:
            p.join(timeout=30)
        return out


@pytest.mark.parametrize("limit,bounded", [("2", True), ("0", False)], ids=["shared-budget", "per-process-only"])
def test_worker_processes_never_exceed_the_tenant_limit(shared_env, sim, monkeypatch, limit, bounded) -> None:
    """Three processes of two threads each (six calls at once without the shared budget) against a limit of 2,
    calling invoices (slowed to 0.1 s) and downloading export blobs (streamed: the slot is held to the last byte).
    The control run without the shared budget (`PC_TENANT_CONCURRENCY=0`) shows the gauge can see more."""
    monkeypatch.setenv("PC_TENANT_CONCURRENCY", limit)
    invoice = g_invoice(sim)
    sim.faults.slow(100_000, delay=0.1, path_prefix="/v1/invoices")
    workers = Workers(3, invoice, seconds=3.0, threads=2, downloads=True)
    sim.gauge.reset()
    workers.start()
    results = workers.finish()
    assert [e for _, e in results] == [[], [], []]
    assert all(calls > 0 for calls, _ in results)
    if bounded:
        assert sim.gauge.peak == 2  # never above the limit, and the limit was reached
    else:
        assert sim.gauge.peak > 2


def test_a_429_seen_by_one_process_makes_every_process_wait(shared_env, sim) -> None:
    """One process gets a 429 with Retry-After: 2; from then until the cool-down ends no process calls."""
    invoice = g_invoice(sim)
    sim.faults.slow(100_000, delay=0.02, path_prefix="/v1/invoices")
    workers = Workers(3, invoice, seconds=5.0, threads=1, downloads=False)
    start_at = workers.start()
    time.sleep(1.5)  # all three calling
    sim.faults.throttle(1, retry_after=2, path_prefix="/v1/invoices")
    out = workers.finish()
    assert [e for _, e in out] == [[], [], []]
    logged = [r for r in list(sim.requests) if r.path.startswith("/v1/invoices/") and r.received >= start_at]
    throttled = [r for r in logged if r.status == 429]
    assert len(throttled) == 1
    t429 = throttled[0].received
    callers = lambda rs: {r.headers.get("ms-correlationid") for r in rs}  # noqa: E731  one per process
    before = [r for r in logged if r.received < t429]
    # A call whose slot was claimed before the cool-down was written may still start a few ms after the 429.
    during = [r for r in logged if t429 + 0.3 <= r.received < t429 + 2.0 - 0.05]
    after = [r for r in logged if t429 + 2.0 - 0.05 <= r.received]
    assert len(callers(before)) == 3  # all three processes were calling
    assert during == []
    assert len(callers(after)) >= 2 and len(after) >= 10  # and called again once it had passed


def test_a_killed_holder_frees_its_slots_when_the_leases_expire(shared_env, sim) -> None:
    """A process claims both slots, keeps them past several lease lifetimes (it renews), and is SIGKILLed: a
    call from another process starts once the leases expire (1.5 s), not before and not much after."""
    ready = SPAWN.Queue()
    holder = SPAWN.Process(target=budget_workers.hold_slots, args=(2, ready))
    holder.start()
    try:
        assert ready.get(timeout=60) == holder.pid
        settings = Settings()  # type: ignore[call-arg]
        waiting = Budget(budget_for(settings).table, 2, lease_seconds=1.5, wait_seconds=3.5)  # type: ignore[union-attr]
        with pytest.raises(SlotUnavailable):
            waiting.acquire(sim.tenant_id)  # 3.5 s > 2 lease lifetimes: the holder's renewals kept both slots
        client = client_for(Tenant(tenant_id=sim.tenant_id, display_name="Sim", client_id=sim.client_id,
                                   client_secret_setting=SECRET_SETTING, created_at=datetime.now(timezone.utc),
                                   updated_at=datetime.now(timezone.utc)), settings)
        client.t.token("https://api.partnercenter.microsoft.com/.default")  # sign in (not a budgeted call)
        os.kill(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert client.get_invoice(g_invoice(sim))["id"]
        waited = time.monotonic() - killed
        assert 0.5 <= waited <= 1.5 + 2.5  # the lease's remaining life, plus at most one capped backoff
    finally:
        holder.kill()
        holder.join(timeout=10)


def test_a_warm_claim_is_one_conditional_write(ctx) -> None:
    """After the first read, claiming and releasing a slot each cost exactly one Table request."""
    budget = Budget(ctx.storage.table(budget_module.TABLE), 2, lease_seconds=30, wait_seconds=5)
    budget.release(budget.acquire("tenant-a"))  # first use: reads and creates the rows
    calls: list[str] = []
    table = budget.table
    for name in ("update_entity", "query_entities", "get_entity", "create_entity"):
        original = getattr(table, name)
        setattr(table, name, lambda *a, _n=name, _o=original, **k: (calls.append(_n), _o(*a, **k))[1])
    slot = budget.acquire("tenant-a")
    assert calls == ["update_entity"]
    budget.release(slot)
    assert calls == ["update_entity", "update_entity"]


def test_a_cool_down_is_honoured_by_another_budget_before_its_next_claim(ctx) -> None:
    """Two budgets (two instances) of one table: one cools the tenant down; the other's warm cache is stale
    (every row's ETag changed), so its claim fails, it reads again and waits the cool-down out."""
    table = ctx.storage.table(budget_module.TABLE)
    a = Budget(table, 2, lease_seconds=30, wait_seconds=5)
    b = Budget(table, 2, lease_seconds=30, wait_seconds=5)
    b.release(b.acquire("tenant-b"))  # b's cache is warm
    a.cool_down("tenant-b", 1.0)
    start = time.monotonic()
    b.release(b.acquire("tenant-b"))
    assert 0.8 <= time.monotonic() - start <= 2.0


def test_waiting_is_bounded(ctx) -> None:
    table = ctx.storage.table(budget_module.TABLE)
    a = Budget(table, 1, lease_seconds=30, wait_seconds=0.5)
    a.acquire("tenant-c")
    start = time.monotonic()
    with pytest.raises(SlotUnavailable, match="within 0.5s"):
        a.acquire("tenant-c")
    assert time.monotonic() - start <= 0.6


def test_a_waiter_is_not_starved_by_a_holder_that_claims_again_at_once(ctx) -> None:
    """Instance A releases and claims its only slot again in a tight loop; instance B, waiting, reserves the slot
    and gets it soon after (without the reservation B could wait its whole budget)."""
    import threading

    table = ctx.storage.table(budget_module.TABLE)
    a = Budget(table, 1, lease_seconds=30, wait_seconds=10)
    b = Budget(table, 1, lease_seconds=30, wait_seconds=10)
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            try:
                slot = a.acquire("tenant-d")
            except SlotUnavailable:
                continue
            time.sleep(0.02)  # a short call
            a.release(slot)

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        time.sleep(0.3)
        start = time.monotonic()
        slot = b.acquire("tenant-d")
        waited = time.monotonic() - start
        b.release(slot)
    finally:
        stop.set()
        worker.join(timeout=20)
    assert waited < 2.0
