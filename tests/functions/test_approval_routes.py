"""Approval through the routes, for a customer: nothing of an unapproved file (no Microsoft call needed)."""

from __future__ import annotations

from tests.app.test_approval import version


def test_a_customer_sees_nothing_of_an_unapproved_file(webhook_env, ctx, functions) -> None:
    import json

    from shared.app import file_requests, tenants
    from shared.core.access import PrincipalIn, Role
    from shared.core.models import TenantIn
    from tests.conftest import SECRET_SETTING, call, token_for

    tenant, customer, oid = ("7a7a7a7a-0000-4000-8000-00000000007a", "c1c1c1c1-0000-4000-8000-000000000001",
                             "0c000000-0000-4000-8000-0000000000c1")
    tenants.put_tenant(ctx, tenant, TenantIn(display_name="T", client_id=tenant,
                                                   client_secret_setting=SECRET_SETTING))
    ctx.principals.put(tenant, oid, PrincipalIn(role=Role.CUSTOMER, customer_ids=[customer]))
    record = version(2, view="customer", customer_id=customer, approved_version=None)
    record.id, record.tenant_id = "f1f1f1f1-0000-4000-8000-0000000000f1", tenant
    ctx.files.create(record)
    token = token_for(tenant, role=None, object_id=oid)
    route = {"tenantId": tenant, "fileId": record.id}
    listed = call(functions, "list_files", "GET", route={"tenantId": tenant}, token=token)
    assert json.loads(listed.get_body())["items"] == []
    seen = json.loads(call(functions, "get_file", "GET", route=route, token=token).get_body())
    assert seen["status"] == "AwaitingApproval" and "totals" not in seen
    assert call(functions, "download", "GET", route=route, token=token).status_code == 409
    assert call(functions, "list_file_versions", "GET", route=route, token=token).get_body() == b'{"items": []}'
    charges = call(functions, "get_charges", "GET", route={"tenantId": tenant, "invoiceId": "G1"}, token=token,
                   params={"type": "onetime", "view": "customer", "customerId": customer})
    assert charges.status_code == 409
    assert call(functions, "approve_file_version", "POST", route={**route, "version": "2"},
                token=token).status_code == 403
