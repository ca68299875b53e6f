"""How many requests to Microsoft's data APIs (Partner Center, Graph, export blobs) are in flight at once, from
the request line to the last byte of the answer: what a partner tenant's throttling budget is about. Entra's
sign-in and the simulator's own control paths are not counted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .messages import Request

COUNTED = frozenset({"pc", "graph", "blob"})


class Gauge:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0
        self.counted = 0

    @contextmanager
    def track(self, request: Request) -> Iterator[None]:
        if request.family not in COUNTED:
            yield
            return
        with self._lock:
            self.current += 1
            self.counted += 1
            self.peak = max(self.peak, self.current)
        try:
            yield
        finally:
            with self._lock:
                self.current -= 1

    def reset(self) -> None:
        """Start a new measurement: the peak from now on (requests still in flight count)."""
        with self._lock:
            self.peak = self.current
            self.counted = 0
