"""Webhook deliveries against a real HTTP receiver that verifies every signature with the `standardwebhooks`
library: each event arrives once by id despite injected 500s and timeouts, with the same webhook-id on every
attempt; an endpoint failing for the whole retry window is disabled; secrets never reach Table Storage in clear;
HTTPS only outside development; a reseller's endpoint hears only of its own views."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from shared.adapters.repositories import utcnow
from shared.app import tenants
from shared.app import events, webhooks
from shared.app.context import AppContext
from shared.core.models import TenantIn
from shared.core.notifications import (DeliveryStatus, Event, EventScope, EventType, WebhookIn, event_id,
                                       retry_delays)
from shared.core.problems import Problem
from tests.conftest import SECRET_SETTING, deliver_all
from tests.webhook_receiver import Receiver, dump

TENANT = "7e7e7e7e-0000-4000-8000-00000000007e"


@pytest.fixture
def receiver():
    r = Receiver(slow_seconds=1.6).start()
    yield r
    r.stop()


def register(ctx: AppContext, receiver: Receiver, name: str, kinds: list[str], reseller_ids=()) -> str:
    from shared.app import file_requests

    tenants.put_tenant(ctx, TENANT, TenantIn(display_name="T", client_id=TENANT,
                                                   client_secret_setting=SECRET_SETTING))
    hook, secret, created = webhooks.put_webhook(ctx, TENANT, name, WebhookIn(url=receiver.url(name), events=kinds),
                                                 "owner", list(reseller_ids))
    assert created and secret.startswith("whsec_")
    receiver.secrets[name] = secret
    return secret


def event(kind: EventType, key: str, reseller: str | None = None) -> Event:
    return Event(id=event_id(TENANT, kind.value, key), type=kind, tenant_id=TENANT, subject=f"things/{key}",
                 data={"key": key}, time=utcnow(), scope=EventScope("reseller" if reseller else None, reseller))


def test_each_event_once_by_id_despite_500s_and_timeouts(webhook_env, ctx, receiver) -> None:
    register(ctx, receiver, "erp", ["invoice.detected", "file.available", "data.revised"])
    receiver.plan[("erp", "invoice.detected")] = ["500", "500", "ok"]
    receiver.plan[("erp", "file.available")] = ["timeout", "ok"]
    sent = [event(EventType.INVOICE_DETECTED, "G1"), event(EventType.FILE_AVAILABLE, "F1"),
            event(EventType.DATA_REVISED, "F1")]
    for e in sent:
        assert events.publish(ctx, e) == 1
    events.publish(ctx, sent[0])  # published again (a redelivered message): the same delivery, queued again
    assert len(ctx.deliveries.list(TENANT, "erp", 50)) == 3
    assert events.publish(ctx, event(EventType.FILE_FAILED, "F9")) == 0  # not subscribed

    deliver_all(ctx, lambda: all(d.status != DeliveryStatus.PENDING for d in ctx.deliveries.list(TENANT, "erp", 50)))

    got = receiver.events("erp")
    assert sorted(e["id"] for e in got) == sorted(e.id for e in sent), dump(receiver)
    assert all(a["verified"] for a in receiver.attempts), dump(receiver)
    assert {a["contentType"] for a in receiver.attempts} == {"application/cloudevents+json; charset=utf-8"}
    for e in sent:  # one webhook-id per event, on every attempt
        ids = {a["webhookId"] for a in receiver.attempts if a["eventId"] == e.id}
        assert ids == {"msg_" + e.id.replace("-", "")}
    answers = [a["answer"] for a in receiver.attempts if a["type"] == "invoice.detected"]
    assert answers == ["500", "500", "ok"]
    detected = next(e for e in got if e["type"] == "invoice.detected")
    assert (detected["specversion"], detected["source"], detected["data"]) == ("1.0", f"/tenants/{TENANT}",
                                                                               {"key": "G1"})
    log = {d.event_type: d for d in ctx.deliveries.list(TENANT, "erp", 50)}
    assert all(d.status == DeliveryStatus.DELIVERED for d in log.values())
    codes = [a["statusCode"] for a in log[EventType.INVOICE_DETECTED].public()["attempts"]]
    assert codes == [500, 500, 200]
    timed_out = log[EventType.FILE_AVAILABLE].public()["attempts"]
    assert timed_out[0]["statusCode"] is None and "no answer" in timed_out[0]["error"]
    assert timed_out[1]["statusCode"] == 200


def test_an_endpoint_failing_for_the_window_is_disabled(webhook_env, monkeypatch, receiver) -> None:
    from shared.adapters.settings import Settings
    from shared.adapters.storage import Storage

    monkeypatch.setenv("WEBHOOK_RETRY_WINDOW_SECONDS", "3")
    settings = Settings()  # type: ignore[call-arg]
    ctx = AppContext(settings, Storage(settings))
    ctx.storage.ensure()
    register(ctx, receiver, "down", ["file.failed"])
    receiver.plan[("down", "file.failed")] = ["500"] * 100
    events.publish(ctx, event(EventType.FILE_FAILED, "F1"))
    events.publish(ctx, event(EventType.FILE_FAILED, "F2"))
    deliver_all(ctx, lambda: all(d.status != DeliveryStatus.PENDING for d in ctx.deliveries.list(TENANT, "down", 50)))

    hook, _ = ctx.webhooks.get(TENANT, "down")
    assert not hook.enabled and hook.disabled_reason.startswith("failing since")
    statuses = sorted(d.status.value for d in ctx.deliveries.list(TENANT, "down", 50))
    assert statuses in (["Abandoned", "Failed"], ["Failed", "Failed"])
    assert events.publish(ctx, event(EventType.FILE_FAILED, "F3")) == 0  # a disabled endpoint gets nothing
    again, secret, created = webhooks.put_webhook(ctx, TENANT, "down", WebhookIn(url=receiver.url("down"),
                                                                               events=["file.failed"]), "owner", [])
    assert again.enabled and secret is None and not created  # a PUT turns it on again, same secret


def test_the_retry_plan_spans_about_a_day() -> None:
    delays = retry_delays(10, 3, 6 * 3600, 86400)
    assert delays[:4] == [10, 30, 90, 270] and max(delays) == 6 * 3600
    assert 86400 <= sum(delays) < 86400 + 6 * 3600


def test_secrets_never_in_table_storage_in_clear(webhook_env, ctx, receiver) -> None:
    secret = register(ctx, receiver, "vault", ["file.available"])
    raw_key = secret.removeprefix("whsec_")
    for name in ("Webhooks", "Secrets", "Deliveries", "Tenants"):
        for entity in ctx.storage.table(name).list_entities():
            text = json.dumps(dict(entity), default=str)
            assert secret not in text and raw_key not in text, name
    hook, _ = ctx.webhooks.get(TENANT, "vault")
    assert "secret" not in hook.public() and ctx.secrets.get(hook.secret_name) == secret
    from shared.adapters.secrets import LocalEncryptedSecrets
    import base64
    import os

    other = LocalEncryptedSecrets(ctx.storage, base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(Exception):  # without the app setting's key the table holds nothing readable
        other.get(hook.secret_name)


def test_https_only_outside_development(webhook_env, ctx, receiver, monkeypatch) -> None:
    register(ctx, receiver, "dev", ["file.available"])  # loopback http in development
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "in-azure")
    for url in ("http://127.0.0.1:9/x", "http://example.com/x", "https://10.1.2.3/x", "https://[::1]/x",
                "https://user:pw@example.com/x"):
        with pytest.raises(Problem) as exc:
            webhooks.put_webhook(ctx, TENANT, "prod", WebhookIn(url=url, events=["file.available"]), "o", [])
        assert exc.value.status == 400 and "url" in json.dumps(exc.value.to_dict()), url


def test_a_resellers_endpoint_hears_only_of_its_own_approved_views(webhook_env, ctx, receiver) -> None:
    register(ctx, receiver, "partner", ["file.approved", "file.available"])
    register(ctx, receiver, "r1", ["file.approved"], reseller_ids=["1234567"])
    with pytest.raises(Problem) as exc:  # a reseller cannot subscribe to what it cannot see
        webhooks.put_webhook(ctx, TENANT, "r1b", WebhookIn(url=receiver.url("r1b"), events=["invoice.detected"]),
                             "o", ["1234567"])
    assert exc.value.status == 400 and "events" in json.dumps(exc.value.to_dict())
    mine, theirs = event(EventType.FILE_APPROVED, "A", "1234567"), event(EventType.FILE_APPROVED, "B", "7654321")
    partner_only = event(EventType.FILE_AVAILABLE, "A", "1234567")
    for e in (mine, theirs, partner_only):
        events.publish(ctx, e)
    deliver_all(ctx, lambda: len(receiver.events("partner")) == 3 and len(receiver.events("r1")) == 1)
    assert [e["id"] for e in receiver.events("r1")] == [mine.id]


def test_without_a_secret_store_registering_is_refused(ctx, monkeypatch) -> None:
    from shared.app import file_requests

    monkeypatch.delenv("WEBHOOK_SECRETS_KEY", raising=False)
    monkeypatch.delenv("WEBHOOK_KEY_VAULT_URL", raising=False)
    tenants.put_tenant(ctx, TENANT, TenantIn(display_name="T", client_id=TENANT,
                                                   client_secret_setting=SECRET_SETTING))
    with pytest.raises(Problem) as exc:
        webhooks.put_webhook(ctx, TENANT, "x", WebhookIn(url="https://example.com/x", events=["file.available"]),
                             "o", [])
    assert exc.value.status == 503 and ctx.webhooks.list(TENANT) == []


def test_the_delivery_log_keeps_a_month(webhook_env, ctx, receiver) -> None:
    from datetime import timedelta

    register(ctx, receiver, "log", ["file.available"])
    for key in ("old", "new", "waiting"):
        events.publish(ctx, event(EventType.FILE_AVAILABLE, key))
    items = {d.event_id: d for d in ctx.deliveries.list(TENANT, "log", 50)}
    old, new = items[event(EventType.FILE_AVAILABLE, "old").id], items[event(EventType.FILE_AVAILABLE, "new").id]
    for d, age in ((old, 31), (new, 29)):
        loaded, etag = ctx.deliveries.get(TENANT, "log", d.id)
        loaded.status, loaded.completed_at = DeliveryStatus.DELIVERED, utcnow() - timedelta(days=age)
        ctx.deliveries.replace(loaded, etag)
    assert webhooks.purge_delivery_log(ctx) == 1
    left = {d.event_id for d in ctx.deliveries.list(TENANT, "log", 50)}
    assert left == {new.event_id, event(EventType.FILE_AVAILABLE, "waiting").id}


def test_a_poisoned_delivery_message_counts_as_a_failed_attempt_and_is_retried(webhook_env, ctx, receiver) -> None:
    """The queue gave up on a delivery's message (the worker failed on it five times): the attempt is logged as
    failed with the reason, the next attempt is queued by the retry plan, and it is delivered once."""
    register(ctx, receiver, "poisoned", ["file.available"])
    sent = event(EventType.FILE_AVAILABLE, "F7")
    assert events.publish(ctx, sent) == 1
    queue = ctx.storage.queue(ctx.settings.webhook_queue)
    body = next(iter(queue.receive_messages(max_messages=1, visibility_timeout=300))).content

    webhooks.gave_up(ctx, body)
    (delivery,) = ctx.deliveries.list(TENANT, "poisoned", 50)
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempt_count == 1
    (attempt,) = delivery.public()["attempts"]
    assert attempt["statusCode"] is None and "failed on this attempt repeatedly" in attempt["error"]
    webhooks.gave_up(ctx, body)  # the same poisoned message again (a stale copy): nothing more
    assert ctx.deliveries.list(TENANT, "poisoned", 50)[0].attempt_count == 1

    deliver_all(ctx, lambda: all(d.status != DeliveryStatus.PENDING
                                 for d in ctx.deliveries.list(TENANT, "poisoned", 50)), timeout=90)
    (delivery,) = ctx.deliveries.list(TENANT, "poisoned", 50)
    assert delivery.status == DeliveryStatus.DELIVERED
    assert [e["id"] for e in receiver.events("poisoned")] == [sent.id]
