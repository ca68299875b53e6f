"""The Partner Center client: invoices and line items (v1) and billing exports (Microsoft Graph).

Everything that can be large is a generator: v1 pages one at a time (2000 rows at most), export blobs one at a
time as decompressed byte streams. Nothing here holds a whole invoice.
"""

from __future__ import annotations

import json
import shutil
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import IO, Any, Iterator
from urllib.parse import parse_qs, urlsplit

from shared.core.money import Decimal
from shared.adapters.spool import spooled
from shared.adapters.partner_center.transport import (
    GRAPH_SCOPE,
    PARTNER_CENTER_SCOPE,
    NoDataAvailable,
    NotFound,
    PartnerCenterError,
    Transport,
    error_text,
    retry_after_seconds,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 2000  # Partner Center's maximum
DOWNLOAD_CHUNK_BYTES = 1024 * 1024


class SasExpired(PartnerCenterError):
    """An export manifest's blob SAS no longer works: ask for a fresh export."""

    def __init__(self) -> None:
        super().__init__("The export's download link expired.", transient=True)


@dataclass(frozen=True)
class ExportBlob:
    index: int
    name: str
    url: str  # includes the SAS: never log it


@dataclass(frozen=True)
class Manifest:
    id: str
    etag: str
    blobs: tuple[ExportBlob, ...]
    expires_at: datetime | None
    operation: str | None = None  # the export's operation URL: reading it again gives this manifest, no new export


# v1 (provider, invoicelineitemtype) per file type; seek paging for onetime, offset paging otherwise.
V1_LINE_ITEMS = {
    "onetime": ("onetime", "billinglineitems"),
    "dailyratedusage": ("onetime", "usagelineitems"),
    "license": ("office", "billinglineitems"),
    "usage": ("azure", "billinglineitems"),
}
GRAPH_EXPORTS = {
    "onetime": "reconciliation/billed/export",
    "dailyratedusage": "usage/billed/export",
}
GRAPH_UNBILLED_EXPORTS = {"dailyratedusage": "usage/unbilled/export", "onetime": "reconciliation/unbilled/export"}


def _json(response: Any) -> Any:
    """Parse Microsoft JSON keeping every number's exact text (amounts must never pass through float)."""
    return json.loads(response.content, parse_float=str, parse_int=str)


def _money_json(response: Any) -> Any:
    return json.loads(response.content, parse_float=Decimal, parse_int=int)


class PartnerCenterClient:
    def __init__(self, transport: Transport) -> None:
        self.t = transport
        self.pc = transport.settings.partner_center_api_url.rstrip("/") + "/v1"
        self.graph = transport.settings.graph_api_url.rstrip("/") + "/v1.0/reports/partners/billing"

    # ---- v1: invoices -----------------------------------------------------------------------------------------
    def _get_pc(self, url: str, params: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> Any:
        response = self.t.request("GET", url, scope=PARTNER_CENTER_SCOPE, params=params, headers=headers)
        if response.status_code == 404:
            raise NotFound(f"Partner Center: {error_text(response)}", status=404)
        if response.status_code >= 400:
            raise PartnerCenterError(f"Partner Center answered {response.status_code}: {error_text(response)}",
                                     status=response.status_code)
        return response

    def list_invoices(self) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            body = _money_json(self._get_pc(f"{self.pc}/invoices", {"size": 100, "offset": offset}))
            items = body.get("items", [])
            yield from items
            if not items or not (body.get("links") or {}).get("next"):
                return
            offset += len(items)

    def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        return _money_json(self._get_pc(f"{self.pc}/invoices/{invoice_id}"))

    # ---- v1: line items ---------------------------------------------------------------------------------------
    def line_item_pages(self, invoice_id: str, file_type: str) -> Iterator[list[dict[str, Any]]]:
        """Pages of v1 line items, each a list of JSON objects whose numbers are kept as exact text."""
        provider, item_type = V1_LINE_ITEMS[file_type]
        url = f"{self.pc}/invoices/{invoice_id}/lineitems"
        params: dict[str, Any] = {"provider": provider, "invoicelineitemtype": item_type, "size": PAGE_SIZE}
        if provider == "onetime":
            params.update({"period": "current"})
            yield from self._seek_pages(url, params)
        else:
            offset = 0
            while True:
                body = _json(self._get_pc(url, {**params, "offset": offset}))
                items = body.get("items", [])
                if items:
                    yield items
                if not items or not (body.get("links") or {}).get("next"):
                    return
                offset += len(items)

    def _seek_pages(self, url: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        body = _json(self._get_pc(url, params))
        while True:
            items = body.get("items", [])
            if items:
                yield items
            token = body.get("continuationToken") or _next_token(body)
            if not token or not (body.get("links") or {}).get("next"):
                return
            # Rebuild the next URL from our own parameters: Microsoft's `links.next.uri` has known typos.
            body = _json(self._get_pc(url, {**params, "seekOperation": "Next"},
                                      headers={"MS-ContinuationToken": token}))

    # ---- Graph exports ----------------------------------------------------------------------------------------
    def start_export(self, path: str, body: dict[str, Any]) -> str:
        response = self.t.request("POST", f"{self.graph}/{path}", scope=GRAPH_SCOPE, json=body)
        if response.status_code != 202 or "Location" not in response.headers:
            raise PartnerCenterError(f"Graph export was not accepted: {error_text(response)}",
                                     status=response.status_code)
        return response.headers["Location"]

    def wait_for_export(self, operation_url: str) -> Manifest:
        settings = self.t.settings
        deadline = time.monotonic() + settings.export_max_wait_seconds
        while True:
            response = self.t.request("GET", operation_url, scope=GRAPH_SCOPE)
            if response.status_code >= 400:
                raise PartnerCenterError(f"Graph export status failed: {error_text(response)}",
                                         status=response.status_code)
            op = response.json()
            status = str(op.get("status", "")).lower()
            if status in ("succeeded", "completed"):
                return replace(self._manifest(op), operation=operation_url)
            if status == "failed":
                err = op.get("error") or {}
                message = str(err.get("message", ""))
                if "no data" in message.lower() or str(err.get("code")) == "5000":
                    raise NoDataAvailable()
                raise PartnerCenterError(f"Microsoft's export failed: {err.get('code', '')} {message}".strip(),
                                         transient=True)
            wait = retry_after_seconds(response)
            wait = settings.export_poll_seconds if wait is None else wait
            if time.monotonic() + wait > deadline:
                raise PartnerCenterError("Microsoft's export did not finish in time.", transient=True)
            self.t.sleep(wait)

    def _manifest(self, op: dict[str, Any]) -> Manifest:
        manifest = op.get("resourceLocation")
        if not isinstance(manifest, dict):
            link = op.get("resourceLocation@odata.navigationLink")
            if not link:
                raise PartnerCenterError("Graph export succeeded without a manifest location.")
            response = self.t.request("GET", link, scope=GRAPH_SCOPE)
            if response.status_code >= 400:
                raise PartnerCenterError(f"Could not read the export manifest: {error_text(response)}",
                                         status=response.status_code)
            manifest = response.json()
        root = str(manifest["rootDirectory"]).rstrip("/")
        sas = str(manifest.get("sasToken", "")).lstrip("?")
        blobs = tuple(
            ExportBlob(i, b["name"], f"{root}/{b['name']}?{sas}" if sas else f"{root}/{b['name']}")
            for i, b in enumerate(manifest.get("blobs", []))
        )
        return Manifest(id=str(manifest.get("id", "")), etag=str(manifest.get("eTag", "")), blobs=blobs,
                        expires_at=_sas_expiry(sas))

    def export(self, file_type: str, invoice_id: str) -> Manifest:
        """Ask Microsoft for the billed export of an invoice and wait for its manifest."""
        location = self.start_export(GRAPH_EXPORTS[file_type], {"invoiceId": invoice_id, "attributeSet": "full"})
        return self.wait_for_export(location)

    def unbilled_export(self, file_type: str, currency: str, period: str) -> Manifest:
        body = {"currencyCode": currency, "billingPeriod": period, "attributeSet": "full"}
        return self.wait_for_export(self.start_export(GRAPH_UNBILLED_EXPORTS[file_type], body))

    def download_blob(self, blob: ExportBlob) -> IO[bytes]:
        """One export blob's gzip bytes, downloaded whole into a temporary file (deleted when closed).

        Downloading first (it is small: the gzip of ~50,000 lines is a few MB) lets Arrow decompress and parse
        it natively, off Python's lock; streaming it through Python's gzip starved the parser of the GIL while
        the worker computed margins. Download it promptly: the link (SAS) expires.
        """
        response = self.t.request("GET", blob.url, scope=None, stream=True)
        if response.status_code == 403:
            response.close()
            raise SasExpired()
        if response.status_code >= 400:
            response.close()
            raise PartnerCenterError(f"Could not download export blob {blob.index}: HTTP {response.status_code}",
                                     status=response.status_code, transient=True)
        def fill(target: IO[bytes]) -> None:
            with response:
                response.raw.decode_content = False  # the gzip bytes as Microsoft stored them
                shutil.copyfileobj(response.raw, target, DOWNLOAD_CHUNK_BYTES)

        return spooled("export-", ".json.gz", fill)


def _next_token(body: dict[str, Any]) -> str | None:
    nxt = (body.get("links") or {}).get("next") or {}
    for header in nxt.get("headers") or []:
        if str(header.get("key", "")).lower() == "ms-continuationtoken":
            return str(header.get("value"))
    return None


def _sas_expiry(sas: str) -> datetime | None:
    values = parse_qs(urlsplit("?" + sas).query).get("se")
    if not values:
        return None
    try:
        return datetime.fromisoformat(values[0].replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return None
