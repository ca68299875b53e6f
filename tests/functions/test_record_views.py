"""File records through the routes carry only the figures of the caller's view (defect 3 of issue 14): a customer
never sees the reseller's price or Microsoft's cost, a reseller never sees Microsoft's; a failed file's reason is a
plain sentence for them, Microsoft's own words for partners. Real Azurite, records stored as the worker stores them."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from shared.app import tenants
from shared.app import file_requests
from shared.core.access import PrincipalIn, Role
from shared.core.models import FileRecord, FileStatus, TenantIn, Totals, Unmapped
from shared.adapters.repositories import utcnow
from tests.conftest import SECRET_SETTING, call, token_for

TENANT = "aaaaaaaa-0000-4000-8000-0000000000c3"
R1 = "1234567"
C1 = "c1c1c1c1-0000-4000-8000-000000000001"
OIDS = {"reseller": "0f000000-0000-4000-8000-0000000000f1", "customer": "0c000000-0000-4000-8000-0000000000c1"}
RAW = ("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client "
       "secret value, not the client secret ID, for a secret added to app '9f1c…'. Trace ID: 4b1e…")
FILES = {"customer": "5e5e5e5e-0000-4000-8000-0000000000c1", "reseller": "5e5e5e5e-0000-4000-8000-0000000000a1",
         "failed": "5e5e5e5e-0000-4000-8000-0000000000f1"}


@pytest.fixture
def world(app_env, ctx) -> dict:
    tenants.put_tenant(ctx, TENANT, TenantIn(display_name="T", client_id=C1,
                                                   client_secret_setting=SECRET_SETTING))
    ctx.principals.put(TENANT, OIDS["reseller"], PrincipalIn(role=Role.RESELLER, reseller_ids=[R1]))
    ctx.principals.put(TENANT, OIDS["customer"], PrincipalIn(role=Role.CUSTOMER, customer_ids=[C1]))
    ctx.reach.record(TENANT, [(R1, C1, "")])
    totals = Totals(cost=Decimal("100.00"), microsoft_total=Decimal("119.00"), reseller=Decimal("110.00"),
                    customer=Decimal("121.00"))
    common = {"tenant_id": TENANT, "invoice_type": "onetime", "invoice_id": "G1", "created_at": utcnow()}
    for name, view, reseller, customer in (("customer", "customer", R1, C1), ("reseller", "reseller", R1, None),
                                           ("failed", "customer", R1, C1)):
        failed = name == "failed"
        ctx.files.create(FileRecord(
            id=FILES[name], view=view, reseller_id=reseller, customer_id=customer, invoice_id=f"G{name}",
            **{k: v for k, v in common.items() if k != "invoice_id"},
            status=FileStatus.FAILED if failed else FileStatus.AVAILABLE,
            totals=None if failed else totals, invoice_total=None if failed else Decimal("119.00"),
            invoice_difference=None if failed else Decimal(0),
            unmapped=Unmapped(customer_lines=1, first_customer_id=C1), error=RAW if failed else None,
            transient=False if failed else None, reason=f"automatic retry 1 of 5 after: {RAW}" if failed else "requested",
            findings={"error": 0, "warning": 1} if not failed else None,
            approved_version=1, approved_by=OIDS["reseller"], approved_at=utcnow()))  # shown to them (approval)
    tokens = {role: token_for(TENANT, role=None, object_id=oid) for role, oid in OIDS.items()}
    tokens["admin"] = token_for(TENANT)
    return tokens


def _get(functions, token: str, name: str) -> dict:
    resp = call(functions, "get_file", "GET", route={"tenantId": TENANT, "fileId": FILES[name]}, token=token)
    assert resp.status_code == 200, resp.get_body()
    return json.loads(resp.get_body())


def _list(functions, token: str) -> dict[str, dict]:
    resp = call(functions, "list_files", "GET", route={"tenantId": TENANT}, token=token)
    assert resp.status_code == 200, resp.get_body()
    return {item["id"]: item for item in json.loads(resp.get_body())["items"]}


MICROSOFT_KEYS = {"invoiceTotal", "invoiceDifference", "findings"}


def test_a_customer_sees_only_its_own_price(world, functions) -> None:
    for record in (_get(functions, world["customer"], "customer"), _list(functions, world["customer"])[FILES["customer"]]):
        assert record["totals"] == {"customer": "121"}  # not the reseller's price, not Microsoft's cost
        assert not MICROSOFT_KEYS & set(record) and "unmapped" not in record


def test_a_reseller_sees_its_figures_but_never_microsofts(world, functions) -> None:
    listed = _list(functions, world["reseller"])
    assert set(listed) == set(FILES.values())
    for name in ("reseller", "customer"):
        for record in (_get(functions, world["reseller"], name), listed[FILES[name]]):
            assert record["totals"] == {"reseller": "110", "customer": "121"}
            assert not MICROSOFT_KEYS & set(record)


def test_partners_see_every_figure_and_microsofts_words(world, functions) -> None:
    record = _get(functions, world["admin"], "customer")
    assert record["totals"] == {"cost": "100", "microsoftTotal": "119", "reseller": "110", "customer": "121"}
    assert record["invoiceTotal"] == "119" and record["findings"] == {"error": 0, "warning": 1}
    assert _get(functions, world["admin"], "failed")["error"] == RAW


@pytest.mark.parametrize("role", ["reseller", "customer"])
def test_a_failure_is_a_plain_sentence_for_resellers_and_customers(world, functions, role) -> None:
    shown = [_get(functions, world[role], "failed"), _list(functions, world[role])[FILES["failed"]]]
    versions = call(functions, "list_file_versions", "GET", route={"tenantId": TENANT, "fileId": FILES["failed"]},
                    token=world[role])
    assert versions.status_code == 200
    shown += json.loads(versions.get_body())["items"]
    for record in shown:
        text = json.dumps(record)
        assert "AADSTS" not in text and "Trace ID" not in text and "client secret" not in text, text
        assert record["error"].startswith("The file could not be made")
