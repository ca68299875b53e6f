"""Load on the API while it works: N concurrent users for S seconds against the stack `make serve` runs (Azurite,
the simulator, the local Functions host), listing files, reading file records and paging charges, while two
large daily-rated-usage files generate. Prints p50/p95 latency per endpoint and the 5xx count, then checks that
both files came out exact (rows and Σ BillingPreTaxTotal against the simulator's invoice).

    python -m devtools.load [--users 50] [--seconds 60] [--rows 300000]

A bounded, closed-loop script (each user sends its next request when the last one answered): no load tool to
install, loopback only. Exit code 1 on any 5xx, connection error or inexact file. `make bench` runs it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

import requests

ENDPOINTS = ("list files", "read record", "page charges")
REQUEST_TIMEOUT_SECONDS = 230  # Azure's front end ends an HTTP trigger's request after 230 s: slower is a failure


@dataclass
class LoadResult:
    users: int
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # seconds, per endpoint
    statuses: Counter = field(default_factory=Counter)  # (endpoint, status) -> count
    errors: list[str] = field(default_factory=list)  # connection errors, timeouts
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, endpoint: str, status: int, seconds: float) -> None:
        with self.lock:
            self.latencies[endpoint].append(seconds)
            self.statuses[(endpoint, status)] += 1

    @property
    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 500)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def percentiles(self, endpoint: str) -> tuple[float, float]:
        values = sorted(self.latencies[endpoint])
        if not values:
            return 0.0, 0.0
        return statistics.median(values), values[min(len(values) - 1, int(len(values) * 0.95))]

    def table(self) -> str:
        lines = [f"{self.users} users, {self.seconds:.0f} s: {self.requests} requests "
                 f"({self.requests / self.seconds:.1f}/s), 5xx: {self.server_errors}, "
                 f"connection errors: {len(self.errors)}",
                 f"{'endpoint':<14} | {'requests':>8} | {'p50 ms':>7} | {'p95 ms':>7} | statuses"]
        for endpoint in ENDPOINTS:
            p50, p95 = self.percentiles(endpoint)
            codes = ", ".join(f"{s}: {n}" for (e, s), n in sorted(self.statuses.items()) if e == endpoint)
            lines.append(f"{endpoint:<14} | {len(self.latencies[endpoint]):>8} | {p50 * 1000:>7.0f} | "
                         f"{p95 * 1000:>7.0f} | {codes}")
        return "\n".join(lines)


def run_users(api: str, tenant: str, headers: dict[str, str], file_ids: list[str], charge_invoice: str,
              users: int, seconds: float, charges_grace: float = 0) -> LoadResult:
    """The users in a process of their own (spawned), so the client's threads do not compete for the server's
    interpreter lock: the latencies are the server's, not the load generator's. With `charges_grace`, the users go
    on past `seconds` (for at most that many more) until the charges have answered a page (200): the snapshot
    the first request queued is ingested behind the files being generated, and how soon depends on the machine."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        raw = pool.submit(_users_in_process, api, tenant, headers, file_ids, charge_invoice, users,
                          seconds, charges_grace).result(timeout=seconds + charges_grace + 600)
    result = LoadResult(users, raw["seconds"])
    for endpoint, values in raw["latencies"].items():
        result.latencies[endpoint].extend(values)
    for (endpoint, status), n in raw["statuses"]:
        result.statuses[(endpoint, status)] += n
    result.errors.extend(raw["errors"])
    return result


def _users_in_process(*args: Any) -> dict[str, Any]:
    r = _run_users(*args)
    return {"latencies": dict(r.latencies), "statuses": list(r.statuses.items()), "errors": r.errors,
            "seconds": r.seconds}


