"""Webhook endpoints (the API's use cases) and the delivery worker.

Delivery, at least once: each queue message names a delivery and the attempt it is for. The worker claims the
attempt with an ETag-guarded write (a lease), sends the signed CloudEvent (the same `webhook-id` every time),
then either marks it Delivered or queues the next attempt with a visibility delay from the retry plan
(exponential, about a day in all) *before* recording the failure, so a crash anywhere repeats an attempt rather
than losing one. An endpoint failing for the whole retry window is disabled; a `PUT` turns it on again.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets as random
import uuid
from datetime import timedelta

from pydantic import BaseModel, ValidationError

from shared.adapters.repositories import Conflict, utcnow
from shared.adapters.secrets import SecretsNotConfigured
from shared.adapters.webhook_store import Outcome, send
from shared.app import tenants
from shared.app.context import AppContext
from shared.app.events import enqueue_delivery
from shared.core.notifications import (
    ENDPOINT_ID_PATTERN,
    MAX_ATTEMPTS_KEPT,
    Attempt,
    Delivery,
    DeliveryStatus,
    Webhook,
    WebhookIn,
    allowed_events,
    check_url,
    retry_delays,
)
from shared.core.problems import Problem, bad_request, conflict, not_found

log = logging.getLogger(__name__)

LEASE_GRACE = timedelta(seconds=30)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(random.token_bytes(32)).decode()


def check_endpoint_id(endpoint_id: str) -> str:
    if not re.fullmatch(ENDPOINT_ID_PATTERN, endpoint_id or ""):
        raise bad_request("The webhook id must be 1-64 letters, digits, '-' or '_', starting with a letter or digit.",
                          "webhookId")
    return endpoint_id


def get_webhook(ctx: AppContext, tenant_id: str, endpoint_id: str) -> tuple[Webhook, str]:
    tenants.require_tenant(ctx, tenant_id)
    loaded = ctx.webhooks.get(tenant_id, check_endpoint_id(endpoint_id))
    if loaded is None:
        raise not_found(f"Webhook {endpoint_id}")
    return loaded


def list_webhooks(ctx: AppContext, tenant_id: str) -> list[Webhook]:
    """The tenant's endpoints (the edge keeps those the caller manages)."""
    return ctx.webhooks.list(tenant_id)


def find_webhook(ctx: AppContext, tenant_id: str, endpoint_id: str) -> Webhook | None:
    loaded = ctx.webhooks.get(tenant_id, check_endpoint_id(endpoint_id))
    return loaded[0] if loaded else None


def put_webhook(ctx: AppContext, tenant_id: str, endpoint_id: str, body: WebhookIn, owner: str,
                reseller_ids: list[str]) -> tuple[Webhook, str | None, bool]:
    """Create (a new secret, returned this once) or update (URL, events, description; re-enabled) an endpoint.
    `reseller_ids`: the registering reseller principal's ids (empty for the partner); kept from creation."""
    tenant = tenants.require_tenant(ctx, tenant_id)
    check_endpoint_id(endpoint_id)
    try:
        check_url(body.url, allow_loopback_http=not ctx.settings.in_azure)
    except ValueError as exc:
        raise bad_request(f"url: {exc}.", "url")
    loaded = ctx.webhooks.get(tenant.tenant_id, endpoint_id)
    scope = loaded[0].reseller_ids if loaded else reseller_ids
    refused = [e.value for e in body.events if e not in allowed_events(scope)]
    if refused:
        raise bad_request(f"A reseller's endpoint receives only what the reseller can see "
                          f"({', '.join(sorted(e.value for e in allowed_events(scope)))}); not {', '.join(refused)}.",
                          "events")
    now = utcnow()
    if loaded is not None:
        hook, etag = loaded
        hook.url, hook.events, hook.description = body.url, body.events, body.description
        hook.enabled, hook.disabled_reason, hook.failing_since, hook.updated_at = True, None, None, now
        try:
            ctx.webhooks.replace(hook, etag)
        except Conflict:
            raise conflict("The webhook changed meanwhile; read it and try again.")
        return hook, None, False
    secret = new_secret()
    hook = Webhook(tenant_id=tenant.tenant_id, id=endpoint_id, url=body.url, events=body.events,
                   description=body.description, reseller_ids=sorted(reseller_ids), owner=owner,
                   secret_name=f"whsec-{uuid.uuid4().hex}", created_at=now, updated_at=now)
    try:
        ctx.secrets.put(hook.secret_name, secret)
    except SecretsNotConfigured as exc:
        raise Problem(503, "Webhooks are not configured", str(exc))
    try:
        ctx.webhooks.create(hook)
    except Conflict:
        ctx.secrets.delete(hook.secret_name)
        raise conflict(f"Webhook {endpoint_id} was created meanwhile; read it and try again.")
    return hook, secret, True


