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
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.exceptions import ResourceNotFoundError
from standardwebhooks.webhooks import Webhook as Signer

from shared.adapters.repositories import GuardedTable, from_entity, to_entity
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


def _check_resolves_public(url: str) -> None:
    parts = urlsplit(url)
    infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    for info in infos:
        if not public_address(str(info[4][0])):
            raise RefusedAddress(f"{parts.hostname} resolves to a non-public address")


def send(url: str, secret: str, webhook_id: str, payload: str, timeout: float, allow_private: bool,
         session: requests.Session | None = None, now: datetime | None = None) -> Outcome:
    """POST the signed CloudEvent. Standard Webhooks headers; no redirects followed; any answer but 2xx, a timeout
    or a connection error is a failure to retry."""
    started = time.monotonic()
    stamp = now or datetime.now(timezone.utc)
    headers = {"Content-Type": "application/cloudevents+json; charset=utf-8", "webhook-id": webhook_id,
               "webhook-timestamp": str(int(stamp.timestamp())),
               "webhook-signature": Signer(secret).sign(webhook_id, stamp, payload),
               "User-Agent": "csp-reconciliation-webhooks/1"}
    try:
        if not allow_private:
            _check_resolves_public(url)
        resp = (session or requests).post(url, data=payload.encode(), headers=headers, timeout=timeout,
                                          allow_redirects=False)
        outcome = Outcome(resp.status_code, None, _ms(started))
        return outcome if outcome.ok else Outcome(resp.status_code, f"HTTP {resp.status_code}", outcome.duration_ms)
    except requests.Timeout:
        return Outcome(None, f"no answer within {timeout:g} s", _ms(started))
    except (requests.RequestException, OSError, RefusedAddress) as exc:
        return Outcome(None, f"{type(exc).__name__}: {str(exc)[:200]}", _ms(started))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

