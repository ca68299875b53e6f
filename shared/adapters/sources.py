"""Where a file's lines come from: a Graph export (blob by blob) or Partner Center v1 (page by page).

Both yield *segments*: units that can be read again from the start if they fail half way (a truncated blob, an
expired SAS). The builder handles the retry; a source only knows how to read.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Protocol

import pyarrow as pa

from shared.core.columns import FileType, Layout
from shared.core.models import DataSource
from shared.adapters.partner_center.client import Manifest, PartnerCenterClient
from shared.adapters.partner_center.transport import PartnerCenterError
from shared.adapters.microsoft_json import batch_from_items, read_lines_careful, read_lines_fast
from shared.adapters.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Segment:
    index: int
    read: Callable[[bool], Iterator[pa.RecordBatch]]  # careful: bool -> batches


class Source(Protocol):
    kind: DataSource
    data_version: str | None

    def segments(self) -> Iterator[Segment]: ...

    def refresh(self) -> None:
        """Renew whatever expired (a SAS); raises if the data changed meanwhile."""


class DataChanged(Exception):
    """Microsoft published a new version of the data while the file was being written."""


class GraphExportSource:
    """An export's blobs, one segment each. While a blob is parsed the next one downloads (one ahead): at each of
    a million-line export's 20 blob boundaries the worker would otherwise wait for a download. `only`: the one blob
    an ingest part reads (shared/app/ingest_fanout.py), numbered as in the whole export, nothing downloaded ahead."""

    kind = DataSource.GRAPH

    def __init__(self, client: PartnerCenterClient, layout: Layout, export: Callable[[], Manifest],
                 only: int | None = None) -> None:
        self.client, self.layout, self._export, self.only = client, layout, export, only
        self.manifest = export()
        self.data_version: str | None = self.manifest.etag or None
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: tuple[int, Manifest, Future[IO[bytes]]] | None = None

    def segments(self) -> Iterator[Segment]:
        try:
            for i in range(len(self.manifest.blobs)) if self.only is None else [self.only]:
                yield Segment(i, lambda careful, i=i: self._read(i, careful))
        finally:
            self._drop_ahead()
            if self._pool is not None:
                self._pool.shutdown(wait=False)

    def _read(self, index: int, careful: bool) -> Iterator[pa.RecordBatch]:
        with self._download(index) as gz:
            if self.only is None and index + 1 < len(self.manifest.blobs):
                self._pool = self._pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-ahead")
                self._drop_ahead()
                blob = self.manifest.blobs[index + 1]
                self._ahead = (index + 1, self.manifest, self._pool.submit(self.client.download_blob, blob))
            reader = read_lines_careful if careful else read_lines_fast
            yield from reader(self.layout, Path(gz.name))

    def _download(self, index: int) -> IO[bytes]:
        """The blob downloaded ahead if it is this one (of this manifest: a refresh renews the links), else now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == index and ahead[1] is self.manifest:
            return ahead[2].result()  # a failed download raises here, as it would have below
        if ahead is not None:
            _discard(ahead[2])
        return self.client.download_blob(self.manifest.blobs[index])

    def _drop_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            _discard(ahead[2])

    def refresh(self) -> None:
        fresh = self._export()
        if fresh.etag != self.manifest.etag or len(fresh.blobs) != len(self.manifest.blobs):
            raise DataChanged("Microsoft published new data for this invoice while the file was being made.")
        self.manifest = fresh


def _discard(download: Future[IO[bytes]]) -> None:
    """Delete a blob downloaded ahead but not used (now, or when its download ends)."""
    def close(done: Future[IO[bytes]]) -> None:
        if not done.cancelled() and done.exception() is None:
            done.result().close()

    download.add_done_callback(close)


class V1PagesSource:
    kind = DataSource.V1
    data_version: str | None = None

    def __init__(self, client: PartnerCenterClient, layout: Layout, invoice_id: str) -> None:
        self.client, self.layout, self.invoice_id = client, layout, invoice_id

    def segments(self) -> Iterator[Segment]:
        # A page is fully in memory once fetched (at most 2000 rows), so reading it again cannot fail.
        pages = self.client.line_item_pages(self.invoice_id, self.layout.file_type.value)
        for i, items in enumerate(pages):
            yield Segment(i, lambda careful, items=items: iter([batch_from_items(self.layout, items)]))

    def refresh(self) -> None:
        return None


def recorded_export(client: PartnerCenterClient, layout: Layout, invoice_id: str, operation: str | None,
                    etag: str | None = None) -> Callable[[], Manifest]:
    """A GraphExportSource's export that reads a recorded export operation again the first time (a status read: no
    second export); afterwards (expired links: a refresh), or when Microsoft no longer answers for the operation, a
    fresh export. With `etag`, a fresh export is accepted only at that eTag (DataChanged otherwise)."""
    pending = [operation] if operation else []

    def export() -> Manifest:
        if pending:
            try:
                return client.wait_for_export(pending.pop())
            except PartnerCenterError as exc:
                log.info("the recorded export of %s could not be read again (%s); exporting anew", invoice_id, exc)
        fresh = client.export(layout.file_type.value, invoice_id)
        if etag is not None and fresh.etag != etag:
            raise DataChanged("Microsoft published new data for this invoice while its snapshot was being made.")
        return fresh

    return export


def billing_period_start(invoice: dict) -> date | None:
    value = invoice.get("billingPeriodStartDate") or invoice.get("invoiceDate")
    if not value:
        return None
    return date.fromisoformat(str(value)[:10])


def choose_source(client: PartnerCenterClient, layout: Layout, invoice: dict, settings: Settings) -> Source:
    """Graph export for periods it serves, v1 otherwise (Microsoft's retirement timeline, reference §3.5)."""
    invoice_id = str(invoice["id"])
    start = billing_period_start(invoice)
    graph_from = {FileType.ONETIME: settings.onetime_graph_from,
                  FileType.DAILY: settings.daily_usage_graph_from}.get(layout.file_type)
    if graph_from is not None and start is not None and start >= graph_from:
        return GraphExportSource(client, layout, lambda: client.export(layout.file_type.value, invoice_id))
    return V1PagesSource(client, layout, invoice_id)


def unbilled_source(client: PartnerCenterClient, layout: Layout, record: Any) -> tuple[dict, Source]:
    """The current or last period before its invoice exists (Graph unbilled export), for a partner's early look."""
    period = record.invoice_id.split("-", 1)[1].lower()
    currency = record.currency

    def export() -> Manifest:
        return client.unbilled_export(layout.file_type.value, currency, period)

    return {"id": record.invoice_id}, GraphExportSource(client, layout, export)
