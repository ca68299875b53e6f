"""Webhook notifications, the pure part: event types, endpoints, which endpoint gets which event, the retry plan.

An event is about something in a tenant; `EventScope` says whose lines it concerns, so a reseller's endpoint
(registered by a reseller principal, `resellerIds` set) receives only events about its own views, and only the
ones that mean "you can see something new": `file.approved` (and the consumption alerts of its customers).
Everything else (a file made but not yet approved, an invoice, a late period, a revision) is the partner's.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, StringConstraints, field_validator
from pydantic.alias_generators import to_camel

from shared.core.models import ApiModel, JsonObject

ENDPOINT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
EVENT_NAMESPACE = uuid.UUID("0b7c3f59-2a8e-4c57-9f0e-51b1c7e3d0a4")
MAX_URL_LENGTH = 2000


class EventType(StrEnum):
    FILE_AVAILABLE = "file.available"
    FILE_FAILED = "file.failed"
    FILE_NEEDS_REVIEW = "file.needsReview"
    FILE_APPROVED = "file.approved"
    INVOICE_DETECTED = "invoice.detected"
    INVOICE_LATE = "invoice.late"
    DATA_REVISED = "data.revised"
    USAGE_BUDGET_EXCEEDED = "usage.budgetExceeded"
    USAGE_SPIKE = "usage.spike"


# What a reseller's endpoint may subscribe to: what it can see once it happens.
RESELLER_EVENTS = frozenset({EventType.FILE_APPROVED, EventType.USAGE_BUDGET_EXCEEDED, EventType.USAGE_SPIKE})


class DeliveryStatus(StrEnum):
    PENDING = "Pending"  # queued, or waiting for its next attempt
    DELIVERED = "Delivered"  # a 2xx answer
    FAILED = "Failed"  # every attempt of the retry plan failed
    ABANDONED = "Abandoned"  # the endpoint was disabled or deleted meanwhile


def event_id(*parts: object) -> str:
    """Deterministic: the same happening (a file version made, an invoice seen, an eTag) is the same event, so
    publishing it again (a redelivered message, a racing poller) delivers nothing new."""
    return str(uuid.uuid5(EVENT_NAMESPACE, "|".join(str(p) for p in parts)))


@dataclass(frozen=True)
class EventScope:
    """Whose lines an event is about: the file's view and ids (None for tenant-wide events)."""

    view: str | None = None
    reseller_id: str | None = None
    customer_id: str | None = None


@dataclass(frozen=True)
class Event:
    id: str
    type: EventType
    tenant_id: str
    subject: str
    data: dict
    time: datetime
    scope: EventScope = EventScope()


# ---- endpoints -------------------------------------------------------------------------------------------------

def check_url(url: str, allow_loopback_http: bool) -> str:
    """HTTPS only, no credentials in the URL, no loopback / private / link-local literal addresses; plain HTTP to a
    loopback address only in development (`allow_loopback_http`). Raises ValueError with a sentence for the API."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ValueError("the URL must not carry credentials")
    if not parts.hostname:
        raise ValueError("the URL needs a host")
    host = parts.hostname
    loopback = host == "localhost" or _is_ip(host, lambda ip: ip.is_loopback)
    if parts.scheme == "http" and loopback and allow_loopback_http:
        return url
    if parts.scheme != "https":
        raise ValueError("the URL must be https" + (" (plain http only to a loopback address in development)"
                                                    if allow_loopback_http else ""))
    if loopback or _is_ip(host, lambda ip: ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_multicast
                          or ip.is_unspecified):
        if not (loopback and allow_loopback_http):
            raise ValueError("the URL must not point at a loopback, private or link-local address")
    return url


def _is_ip(host: str, test) -> bool:
    try:
        return bool(test(ipaddress.ip_address(host.strip("[]"))))
    except ValueError:
        return False


def public_address(address: str) -> bool:
    """Whether a resolved address may be called outside development (checked again at delivery time: a name may
    resolve to a private address)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast
                or ip.is_unspecified)


class WebhookIn(ApiModel):
    """`PUT /tenants/{t}/webhooks/{id}`: where to send which events. The URL is checked again by the route
    (HTTPS outside development)."""

    url: Annotated[str, StringConstraints(min_length=8, max_length=MAX_URL_LENGTH)]
    events: list[EventType] = Field(min_length=1, max_length=len(EventType))
    description: Annotated[str, StringConstraints(max_length=500)] | None = None

    @field_validator("events")
    @classmethod
    def _distinct(cls, value: list[EventType]) -> list[EventType]:
        return sorted(set(value), key=lambda e: e.value)


class Webhook(ApiModel):
    """A stored endpoint. `secret_name` names the secret in the secret store (never the secret itself)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    tenant_id: str
    id: str
    url: str
    events: list[EventType]
    description: str | None = None
    reseller_ids: list[str] = []  # set when a reseller principal registered it: only its own views' events
    owner: str | None = None  # object id of the principal that registered it
    secret_name: str
    enabled: bool = True
    disabled_reason: str | None = None
    failing_since: datetime | None = None
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude={"secret_name"})

    def wants(self, event: Event) -> bool:
        if not self.enabled or event.type not in self.events:
            return False
        if not self.reseller_ids:
            return True  # the partner's endpoint: every event of the tenant
        return event.type in allowed_events(self.reseller_ids) and event.scope.reseller_id in self.reseller_ids


def allowed_events(reseller_ids: list[str]) -> frozenset[EventType]:
    """What an endpoint may subscribe to: everything for the partner, what it can see for a reseller."""
    return RESELLER_EVENTS if reseller_ids else frozenset(EventType)


# ---- deliveries ------------------------------------------------------------------------------------------------

class Attempt(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    at: datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: int


class Delivery(ApiModel):
    """One event to one endpoint: the same `webhook-id` on every attempt. The payload is the signed body."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    tenant_id: str
    endpoint_id: str
    id: str  # the webhook-id: "msg_" + the event id
    event_id: str
    event_type: EventType
    payload: str  # the CloudEvent's JSON text exactly as signed and sent
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: JsonObject | None = None  # {"items": [Attempt...], "count": n}: the last MAX_ATTEMPTS_KEPT kept
    attempt_count: int = 0
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    created_at: datetime
    completed_at: datetime | None = None

    def public(self) -> dict:
        data = self.model_dump(mode="json", by_alias=True, exclude={"payload", "lease_until", "attempts"})
        data["attempts"] = (self.attempts or {}).get("items", [])
        return data


MAX_ATTEMPTS_KEPT = 20


def retry_delays(base: float, factor: float, cap: float, window: float) -> list[int]:
    """Seconds to wait before each retry: base × factor^n, capped, until the waits add up to `window` (about a
    day). Whole seconds (a queue message's visibility delay), at least one."""
    delays: list[int] = []
    total, n = 0, 0
    while total < window:
        delay = max(1, int(min(cap, base * factor ** n)))
        delays.append(delay)
        total += delay
        n += 1
    return delays
