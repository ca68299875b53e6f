"""`make bench` (second part): the fan-out with 1, then 2 worker processes draining the generation queue together:
the snapshot's ingest blob by blob (shared/app/ingest_fanout.py), then a partner daily-rated-usage CSV file part by
part (shared/app/fanout.py): wall time, speedup, peak resident memory per worker.

The simulator publishes an export of N rows in blobs of --part-rows (each a snapshot part, each a part message).
Each ingest run has storage of its own (a fresh snapshot); the file runs derive from one snapshot ingested on one
process first (with the same margin rules and identifiers as devtools/bench.py), so their figures are the
derivation's alone. Each worker process runs the local Functions host's queue trigger (devtools/fanout_workers.py,
host.json's batchSize 2: two messages at once per process), started before the file is requested; the wall time is
from the request to the record's `Available`.

    python -m devtools.fanout_bench [--rows 5000000] [--part-rows 100000]      (make bench FANOUT_ROWS=300000)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

from devtools import bench, fanout_workers

SPAWN = multiprocessing.get_context("spawn")


class Workers:
    """`count` worker processes (the local host's queue trigger), started before the work is asked for; their peak
    resident memory once stopped."""

    def __init__(self, count: int, env: dict[str, str]) -> None:
        self.stop, ready, self.results = SPAWN.Event(), SPAWN.Queue(), SPAWN.Queue()
        self.procs = [SPAWN.Process(target=fanout_workers.serve, args=(env, ready, self.stop),
                                    kwargs={"small": False, "lease_seconds": 30, "results": self.results})
                      for _ in range(count)]
        for p in self.procs:
            p.start()
        for _ in self.procs:
            ready.get(timeout=120)
        self.peak_rss_mb: list[float] = []

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.peak_rss_mb = [self.results.get(timeout=120)[1] for _ in self.procs]
        for p in self.procs:
            p.join(timeout=60)


def ingest_fanned(info: dict, invoice_id: str, workers: int, env: dict[str, str]) -> dict:
    """The snapshot ingested blob by blob by `workers` processes, in storage of its own; returns its figures."""
    from shared.app import ingest, tenants
    from shared.core.columns import FileType
    from shared.core.models import TenantIn

    name = f"{env['TABLE_PREFIX']}i{workers}"
    env = {**env, "GENERATION_QUEUE": name, "FILES_CONTAINER": name, "TABLE_PREFIX": name}
    os.environ.update(env)
    ctx = bench._context()
    tenants.put_tenant(ctx, info["tenant_id"], TenantIn(display_name="bench", client_id=info["client_id"],
                                                       client_secret_setting="PC_SECRET_BENCH"))
    with Workers(workers, env) as pool:
        start = time.perf_counter()
        ingest.request(ctx, info["tenant_id"], invoice_id, FileType.DAILY)
        while (snapshot := ingest.current(ctx, info["tenant_id"], invoice_id, FileType.DAILY)) is None:
            record = ctx.snapshots.get(info["tenant_id"], invoice_id, FileType.DAILY.value)
            if record is not None and record[0].status == "Failed":
                raise SystemExit(f"the ingest failed: {record[0].error}")
            time.sleep(0.2)
        seconds = time.perf_counter() - start
    return {"workers": workers, "seconds": seconds, "rows": snapshot.manifest["rows"],
            "parts": len(snapshot.manifest["parts"]), "sums": snapshot.manifest["sums"],
            "peak_rss_mb": pool.peak_rss_mb}


def derive(ctx, info: dict, invoice_id: str, workers: int, env: dict[str, str]) -> dict:
    """One partner file (a new version each run) made by `workers` processes; returns its figures."""
    from shared.app import file_requests
    from shared.core.models import FileRequest

    with Workers(workers, env) as pool:
        start = time.perf_counter()
        record, created = file_requests.request_file(ctx, info["tenant_id"], FileRequest(
            invoice_type="dailyratedusage", invoice_id=invoice_id))
        if not created:
            record = file_requests.regenerate(ctx, record.tenant_id, record.id, "fan-out bench")
        while True:
            done, _ = ctx.files.get(record.tenant_id, record.id)
            if done.version == record.version and done.status in ("Available", "NeedsReview", "Failed"):
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - start
    rss = pool.peak_rss_mb
    if done.status == "Failed":
        raise SystemExit(f"the file failed: {done.error}")
    return {"workers": workers, "seconds": seconds, "rows": done.row_count, "parts": done.parts_total,
            "cost": str(done.totals.cost), "customer": str(done.totals.customer), "peak_rss_mb": rss}


def run(rows: int, part_rows: int, azurite) -> tuple[dict, dict, dict, dict]:
    workdir = tempfile.mkdtemp(prefix="fanout-bench-sim-")
    sim = subprocess.Popen([sys.executable, "-m", "devtools.simulator", "--seed", "11", "--size", str(rows),
                            "--rows-per-blob", str(part_rows), "--workdir", workdir], cwd=bench.ROOT,
                           stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(sim.stdout.readline())  # type: ignore[union-attr]
        name = f"fan{rows}"
        env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string,
               "PARTNER_CENTER_API_URL": info["base_url"], "GRAPH_API_URL": info["base_url"],
               "ENTRA_AUTHORITY_HOST": info["base_url"], "REQUESTS_CA_BUNDLE": info["ca_path"],
               "PC_SECRET_BENCH": info["client_secret"], "GENERATION_QUEUE": name, "FILES_CONTAINER": name,
               "TABLE_PREFIX": name, "EXPORT_POLL_SECONDS": "0.2", "FANOUT_MIN_PARTS": "2",
               "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")}  # the workers' logs stay out of the table
        invoice_id = bench._latest_g_invoice(info)
        bench._child("floor", info, invoice_id, env)  # warm-up: the simulator writes its blobs once
        ingest_one = ingest_fanned(info, invoice_id, 1, env)
        ingest_two = ingest_fanned(info, invoice_id, 2, env)
        assert ingest_one["rows"] == ingest_two["rows"] == rows and ingest_one["sums"] == ingest_two["sums"]
        ingested = bench._child("ingest", info, invoice_id, env)  # the snapshot, margins and identifiers
        assert ingested["rows"] == rows, ingested
        os.environ.update(env)
        ctx = bench._context()
        one = derive(ctx, info, invoice_id, 1, env)
        two = derive(ctx, info, invoice_id, 2, env)
        assert one["rows"] == two["rows"] == rows and one["cost"] == two["cost"] and \
            one["customer"] == two["customer"], (one, two)
        return ingest_one, ingest_two, one, two
    finally:
        sim.terminate()
        sim.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--part-rows", type=int, default=100_000, help="rows per export blob (snapshot part)")
    args = parser.parse_args()
    from devtools.azurite import Azurite

    print(f"fan-out: a daily-usage export of {args.rows:,} rows in parts of {args.part_rows:,}: its snapshot ingested, "
          f"then a partner CSV made, by 1 and by 2 worker processes ({os.cpu_count()} cores; Azurite shares them)")
    with Azurite(in_memory=os.environ.get("BENCH_AZURITE_IN_MEMORY") == "1") as azurite:
        runs = run(args.rows, args.part_rows, azurite)
    for label, (one, two) in (("ingest", runs[:2]), ("partner CSV", runs[2:])):
        for r in (one, two):
            print(f"  {label:<11} {r['workers']} worker(s): {r['seconds']:6.1f} s  {r['rows'] / r['seconds']:>9,.0f} "
                  f"rows/s  {r['parts']} parts  peak RSS per worker: "
                  f"{', '.join(f'{m:.0f} MB' for m in r['peak_rss_mb'])}")
        print(f"  {label:<11} speedup with 2 workers: {one['seconds'] / two['seconds']:.2f}x; "
              f"same rows and totals: yes")


if __name__ == "__main__":
    main()
