"""Worker processes for tests/app/test_fanout_processes.py and devtools/fanout_bench.py: each is a separate Python
process (as separate Functions instances are) running the local Functions host's queue trigger of the generation
queue (devtools/localhost: leases renewed while a message runs, redelivery after a crash), sharing only Azurite
with the others. Started with multiprocessing's spawn."""

from __future__ import annotations

import os
import resource
import time
from typing import Any

HOST_JSON: dict[str, Any] = {
    "version": "2.0",
    "functions": ["generate_file"],
    "extensions": {"queues": {"messageEncoding": "base64", "batchSize": 2, "newBatchThreshold": 1,
                              "maxDequeueCount": 5, "visibilityTimeout": "00:00:01",
                              "maxPollingInterval": "00:00:00.2"}},
}


def small_batches() -> None:
    """Tests only (as tests/app/test_fanout.py::small_batches): parts of 1,000 lines stage several 64 KiB blocks."""
    from shared.adapters import microsoft_json, snapshot_parts
    from shared.app import builder

    snapshot_parts.READ_BATCH_ROWS = 200
    microsoft_json.FAST_BATCH_ROWS = 200  # an export blob's part too: several batches (the pause hooks count them)
    builder._batches.__defaults__ = (200,)


def serve(env: dict[str, str], ready: Any, stop: Any, small: bool = True, lease_seconds: int = 2,
          results: Any = None) -> None:
    """Run the generation queue's trigger until `stop` is set (or the process is killed). `ready` gets the pid once
    the host listens; `results` (if given) gets the peak resident memory in MB when it stops."""
    from shared.adapters.memory import before_arrow

    before_arrow()  # as function_app.py does, before anything loads pyarrow
    os.environ.update(env)
    from shared.adapters.settings import Settings

    # every trigger's binding expression (%NAME%) must resolve, also of those host.json does not load here
    for field in Settings.model_fields.values():
        if field.alias and isinstance(field.default, str) and field.default:
            os.environ.setdefault(field.alias, field.default)
    if small:
        small_batches()
    from devtools.localhost.host import LocalHost

    host = LocalHost(host_json=HOST_JSON, settings_file=os.devnull + ".absent", enable_timers=False,
                     lease_seconds=lease_seconds, poll_interval=0.1)
    host.start()
    ready.put(os.getpid())
    try:
        while not stop.is_set():
            time.sleep(0.1)
    finally:
        host.stop()
        if results is not None:
            results.put((os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
