"""A running generation's lease, renewed from a thread at a steady pace, whatever a segment's pace.

Renewed only between segments, one slow segment (a slow export blob, a long XLSX conversion) let the lease
lapse while the worker still ran, and a duplicate delivery took the file over. Here a daemon thread renews it
every third of the lease (and shows the rows so far), with the same ETag-guarded write as every other status
change. If that write finds the record changed, another attempt owns the file now: the heartbeat stops and the
worker learns it at its next `check()` (and at the latest from its own final, guarded, record write).

The same heartbeat keeps an invoice snapshot's ingest lease (shared/app/ingest.py): waiting for Microsoft's export
takes minutes with no line arriving, and a lapsed ingest lease would start a second export elsewhere.

A fan-out's part (shared/app/fanout.py, ingest_fanout.py) keeps its run's lease with `kept_alive`: many parts
renew the same record, so none owns its ETag; each renewal reads the record again and writes it guarded.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, Iterator, Protocol

from shared.adapters.repositories import Conflict, utcnow

log = logging.getLogger(__name__)

PROGRESS_EVERY = timedelta(seconds=5)  # the Invoices page shows the rows so far at this pace


class LeaseLost(Exception):
    """The record changed under this attempt: another attempt took the file over."""


class GuardedStore(Protocol):
    """Where the leased record lives: an ETag-guarded replace (Conflict when it changed)."""

    def replace(self, record: Any, etag: str) -> str: ...


class Heartbeat:
    """Owns the record's ETag while the attempt runs: every record write of the attempt goes through it.
    `rows_field` names the record's field that shows the rows so far (a file's `progress_rows`, a snapshot's
    `rows`); `name` what the logs call it."""

    def __init__(self, files: GuardedStore, record: Any, etag: str, lease: timedelta,
                 rows_field: str = "progress_rows", name: str | None = None) -> None:
        self.files, self.record, self.lease, self.rows_field = files, record, lease, rows_field
        self.name = name or f"file {record.id} v{record.version}"
        self.etag = etag
        self.rows = 0
        self.every = min(PROGRESS_EVERY, lease / 3)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self.lost = False  # this record was taken over by another attempt (set with the LeaseLost it raises)
        self._thread = threading.Thread(target=self._run, name=f"lease-{self.name[:24]}", daemon=True)

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
                self.lost = True
                self._failure = LeaseLost(f"{self.name} was taken over")
                return
            except Exception as exc:  # a storage hiccup: try again next beat (the lease has two beats to spare)
                log.warning("could not renew the lease of %s: %s", self.name, exc)
            except BaseException as exc:  # the attempt is dying: the worker raises it at its next check
                self._failure = exc
                return

    def beat(self) -> None:
        """Renew the lease now (and write the rows so far)."""
        with self._lock:
            if self._stop.is_set():
                return
            now = utcnow()
            setattr(self.record, self.rows_field, self.rows)
            self.record.lease_until = now + self.lease
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


@contextmanager
def kept_alive(renew: Callable[[], None], every: timedelta, name: str) -> Iterator[None]:
    """`renew()` every `every` from a daemon thread while the body runs. Renewed only when a part started or
    finished, a part longer than the lease (a slow export blob, a busy instance) let it lapse, and the run's parts
    not done, this one too, were sent again. A failed renewal is logged and tried again at the next beat."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every.total_seconds()):
            try:
                renew()
            except Exception as exc:  # noqa: BLE001  (a storage hiccup: the lease has beats to spare)
                log.warning("could not renew the lease of %s: %s", name, exc)

    thread = threading.Thread(target=run, name=f"lease-{name[:24]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
