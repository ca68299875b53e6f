"""`python -m devtools.localhost`: serve the function app on localhost until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .host import ROOT, LocalHost


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devtools.localhost", description=__doc__)
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071, as Core Tools)")
    parser.add_argument("--module", default="function_app",
                        help="module holding the FunctionApp (default function_app)")
    parser.add_argument("--root", type=Path, default=ROOT, help="function app folder (default: the repository)")
    parser.add_argument("--settings", type=Path, default=None,
                        help="local.settings.json (default <root>/local.settings.json)")
    parser.add_argument("--host-json", type=Path, default=None, help="host.json (default <root>/host.json)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="longest wait between queue polls, seconds")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--no-queues", action="store_true", help="do not poll queues")
    parser.add_argument("--no-timers", action="store_true", help="do not run timer triggers")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: stop waiting for running functions
            raise KeyboardInterrupt
        stop.set()

    # Explicit handlers: a shell may start background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    host = LocalHost(module=args.module, port=args.port, settings_file=args.settings, host_json=args.host_json,
                     poll_interval=args.poll_interval, root=args.root, bind=args.bind,
                     enable_queues=not args.no_queues, enable_timers=not args.no_timers)
    host.start()
    try:
        stop.wait()
    finally:
        logging.getLogger(__name__).info("stopping")
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
