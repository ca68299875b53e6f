"""`make bench`: how fast and how lean the daily-rated-usage pipeline is, against a floor.

For each N (default 250,000 and 1,000,000 rows) the simulator publishes a daily rated usage export of N rows;
then, each in its own process so peak memory is its own:
- the floor: download the same gzip JSON-lines blobs and write CSV with pyarrow alone (no decimals, no storage);
- ingest: the invoice snapshot, as the worker makes it (export -> download -> exact-decimal parsing -> charge
  validation -> reseller reach index -> Parquet parts and manifest in Azurite);
- the partner file: the real worker path from that snapshot (margin rules for every reseller and half the
  customers, identifiers for every subscription -> CSV blocks staged in Azurite -> commit -> file record), exactly
  what the queue trigger runs once the snapshot exists; then a reseller view of the same snapshot (daily rated
  usage has no customer views); each makes no call to Microsoft;
- charges: the first page and a middle page (2,000 lines) read from the snapshot.
It prints rows per second, each step's time against the floor's, and peak resident memory.

    python -m devtools.bench [--rows 250000,1000000] [--steps ingest,partner]      (make bench ROWS=5000000)

BENCH_AZURITE_IN_MEMORY=1 keeps Azurite's data in its memory instead of on disk (Azurite shares the two cores
with the pipeline; this shows how much of the time is Azurite's own).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _client(info: dict):
    from shared.core.models import Tenant
    from shared.adapters.invoices import client_for
    from shared.adapters.settings import Settings
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    tenant = Tenant(tenant_id=info["tenant_id"], display_name="bench", client_id=info["client_id"],
                    client_secret_setting="PC_SECRET_BENCH", created_at=now, updated_at=now)
    return client_for(tenant, Settings())  # type: ignore[call-arg]


def run_floor(info: dict, invoice_id: str) -> dict:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.json as pj

    client = _client(info)
    start = time.perf_counter()
    manifest = client.export("dailyratedusage", invoice_id)
    rows = 0
    with open(os.devnull, "wb") as sink:
        for blob in manifest.blobs:
            with client.download_blob(blob) as gz:  # as the pipeline reads it: downloaded, then native gzip
                writer = None
                for batch in pj.open_json(pa.CompressedInputStream(pa.OSFile(gz.name), "gzip")):
                    if writer is None:
                        writer = pcsv.CSVWriter(sink, batch.schema)
                    writer.write_batch(batch)
                    rows += batch.num_rows
    return {"rows": rows, "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def _context():
    from shared.app.context import AppContext
    from shared.adapters.memory import configure_memory
    from shared.adapters.settings import Settings
    from shared.adapters.storage import Storage

    configure_memory()  # as function_app.py does at start-up
    settings = Settings()  # type: ignore[call-arg]
    storage = Storage(settings)
    storage.ensure()
    return AppContext(settings, storage)


def run_ingest(info: dict, invoice_id: str) -> dict:
    """The snapshot: Microsoft's export fetched, parsed, validated, indexed and stored as Parquet."""
    from shared.app import ingest, tenants
    from shared.core.columns import FileType
    from shared.core.models import TenantIn

    ctx = _context()
    # one process's ingest (the figures below are its); the ingest fan-out per export blob is not benchmarked here
    ctx.settings = ctx.settings.model_copy(update={"fanout_min_parts": 0})
    tenants.put_tenant(ctx, info["tenant_id"], TenantIn(display_name="bench", client_id=info["client_id"],
                                                  client_secret_setting="PC_SECRET_BENCH"))
    rules = configure_margins(ctx, info, invoice_id)
    start = time.perf_counter()
    snapshot = ingest.ensure(ctx, info["tenant_id"], invoice_id, FileType.DAILY)
    seconds = time.perf_counter() - start
    return {"rows": snapshot.manifest["rows"], "seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rules": rules,
            "parts": len(snapshot.files)}