def delete_webhook(ctx: AppContext, hook: Webhook) -> None:
    ctx.webhooks.delete(hook.tenant_id, hook.id)
    try:
        ctx.secrets.delete(hook.secret_name)
    except Exception:  # the endpoint is gone; an orphaned secret is logged, never shown
        log.warning("could not delete the secret of webhook %s", hook.id, extra={"tenant": hook.tenant_id})
    ctx.deliveries.delete_all(hook.tenant_id, hook.id)


def list_deliveries(ctx: AppContext, hook: Webhook, limit: int) -> list[Delivery]:
    return ctx.deliveries.list(hook.tenant_id, hook.id, limit)


DELIVERY_LOG_DAYS = 30


def purge_delivery_log(ctx: AppContext) -> int:
    """Settled deliveries are kept DELIVERY_LOG_DAYS for the log, then deleted (run by the retention timer)."""
    return ctx.deliveries.purge_settled(utcnow() - timedelta(days=DELIVERY_LOG_DAYS))


# ---- the delivery worker ---------------------------------------------------------------------------------------

class DeliveryMessage(BaseModel):
    tenantId: str
    endpointId: str
    deliveryId: str
    attempt: int


def _pending(ctx: AppContext, body: str) -> tuple[DeliveryMessage, Delivery, str] | None:
    """The message's delivery and its ETag while this attempt is still to be made; None for a message that is not
    ours, a delivery settled or gone, or a stale copy of an earlier attempt's message."""
    try:
        msg = DeliveryMessage.model_validate_json(body)
    except ValidationError:
        log.error("dropping a delivery message that is not ours: %.200s", body)
        return None
    loaded = ctx.deliveries.get(msg.tenantId, msg.endpointId, msg.deliveryId)
    if loaded is None:
        return None
    delivery, etag = loaded
    if delivery.status != DeliveryStatus.PENDING or msg.attempt < delivery.attempt_count:
        return None
    return msg, delivery, etag


def deliver(ctx: AppContext, body: str) -> None:
    """One attempt of one delivery (a queue message). Never raises for the endpoint's failures: they are retried
    through the queue's visibility delays, not the host's retries."""
    pending = _pending(ctx, body)
    if pending is None:
        return
    msg, delivery, etag = pending
    now = utcnow()
    if delivery.lease_until and delivery.lease_until > now:  # another copy is sending this attempt right now
        enqueue_delivery(ctx, msg.tenantId, msg.endpointId, msg.deliveryId, msg.attempt,
                         int((delivery.lease_until - now).total_seconds()) + 1)
        return
    hook_loaded = ctx.webhooks.get(msg.tenantId, msg.endpointId)
    if hook_loaded is None or not hook_loaded[0].enabled:
        _settle(ctx, delivery, etag, DeliveryStatus.ABANDONED)
        return
    hook = hook_loaded[0]
    settings = ctx.settings
    delivery.lease_until = now + timedelta(seconds=settings.webhook_timeout_seconds) + LEASE_GRACE
    try:
        etag = ctx.deliveries.replace(delivery, etag)
    except Conflict:
        return  # another copy claimed this attempt
    try:
        secret = ctx.secrets.get(hook.secret_name)
    except Exception:  # a key that cannot decrypt it (development: another run's key), Key Vault refusing
        log.exception("could not read the secret of webhook %s", hook.id, extra={"tenant": hook.tenant_id})
        secret = None
    if secret is None:
        log.error("webhook %s has no secret; abandoning its deliveries", hook.id, extra={"tenant": hook.tenant_id})
        _settle(ctx, delivery, etag, DeliveryStatus.ABANDONED)
        return
    outcome = send(hook.url, secret, delivery.id, delivery.payload, settings.webhook_timeout_seconds,
                   allow_private=not settings.in_azure)
    _after_attempt(ctx, msg, delivery, etag, hook, outcome)


