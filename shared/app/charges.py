"""The charges API: an invoice's lines, page by page, with an opaque tamper-evident continuation token.

A token records where the previous page stopped (segment, and line of the view within it) and the data
version it was read from; it is HMAC-signed so a client cannot point it elsewhere, and a token from another
invoice, type, view or data version is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

import pyarrow as pa

from shared.adapters.partner_center.client import PartnerCenterClient
from shared.core.problems import bad_request
from shared.core.reconcile import FilePlan
from shared.core.money import arrow_text
from shared.adapters.settings import Settings
from shared.adapters.sources import Source, choose_source

_PROCESS_KEY = secrets.token_bytes(32)  # used when TOKEN_SIGNING_KEY is unset: tokens then live in one process


def _key(settings: Settings) -> bytes:
    key = settings.token_signing_key
    if key and key.startswith("@Microsoft.KeyVault("):
        # An unresolved Key Vault reference reaches the app as its literal text: never sign with that.
        raise RuntimeError("TOKEN_SIGNING_KEY is an unresolved Key Vault reference; check the app's identity.")
    return key.encode() if key else _PROCESS_KEY


def sign_token(settings: Settings, payload: dict[str, Any]) -> str:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(_key(settings), body, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")


def read_token(settings: Settings, token: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        mac, body = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, hmac.new(_key(settings), body, hashlib.sha256).digest()[:16]):
            raise ValueError("signature")
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise ValueError("shape")
        return payload
    except (ValueError, TypeError):
        raise bad_request("continuationToken is not valid (it may have been altered or have expired).",
                          "continuationToken")


def _rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    columns = {}
    for name, arr in zip(batch.schema.names, batch.columns):
        columns[name] = arrow_text(arr) if pa.types.is_decimal(arr.type) else arr
    return pa.RecordBatch.from_pydict(columns).to_pylist()


def charges_page(client: PartnerCenterClient, settings: Settings, invoice: dict[str, Any], plan: FilePlan,
                 page_size: int, token: str | None) -> dict[str, Any]:
    """One page of the lines a file with this plan would hold (same columns, same margins, same view)."""
    layout = plan.layout
    file_type = layout.file_type.value
    source: Source = choose_source(client, layout, invoice, settings)
    scope = [plan.view.value, plan.reseller_id, plan.customer_id]
    start = {"seg": 0, "off": 0}
    if token:
        start = read_token(settings, token)
        if (start.get("inv"), start.get("type"), start.get("src"), start.get("scope")) != (
                invoice["id"], file_type, source.kind.value, scope):
            raise bad_request("continuationToken belongs to another invoice, charge type or view.",
                              "continuationToken")
        if start.get("dv") != source.data_version:
            raise bad_request("Microsoft published new data for this invoice; start again without a token.",
                              "continuationToken")
    items: list[dict[str, Any]] = []
    for segment in source.segments():
        if segment.index < start["seg"]:
            continue
        skip = start["off"] if segment.index == start["seg"] else 0
        seen = 0  # the view's lines of this segment so far: offsets count lines the caller can see
        for batch in segment.read(True):
            lines = plan.process(batch)[0]
            if seen + lines.num_rows <= skip:
                seen += lines.num_rows
                continue
            lo = max(0, skip - seen)
            take = lines.slice(lo, page_size - len(items))
            items.extend(_rows(take))
            seen += lo + take.num_rows
            if len(items) == page_size:
                nxt = {"inv": invoice["id"], "type": file_type, "src": source.kind.value, "scope": scope,
                       "dv": source.data_version, "seg": segment.index, "off": seen}
                return {"items": items, "continuationToken": sign_token(settings, nxt)}
    return {"items": items, "continuationToken": None}
