"""Run the simulator until SIGTERM or SIGINT; prints one JSON line with what a client needs to connect."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import date

from .core import Simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.simulator", description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", type=int, default=2000, help="daily rated usage rows per new-commerce invoice")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--today", type=date.fromisoformat, default=date(2026, 11, 22))
    parser.add_argument("--workdir", help="keeps generated export blobs between runs (default: a temporary folder)")
    parser.add_argument("--rows-per-blob", type=int, default=50_000)
    parser.add_argument("--export-polls", type=int, default=1, help="operation polls answered 'running' first")
    parser.add_argument("--poll-retry-after", type=int, default=1, help="Retry-After seconds while running")
    args = parser.parse_args(argv)
    sim = Simulator(seed=args.seed, size=args.size, today=args.today, workdir=args.workdir,
                    rows_per_blob=args.rows_per_blob, port=args.port, export_polls=args.export_polls,
                    poll_retry_after=args.poll_retry_after)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with sim:
        print(json.dumps({"base_url": sim.base_url, "ca_path": sim.ca_path, "tenant_id": sim.tenant_id,
                          "client_id": sim.client_id, "client_secret": sim.client_secret}), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
