"""`make bench` (second part): a partner daily-rated-usage CSV file made by 1, then by 2 worker processes draining the
generation queue together (the fan-out, shared/app/fanout.py): wall time, speedup, peak resident memory per worker.

The simulator publishes an export of N rows in blobs of --part-rows (each a snapshot part, each a part message);
the snapshot is ingested first (with the same margin rules and identifiers as devtools/bench.py), so the figures are
the derivation's alone. Each worker process runs the local Functions host's queue trigger (devtools/fanout_workers.py,
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


def derive(ctx, info: dict, invoice_id: str, workers: int, env: dict[str, str]) -> dict:
    """One partner file (a new version each run) made by `workers` processes; returns its figures."""
    from shared.app import file_requests
    from shared.core.models import FileRequest

    stop, ready, results = SPAWN.Event(), SPAWN.Queue(), SPAWN.Queue()
    procs = [SPAWN.Process(target=fanout_workers.serve, args=(env, ready, stop),
                           kwargs={"small": False, "lease_seconds": 30, "results": results})
             for _ in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    try:
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
    finally:
        stop.set()
        rss = [results.get(timeout=120)[1] for _ in procs]
        for p in procs:
            p.join(timeout=60)
    if done.status == "Failed":
        raise SystemExit(f"the file failed: {done.error}")
    return {"workers": workers, "seconds": seconds, "rows": done.row_count, "parts": done.parts_total,
            "cost": str(done.totals.cost), "customer": str(done.totals.customer), "peak_rss_mb": rss}


def run(rows: int, part_rows: int, azurite) -> tuple[dict, dict]:
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
        ingested = bench._child("ingest", info, invoice_id, env)  # the snapshot, margins and identifiers
        assert ingested["rows"] == rows, ingested
        os.environ.update(env)
        ctx = bench._context()
        one = derive(ctx, info, invoice_id, 1, env)
        two = derive(ctx, info, invoice_id, 2, env)
        assert one["rows"] == two["rows"] == rows and one["cost"] == two["cost"] and \
            one["customer"] == two["customer"], (one, two)
        return one, two
    finally:
        sim.terminate()
        sim.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--part-rows", type=int, default=100_000, help="rows per export blob (snapshot part)")
    args = parser.parse_args()
    from devtools.azurite import Azurite

    print(f"fan-out: a partner daily-usage CSV of {args.rows:,} rows in parts of {args.part_rows:,}, made by 1 and "
          f"by 2 worker processes ({os.cpu_count()} cores; Azurite shares them)")
    with Azurite(in_memory=os.environ.get("BENCH_AZURITE_IN_MEMORY") == "1") as azurite:
        one, two = run(args.rows, args.part_rows, azurite)
    for r in (one, two):
        print(f"  {r['workers']} worker(s): {r['seconds']:6.1f} s  {r['rows'] / r['seconds']:>9,.0f} rows/s  "
              f"{r['parts']} parts  peak RSS per worker: {', '.join(f'{m:.0f} MB' for m in r['peak_rss_mb'])}")
    print(f"  speedup with 2 workers: {one['seconds'] / two['seconds']:.2f}x; same rows and totals: yes")


if __name__ == "__main__":
    main()