def gave_up(ctx: AppContext, body: str) -> None:
    """A delivery message the queue gave up on (our worker failed on it `maxDequeueCount` times: storage, the
    secret store, a defect). The attempt counts as failed, with that reason in the delivery log, and the retry plan
    goes on from there, so the delivery neither stays Pending for ever nor escapes the endpoint's retry window."""
    pending = _pending(ctx, body)
    if pending is None:
        return
    msg, delivery, etag = pending
    hook_loaded = ctx.webhooks.get(msg.tenantId, msg.endpointId)
    if hook_loaded is None or not hook_loaded[0].enabled:
        _settle(ctx, delivery, etag, DeliveryStatus.ABANDONED)
        return
    log.error("delivery %s of webhook %s: the worker failed on it repeatedly; counted as a failed attempt",
              delivery.id, msg.endpointId, extra={"tenant": msg.tenantId})
    _after_attempt(ctx, msg, delivery, etag, hook_loaded[0],
                   Outcome(None, "the delivery worker failed on this attempt repeatedly (see the logs)", 0))


def _after_attempt(ctx: AppContext, msg: DeliveryMessage, delivery: Delivery, etag: str, hook: Webhook,
                   outcome: Outcome) -> None:
    """Log the attempt on the delivery; settle it, or queue the next attempt by the retry plan (disabling an
    endpoint that has failed for the whole window)."""
    settings = ctx.settings
    done = utcnow()
    items = [*(delivery.attempts or {}).get("items", []),
             Attempt(at=done, status_code=outcome.status_code, error=outcome.error,
                     duration_ms=outcome.duration_ms).model_dump(mode="json", by_alias=True)]
    delivery.attempts = {"items": items[-MAX_ATTEMPTS_KEPT:]}
    delivery.attempt_count += 1
    delivery.lease_until = None
    if outcome.ok:
        _settle(ctx, delivery, etag, DeliveryStatus.DELIVERED)
        if hook.failing_since is not None:
            _update_hook(ctx, hook, lambda h: setattr(h, "failing_since", None) or True)
        return
    failing_since = hook.failing_since or done
    if hook.failing_since is None:
        _update_hook(ctx, hook, lambda h: h.failing_since is None and (setattr(h, "failing_since", done) or True))
    delays = retry_delays(settings.webhook_retry_base_seconds, settings.webhook_retry_factor,
                          settings.webhook_retry_cap_seconds, settings.webhook_retry_window_seconds)
    window = timedelta(seconds=settings.webhook_retry_window_seconds)
    if done - failing_since >= window:
        _settle(ctx, delivery, etag, DeliveryStatus.FAILED)
        reason = f"failing since {failing_since.isoformat()} (last: {outcome.error})"
        _update_hook(ctx, hook, lambda h: h.enabled and (_disable(h, reason) or True))
        log.warning("webhook %s disabled: %s", hook.id, reason, extra={"tenant": hook.tenant_id})
        return
    if delivery.attempt_count > len(delays):
        _settle(ctx, delivery, etag, DeliveryStatus.FAILED)
        return
    delay = delays[delivery.attempt_count - 1]
    delivery.next_attempt_at = done + timedelta(seconds=delay)
    enqueue_delivery(ctx, msg.tenantId, msg.endpointId, msg.deliveryId, delivery.attempt_count, delay)
    try:
        ctx.deliveries.replace(delivery, etag)
    except Conflict:
        pass  # cannot happen while we hold the lease; the queued attempt proceeds either way


def _disable(hook: Webhook, reason: str) -> None:
    hook.enabled, hook.disabled_reason, hook.updated_at = False, reason, utcnow()


def _settle(ctx: AppContext, delivery: Delivery, etag: str, status: DeliveryStatus) -> None:
    delivery.status, delivery.completed_at, delivery.lease_until = status, utcnow(), None
    delivery.next_attempt_at = None
    try:
        ctx.deliveries.replace(delivery, etag)
    except Conflict:
        log.info("delivery %s changed meanwhile", delivery.id)


def _update_hook(ctx: AppContext, hook: Webhook, change) -> None:
    """Read, change, write back ETag-guarded (a few tries); `change` returns False when there is nothing to do."""
    for _ in range(3):
        loaded = ctx.webhooks.get(hook.tenant_id, hook.id)
        if loaded is None:
            return
        fresh, etag = loaded
        if not change(fresh):
            return
        try:
            ctx.webhooks.replace(fresh, etag)
            return
        except Conflict:
            continue
