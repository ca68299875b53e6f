"""Download links: issued only after the access check, read-only for one blob, short-lived, each one audited (who,
when, which file and version, from where); and no log line or response carries a secret, a SAS signature or a
bearer token, across a whole generation and download."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.adapters.audit import client_address
from shared.core.models import FileStatus
from shared.core.access import PrincipalIn, Role
from tests.conftest import ADMIN_OID, call, token_for
from tests.app.test_generation import invoice_id, run_queue

READER = "0e000000-0000-4000-8000-0000000000e1"
SECRET_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.|[?&]sig=(?!REDACTED)|Bearer\s+[A-Za-z0-9_-]{20,}", re.I)


def test_links_are_audited_and_nothing_secret_is_logged(sim_env, ctx, sim, functions, caplog, capsys) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = sim.tenant_id
    admin = token_for(tenant)
    body = {"displayName": "Sim", "clientId": sim.client_id, "clientSecretSetting": "PC_SECRET_TEST"}
    responses = [call(functions, "put_tenant", "PUT", route={"tenantId": tenant}, body=body, token=admin)]
    resp = call(functions, "request_file", "POST", route={"tenantId": tenant}, token=admin,
                body={"invoiceType": "onetime", "invoiceId": invoice_id(sim)})
    responses.append(resp)
    file_id = json.loads(resp.get_body())["id"]
    run_queue(ctx)
    record, _ = ctx.files.get(tenant, file_id)
    assert record.status == FileStatus.AVAILABLE, record.error

    route = {"tenantId": tenant, "fileId": file_id}
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    links = [
        call(functions, "download", "GET", route=route, token=admin, headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.4:50123"}),
        call(functions, "download_findings", "GET", route=route, token=admin, headers={"X-Forwarded-For": "garbage<script>"}),
        call(functions, "download_file_version", "GET", route={**route, "version": "1"}, token=admin,
             headers={"CLIENT-IP": "[2001:db8::1]:4711"}),
    ]
    responses += links + [call(functions, "get_tenant", "GET", route={"tenantId": tenant}, token=admin),
                          call(functions, "get_file", "GET", route=route, token=admin)]
    for link in links:
        assert link.status_code == 302, link.get_body()
        url = urlsplit(link.headers["Location"])
        q = parse_qs(url.query)
        assert q["sp"] == ["r"] and q["sr"] == ["b"]  # read-only, one blob
        expiry = datetime.fromisoformat(q["se"][0].replace("Z", "+00:00"))
        assert expiry - datetime.now(timezone.utc) <= timedelta(minutes=15, seconds=5)
        assert link.headers["Cache-Control"] == "no-store"

    # the audit trail, for a partner admin; a date range is honoured
    audit = call(functions, "list_audit", "GET", route={"tenantId": tenant}, token=admin,
                 params={"from": before.isoformat()})
    entries = json.loads(audit.get_body())["items"]
    assert [(e["kind"], e["version"], e["clientAddress"]) for e in entries] == [
        ("file", 1, "198.51.100.4"), ("findings", 1, None), ("file", 1, "2001:db8::1")]
    assert [e.get("forwardedFor") for e in entries] == ["203.0.113.7, 198.51.100.4", None, None]
    assert all(e["objectId"] == ADMIN_OID and e["fileId"] == file_id and e["callerTenantId"] == tenant
               for e in entries)
    soon = datetime.now(timezone.utc) + timedelta(minutes=1)
    later = call(functions, "list_audit", "GET", route={"tenantId": tenant}, token=admin,
                 params={"from": soon.isoformat(), "to": (soon + timedelta(days=1)).date().isoformat()})
    assert json.loads(later.get_body())["items"] == []
    backwards = call(functions, "list_audit", "GET", route={"tenantId": tenant}, token=admin,
                     params={"from": soon.isoformat(), "to": before.isoformat()})
    assert backwards.status_code == 400
    bad = call(functions, "list_audit", "GET", route={"tenantId": tenant}, token=admin, params={"from": "x' or 1"})
    assert bad.status_code == 400

    # the web front end asks for the link as JSON (it cannot read a redirect's target): audited all the same
    as_json = call(functions, "download", "GET", route=route, token=admin, headers={"Accept": "application/json"})
    link = json.loads(as_json.get_body())  # (its body is the link: not among the responses checked for secrets)
    assert as_json.status_code == 200 and as_json.headers["Cache-Control"] == "no-store"
    assert parse_qs(urlsplit(link["url"]).query)["sp"] == ["r"] and link["expiresAt"]
    audit = call(functions, "list_audit", "GET", route={"tenantId": tenant}, token=admin,
                 params={"from": before.isoformat()})
    assert len(json.loads(audit.get_body())["items"]) == 4

    # a customer principal gets no link to a partner file, and nothing is audited for it
    ctx.principals.put(tenant, READER, PrincipalIn(role=Role.CUSTOMER,
                                                   customer_ids=["c1c1c1c1-0000-4000-8000-000000000001"]))
    customer = token_for(tenant, role=None, object_id=READER)
    assert call(functions, "download", "GET", route=route, token=customer).status_code == 404
    assert call(functions, "list_audit", "GET", route={"tenantId": tenant}, token=customer).status_code == 403
    again = json.loads(call(functions, "list_audit", "GET", route={"tenantId": tenant}, token=admin).get_body())
    assert len(again["items"]) == 4  # the three links and the JSON one above

    # no secret anywhere: not in a response, not in a log record, not on the console
    secrets = [sim.client_secret, admin, customer] + [parse_qs(urlsplit(link.headers["Location"]).query)["sig"][0]
                                                     for link in links]
    bodies = [r.get_body().decode("utf-8", "replace") for r in responses]
    logged = [r.getMessage() + " " + json.dumps({k: str(v) for k, v in vars(r).items()}) for r in caplog.records]
    console = capsys.readouterr()
    texts = bodies + logged + [console.out, console.err]
    assert len(caplog.records) > 5  # the generation did log
    for text in texts:
        for secret in secrets:
            assert secret not in text
        assert not SECRET_LIKE.search(text), SECRET_LIKE.search(text)


@pytest.mark.parametrize("headers,expected", [
    # Issue 14 #7: the client writes the first entries; the platform's front end appends the address it saw.
    ({"X-Forwarded-For": "1.2.3.4, 198.51.100.4"}, "198.51.100.4"),
    ({"X-Forwarded-For": "1.2.3.4,198.51.100.4:50123"}, "198.51.100.4"),
    ({"X-Forwarded-For": "[2001:db8::7]:443"}, "2001:db8::7"),
    # a right-most entry that is not an address gives none, never the client-written one before it
    ({"X-Forwarded-For": "1.2.3.4, unknown"}, None),
    # without X-Forwarded-For, the host's client-IP header
    ({"X-Client-IP": "198.51.100.9"}, "198.51.100.9"),
    ({"CLIENT-IP": "198.51.100.9:4711"}, "198.51.100.9"),
    # with both, X-Forwarded-For decides (its last entry is the front end's own)
    ({"X-Forwarded-For": "1.2.3.4, 198.51.100.4", "X-Client-IP": "1.2.3.4"}, "198.51.100.4"),
    ({}, None),
])
def test_the_audit_address_is_the_one_the_platform_appended(headers: dict[str, str], expected: str | None) -> None:
    assert client_address(headers) == expected
