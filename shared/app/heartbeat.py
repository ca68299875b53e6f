"""A running generation's lease, renewed from a thread at a steady pace, whatever a segment's pace.

Renewed only between segments, one slow segment (a slow export blob, a long XLSX conversion) let the lease
lapse while the worker still ran, and a duplicate delivery took the file over. Here a daemon thread renews it
every third of the lease (and shows the rows so far), with the same ETag-guarded write as every other status
change. If that write finds the record changed, another attempt owns the file now: the heartbeat stops and the
worker learns it at its next `check()` (and at the latest from its own final, guarded, record write).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from shared.adapters.repositories import Conflict, FileRepository, utcnow
from shared.core.models import FileRecord

log = logging.getLogger(__name__)

PROGRESS_EVERY = timedelta(seconds=5)  # the Invoices page shows the rows so far at this pace


class LeaseLost(Exception):
    """The record changed under this attempt: another attempt took the file over."""


class Heartbeat:
    """Owns the record's ETag while the attempt runs: every record write of the attempt goes through it."""

    def __init__(self, files: FileRepository, record: FileRecord, etag: str, lease: timedelta) -> None:
        self.files, self.record, self.lease = files, record, lease
        self.etag = etag
        self.rows = 0
        self.every = min(PROGRESS_EVERY, lease / 3)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"lease-{record.id[:8]}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.every.total_seconds()):
            try:
                self.beat()
            except Conflict:
                self._failure = LeaseLost(f"file {self.record.id} v{self.record.version} was taken over")
                return
            except Exception as exc:  # a storage hiccup: try again next beat (the lease has two beats to spare)
                log.warning("could not renew the lease of file %s: %s", self.record.id, exc)
            except BaseException as exc:  # the attempt is dying: the worker raises it at its next check
                self._failure = exc
                return

    def beat(self) -> None:
        """Renew the lease now (and write the rows so far)."""
        with self._lock:
            if self._stop.is_set():
                return
            now = utcnow()
            self.record.progress_rows, self.record.lease_until = self.rows, now + self.lease
            self.etag = self.files.replace(self.record, self.etag)

    def check(self) -> None:
        """Raise what ended the heartbeat (LeaseLost, or a kill), in the worker's thread."""
        if self._failure is not None:
            raise self._failure

    def stop(self) -> str:
        """Stop renewing; returns the ETag of the record for the attempt's final, guarded write."""
        with self._lock:
            self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        return self.etag
