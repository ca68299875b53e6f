"""Microsoft Graph partner-billing exports (reference §3): POST export -> 202 + Location, poll the operation,
read the manifest, download the blobs with the manifest's SAS.

Blobs are generated while the operation reports `running`, so a succeeded operation always points at blobs that
can be streamed at once, and every manifest knows each blob's size.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote

from shared.core.columns import FileType

from .blobs import BlobSet, BlobStore
from .catalog import BILLING_CURRENCY
from .dates import utc_now, utc_text
from .det import digest
from .faults import Faults
from .ledger import Ledger
from .messages import FileBody, Reply, Request, blob_error, graph_error, json_reply

_BILLING = re.compile(r"^/(v1\.0|beta)/reports/partners/billing/(.+)$")
_EXPORTS = {"reconciliation/billed/export": (FileType.ONETIME, True),
            "reconciliation/unbilled/export": (FileType.ONETIME, False),
            "usage/billed/export": (FileType.DAILY, True),
            "usage/unbilled/export": (FileType.DAILY, False)}
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
SAS_VERSION = "2021-08-06"
_ODATA = "#microsoft.graph.partners.billing."


@dataclass
class ExportOptions:
    """How the operation endpoint behaves; change them on `sim.export_options` at any time."""

    polls: int = 1  # polls answered notStarted/running before the result
    retry_after: int = 1  # seconds, in the Retry-After header of unfinished polls
    inline_manifest: bool = False  # succeeded operations embed `resourceLocation` instead of a navigation link
    sas_lifetime: timedelta = timedelta(hours=1)


@dataclass
class _Operation:
    id: str
    created: datetime
    invoice_id: str | None
    blobs: BlobSet | None  # None: no data available
    ready: Future[None] | None
    polls: int = 0
    manifest: dict[str, object] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Exports:
    def __init__(self, ledger: Ledger, faults: Faults, store: BlobStore, base_url: str,
                 options: ExportOptions) -> None:
        self._ledger = ledger
        self._faults = faults
        self._store = store
        self._base_url = base_url
        self._options = options
        self._sas_key = secrets.token_bytes(32)
        self._operations: dict[str, _Operation] = {}
        self._manifests: dict[str, _Operation] = {}

    # --- Graph routes -------------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        match = _BILLING.match(request.path)
        if match is None:
            return graph_error(404, f"Resource not found for the segment '{request.path}'.", request)
        version, route = match.groups()
        if route in _EXPORTS:
            if request.method != "POST":
                return graph_error(405, "The export endpoints accept POST only.", request)
            return self._start(request, version, *_EXPORTS[route])
        kind, _, ident = route.partition("/")
        if request.method != "GET" or kind not in ("operations", "manifests") or not ident:
            return graph_error(404, f"Resource not found for the segment '{route}'.", request)
        if kind == "operations":
            return self._poll(request, version, ident)
        return self._manifest(request, ident)

    def _start(self, request: Request, version: str, file_type: FileType, billed: bool) -> Reply:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return graph_error(400, "The request body is not valid JSON.", request)
        if not isinstance(body, dict):
            return graph_error(400, "The request body must be a JSON object.", request)
        fragment = str(body.get("attributeSet") or "full").lower()
        if fragment not in ("full", "basic"):
            return graph_error(400, f"Invalid attributeSet '{body.get('attributeSet')}'.", request)
        invoice_id: str | None = None
        if billed:
            invoice_id = body.get("invoiceId")
            if not isinstance(invoice_id, str) or not invoice_id:
                return graph_error(400, "invoiceId is required.", request)
            if self._faults.is_failing(invoice_id):
                return graph_error(500, "Internal server error.", request)
            invoice = self._ledger.invoice(invoice_id)
            ds = invoice.datasets.get(file_type) if invoice else None
            if self._faults.has_no_data(invoice_id):
                ds = None
        else:
            period, currency = body.get("billingPeriod"), body.get("currencyCode")
            if period not in ("current", "last"):
                return graph_error(400, "billingPeriod must be 'current' or 'last'.", request)
            if not isinstance(currency, str) or not currency:
                return graph_error(400, "currencyCode is required.", request)
            ds = self._ledger.unbilled[period][file_type] if currency.upper() == BILLING_CURRENCY else None
        blobs = self._store.plan(ds, fragment) if ds else None
        operation = _Operation(str(uuid.uuid4()), utc_now(), invoice_id, blobs,
                               self._store.prepare(blobs) if blobs else None)
        self._operations[operation.id] = operation
        location = f"{self._base_url}/{version}/reports/partners/billing/operations/{operation.id}"
        return Reply(202, b"", {"Location": location})

    def _poll(self, request: Request, version: str, operation_id: str) -> Reply:
        operation = self._operations.get(operation_id)
        if operation is None:
            return graph_error(404, f"Operation '{operation_id}' not found.", request)
        if self._faults.is_failing(operation.invoice_id):
            return graph_error(500, "Internal server error.", request)
        with operation.lock:
            operation.polls += 1
            state = {"id": operation.id, "createdDateTime": utc_text(operation.created),
                     "lastActionDateTime": utc_text(utc_now())}
            generating = operation.ready is not None and not operation.ready.done()
            if operation.polls <= self._options.polls or generating:
                status = "notStarted" if operation.polls == 1 else "running"
                return json_reply(200, {"@odata.type": _ODATA + "runningOperation", **state, "status": status},
                                  {"Retry-After": str(self._options.retry_after)})
            error = self._failure(operation)
            if error:
                return json_reply(200, {"@odata.type": _ODATA + "failedOperation", **state, "status": "failed",
                                        "error": error})
            manifest = self._manifest_of(operation)
        success: dict[str, object] = {"@odata.type": _ODATA + "exportSuccessOperation", **state, "status": "succeeded"}
        if self._options.inline_manifest:
            success["resourceLocation"] = manifest
        else:
            success["resourceLocation@odata.navigationLink"] = \
                f"{self._base_url}/{version}/reports/partners/billing/manifests/{manifest['id']}"
        return json_reply(200, success)

    @staticmethod
    def _failure(operation: _Operation) -> dict[str, str] | None:
        if operation.blobs is None or operation.ready is None:
            return {"code": "5000", "message": "No data available"}
        problem = operation.ready.exception()
        return {"code": "500", "message": f"Export failed: {problem}"} if problem else None

    def _manifest_of(self, operation: _Operation) -> dict[str, object]:
        """Created on the first successful poll; the SAS clock starts then."""
        if operation.manifest is None:
            blobs = operation.blobs
            assert blobs is not None
            ds = blobs.dataset
            lifetime = -timedelta(hours=1) if self._faults.take_expired_sas() else self._options.sas_lifetime
            expiry = utc_now() + lifetime
            se = utc_text(expiry)
            etag = base64.urlsafe_b64encode(digest(self._ledger.world.seed, ds.key, blobs.version, *sorted(blobs.defects),
                                                   size=12)).decode()
            operation.manifest = {
                "id": str(uuid.uuid4()), "schemaVersion": "2", "dataFormat": "compressedJSON",
                "createdDateTime": utc_text(utc_now()), "eTag": etag,
                "partnerTenantId": self._ledger.world.tenant_id,
                "rootDirectory": self._base_url + blobs.directory,
                "sasToken": f"sv={SAS_VERSION}&sr=d&sp=rl&se={quote(se, safe='')}"
                            f"&sig={quote(self._sign(blobs.directory, se), safe='')}",
                "partitionType": "default", "blobCount": len(blobs.names),
                "blobs": [{"name": name, "partitionValue": "default",
                           "sizeInBytes": self._store.path(blobs, k).stat().st_size,
                           "itemCount": stop - start}
                          for k, (name, (start, stop)) in enumerate(zip(blobs.names, blobs.bounds))],
            }
            self._manifests[str(operation.manifest["id"])] = operation
        return operation.manifest

    def _manifest(self, request: Request, manifest_id: str) -> Reply:
        operation = self._manifests.get(manifest_id)
        if operation is None or operation.manifest is None:
            return graph_error(404, f"Manifest '{manifest_id}' not found.", request)
        if self._faults.is_failing(operation.invoice_id):
            return graph_error(500, "Internal server error.", request)
        return json_reply(200, operation.manifest)

    # --- the blob host ------------------------------------------------------------------------------------------

    def _sign(self, directory: str, se: str) -> str:
        mac = hmac.new(self._sas_key, f"{directory}\n{se}".encode(), hashlib.sha256).digest()
        return base64.b64encode(mac).decode()

    def serve_blob(self, request: Request) -> Reply:
        found = self._store.find(request.path)
        if found is None:
            return blob_error(404, "BlobNotFound", "The specified blob does not exist.")
        blobs, k = found
        se, sig = request.param("se") or "", request.param("sig") or ""
        if not hmac.compare_digest(sig.encode(), self._sign(blobs.directory, se).encode()):
            return blob_error(403, "AuthenticationFailed", "Server failed to authenticate the request.",
                              "Signature did not match.")
        now = utc_now()
        if se <= utc_text(now):
            return blob_error(403, "AuthenticationFailed", "Server failed to authenticate the request.",
                              f"Signature not valid in the specified time frame: Expiry [{se}] - "
                              f"Current [{utc_text(now)}]")
        if self._faults.is_failing(blobs.dataset.invoice_number):
            return blob_error(500, "InternalError", "The server encountered an internal error.")
        path = self._store.path(blobs, k)
        size = path.stat().st_size
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                   "x-ms-blob-type": "BlockBlob", "x-ms-version": SAS_VERSION,
                   "ETag": f'"0x{digest(path.name, size, size=8).hex().upper()}"',
                   "Last-Modified": now.strftime("%a, %d %b %Y %H:%M:%S GMT")}
        start, stop, status = 0, size, 200
        wanted = _RANGE.match(request.header("x-ms-range") or request.header("range") or "")
        if wanted:
            start = int(wanted.group(1))
            stop = min(size, int(wanted.group(2)) + 1) if wanted.group(2) else size
            if start >= size:
                return blob_error(416, "InvalidRange", "The range specified is invalid for the current size.")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        if self._faults.take_truncation():
            stop = start + (stop - start) // 2
        return Reply(status, FileBody(path, start, stop - start), headers)