def _run_users(api: str, tenant: str, headers: dict[str, str], file_ids: list[str], charge_invoice: str,
               users: int, seconds: float, charges_grace: float = 0) -> LoadResult:
    """`users` threads, each a closed loop of random requests among the three endpoints, for `seconds` (and up to
    `charges_grace` more while no charges page has answered 200)."""
    result = LoadResult(users, seconds)
    base = f"{api}/tenants/{tenant}"
    began = time.monotonic()
    stop, hard_stop = began + seconds, began + seconds + charges_grace
    paged = threading.Event()

    def going() -> bool:
        now = time.monotonic()
        return now < stop or (now < hard_stop and not paged.is_set())

    def user(n: int) -> None:
        rng = random.Random(n)
        session = requests.Session()
        session.headers.update(headers)
        token: str | None = None  # this user's place in the charges
        while going():
            endpoint = rng.choice(ENDPOINTS)
            if endpoint == "list files":
                url, params = f"{base}/reconciliation-files", {}
            elif endpoint == "read record":
                url, params = f"{base}/reconciliation-files/{rng.choice(file_ids)}", {}
            else:
                url = f"{base}/invoices/{charge_invoice}/charges"
                params = {"type": "onetime", "pageSize": "25", **({"continuationToken": token} if token else {})}
            start = time.perf_counter()
            try:
                resp = session.get(url, params=params, timeout=REQUEST_TIMEOUT_SECONDS)
            except requests.RequestException as exc:
                with result.lock:
                    result.errors.append(f"{endpoint}: {type(exc).__name__}")
                continue
            result.record(endpoint, resp.status_code, time.perf_counter() - start)
            if endpoint == "page charges" and resp.status_code == 200:
                token = resp.json().get("continuationToken")
                paged.set()
        session.close()

    threads = [threading.Thread(target=user, args=(n,), name=f"user-{n}") for n in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.monotonic() - began
    return result


def request_file(api: str, tenant: str, headers: dict[str, str], invoice_id: str) -> str:
    resp = requests.post(f"{api}/tenants/{tenant}/reconciliation-files", headers=headers, timeout=60,
                         json={"invoiceType": "dailyratedusage", "invoiceId": invoice_id})
    resp.raise_for_status()
    return str(resp.json()["id"])


def wait_available(api: str, tenant: str, headers: dict[str, str], file_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record = requests.get(f"{api}/tenants/{tenant}/reconciliation-files/{file_id}", headers=headers,
                              timeout=60).json()
        if record["status"] in ("Available", "NeedsReview", "Failed") or time.monotonic() > deadline:
            return record
        time.sleep(0.5)


def file_sums(api: str, tenant: str, headers: dict[str, str], file_id: str) -> tuple[int, Decimal]:
    """Download the file through its SAS link and count its lines and Σ BillingPreTaxTotal (exact decimals)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    link = requests.get(f"{api}/tenants/{tenant}/reconciliation-files/{file_id}/download", headers=headers,
                        allow_redirects=False, timeout=60)
    link.raise_for_status()
    with tempfile.NamedTemporaryFile(suffix=".csv") as target:
        with requests.get(link.headers["Location"], stream=True, timeout=300) as blob:
            blob.raise_for_status()
            for chunk in blob.iter_content(1 << 20):
                target.write(chunk)
        target.flush()
        table = pcsv.read_csv(target.name, convert_options=pcsv.ConvertOptions(
            include_columns=["BillingPreTaxTotal"], column_types={"BillingPreTaxTotal": pa.string()}))
    column = table.column("BillingPreTaxTotal").to_pylist()
    return len(column), sum((Decimal(v) for v in column if v), Decimal(0))


@dataclass
class Check:
    invoice_id: str
    status: str
    rows: int
    expected_rows: int
    total: Decimal
    expected_total: Decimal
    seconds: float  # from the request to Available (the record's createdAt → completedAt)

    @property
    def exact(self) -> bool:
        return self.status == "Available" and self.rows == self.expected_rows and self.total == self.expected_total

    def line(self) -> str:
        verdict = "exact" if self.exact else "NOT EXACT"
        return (f"{self.invoice_id} dailyratedusage: {self.status}, {self.rows:,} rows (invoice {self.expected_rows:,}), "
                f"Σ BillingPreTaxTotal {self.total} (invoice {self.expected_total}): {verdict}; "
                f"made in {self.seconds:.0f} s")


def load_while_generating(api: str, tenant: str, headers: dict[str, str], invoices: list[str],
                          expected: Callable[[str], Any], users: int, seconds: float,
                          generation_timeout: float = 900,
                          charges_grace: float = 0) -> tuple[LoadResult, list[Check]]:
    """Ask for the daily rated usage files of `invoices`, put the load on while they generate, then check them
    against `expected(invoice_id)` (the simulator's `Expected`)."""
    file_ids = [request_file(api, tenant, headers, inv) for inv in invoices]
    result = run_users(api, tenant, headers, file_ids, invoices[0], users, seconds, charges_grace)
    checks = []
    for invoice_id, file_id in zip(invoices, file_ids):
        record = wait_available(api, tenant, headers, file_id, generation_timeout)
        want = expected(invoice_id)
        rows, total = file_sums(api, tenant, headers, file_id) if record["status"] == "Available" else (0, Decimal(0))
        took = _seconds_between(record.get("createdAt"), record.get("completedAt"))
        checks.append(Check(invoice_id, record["status"], rows, want.rows, total, want.total, took))
    return result, checks


def _seconds_between(start: str | None, end: str | None) -> float:
    from datetime import datetime

    if not start or not end:
        return float("nan")
    return (datetime.fromisoformat(end.replace("Z", "+00:00")) -
            datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def warm_up(stack: Any, tenant: str, invoices: list[str]) -> None:
    """Have the simulator write the exports' blobs before the clock starts (Microsoft has its files ready; the
    simulator writes them on first use, in Python, in this very process, which would be measured as ours)."""
    from datetime import datetime, timezone

    from devtools.stack import DEMO_SECRET_SETTING
    from shared.adapters.invoices import client_for
    from shared.adapters.settings import Settings
    from shared.core.models import Tenant

    now = datetime.now(timezone.utc)
    client = client_for(Tenant(tenant_id=tenant, display_name="load", client_id=stack.sim.client_id,
                               client_secret_setting=DEMO_SECRET_SETTING, created_at=now, updated_at=now),
                        Settings())  # type: ignore[call-arg]
    start = time.monotonic()
    for file_type, invoice_id in [("onetime", invoices[0])] + [("dailyratedusage", i) for i in invoices]:
        client.export(file_type, invoice_id)
    print(f"Simulator's export blobs written in {time.monotonic() - start:.0f} s (before the load)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--charges-grace", type=float, default=300,
                        help="go on past --seconds, for at most this long, until the charges have answered a page")
    parser.add_argument("--rows", type=int, default=300_000, help="daily rated usage rows per simulator invoice")
    args = parser.parse_args(argv)
    from devtools.stack import Stack

    with Stack(port=0, sim_size=args.rows) as stack:
        tenant = stack.register_sample_tenant()
        headers = stack.headers(tenant)
        invoices = [str(i["id"]) for i in stack.sim.invoices()
                    if str(i["id"]).startswith("G") and i["documentType"] == "invoice"][:2]
        warm_up(stack, tenant, invoices)
        print(f"Load: {args.users} users for {args.seconds:.0f} s on {stack.api} while the daily rated usage files "
              f"of {' and '.join(invoices)} ({args.rows:,} rows each) generate", flush=True)
        result, checks = load_while_generating(stack.api, tenant, headers, invoices,
                                               lambda inv: stack.sim.expected(inv, "dailyratedusage"),
                                               args.users, args.seconds, charges_grace=args.charges_grace)
        print(result.table())
        for check in checks:
            print(check.line())
    ok = result.server_errors == 0 and not result.errors and all(c.exact for c in checks)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
