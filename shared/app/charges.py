"""The charges API: an invoice's lines, page by page, read from its snapshot, never from Microsoft.

A token records where the previous page stopped: the snapshot (which fixes the data version), the Parquet file
and the row within it. The page starts at the row group holding that row (earlier groups are not read). It is
HMAC-signed so a client cannot point it elsewhere; a token from another invoice, type or view is refused, and
one whose snapshot retention has deleted asks the caller to start again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

import pyarrow as pa

from azure.storage.blob import ContainerClient

from shared.core.problems import bad_request
from shared.core.reconcile import FilePlan
from shared.core.money import arrow_text
from shared.adapters.settings import Settings
from shared.adapters.snapshot_parts import batches_from, open_file
from shared.adapters.snapshot_store import Snapshot

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


def scope_of(plan: FilePlan) -> list[str | None]:
    return [plan.view.value, plan.reseller_id, plan.customer_id]


def token_start(settings: Settings, token: str, snapshot_prefix: str, plan: FilePlan) -> tuple[str, int, int]:
    """(snapshot id, file, row) from a token, refused unless it belongs to this invoice, type and view."""
    start = read_token(settings, token)
    snap, file, row = start.get("snap"), start.get("f"), start.get("r")
    if not isinstance(snap, str) or not snap.startswith(snapshot_prefix) or start.get("scope") != scope_of(plan):
        raise bad_request("continuationToken belongs to another invoice, charge type or view.", "continuationToken")
    if not isinstance(file, int) or not isinstance(row, int) or file < 0 or row < 0:
        raise bad_request("continuationToken is not valid (it may have been altered or have expired).",
                          "continuationToken")
    return snap, file, row


def _take(plan: FilePlan, batch: pa.RecordBatch, need: int) -> tuple[pa.RecordBatch, int]:
    """The view's first `need` lines of `batch` (or all it has) and how many of Microsoft's lines they took.

    The plan's margins and view work line by line, so a prefix of the batch gives a prefix of the lines; the
    shortest prefix that yields `need` lines is found by halving (a few plan calls on a filtered view)."""
    out = plan.process(batch)[0]
    if out.num_rows <= need:
        return out, batch.num_rows
    if out.num_rows == batch.num_rows:  # every line is the view's (the partner view)
        return out.slice(0, need), need
    lo, hi = need, batch.num_rows
    while lo < hi:
        mid = (lo + hi) // 2
        if plan.process(batch.slice(0, mid))[0].num_rows >= need:
            hi = mid
        else:
            lo = mid + 1
    return plan.process(batch.slice(0, lo))[0], lo


def charges_page(container: ContainerClient, settings: Settings, snapshot: Snapshot, plan: FilePlan,
                 page_size: int, file: int = 0, row: int = 0) -> dict[str, Any]:
    """One page of the lines a file with this plan would hold (same columns, same margins, same view)."""
    files = snapshot.files
    items: list[dict[str, Any]] = []
    while file < len(files) and len(items) < page_size:
        if row >= files[file]["rows"]:
            file, row = file + 1, 0
            continue
        for batch in batches_from(open_file(container, snapshot, file), row):
            lines, used = _take(plan, batch, page_size - len(items))
            items.extend(_rows(lines))
            row += used
            if len(items) == page_size:
                break
        else:
            file, row = file + 1, 0
    while file < len(files) and row >= files[file]["rows"]:
        file, row = file + 1, 0
    token = None
    if file < len(files):
        token = sign_token(settings, {"snap": snapshot.id, "scope": scope_of(plan), "f": file, "r": row})
    return {"items": items, "continuationToken": token}