def run_derive(info: dict, invoice_id: str, view: str) -> dict:
    """A file from the existing snapshot: the partner file, or a reseller view (no call to Microsoft)."""
    import json as _json

    from shared.app import file_requests
    from shared.app.generation import Worker
    from shared.core.models import FileRequest

    ctx = _context()
    fields = {}
    if view == "reseller":
        fields = {"view": "reseller", "reseller_id": next(r.target_id for r in ctx.rules.list(info["tenant_id"])
                                                          if r.level.value == "reseller")}
    record, created = file_requests.request_file(ctx, info["tenant_id"],
                                           FileRequest(invoice_type="dailyratedusage", invoice_id=invoice_id,
                                                       **fields))
    if not created:  # run again on the same storage: a new version
        record = file_requests.regenerate(ctx, record.tenant_id, record.id, "bench")
    message = _json.dumps({"tenantId": record.tenant_id, "fileId": record.id, "version": record.version})
    start = time.perf_counter()
    Worker(ctx).handle(message, 1)
    seconds = time.perf_counter() - start
    done, _ = ctx.files.get(record.tenant_id, record.id)
    if done.status != "Available":
        raise SystemExit(f"{view} file failed: {done.error}")
    import pyarrow as pa

    return {"rows": done.row_count, "seconds": seconds, "peak_rss_mb": peak_rss_mb(),
            "arrow_peak_mb": pa.default_memory_pool().max_memory() / 2**20, "cost": str(done.totals.cost), "reseller": str(done.totals.reseller), "customer": str(done.totals.customer)}


