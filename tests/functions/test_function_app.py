"""The app as the Functions host sees it (indexing, bindings) and every route with good and bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import call, problem, token_for

TENANT = "11111111-2222-3333-4444-555555555555"


def test_indexing_finds_every_function_with_host_bindings(functions: dict[str, Any]) -> None:
    http = {n: f.get_trigger().get_dict_repr() for n, f in functions.items()
            if f.get_trigger().get_binding_name() == "httpTrigger"}
    routes = {(d["route"], tuple(str(m.value) for m in d["methods"])) for d in http.values()}
    assert ("tenants/{tenantId}", ("PUT",)) in routes
    assert ("tenants/{tenantId}/reconciliation-files", ("POST",)) in routes
    assert ("tenants/{tenantId}/reconciliation-files/{fileId}/download", ("GET",)) in routes
    queue = functions["generate_file"].get_trigger().get_dict_repr()
    assert queue["type"] == "queueTrigger" and queue["queueName"] == "%GENERATION_QUEUE%"
    assert queue["connection"] == "AzureWebJobsStorage"
    poison = functions["generation_gave_up"].get_trigger().get_dict_repr()
    assert poison["queueName"] == "%GENERATION_QUEUE%-poison"
    assert functions["webhook_gave_up"].get_trigger().get_dict_repr()["queueName"] == "%WEBHOOK_QUEUE%-poison"
    json.loads(functions["generate_file"].get_function_json())  # what the host reads must be valid JSON


def test_host_json_queue_settings() -> None:
    host = json.load(open("host.json"))
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    queues = host["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64" and queues["maxDequeueCount"] == 5
    assert 1 <= queues["batchSize"] <= 4  # a reconciliation job is memory-heavy; keep one instance safe


TENANT_BODY = {"displayName": "Contoso", "clientId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
               "clientSecretSetting": "PC_SECRET_CONTOSO", "billingAnniversaryDay": 12}


def test_tenant_routes_round_trip(functions: dict[str, Any], ctx) -> None:
    resp = call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, body=TENANT_BODY)
    assert resp.status_code == 201
    assert json.loads(resp.get_body())["clientSecretSetting"] == "PC_SECRET_CONTOSO"
    assert call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, body=TENANT_BODY).status_code == 200
    got = json.loads(call(functions, "get_tenant", "GET", route={"tenantId": TENANT}).get_body())
    assert got["displayName"] == "Contoso" and got["billingAnniversaryDay"] == 12
    listed = json.loads(call(functions, "list_tenants", "GET", token=token_for(TENANT)).get_body())["items"]
    assert [t["tenantId"] for t in listed] == [TENANT]
    assert json.loads(call(functions, "list_tenants", "GET").get_body())["items"] == []  # another tenant's admin


@pytest.mark.parametrize("route,body,field", [
    ({"tenantId": "not-a-guid"}, TENANT_BODY, "tenantId"),
    ({"tenantId": TENANT}, {**TENANT_BODY, "clientId": "x"}, "clientId"),
    ({"tenantId": TENANT}, {**TENANT_BODY, "clientSecretSetting": "has spaces!"}, "clientSecretSetting"),
    ({"tenantId": TENANT}, {**TENANT_BODY, "billingAnniversaryDay": 32}, "billingAnniversaryDay"),
    ({"tenantId": TENANT}, {**TENANT_BODY, "clientSecret": "never stored"}, "clientSecret"),
    ({"tenantId": TENANT}, {"clientId": TENANT_BODY["clientId"]}, "displayName"),
])
def test_bad_tenant_input_is_a_400_naming_the_field(functions, ctx, route, body, field) -> None:
    resp = call(functions, "put_tenant", "PUT", route=route, body=body)
    assert resp.status_code == 400
    assert field in {e["field"] for e in problem(resp)["errors"]}


@pytest.mark.parametrize("raw", [b"{not json", b"[1,2]", b"\xff\xfe", b"x" * (1024 * 1024 + 1)])
def test_malformed_bodies_are_4xx_not_500(functions, ctx, raw: bytes) -> None:
    resp = call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, raw=raw)
    assert 400 <= resp.status_code < 500
    problem(resp)


def test_unknown_tenant_is_404(functions, ctx) -> None:
    resp = call(functions, "get_tenant", "GET", route={"tenantId": TENANT})
    assert resp.status_code == 404 and problem(resp)["status"] == 404


@pytest.mark.parametrize("body,field,status", [
    ({"invoiceType": "nope", "invoiceId": "G000000001"}, "invoiceType", 400),
    ({"invoiceType": "onetime", "invoiceId": "G0000/../1"}, "invoiceId", 400),
    ({"invoiceType": "onetime"}, "invoiceId", 400),
    ({"invoiceType": "onetime", "invoiceId": "G1", "view": "reseller"}, "resellerId", 400),
    ({"invoiceType": "onetime", "invoiceId": "G1", "resellerId": "1234567"}, "resellerId", 400),  # partner view
    ({"invoiceType": "onetime", "invoiceId": "G1", "view": "customer", "resellerId": "1234567"}, "customerId", 400),
    ({"invoiceType": "usage", "invoiceId": "D1", "view": "customer",
      "customerId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}, "view", 400),
    ({"invoiceType": "onetime", "invoiceId": "G1", "unknown": 1}, "unknown", 400),
])
def test_bad_file_requests_are_4xx_naming_the_field(functions, ctx, body, field, status) -> None:
    call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, body=TENANT_BODY)
    resp = call(functions, "request_file", "POST", route={"tenantId": TENANT}, body=body)
    assert resp.status_code == status
    assert field in {e["field"] for e in problem(resp)["errors"]}
    assert ctx.storage.queue().peek_messages() == []  # nothing queued for a refused request


def test_file_request_writes_record_then_queues_base64_message(functions, ctx) -> None:
    call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, body=TENANT_BODY)
    body = {"invoiceType": "onetime", "invoiceId": "g000000001"}
    resp = call(functions, "request_file", "POST", route={"tenantId": TENANT}, body=body)
    assert resp.status_code == 202
    record = json.loads(resp.get_body())
    assert record["status"] == "Queued" and record["invoiceId"] == "G000000001" and record["version"] == 1
    assert resp.headers["Location"].endswith(f"/reconciliation-files/{record['id']}")
    raw = ctx.storage.queue().peek_messages()[0].content  # decoded by the SDK's base64 policy
    assert json.loads(raw) == {"tenantId": TENANT, "fileId": record["id"], "version": 1}
    again = call(functions, "request_file", "POST", route={"tenantId": TENANT}, body=body)
    assert again.status_code == 200 and json.loads(again.get_body())["id"] == record["id"]
    listed = call(functions, "list_files", "GET", route={"tenantId": TENANT}, params={"status": "Queued"})
    assert [r["id"] for r in json.loads(listed.get_body())["items"]] == [record["id"]]
    route = {"tenantId": TENANT, "fileId": record["id"]}
    assert call(functions, "download", "GET", route=route).status_code == 409
    assert call(functions, "regenerate", "POST", route=route).status_code == 409
    assert call(functions, "list_files", "GET", route={"tenantId": TENANT},
                params={"status": "Done"}).status_code == 400
    missing = {"tenantId": TENANT, "fileId": "00000000-0000-0000-0000-000000000000"}
    assert call(functions, "get_file", "GET", route=missing).status_code == 404


def test_a_file_route_reads_its_tenant_and_file_once(functions, ctx, monkeypatch) -> None:
    """The edge loads the tenant and the file once, checks access on it and hands it to the use case: no use case
    reads them again (they used to be read up to four times a request)."""
    import uuid
    from collections import Counter

    from shared.adapters.repositories import utcnow
    from shared.app.context import get_context
    from shared.core.models import FileRecord, FileStatus, View

    call(functions, "put_tenant", "PUT", route={"tenantId": TENANT}, body=TENANT_BODY)
    record = FileRecord(id=str(uuid.uuid4()), tenant_id=TENANT, invoice_type="onetime", invoice_id="G000000001",
                        status=FileStatus.AVAILABLE, created_at=utcnow(), file_name="G000000001.csv",
                        blob_name=f"{TENANT}/G000000001/v1/G000000001.csv")
    ctx.files.create(record)
    app = get_context()
    reads: Counter[str] = Counter()
    for repo, name in [(app.tenants, "tenants"), (app.files, "files"), (app.principals, "principals")]:
        def counted(*args, _get=repo.get, _name=name, **kwargs):
            reads[_name] += 1
            return _get(*args, **kwargs)
        monkeypatch.setattr(repo, "get", counted)
    route = {"tenantId": TENANT, "fileId": record.id}
    for name, method, extra, status in [
        ("get_file", "GET", {}, 200), ("download", "GET", {}, 302), ("list_file_versions", "GET", {}, 200),
        ("download_file_version", "GET", {"version": "1"}, 302),
        ("list_findings", "GET", {}, 409), ("download_findings", "GET", {}, 409),  # not validated: no findings
        ("regenerate", "POST", {}, 202),
    ]:
        reads.clear()
        resp = call(functions, name, method, route={**route, **extra})
        assert resp.status_code == status, (name, resp.get_body())
        assert reads == Counter(tenants=1, files=1, principals=1), name
    for n in range(2):  # bulk regeneration: the tenant once, each file once (for its ETag)
        ctx.files.create(record.model_copy(update={"id": str(uuid.uuid4()), "view": View.RESELLER,
                                                   "reseller_id": f"12345{n}"}))
    reads.clear()
    resp = call(functions, "regenerate_files", "POST", route={"tenantId": TENANT}, body={"view": "reseller"})
    assert resp.status_code == 202 and len(json.loads(resp.get_body())["items"]) == 2
    assert reads == Counter(tenants=1, files=2, principals=1)


def test_the_worker_process_keeps_pandas_out() -> None:
    """pyarrow would import pandas (~35 MB) at its first conversion of a Python value, only to ask whether the value
    is a pandas object: the app's start-up keeps it out, before any module converts anything."""
    import subprocess
    import sys

    script = ("import sys, function_app, pyarrow as pa\n"
              "from decimal import Decimal\n"
              "pa.array(['x']); pa.scalar(Decimal('1.5'), pa.decimal128(38, 20))\n"
              "print('pandas' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_the_worker_process_gives_arrow_the_system_allocator() -> None:
    """Arrow's C++ code (the JSON reader, the Parquet writer, the kernels) allocates from a default pool chosen when
    libarrow loads, which `pa.set_memory_pool` does not reach: left to mimalloc it kept 50–60 MB after every ingest
    part. The app's start-up chooses the system allocator before anything loads pyarrow: mimalloc never allocates."""
    import os
    import subprocess
    import sys

    script = ("import io, json, function_app, pyarrow as pa, pyarrow.json as pj, pyarrow.parquet as pq\n"
              "lines = ''.join(json.dumps({'a': i, 'b': f'name {i}', 'c': '1.25'}) + '\\n' for i in range(50000))\n"
              "reader = pj.open_json(io.BytesIO(lines.encode()))\n"
              "writer = pq.ParquetWriter(io.BytesIO(), reader.schema)\n"
              "for batch in reader:\n    writer.write_batch(batch)\n"
              "writer.close()\n"
              "print(pa.mimalloc_memory_pool().max_memory(), pa.system_memory_pool().max_memory())\n")
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}  # as a fresh worker starts
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True,
                         env=env)
    mimalloc, system = map(int, out.stdout.strip().splitlines()[-1].split())
    assert mimalloc == 0 and system > 0
