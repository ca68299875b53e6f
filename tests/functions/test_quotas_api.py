"""Quotas on file requests through the real routes (Azurite; the simulator for the timer): a reseller or customer
gets 429 problem+json with Retry-After past FILE_REQUESTS_PER_HOUR; partner admins, their bulk regeneration and
the timer's own requests are never counted."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.app import tenants
from shared.app import automation, file_requests
from shared.core.access import PrincipalIn, Role
from shared.core.models import AutomationIn, FileRecord, FileStatus, TenantIn
from shared.adapters.repositories import utcnow
from tests.conftest import SECRET_SETTING, call, problem, token_for

R1 = "1234567"
C1 = "c1c1c1c1-0000-4000-8000-000000000001"
RESELLER_OID = "0f000000-0000-4000-8000-0000000000f1"
CUSTOMER_OID = "0c000000-0000-4000-8000-0000000000c1"
LIMIT = 3


@pytest.fixture
def world(sim_env, ctx, sim, monkeypatch) -> dict:
    monkeypatch.setenv("FILE_REQUESTS_PER_HOUR", str(LIMIT))
    from shared.adapters.settings import reset_settings
    from shared.app.context import reset_context

    reset_settings()
    reset_context()
    tenant = sim.tenant_id
    tenants.put_tenant(ctx, tenant, TenantIn(display_name="Sim", client_id=sim.client_id,
                                                   client_secret_setting=SECRET_SETTING, billing_anniversary_day=12))
    ctx.principals.put(tenant, RESELLER_OID, PrincipalIn(role=Role.RESELLER, reseller_ids=[R1]))
    ctx.principals.put(tenant, CUSTOMER_OID, PrincipalIn(role=Role.CUSTOMER, customer_ids=[C1]))
    return {"tenant": tenant, "reseller": token_for(tenant, role=None, object_id=RESELLER_OID),
            "customer": token_for(tenant, role=None, object_id=CUSTOMER_OID), "admin": token_for(tenant)}


def _request(functions, world, token: str, n: int, **body) -> object:
    return call(functions, "request_file", "POST", route={"tenantId": world["tenant"]}, token=token,
                body={"invoiceType": "onetime", "invoiceId": f"G{n:09d}", **body})


def test_a_reseller_and_a_customer_are_held_to_the_hourly_quota(world, functions, ctx) -> None:
    reseller = {"view": "reseller", "resellerId": R1}
    made = [_request(functions, world, world["reseller"], n, **reseller) for n in range(LIMIT - 1)]
    assert [r.status_code for r in made] == [202] * (LIMIT - 1)
    # a regeneration queues a file too: it counts
    record = FileRecord(id="5e5e5e5e-0000-4000-8000-000000000001", tenant_id=world["tenant"], invoice_type="onetime",
                        invoice_id="G1", view="reseller", reseller_id=R1, status=FileStatus.AVAILABLE,
                        created_at=utcnow())
    ctx.files.create(record)
    again = call(functions, "regenerate", "POST", route={"tenantId": world["tenant"], "fileId": record.id},
                 token=world["reseller"])
    assert again.status_code == 202
    refused = _request(functions, world, world["reseller"], 99, **reseller)
    assert refused.status_code == 429
    assert problem(refused)["status"] == 429 and f"At most {LIMIT} file requests" in problem(refused)["detail"]
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 3600
    settled, etag = ctx.files.get(world["tenant"], record.id)
    settled.status = FileStatus.AVAILABLE  # a regeneration it may make (a Queued file answers 409, for free)
    ctx.files.replace(settled, etag)
    assert call(functions, "regenerate", "POST", route={"tenantId": world["tenant"], "fileId": record.id},
                token=world["reseller"]).status_code == 429
    # one principal's quota is its own: the customer still has all of its own
    customer = {"view": "customer", "customerId": C1}
    assert [_request(functions, world, world["customer"], n, **customer).status_code
            for n in range(LIMIT + 1)] == [202] * LIMIT + [429]


def test_partner_admins_their_bulk_regeneration_and_the_timer_are_not_counted(world, functions, ctx, sim) -> None:
    reseller = {"view": "reseller", "resellerId": R1}
    for n in range(LIMIT):
        assert _request(functions, world, world["reseller"], n, **reseller).status_code == 202
    assert _request(functions, world, world["reseller"], 50, **reseller).status_code == 429

    statuses = [_request(functions, world, world["admin"], n).status_code for n in range(LIMIT * 2)]
    assert statuses == [202] * (LIMIT * 2)
    bulk = call(functions, "regenerate_files", "POST", route={"tenantId": world["tenant"]}, token=world["admin"],
                body={"invoiceType": "onetime"})
    assert bulk.status_code == 202, bulk.get_body()

    # the timer's own work: a new invoice's files are queued whatever any principal's quota says
    automation.put_automation(ctx, world["tenant"], AutomationIn(enabled=True, start_from="2026-11-01"))
    invoice = str(sim.faults.publish_next_invoice()["id"])
    automation.poll(ctx, datetime(2026, 12, 9, 6, 0, tzinfo=UTC))
    assert ctx.files.list(world["tenant"], invoice_id=invoice), "the poller queued the new invoice's files"


def test_refused_and_repeated_requests_cost_nothing(world, functions, ctx) -> None:
    """Only a request that makes new work counts: a 400, the same request again (200, the same file) and a
    regeneration refused with 409 leave the quota as it was."""
    reseller = {"view": "reseller", "resellerId": R1}
    for _ in range(LIMIT + 2):  # another reseller's lines: refused before any work
        refused = _request(functions, world, world["reseller"], 1, view="reseller", resellerId="7654321")
        assert refused.status_code in (400, 403), refused.get_body()
        bad = _request(functions, world, world["reseller"], 1, view="partner")  # a view it may not ask for
        assert bad.status_code in (400, 403), bad.get_body()
    first = _request(functions, world, world["reseller"], 1, **reseller)
    assert first.status_code == 202
    file_id = json.loads(first.get_body())["id"]
    for _ in range(LIMIT + 2):
        assert _request(functions, world, world["reseller"], 1, **reseller).status_code == 200  # the same file
        queued = call(functions, "regenerate", "POST", route={"tenantId": world["tenant"], "fileId": file_id},
                      token=world["reseller"])
        assert queued.status_code == 409  # still Queued: nothing to regenerate yet
    # one request spent so far: LIMIT - 1 more new files, then 429
    statuses = [_request(functions, world, world["reseller"], n, **reseller).status_code for n in range(2, LIMIT + 2)]
    assert statuses == [202] * (LIMIT - 1) + [429]
