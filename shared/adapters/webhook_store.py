"""Webhook endpoints and their deliveries in Table Storage, and the one HTTP call that delivers a signed event.

`Webhooks`: PK tenant, RK endpoint id (the secret's *name* only). `Deliveries`: PK `{tenant}_{endpoint}`, RK the
webhook-id; created with a conditional insert, so publishing the same event twice makes one delivery; every
change ETag-guarded, so two copies of a queue message cannot both send the same attempt.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

import certifi
import urllib3
from azure.core.exceptions import ResourceNotFoundError
from standardwebhooks.webhooks import Webhook as Signer

from shared.adapters.repositories import GuardedTable, from_entity, to_entity
from shared.adapters.settings import ca_bundle
from shared.adapters.storage import Storage
from shared.core.notifications import Delivery, Webhook, public_address

_WEBHOOK_JSON = ("events", "reseller_ids")


def _webhook_entity(hook: Webhook) -> dict[str, Any]:
    return to_entity(hook, hook.tenant_id, hook.id, keys={"tenant_id", "id"}, json_fields=_WEBHOOK_JSON)


def _webhook(entity: dict[str, Any]) -> Webhook:
    return from_entity(Webhook, entity, json_fields=_WEBHOOK_JSON, tenant_id=entity["PartitionKey"],
                       id=entity["RowKey"])


class WebhookRepository:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Webhooks")
        guarded = GuardedTable(self.table, _webhook_entity, _webhook)
        self.create, self.get, self.replace = guarded.create, guarded.get, guarded.replace

    def list(self, tenant_id: str) -> list[Webhook]:
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id})
        return sorted((_webhook(e) for e in rows), key=lambda h: h.id)

    def delete(self, tenant_id: str, endpoint_id: str) -> None:
        self.table.delete_entity(tenant_id, endpoint_id)


def delivery_partition(tenant_id: str, endpoint_id: str) -> str:
    return f"{tenant_id}_{endpoint_id}"


def _delivery_entity(d: Delivery) -> dict[str, Any]:
    return to_entity(d, delivery_partition(d.tenant_id, d.endpoint_id), d.id, keys={"id"})


def _delivery(entity: dict[str, Any]) -> Delivery:
    return from_entity(Delivery, entity, id=entity["RowKey"])


class DeliveryRepository:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Deliveries")
        guarded = GuardedTable(self.table, _delivery_entity, _delivery)
        self.create, self._get, self.replace = guarded.create, guarded.get, guarded.replace

    def get(self, tenant_id: str, endpoint_id: str, delivery_id: str) -> tuple[Delivery, str] | None:
        return self._get(delivery_partition(tenant_id, endpoint_id), delivery_id)

    def list(self, tenant_id: str, endpoint_id: str, limit: int) -> list[Delivery]:
        rows = self.table.query_entities("PartitionKey eq @pk",
                                         parameters={"pk": delivery_partition(tenant_id, endpoint_id)})
        items = sorted((_delivery(e) for e in rows), key=lambda d: d.created_at, reverse=True)
        return items[:limit]

    def purge_settled(self, before: datetime) -> int:
        """Delete deliveries settled before `before` (the log keeps a month); pending ones stay."""
        deleted = 0
        rows = self.table.query_entities("completed_at lt @cutoff", parameters={"cutoff": before},
                                         select=["PartitionKey", "RowKey", "status"])
        for entity in rows:
            if entity.get("status") == "Pending":
                continue
            try:
                self.table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                deleted += 1
            except ResourceNotFoundError:
                pass
        return deleted

    def delete_all(self, tenant_id: str, endpoint_id: str) -> None:
        pk = delivery_partition(tenant_id, endpoint_id)
        for entity in self.table.query_entities("PartitionKey eq @pk", parameters={"pk": pk}, select=["RowKey"]):
            try:
                self.table.delete_entity(pk, entity["RowKey"])
            except ResourceNotFoundError:
                pass


# ---- sending -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class RefusedAddress(Exception):
    """The endpoint's name resolves to a loopback, private or link-local address (outside development)."""


def _checked_address(url: str, allowed: Callable[[str], bool] | None) -> str:
    """The one address the delivery will connect to: the name is resolved once, every address it has is checked
    (outside development: public only), and the connection goes to the first of them. Resolving again to connect
    would let a name answer a public address to the check and a private one to the connection (DNS rebinding)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise RefusedAddress("the URL has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise RefusedAddress(f"{parts.hostname} does not resolve")
    if allowed is not None and not all(allowed(a) for a in addresses):
        raise RefusedAddress(f"{parts.hostname} resolves to a non-public address")
    return addresses[0]


def _post_pinned(url: str, address: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST to `address`, speaking to the URL's host: its name in the Host header, in TLS's SNI and in the
    certificate check (the roots `settings.ca_bundle` names, as for every outgoing call). No redirects, no retries
    here."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    limits = urllib3.Timeout(connect=timeout, read=timeout)
    pool: urllib3.HTTPConnectionPool
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, port, timeout=limits, retries=False, cert_reqs="CERT_REQUIRED",
                                           ca_certs=_roots(), server_hostname=parts.hostname,
                                           assert_hostname=parts.hostname)
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=limits, retries=False)
    with pool:
        resp = pool.urlopen("POST", target, body=body, headers={**headers, "Host": str(host)}, redirect=False,
                            retries=False)
        return resp.status


def _roots() -> str:
    roots = ca_bundle()
    return roots if isinstance(roots, str) else certifi.where()


def send(url: str, secret: str, webhook_id: str, payload: str, timeout: float, allow_private: bool,
         now: datetime | None = None, allowed: Callable[[str], bool] = public_address) -> Outcome:
    """POST the signed CloudEvent to the address checked for it (`_checked_address`). Standard Webhooks headers;
    no redirects followed; any answer but 2xx, a timeout or a connection error is a failure to retry."""
    started = time.monotonic()
    stamp = now or datetime.now(timezone.utc)
    headers = {"Content-Type": "application/cloudevents+json; charset=utf-8", "webhook-id": webhook_id,
               "webhook-timestamp": str(int(stamp.timestamp())),
               "webhook-signature": Signer(secret).sign(webhook_id, stamp, payload),
               "User-Agent": "csp-reconciliation-webhooks/1"}
    try:
        address = _checked_address(url, None if allow_private else allowed)
        status = _post_pinned(url, address, payload.encode(), headers, timeout)
        outcome = Outcome(status, None, _ms(started))
        return outcome if outcome.ok else Outcome(status, f"HTTP {status}", outcome.duration_ms)
    except urllib3.exceptions.TimeoutError:
        return Outcome(None, f"no answer within {timeout:g} s", _ms(started))
    except (urllib3.exceptions.HTTPError, OSError, RefusedAddress) as exc:
        return Outcome(None, f"{type(exc).__name__}: {str(exc)[:200]}", _ms(started))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

