"""The audit trail of download links: every SAS link the API hands out is recorded before it is returned.

Table `Audit`: PartitionKey = tenant id, RowKey = `{issued at, ISO 8601 UTC with microseconds}_{random hex}`, so
a date range is a RowKey range (a parameterised query, never string-built). Each entry says who (object id, its
tenant, app or user), when, which file, which version and which blob kind (file or findings), from which address,
and until when the link works. The link itself (its signature) is never stored.
"""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime, timezone
from typing import Any

from shared.core.access import Caller
from shared.core.models import ApiModel
from shared.adapters.storage import Storage

TABLE = "Audit"
MAX_ENTRIES = 5000  # per query; a longer range is answered with its first entries and `truncated`


class AuditEntry(ApiModel):
    tenant_id: str
    issued_at: datetime
    object_id: str
    caller_tenant_id: str
    is_app: bool
    file_id: str
    version: int
    kind: str  # "file" | "findings"
    client_address: str | None = None
    forwarded_for: str | None = None  # the whole X-Forwarded-For chain (valid addresses only), for the record:
    # only its last entry, which the platform appends, is the client address; the others are client-written
    expires_at: datetime


# The headers the Functions front end sets to the address that connected to it, when there is no X-Forwarded-For.
CLIENT_IP_HEADERS = ("X-Client-IP", "CLIENT-IP")


def client_address(headers: Any) -> str | None:
    """The caller's address as the platform saw it: the right-most `X-Forwarded-For` entry, which the platform's
    front end appends (every entry left of it was written by the client or a proxy it chose, so it proves
    nothing); without that header, the client-IP header the Functions host passes. Only a well-formed IP address
    is kept; a right-most entry that is not one gives no address rather than an earlier, client-written one."""
    if headers is None:
        return None
    forwarded = headers.get("X-Forwarded-For")
    if forwarded:
        return _ip(str(forwarded).rsplit(",", 1)[-1])
    for name in CLIENT_IP_HEADERS:
        raw = headers.get(name)
        if raw:
            return _ip(str(raw))
    return None


def _ip(text: str) -> str | None:
    """A well-formed IP address from `text` (optionally with a port), else None."""
    text = text.strip()
    candidates = [text]
    if text.startswith("[") and "]" in text:  # [v6]:port
        candidates.append(text[1:text.index("]")])
    elif text.count(":") == 1:  # v4:port
        candidates.append(text.split(":")[0])
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def forwarded_chain(headers: Any) -> str | None:
    raw = headers.get("X-Forwarded-For") if headers is not None else None
    if not raw:
        return None
    chain = [ip for ip in (_ip(part) for part in str(raw).split(",")[:20]) if ip]
    return ", ".join(chain) or None


def _row_key(at: datetime) -> str:
    return f"{at.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}_{uuid.uuid4().hex}"


def _bound(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditLog:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table(TABLE)

    def record(self, tenant_id: str, caller: Caller, file_id: str, version: int, kind: str,
               address: str | None, expires_at: datetime, *, now: datetime | None = None,
               forwarded_for: str | None = None) -> AuditEntry:
        at = now or datetime.now(timezone.utc)
        entry = AuditEntry(tenant_id=tenant_id.lower(), issued_at=at, object_id=caller.object_id,
                           caller_tenant_id=caller.tenant_id, is_app=caller.is_app, file_id=file_id.lower(),
                           version=version, kind=kind, client_address=address, forwarded_for=forwarded_for,
                           expires_at=expires_at)
        self.table.create_entity({"PartitionKey": entry.tenant_id, "RowKey": _row_key(at),
                                  **entry.model_dump(mode="json", exclude={"tenant_id"}, exclude_none=True)})
        return entry

    def between(self, tenant_id: str, start: datetime, end: datetime) -> tuple[list[AuditEntry], bool]:
        """Entries with start ≤ issued_at < end, oldest first; and whether more than MAX_ENTRIES matched."""
        rows = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge @start and RowKey lt @end",
            parameters={"pk": tenant_id.lower(), "start": _bound(start), "end": _bound(end)})
        items: list[AuditEntry] = []
        for entity in rows:
            if len(items) == MAX_ENTRIES:
                return items, True
            data = {k: v for k, v in entity.items() if k in AuditEntry.model_fields}
            items.append(AuditEntry(tenant_id=entity["PartitionKey"], **data))
        return items, False
