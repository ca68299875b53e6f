"""Worker processes for tests/adapters/test_budget.py: each is a separate Python process (as separate Functions
instances are), sharing only Azurite and the simulator with the others. Started with multiprocessing's spawn."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone


def _client():
    from shared.adapters.invoices import client_for
    from shared.adapters.settings import Settings
    from shared.core.models import Tenant
    from tests.conftest import SECRET_SETTING

    settings = Settings()  # type: ignore[call-arg]  (the parent's environment: Azurite, simulator, limits)
    now = datetime.now(timezone.utc)
    import os

    tenant = Tenant(tenant_id=os.environ["BUDGET_TEST_TENANT"], display_name="Sim",
                    client_id=os.environ["BUDGET_TEST_CLIENT"], client_secret_setting=SECRET_SETTING,
                    created_at=now, updated_at=now)
    return client_for(tenant, settings)


def call_loop(invoice_id: str, go, seconds: float, threads: int, downloads: bool, ready, results) -> None:
    """Once signed in, says so on `ready`; from `go` on, for `seconds`, `threads` threads call Microsoft in a loop:
    the invoice, and when `downloads`, an export blob too (a streamed response). Puts (calls, errors) on `results`."""
    client = _client()
    client.get_invoice(invoice_id)  # sign in before the clock starts
    blobs = client.export("dailyratedusage", invoice_id).blobs if downloads else ()
    ready.put(True)
    go.wait(120)
    start_at = time.time()
    calls, errors = [0], []
    lock = threading.Lock()

    def run(n: int) -> None:
        end = start_at + seconds
        i = n
        while time.time() < end:
            try:
                client.get_invoice(invoice_id)
                if blobs:
                    client.download_blob(blobs[i % len(blobs)]).close()
                i += 1
                with lock:
                    calls[0] += 1
            except Exception as exc:  # reported to the test, which fails on any
                with lock:
                    errors.append(repr(exc))

    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put((calls[0], errors))


def hold_slots(count: int, ready) -> None:
    """Claim `count` slots of the tenant's budget and hold them (renewing) until killed."""
    import os

    from shared.adapters.partner_center.budget import budget_for
    from shared.adapters.settings import Settings

    budget = budget_for(Settings())  # type: ignore[call-arg]
    assert budget is not None
    for _ in range(count):
        budget.acquire(os.environ["BUDGET_TEST_TENANT"])
    ready.put(os.getpid())
    time.sleep(3600)
