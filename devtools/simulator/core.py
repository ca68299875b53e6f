"""The Partner Center simulator: Entra, Partner Center v1, Graph partner-billing exports and the export blob host
on one HTTPS origin, with deterministic data and faults on demand."""

from __future__ import annotations

import shutil
import ssl
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Self

import trustme

from shared.core.columns import FileType

from .app import App, LoggedRequest
from .auth import Entra, Tokens
from .blobs import BlobStore
from .exports import ExportOptions, Exports
from .faults import Faults
from .gauge import Gauge
from .ledger import PERIODS, Expected, Ledger
from .pc import PartnerCenter
from .rows import Dataset, Row
from .server import SimServer
from .world import World


class Simulator:
    """A running (after `start`) stand-in for Microsoft's billing APIs; use as a context manager or start/stop.

    `size` is the number of daily rated usage rows of each new-commerce invoice; everything else follows from
    `seed` and `today`.
    """

    def __init__(self, seed: int = 7, size: int = 2000, today: date = date(2026, 11, 22),
                 workdir: str | Path | None = None, rows_per_blob: int = 50_000, billing_anniversary_day: int = 12,
                 *, port: int = 0, export_polls: int = 1, poll_retry_after: int = 1, inline_manifest: bool = False,
                 blob_strings_percent: int = 0) -> None:
        if size < 1:
            raise ValueError("size must be positive")
        self.world = World(seed, size)
        self.ledger = Ledger(self.world, today, billing_anniversary_day)
        self.faults = Faults(self.ledger)
        self.export_options = ExportOptions(export_polls, poll_retry_after, inline_manifest)
        self.requests: list[LoggedRequest] = []
        self.gauge = Gauge()  # requests to Microsoft's data APIs in flight at once (`gauge.peak`)
        self._pc = PartnerCenter(self.ledger, self.faults)
        self._port = port
        self._workdir_arg = Path(workdir) if workdir else None
        self._rows_per_blob = rows_per_blob
        self._blob_strings_percent = blob_strings_percent
        self._server: SimServer | None = None
        self._store: BlobStore | None = None
        self._owned_workdir: Path | None = None
        self.workdir: Path | None = None
        self.base_url = ""
        self.ca_path = ""

    @property
    def tenant_id(self) -> str:
        return self.world.tenant_id

    @property
    def client_id(self) -> str:
        return self.world.client_id

    @property
    def client_secret(self) -> str:
        return self.world.client_secret

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind 127.0.0.1 (port 0 = any free port), make a test CA and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("already started")
        if self._workdir_arg is None:
            self._owned_workdir = self.workdir = Path(tempfile.mkdtemp(prefix="pc-simulator-"))
        else:
            self.workdir = self._workdir_arg
            self.workdir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        self.ca_path = str(self.workdir / "simulator-ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        server = SimServer(self._port, context)
        self.base_url = f"https://127.0.0.1:{server.port}"
        tokens = Tokens()
        self._store = BlobStore(self.ledger, self.workdir, self._rows_per_blob, self._blob_strings_percent)
        exports = Exports(self.ledger, self.faults, self._store, self.base_url, self.export_options)
        server.app = App(Entra(self.world, tokens, self.base_url), self._pc, exports, tokens, self.faults,
                         self.requests, self.gauge)
        threading.Thread(target=server.serve_forever, name="pc-simulator", daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._owned_workdir is not None:
            shutil.rmtree(self._owned_workdir, ignore_errors=True)
            self._owned_workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """App settings that point the project's clients at this simulator."""
        return {"PARTNER_CENTER_API_URL": self.base_url, "GRAPH_API_URL": self.base_url,
                "ENTRA_AUTHORITY_HOST": self.base_url, "REQUESTS_CA_BUNDLE": self.ca_path}

    # --- the truth, for assertions ------------------------------------------------------------------------------

    def invoices(self) -> list[dict[str, object]]:
        """The v1 Invoice resources as served (amounts as Decimal), newest first."""
        return [self._pc.invoice_json(inv) for inv in self.ledger.invoices()]

    def _dataset(self, invoice_id: str, file_type: str) -> Dataset:
        invoice = self.ledger.invoice(invoice_id)
        if invoice is None:
            raise KeyError(f"no invoice {invoice_id}")
        ds = invoice.datasets.get(FileType(file_type))
        if ds is None:
            raise KeyError(f"invoice {invoice_id} has no {file_type} data")
        return ds

    def counts(self, since: int = 0) -> Counter[str]:
        """Microsoft requests by kind, from log entry `since` on (`len(sim.requests)` taken earlier): `export`
        (POST …/export, one Graph export started), `page` (a v1 line-item page), `blob` (an export blob
        downloaded), `invoice` (GET one v1 invoice). Retries count each time they were sent."""
        return Counter(kind for r in self.requests[since:] if (kind := request_kind(r.method, r.path)))

    def expected(self, invoice_id: str, file_type: str) -> Expected:
        return self.ledger.expected(self._dataset(invoice_id, file_type))

    def iter_rows(self, invoice_id: str, file_type: str) -> Iterator[Row]:
        """Canonical rows (column -> exact text, None where the wire omits the field) in served order."""
        return (row for _, row in self.ledger.rows(self._dataset(invoice_id, file_type)))

    def unbilled_expected(self, period: str, file_type: str = FileType.DAILY.value) -> Expected:
        if period not in PERIODS:
            raise ValueError(f"period must be one of {PERIODS}")
        return self.ledger.expected(self.ledger.unbilled[period][FileType(file_type)])


def request_kind(method: str, path: str) -> str | None:
    """What a logged request was, for counting calls to Microsoft (see Simulator.counts)."""
    parts = path.strip("/").split("/")
    if method == "POST" and parts[-1] == "export":
        return "export"
    if parts[0] == "blobs":
        return "blob"
    if parts[0] == "v1" and len(parts) >= 3 and parts[1] == "invoices" and "lineitems" in parts:
        return "page"
    if parts[0] == "v1" and len(parts) == 3 and parts[1] == "invoices" and parts[2] != "unbilled":
        return "invoice"
    return None
