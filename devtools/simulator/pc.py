"""Partner Center REST v1 invoices and line items (reference §2): offset paging for legacy files, seek paging
with MS-ContinuationToken for new-commerce files, relative `links` without /v1, case-insensitive parameters."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from urllib.parse import urlencode

from shared.core.columns import FileType

from .catalog import BILLING_CURRENCY, CURRENCY_SYMBOL
from .dates import iso_z
from .faults import Faults
from .ledger import Invoice, Ledger
from .messages import Reply, Request, json_reply, pc_error
from .money import ZERO
from .rows import Dataset
from .wire import V1_KINDS, V1_STRINGS_PERCENT, Raw, RowStyle, v1_encoder

_SYMBOLS = {"VND": "₫"}  # currencies of the invoices published on request (vnd.py)

MAX_SIZE = 2000
# (provider, invoicelineitemtype) -> file (reference §2.4); the estimates links use provider=marketplace.
LINE_ITEMS = {("office", "billinglineitems"): FileType.LICENSE, ("azure", "billinglineitems"): FileType.USAGE,
              ("onetime", "billinglineitems"): FileType.ONETIME, ("onetime", "usagelineitems"): FileType.DAILY,
              ("marketplace", "usagelineitems"): FileType.DAILY}
_QUERY_OF = {FileType.LICENSE: ("office", "billinglineitems"), FileType.USAGE: ("azure", "billinglineitems"),
             FileType.ONETIME: ("onetime", "billinglineitems"), FileType.DAILY: ("onetime", "usagelineitems")}
_SEEK = frozenset({FileType.ONETIME, FileType.DAILY})
_UNBILLED_PERIODS = {"current": "current", "previous": "last"}


def _link(uri: str, token: str | None = None) -> dict[str, object]:
    headers = [{"key": "MS-ContinuationToken", "value": token}] if token else []
    return {"uri": uri, "method": "GET", "headers": headers}


def _collection(items: list[object], self_uri: str, next_uri: str | None, token: str | None = None
                ) -> dict[str, object]:
    body: dict[str, object] = {"continuationToken": token} if token else {}
    links = {"self": _link(self_uri)}
    if next_uri:
        links["next"] = _link(next_uri, token)
    body.update({"totalCount": len(items), "items": items, "links": links, "attributes": {"objectType": "Collection"}})
    return body


class _BadRequestError(Exception):
    pass


class PartnerCenter:
    def __init__(self, ledger: Ledger, faults: Faults) -> None:
        self._ledger = ledger
        self._faults = faults
        self._encoders = {ft: v1_encoder(ft) for ft in FileType}

    def handle(self, request: Request) -> Reply:
        if request.method != "GET":
            return pc_error(405, 405, "The requested resource does not support this method.")
        parts = request.path.strip("/").split("/")[1:]  # after "v1"
        try:
            if parts == ["invoices"]:
                return self._list(request)
            if parts == ["invoices", "unbilled", "lineitems"]:
                return self._unbilled(request)
            if len(parts) == 2 and parts[0] == "invoices":
                invoice = self._ledger.invoice(parts[1])
                return json_reply(200, self.invoice_json(invoice)) if invoice else self._not_found(parts[1])
            if len(parts) in (3, 5) and parts[0] == "invoices" and parts[2] == "lineitems":
                return self._line_items(request, parts[1], parts[3:])
        except _BadRequestError as problem:
            return pc_error(400, 2000, str(problem))
        return pc_error(404, 1000, "The requested resource was not found.")

    @staticmethod
    def _not_found(invoice_id: str) -> Reply:
        return pc_error(404, 1000, f"Invoice {invoice_id} was not found.")

    # --- invoices -----------------------------------------------------------------------------------------------

    def invoice_json(self, invoice: Invoice) -> dict[str, object]:
        """The v1 Invoice resource (reference §2.2, §2.3)."""
        charges = self._ledger.total_charges(invoice)
        paid = charges if invoice.invoice_date + timedelta(days=30) <= self._ledger.today else ZERO
        details = []
        for file_type in invoice.datasets:
            line_type, provider, _ = V1_KINDS[file_type]
            query_provider, query_type = _QUERY_OF[file_type]
            details.append({
                "invoiceLineItemType": line_type, "billingProvider": "one_time" if file_type in _SEEK else provider,
                "links": {"self": _link(f"/invoices/{invoice.id}/lineitems?"
                                        f"provider={query_provider}&invoicelineitemtype={query_type}")},
                "attributes": {"objectType": "InvoiceDetail"},
            })
        return {
            "id": invoice.id, "invoiceDate": iso_z(invoice.invoice_date),
            "billingPeriodStartDate": iso_z(invoice.start), "billingPeriodEndDate": iso_z(invoice.end),
            "totalCharges": charges, "paidAmount": paid, "currencyCode": invoice.currency,
            "currencySymbol": CURRENCY_SYMBOL if invoice.currency == BILLING_CURRENCY else _SYMBOLS[invoice.currency], "pdfDownloadLink": f"/invoices/{invoice.id}/documents/statement",
            "taxReceipts": [], "invoiceDetails": details, "documentType": "invoice",
            "invoiceType": "Recurring" if invoice.legacy else "OneTime",
            "amendments": [dict(a) for a in invoice.amendments],
            "links": {"self": _link(f"/invoices/{invoice.id}")}, "attributes": {"objectType": "Invoice"},
        }

    def _list(self, request: Request) -> Reply:
        size, offset = _size(request), _offset(request)
        invoices = self._ledger.invoices()
        page = [self.invoice_json(inv) for inv in invoices[offset:offset + size]]
        more = offset + size < len(invoices)
        return json_reply(200, _collection(page, f"/invoices?size={size}&offset={offset}",
                                           f"/invoices?size={size}&offset={offset + size}" if more else None))

    # --- line items ---------------------------------------------------------------------------------------------

    def _line_items(self, request: Request, invoice_id: str, path_kind: list[str]) -> Reply:
        provider, kind = path_kind if path_kind else (request.param("provider"), request.param("invoicelineitemtype"))
        file_type = LINE_ITEMS.get(((provider or "").lower(), (kind or "").lower()))
        if file_type is None:
            raise _BadRequestError(f"Unsupported provider '{provider}' / invoicelineitemtype '{kind}'.")
        size = _size(request)
        invoice = self._ledger.invoice(invoice_id)
        if invoice is None:
            return self._not_found(invoice_id)
        if self._faults.is_failing(invoice.id):
            return pc_error(500, 500, "Internal server error.")
        ds = None if self._faults.has_no_data(invoice.id) else invoice.datasets.get(file_type)
        provider_q, kind_q = _QUERY_OF[file_type]
        query = {"provider": provider_q, "invoicelineitemtype": kind_q}
        if file_type in _SEEK:
            query.update({"currencycode": BILLING_CURRENCY.lower(), "period": "current"})
            return self._seek_page(request, ds, f"/invoices/{invoice.id}/lineitems", query, size)
        return self._offset_page(request, ds, f"/invoices/{invoice.id}/lineitems", query, size)

    def _unbilled(self, request: Request) -> Reply:
        provider, kind = request.param("provider") or "", request.param("invoicelineitemtype") or ""
        file_type = LINE_ITEMS.get((provider.lower(), kind.lower()))
        if file_type not in _SEEK:
            raise _BadRequestError(f"Unbilled data has no provider '{provider}' / invoicelineitemtype '{kind}'.")
        currency, period = request.param("currencycode"), (request.param("period") or "").lower()
        if not currency:
            raise _BadRequestError("currencycode is required.")
        if period not in _UNBILLED_PERIODS:
            raise _BadRequestError("period must be current or previous.")
        size = _size(request)
        ds = self._ledger.unbilled[_UNBILLED_PERIODS[period]][file_type] \
            if currency.upper() == BILLING_CURRENCY else None
        query = {"provider": "onetime", "invoicelineitemtype": kind.lower(), "currencycode": currency.lower(),
                 "period": period}
        return self._seek_page(request, ds, "/invoices/unbilled/lineitems", query, size)

    def _items(self, ds: Dataset, start: int, stop: int, version: int) -> list[object]:
        encoder = self._encoders[ds.file_type]
        style = RowStyle(self._ledger.world.seed, ds, V1_STRINGS_PERCENT)
        return [Raw(encoder.encode(row, style.numbers_as_strings(i), style.future_field(i)))
                for i, row in self._ledger.rows(ds, start, stop, version)]

    def _offset_page(self, request: Request, ds: Dataset | None, path: str, query: dict[str, str],
                     size: int) -> Reply:
        offset = _offset(request)
        items = self._items(ds, offset, offset + size, self._ledger.version(ds.key)) if ds else []
        uri = f"{path}?{urlencode({**query, 'size': size, 'offset': offset})}"
        more = ds is not None and offset + size < ds.rows
        next_uri = f"{path}?{urlencode({**query, 'size': size, 'offset': offset + size})}" if more else None
        return json_reply(200, _collection(items, uri, next_uri))

    def _seek_page(self, request: Request, ds: Dataset | None, path: str, query: dict[str, str],
                   size: int) -> Reply:
        uri = f"{path}?{urlencode({**query, 'size': size})}"
        if ds is None:
            return json_reply(200, _collection([], uri, None))
        if (request.param("seekoperation") or "").lower() == "next":
            offset, version = _read_token(request.header("MS-ContinuationToken"), ds)
        else:
            offset, version = 0, self._ledger.version(ds.key)
        items = self._items(ds, offset, offset + size, version)
        if offset + size >= ds.rows:
            return json_reply(200, _collection(items, uri, None))
        token = _make_token(ds, offset + size, version)
        return json_reply(200, _collection(items, uri, f"{uri}&seekOperation=Next", token))


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.param(name)
    try:
        return default if raw in (None, "") else int(raw)
    except ValueError:
        raise _BadRequestError(f"{name} must be an integer.") from None


def _size(request: Request) -> int:
    size = _int_param(request, "size", MAX_SIZE)
    if not 1 <= size <= MAX_SIZE:
        raise _BadRequestError(f"size must be between 1 and {MAX_SIZE}.")
    return size


def _offset(request: Request) -> int:
    offset = _int_param(request, "offset", 0)
    if offset < 0:
        raise _BadRequestError("offset must not be negative.")
    return offset


def _make_token(ds: Dataset, offset: int, version: int) -> str:
    """Opaque to clients; pins the data version so a re-rating mid-download cannot mix versions."""
    return base64.b64encode(f"{ds.key}|{ds.file_type}|{version}|{offset}".encode()).decode()


def _read_token(token: str | None, ds: Dataset) -> tuple[int, int]:
    if not token:
        raise _BadRequestError("seekOperation=Next needs the MS-ContinuationToken header.")
    try:
        key, file_type, version, offset = base64.b64decode(token, validate=True).decode().split("|")
        if (key, file_type) != (ds.key, ds.file_type.value):
            raise ValueError(token)
        return int(offset), int(version)
    except (ValueError, binascii.Error):
        raise _BadRequestError("The continuation token is not valid for this request.") from None
