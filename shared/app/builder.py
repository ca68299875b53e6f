"""The file builder: segments in, one committed blob out, with exact totals.

Memory is one Arrow batch plus one staged block, whatever the size of the invoice.
"""

from __future__ import annotations

import logging
import queue
import threading
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, TypeVar

import pyarrow as pa
import requests

from shared.adapters.partner_center.client import SasExpired
from shared.adapters.partner_center.transport import PartnerCenterError
from shared.core.reconcile import Tally
from shared.adapters.memory import release_memory
from shared.adapters.microsoft_json import FastPathUnsupported
from shared.adapters.sources import Source

log = logging.getLogger(__name__)
T = TypeVar("T")

SEGMENT_ATTEMPTS = 4
# Lines per batch the plan sees (Arrow reads ~1,500 at a time): measured at 1M lines, fewer compute calls pay
# for ~10 MB resident.
COALESCE_ROWS = 6_144
READ_AHEAD = 4  # Arrow's batches (~1,500 lines each) read ahead of the plan: measured, 2 s less at 1M lines
# What a half-read blob looks like: a cut connection or a truncated gzip stream.
BROKEN_STREAM = (EOFError, zlib.error, OSError, requests.exceptions.ChunkedEncodingError,
                 requests.exceptions.ConnectionError, pa.ArrowInvalid)


class Writer(Protocol):
    """A file format being written segment by segment (see shared.adapters.file_writers)."""

    content_type: str
    extension: str

    def begin_segment(self, index: int) -> None: ...

    def write(self, batch: pa.RecordBatch) -> None: ...

    def end_segment(self) -> None: ...

    def discard_segment(self) -> None: ...

    def finish(self, metadata: dict[str, str]) -> None: ...


class Plan(Protocol):
    def process(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, Tally]: ...


@dataclass
class BuildResult:
    totals: Tally


def build(source: Source, plan: Plan, writer: Writer, *,
          progress: Callable[[int], None] | None = None) -> BuildResult:
    """Stream every segment through `plan` into `writer`; a failed segment is read again from its start.

    The caller commits the file (`writer.finish`) once it has decided the result is good.
    """
    totals = Tally()
    for segment in source.segments():
        careful = False
        attempt = 0
        while True:
            writer.begin_segment(segment.index)
            _segment_hook(plan, "begin_segment")  # per-segment state of the plan (validation) restarts too
            part = Tally()
            try:
                for batch in _batches(read_ahead(segment.read(careful))):
                    out, measured = plan.process(batch)
                    part.add(measured)
                    if out.num_rows:
                        writer.write(out)
                writer.end_segment()
                _segment_hook(plan, "end_segment")
                release_memory()  # the segment's freed buffers go back to the kernel, not only the heap's top
                break
            except FastPathUnsupported as exc:
                writer.discard_segment()
                if careful:
                    raise
                log.info("segment %d needs the careful reader: %s", segment.index, exc)
                careful = True
            except SasExpired:
                writer.discard_segment()
                attempt += 1
                if attempt >= SEGMENT_ATTEMPTS:
                    raise
                log.warning("export link expired at segment %d; asking Microsoft for a fresh export", segment.index)
                source.refresh()
            except BROKEN_STREAM as exc:
                writer.discard_segment()
                attempt += 1
                if attempt >= SEGMENT_ATTEMPTS:
                    raise PartnerCenterError(
                        f"Export part {segment.index + 1} could not be read completely after {attempt} attempts "
                        f"({type(exc).__name__}).", transient=True) from exc
                log.warning("segment %d broke off (%s); reading it again", segment.index, type(exc).__name__)
        totals.add(part)
        if progress:
            progress(totals.rows)
    return BuildResult(totals=totals)


def _segment_hook(plan: Plan, name: str) -> None:
    hook = getattr(plan, name, None)
    if hook is not None:
        hook()


def _batches(batches: Iterator[pa.RecordBatch], min_rows: int = COALESCE_ROWS) -> Iterator[pa.RecordBatch]:
    """Non-empty batches of at least `min_rows` rows (except the last), joined while their schemas agree.

    Arrow's JSON reader cuts a blob into 1 MB blocks (~1,500 usage lines); every compute call of the plan
    has a fixed cost, so a few thousand lines per call pay for themselves. Memory stays one batch.
    """
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        if pending and batch.schema != pending[0].schema:
            yield _joined(pending)
            pending, rows = [], 0
        pending.append(batch)
        rows += batch.num_rows
        if rows >= min_rows:
            yield _joined(pending)
            pending, rows = [], 0
    if pending:
        yield _joined(pending)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    return batches[0] if len(batches) == 1 else pa.concat_batches(batches)


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def read_ahead(items: Iterator[T], depth: int = READ_AHEAD) -> Iterator[T]:
    """`items`, produced by a background thread up to `depth` ahead of the consumer.

    Reading a segment (gunzip, JSON parse into decimals) is Arrow's C++ work, off Python's lock; pulled from the
    worker's thread it alternated with the margins and the CSV instead of overlapping them (the profile of a
    million lines showed the worker waiting on the reader 40 % of the time). Errors are raised in the consumer,
    as before; closing the consumer stops the producer and closes `items`.
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Raised(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
