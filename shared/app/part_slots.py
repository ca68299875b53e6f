"""How many fan-out parts — a file's (fanout.py) or an ingest's (ingest_fanout.py) — one worker process computes at
once (FANOUT_PARTS_AT_ONCE, default 1).

The queue trigger hands a process `batchSize` messages at a time (host.json: 2, so light messages — a waiter
looking again, a duplicate of a finished part — never queue behind a long one). Two parts computed side by side
took 305–370 MB in one process (measured with `python -m devtools.fanout_bench`, before Arrow's C++ allocations
moved to the system allocator, shared/adapters/memory.py; not measured since), past the 300 MB a worker may use; one
part at a time stays under it (218–233 MB). A part message that finds the slot taken waits for it in its own thread
(the host keeps the message invisible meanwhile); more parts at once come from more instances, which is how the
platform scales a queue anyway.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from shared.adapters.settings import Settings

_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


@contextmanager
def part_slot(settings: Settings) -> Iterator[None]:
    """Hold one of this process's part slots while a part is computed."""
    size = settings.fanout_parts_at_once
    with _lock:
        slots = _slots.setdefault(size, threading.BoundedSemaphore(size))
    with slots:
        yield
