"""Staged blocks into one block blob, committed only when the whole file is done (shared/adapters/file_writers.py
writes the formats into it).

A half-written file is never visible: blocks are staged under deterministic ids (segment, chunk) and the blob
appears only at `commit`. A segment that fails half way is discarded and re-staged under the same ids. Each
attempt at a file writes its own blob (shared/app/generation.py names it), so attempts never share block ids.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from azure.storage.blob import BlobBlock, BlobClient, ContentSettings

HEADER_BLOCK = "0" * 16


def block_id(segment: int, chunk: int) -> str:
    """A block's id from its segment and its place in it: the same bytes get the same id on every attempt, and the
    parts of a fanned-out file (one segment each, shared/app/fanout.py) stage the ids the one-instance path would."""
    return f"{segment + 1:08d}{chunk:08d}"



def commit_blocks(blob: BlobClient, block_ids: list[str], content_type: str, metadata: dict[str, str]) -> None:
    """The blob becomes these staged blocks, in this order (Put Block List): all at once, or not at all."""
    blob.commit_block_list([BlobBlock(block_id=b) for b in block_ids],
                           content_settings=ContentSettings(content_type=content_type), metadata=metadata)


class BlockBlobSink:
    """Stages blocks in the background (at most `in_flight` at once), so computing the next block overlaps
    the upload of the last one while memory stays bounded."""

    def __init__(self, blob: BlobClient, block_size: int, in_flight: int = 2,
                 before_stage: Callable[[str], None] | None = None) -> None:
        self.blob, self.block_size = blob, block_size
        self.before_stage = before_stage  # told each block id before it is handed to the uploads (a test hook)
        self.committed: list[str] = []
        self.bytes_written = 0
        self._segment = -1
        self._segment_ids: list[str] = []
        self._buffer = io.BytesIO()
        self._pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="stage-block")
        self._slots = threading.BoundedSemaphore(in_flight)
        self._pending: list[tuple[int, Future]] = []  # (segment, upload)

    def begin_segment(self, index: int) -> None:
        self._segment, self._segment_ids, self._buffer = index, [], io.BytesIO()

    def write(self, data: bytes) -> None:
        self._buffer.write(data)
        if self._buffer.tell() >= self.block_size:
            self._stage()

    def _stage(self) -> None:
        data = self._buffer.getvalue()
        self._buffer = io.BytesIO()
        if not data:
            return
        ident = block_id(self._segment, len(self._segment_ids))
        if self.before_stage is not None:
            self.before_stage(ident)
        self._segment_ids.append(ident)
        self.bytes_written += len(data)
        self._slots.acquire()  # back-pressure: never more than `in_flight` blocks in memory
        future = self._pool.submit(self._put, ident, data)
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append((self._segment, future))

    def _put(self, block_id: str, data: bytes) -> None:
        # Content-MD5 on every block: the service checks each block arrived intact before it can be committed.
        # (Azurite otherwise computes a CRC64 of each block, in JavaScript, a byte at a time: measured, that
        # took as much CPU as the whole pipeline on the benchmark's two cores.)
        self.blob.stage_block(block_id, data, validate_content=True)

    def _wait(self) -> None:
        pending, self._pending = self._pending, []
        for _, future in pending:
            future.result()  # re-raises a failed upload here, in the caller's thread

    def _raise_failed(self) -> None:
        """Surface an upload that already failed, without waiting for those still running."""
        for _, future in self._pending:
            if future.done():
                future.result()
        self._pending = [(segment, f) for segment, f in self._pending if not f.done()]

    def end_segment(self) -> None:
        # No wait here: the segment's last uploads overlap the next segment's parsing (the commit waits).
        self._stage()
        self._raise_failed()
        self.committed.extend(self._segment_ids)
        self._segment_ids = []

    def discard_segment(self) -> None:
        """Forget the segment's blocks. Its uploads still running are waited for (their errors ignored): the same
        block ids are staged again when the segment is re-read, and no old upload may land after a new one."""
        mine = [f for segment, f in self._pending if segment == self._segment]
        self._pending = [(segment, f) for segment, f in self._pending if segment != self._segment]
        for future in mine:
            try:
                future.result()
            except Exception:  # the segment is being thrown away anyway
                pass
        self._segment_ids, self._buffer = [], io.BytesIO()

    def flush(self) -> list[str]:
        """Every block of the complete segments staged (their uploads waited for); their ids, in order. For a part
        of a fanned-out file, whose blob another worker commits."""
        self._wait()
        self._pool.shutdown()
        return list(self.committed)

    def commit(self, header: bytes, content_type: str, metadata: dict[str, str]) -> None:
        self.flush()
        if header:
            self._put(HEADER_BLOCK, header)
        commit_blocks(self.blob, ([HEADER_BLOCK] if header else []) + self.committed, content_type, metadata)


class SinkFile:
    """A write-only file object over a sink (what pyarrow's Parquet writer writes into)."""

    def __init__(self, sink: BlockBlobSink) -> None:
        self.sink, self.closed, self._pos = sink, False, 0

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.sink.write(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True