def run_charges(info: dict, invoice_id: str) -> dict:
    """The first page and a middle page of 2,000 lines, read from the snapshot."""
    from shared.app import charges, file_requests
    from shared.core.models import ChargesScope

    ctx = _context()
    scope = ChargesScope.model_validate({"invoiceType": "dailyratedusage"})
    start = time.perf_counter()
    file_requests.get_charges(ctx, info["tenant_id"], invoice_id, scope, 2000, None)
    cold_s = time.perf_counter() - start  # the process's first request: imports, connections, caches
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        cProfile.runctx("file_requests.get_charges(ctx, info['tenant_id'], invoice_id, scope, 2000, None)",
                        globals(), locals(), os.environ["BENCH_PROFILE"])
    start = time.perf_counter()
    first = file_requests.get_charges(ctx, info["tenant_id"], invoice_id, scope, 2000, None)
    first_s = time.perf_counter() - start
    snapshot = ctx.snapshots.load(ctx.snapshots.get(info["tenant_id"], invoice_id, "dailyratedusage")[0].snapshot_id)
    middle_file = len(snapshot.files) // 2
    token = charges.sign_token(ctx.settings, {"snap": snapshot.id, "scope": ["partner", None, None],
                                              "f": middle_file, "r": snapshot.files[middle_file]["rows"] // 2})
    start = time.perf_counter()
    middle = file_requests.get_charges(ctx, info["tenant_id"], invoice_id, scope, 2000, token)
    middle_s = time.perf_counter() - start
    assert len(first["items"]) == len(middle["items"]) == 2000, (len(first["items"]), len(middle["items"]))
    return {"cold_ms": cold_s * 1000, "first_ms": first_s * 1000, "middle_ms": middle_s * 1000,
            "peak_rss_mb": peak_rss_mb()}


def configure_margins(ctx, info: dict, invoice_id: str) -> int:
    """Margins as a partner would have them: every reseller on the first page of usage gets a rule (changing
    mid-period), every other customer a rule, every subscription an internal id and PO number."""
    from datetime import date

    from shared.adapters.pricing import Identifier
    from shared.core.margins import MarginRuleIn

    page = next(_client(info).line_item_pages(invoice_id, "dailyratedusage"))
    resellers = sorted({str(i["resellerMpnId"]) for i in page if str(i.get("resellerMpnId") or "").isdigit()
                        and str(i["resellerMpnId"]) != "0"})
    customers = sorted({str(i["customerId"]) for i in page if i.get("customerId")})
    subscriptions = sorted({str(i["subscriptionId"]) for i in page if i.get("subscriptionId")})
    tenant = info["tenant_id"]
    rules = [MarginRuleIn(level="reseller", target_id=r, percent="10", effective_from=date(2020, 1, 1),
                          effective_to=date(2026, 10, 16)) for r in resellers]
    rules += [MarginRuleIn(level="reseller", target_id=r, percent="12.5", effective_from=date(2026, 10, 16))
              for r in resellers]
    rules += [MarginRuleIn(level="customer", target_id=c, percent="5.5", effective_from=date(2020, 1, 1))
              for c in customers[::2]]
    for rule in rules:
        ctx.rules.create(tenant, rule)
    ctx.identifiers.put_many(tenant, [Identifier(kind="subscription", id=s.lower(), internal_id=f"SUB-{n}",
                                                 po_number=f"PO-{n}") for n, s in enumerate(subscriptions)])
    return len(rules)


def _phases() -> dict | None:
    """BENCH_PHASES=1: peak RSS per phase of the worker (the build, writing the names, the alerts, ...), sampled
    every 5 ms, printed to stderr: where a step's peak is."""
    if not os.environ.get("BENCH_PHASES"):
        return None
    import threading

    from shared.app import alerts, generation, ingest

    state = {"phase": "start", "peaks": {}}
    page = os.sysconf("SC_PAGE_SIZE")

    def sample() -> None:
        while True:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * page / 2**20
            state["peaks"][state["phase"]] = max(state["peaks"].get(state["phase"], 0), rss)
            time.sleep(0.005)

    def wrap(owner, name: str, label: str) -> None:
        fn = getattr(owner, name)

        def wrapped(*a, **k):
            before, state["phase"] = state["phase"], label
            try:
                return fn(*a, **k)
            finally:
                state["phase"] = f"after {label}"
        setattr(owner, name, wrapped)

    wrap(generation, "build", "build")
    wrap(ingest, "build", "ingest build")
    wrap(alerts, "check", "alerts")
    wrap(generation, "copy_findings", "copy findings")
    from shared.adapters.names_index import NamesIndex
    wrap(NamesIndex, "record", "names record")
    from shared.core.validation import Validator
    wrap(Validator, "finish", "validator finish")
    threading.Thread(target=sample, daemon=True).start()
    return state


def _child(kind: str, info: dict, invoice_id: str, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "devtools.bench", "--child", kind, "--info", json.dumps(info),
                          "--invoice", invoice_id], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


STEPS = ("floor", "ingest", "partner", "reseller", "charges")


def bench(rows: int, azurite, steps: tuple[str, ...] = STEPS) -> dict:
    workdir = tempfile.mkdtemp(prefix="bench-sim-")
    sim = subprocess.Popen([sys.executable, "-m", "devtools.simulator", "--seed", "11", "--size", str(rows),
                            "--workdir", workdir], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(sim.stdout.readline())  # type: ignore[union-attr]
        env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string,
               "PARTNER_CENTER_API_URL": info["base_url"], "GRAPH_API_URL": info["base_url"],
               "ENTRA_AUTHORITY_HOST": info["base_url"], "REQUESTS_CA_BUNDLE": info["ca_path"],
               "PC_SECRET_BENCH": info["client_secret"], "GENERATION_QUEUE": f"bench{rows}",
               "FILES_CONTAINER": f"bench{rows}", "TABLE_PREFIX": f"bench{rows}", "EXPORT_POLL_SECONDS": "0.2",
               "FANOUT_MIN_PARTS": "0"}  # one process makes the file here; the fan-out has its own bench
        invoice_id = _latest_g_invoice(info)
        _child("floor", info, invoice_id, env)  # warm-up: the simulator writes its blobs once
        out: dict = {"rows": rows}
        for step in STEPS:  # the derived files need the snapshot: ingest runs whenever they do
            if step in steps or (step == "ingest" and {"partner", "reseller", "charges"} & set(steps)):
                out[step] = _child(step, info, invoice_id, env)
                print(f"  {step}: {json.dumps(out[step])}", file=sys.stderr, flush=True)
        return out
    finally:
        sim.terminate()
        sim.wait(30)


def _latest_g_invoice(info: dict) -> str:
    os.environ.update({"PARTNER_CENTER_API_URL": info["base_url"], "GRAPH_API_URL": info["base_url"],
                       "ENTRA_AUTHORITY_HOST": info["base_url"], "REQUESTS_CA_BUNDLE": info["ca_path"],
                       "PC_SECRET_BENCH": info["client_secret"]})
    invoices = list(_client(info).list_invoices())
    return next(str(i["id"]) for i in invoices if str(i["id"]).startswith("G") and i.get("documentType") == "invoice")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="250000,1000000")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help="some of floor,ingest,partner,reseller,charges (ingest runs if a later step needs it)")
    parser.add_argument("--child")
    parser.add_argument("--info")
    parser.add_argument("--invoice")
    args = parser.parse_args()
    if args.child:
        from shared.adapters.memory import before_arrow

        before_arrow()  # as function_app.py does, first thing
        info = json.loads(args.info)
        phases = _phases()
        runs = {"floor": run_floor, "ingest": run_ingest, "charges": run_charges,
                "partner": lambda i, inv: run_derive(i, inv, "partner"),
                "reseller": lambda i, inv: run_derive(i, inv, "reseller")}
        result = runs[args.child](info, args.invoice)
        if phases is not None:
            result["phases"] = {k: round(v) for k, v in phases["peaks"].items()}
        print(json.dumps(result))
        return
    from devtools.azurite import Azurite

    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print("time: seconds (x the floor's time); MB: the step's peak resident memory; charges: 2,000-line pages on a "
          "warm process (its first request, cold, is printed after the row)")
    print(f"{'rows':>10} | {'floor':>14} | {'ingest':>20} | {'partner file':>20} | {'reseller view':>20} | "
          f"{'charges first / middle':>22} | rules")
    with Azurite(in_memory=os.environ.get("BENCH_AZURITE_IN_MEMORY") == "1") as azurite:
        for n in [int(x) for x in args.rows.split(",")]:
            r = bench(n, azurite, tuple(args.steps.split(",")))
            f = r.get("floor") or {"seconds": float("nan"), "peak_rss_mb": float("nan"), "rows": n}
            assert all(r[s]["rows"] == n for s in ("floor", "ingest", "partner") if s in r), r

            def step(name: str) -> str:
                p = r.get(name)
                if p is None:
                    return "-"
                return f"{p['seconds']:>5.1f}s ({p['seconds'] / f['seconds']:.2f}x) {p['peak_rss_mb']:>4.0f}MB"

            c = r.get("charges") or {"first_ms": float("nan"), "middle_ms": float("nan"), "peak_rss_mb": float("nan"),
                                     "cold_ms": float("nan")}
            ing = r.get("ingest") or {"rules": "-", "parts": "-"}
            print(f"{n:>10,} | {f['seconds']:>5.1f}s {f['peak_rss_mb']:>4.0f}MB | {step('ingest'):>20} | "
                  f"{step('partner'):>20} | {step('reseller'):>20} | "
                  f"{c['first_ms']:>7.0f} ms / {c['middle_ms']:>5.0f} ms {c['peak_rss_mb']:>4.0f}MB | "
                  f"{ing['rules']}  (cold first page {c['cold_ms']:.0f} ms; {ing['parts']} parts)",
                  flush=True)


if __name__ == "__main__":
    main()
