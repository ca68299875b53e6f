"""A reseller's reach: learned from Microsoft's lines while a partner-view file is made, stored in ResellerReach,
resolved per request; and a reseller's customer view narrowed to its own lines of a customer two resellers serve.

Real Azurite, the real simulator (whose first resold customers buy from two resellers), the real worker."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict

import pyarrow as pa
import pytest
import requests

from shared.core.columns import layout_for
from shared.core.models import FileRecord, FileStatus, View
from shared.core.access import PrincipalIn, Reach, Role
from shared.adapters.reach_index import ReachIndex
from shared.core.reach import ReachCollector
from shared.adapters.repositories import utcnow
from shared.core.views import removed_columns
from tests.conftest import SECRET_SETTING, call, token_for
from tests.app.test_generation import run_queue

TENANT = "aaaaaaaa-0000-4000-8000-0000000000a1"
OTHER_TENANT = "bbbbbbbb-0000-4000-8000-0000000000b2"
C1 = "c1c1c1c1-0000-4000-8000-000000000001"
C2 = "c2c2c2c2-0000-4000-8000-000000000002"
S1 = "51515151-0000-4000-8000-000000000001"
S2 = "52525252-0000-4000-8000-000000000002"
RESELLER_OID = "0f000000-0000-4000-8000-0000000000f1"


# ---- learning it from lines --------------------------------------------------------------------------------------

def test_collector_takes_distinct_valid_triples_from_batches() -> None:
    lay = layout_for("onetime")
    batch = pa.RecordBatch.from_pydict({
        "ResellerMpnId": [" 1234567", "1234567", "0", "-1", "", None, "7654321", "12ab", "7654321", "7654321"],
        "CustomerId": [C1.upper(), C1, C2, C2, C2, C2, C2, C2, "not-a-guid", f"{C1}|{C2}"],
        "SubscriptionId": [S1, S1 + " ", S2, S2, S2, S2, None, S2, S2, S2],
    })
    collector = ReachCollector(lay)
    collector.add(batch)
    collector.add(batch)  # a segment read again adds nothing
    # direct lines (empty, null, 0, -1) are the party "0": they make a customer shared, never a reseller's reach
    assert collector.valid() == {("1234567", C1, S1), ("7654321", C2, ""), ("0", C2, S2)}
    assert len(collector.keys) <= batch.num_rows  # distinct keys only


def test_collector_takes_legacy_numeric_reseller_ids() -> None:
    collector = ReachCollector(layout_for("license"))
    collector.add(pa.RecordBatch.from_pydict({"ResellerMpnId": pa.array([1234567, -1], pa.int64()),
                                              "CustomerId": [C1, C2], "SubscriptionId": [S1, S2]}))
    assert collector.valid() == {("1234567", C1, S1), ("0", C2, S2)}


def test_collector_reads_the_daily_usage_reseller_column() -> None:
    collector = ReachCollector(layout_for("dailyratedusage"))
    collector.add(pa.RecordBatch.from_pydict({"Tier2MpnId": ["1234567", ""], "CustomerId": [C1, C2],
                                              "SubscriptionId": [S1, S2], "ResellerMpnId": ["999", "999"]}))
    assert collector.valid() == {("1234567", C1, S1), ("0", C2, S2)}


# ---- the index and its resolver ----------------------------------------------------------------------------------

def _rows(index: ReachIndex) -> list[dict]:
    return sorted((dict(e) for e in index.table.list_entities()), key=lambda e: (e["PartitionKey"], e["RowKey"]))


def test_resolver_answers_per_tenant_and_reseller(ctx) -> None:
    index = ReachIndex(ctx.storage)
    assert index.resolve(TENANT, frozenset({"1234567"})) == Reach()  # nothing indexed yet
    index.record(TENANT, [("1234567", C1, S1), ("1234567", C2, ""), ("123", C2, S2), ("12345678", C2, S2)])
    index.record(OTHER_TENANT, [("1234567", C2, S2)])

    # "123" and "12345678" share a prefix with 1234567: the range query must not mix them up
    assert index.resolve(TENANT, frozenset({"1234567"})) == Reach(frozenset({C1, C2}), frozenset({S1}),
                                                                  frozenset({C2}))
    assert index.resolve(TENANT, frozenset({"123"})) == Reach(frozenset({C2}), frozenset({S2}), frozenset({C2}),
                                                              frozenset({S2}))  # 12345678 shows up on S2 too
    assert index.resolve(TENANT, frozenset({"7654321"})) == Reach()
    assert index.resolve(OTHER_TENANT, frozenset({"1234567"})) == Reach(frozenset({C2}), frozenset({S2}))
    both = index.resolve(TENANT.upper(), frozenset({"1234567", "123", "bad|id"}))
    assert both.customers == {C1, C2} and both.subscriptions == {S1, S2}


def test_a_customer_becomes_shared_when_a_later_file_shows_another_reseller(ctx) -> None:
    index = ReachIndex(ctx.storage)
    index.record(TENANT, [("1234567", C1, S1)])
    assert index.resolve(TENANT, frozenset({"1234567"})).shared == frozenset()
    index.record(TENANT, [("7654321", C1, S2)])  # another file type or invoice: the other reseller
    assert index.resolve(TENANT, frozenset({"1234567"})).shared == {C1}
    assert index.resolve(TENANT, frozenset({"7654321"})) == Reach(frozenset({C1}), frozenset({S2}), frozenset({C1}))


def test_recording_again_is_harmless(ctx) -> None:
    index = ReachIndex(ctx.storage)
    triples = [("1234567", C1, S1), ("7654321", C1, S2)] + [("1234567", f"{n:08x}-0000-4000-8000-000000000000", "")
                                                           for n in range(150)]  # more than one transaction
    assert index.record(TENANT, triples) == 152
    first = [{k: v for k, v in e.items()} for e in _rows(index)]
    assert index.record(TENANT, list(reversed(triples))) == 0  # nothing new to write
    again = _rows(index)
    assert [(e["RowKey"], e.get("kind")) for e in again] == [(e["RowKey"], e.get("kind")) for e in first]
    assert again == first  # same keys, same contents
    assert len(first) == 152 + 1  # the reseller rows, one shared-customer marker
    assert {e["RowKey"]: (e["kind"], e["customer_id"]) for e in first}[f"s|{C1}"] == ("shared", C1)
    assert index.record(TENANT, triples + [("7654321", C1, S1)]) == 1  # only the new row is written


def test_the_writer_takes_segments_as_they_come(ctx) -> None:
    index = ReachIndex(ctx.storage)
    index.record(TENANT, [("7654321", C2, S2)])
    writer = index.writer(TENANT)
    writer.submit({("1234567", C1, S1)})  # segment 1
    writer.submit({("1234567", C1, S1), ("1234567", C2, "")})  # segment 2: one triple again, one new
    writer.submit(set())
    assert writer.finish() == 2
    assert index.resolve(TENANT, frozenset({"1234567"})) == Reach(frozenset({C1, C2}), frozenset({S1}),
                                                                  frozenset({C2}))
    stopped = index.writer(OTHER_TENANT)  # a file that failed: what was handed over may land, nothing breaks
    stopped.submit({("1234567", C1, S1)})
    stopped.close()


# ---- through the worker, and through the routes ------------------------------------------------------------------

def _shared_customer(sim, invoice: str) -> tuple[str, dict[str, set[str]]]:
    """A customer of the invoice's one-time lines whom two resellers serve, and who serves each customer."""
    served: dict[str, set[str]] = defaultdict(set)
    for row in sim.iter_rows(invoice, "onetime"):
        if row["ResellerMpnId"] not in (None, "", "0"):
            served[row["CustomerId"].lower()].add(row["ResellerMpnId"])
    shared = sorted(c for c, resellers in served.items() if len(resellers) > 1)
    assert shared, "the simulator must have a customer served by two resellers"
    return shared[0], served


@pytest.fixture
def indexed(sim_env, functions, ctx, sim) -> dict:
    """A tenant whose latest one-time invoice has been made as a partner-view file (which indexes it)."""
    tenant = sim.tenant_id
    body = {"displayName": "Sim", "clientId": sim.client_id, "clientSecretSetting": SECRET_SETTING}
    assert call(functions, "put_tenant", "PUT", route={"tenantId": tenant}, body=body).status_code == 201
    invoice = next(i["id"] for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")
    customer, served = _shared_customer(sim, invoice)
    resp = call(functions, "request_file", "POST", route={"tenantId": tenant},
                body={"invoiceType": "onetime", "invoiceId": invoice})
    assert resp.status_code == 202
    assert run_queue(ctx) == 1
    partner_file = json.loads(resp.get_body())["id"]
    assert ctx.files.get(tenant, partner_file)[0].status == FileStatus.AVAILABLE
    return {"tenant": tenant, "invoice": invoice, "customer": customer, "served": served,
            "partner_file": partner_file}


def test_the_partner_view_file_indexes_every_reseller_and_regenerating_it_changes_nothing(indexed, functions,
                                                                                        ctx, sim) -> None:
    tenant, served = indexed["tenant"], indexed["served"]
    subscriptions: dict[str, set[str]] = defaultdict(set)
    for row in sim.iter_rows(indexed["invoice"], "onetime"):
        if row["ResellerMpnId"] not in (None, "", "0"):
            subscriptions[row["ResellerMpnId"]].add(row["SubscriptionId"].lower())
    for reseller in subscriptions:
        reach = ctx.reach.resolve(tenant, frozenset({reseller}))
        assert reach.customers == {c for c, rs in served.items() if reseller in rs}
        assert reach.subscriptions == subscriptions[reseller]
        assert reach.shared == {c for c in reach.customers if len(served[c]) > 1}
    before = _rows(ctx.reach)
    assert before

    # at least once: the same message again is a no-op, and a new version indexes the same lines again
    resp = call(functions, "regenerate", "POST", route={"tenantId": tenant, "fileId": indexed["partner_file"]})
    assert resp.status_code == 202
    assert run_queue(ctx) == 1
    assert ctx.files.get(tenant, indexed["partner_file"])[0].version == 2
    after = _rows(ctx.reach)
    assert [(e["RowKey"], e.get("customer_id")) for e in after] == [(e["RowKey"], e.get("customer_id"))
                                                                    for e in before]


def _reseller_token(ctx, tenant: str, reseller: str) -> str:
    ctx.principals.put(tenant, RESELLER_OID, PrincipalIn(role=Role.RESELLER, reseller_ids=[reseller]))
    return token_for(tenant, role=None, object_id=RESELLER_OID)


def _download(ctx, tenant: str, file_id: str) -> tuple[list[str], list[dict[str, str]]]:
    record, _ = ctx.files.get(tenant, file_id)
    url, _ = ctx.links.url_for(record.blob_name, record.file_name)
    text = requests.get(url, timeout=30).content.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


def test_a_resellers_customer_view_of_a_shared_customer_holds_only_its_own_lines(indexed, functions, ctx,
                                                                                 sim) -> None:
    tenant, invoice, customer = indexed["tenant"], indexed["invoice"], indexed["customer"]
    mine, theirs = sorted(indexed["served"][customer])
    token = _reseller_token(ctx, tenant, mine)
    lay = layout_for("onetime")

    # the reseller names no resellerId: the gate narrows the request to its own lines
    resp = call(functions, "request_file", "POST", route={"tenantId": tenant}, token=token,
                body={"invoiceType": "onetime", "invoiceId": invoice, "view": "customer", "customerId": customer})
    assert resp.status_code == 202, resp.get_body()
    made = json.loads(resp.get_body())
    assert (made["view"], made["resellerId"], made["customerId"]) == ("customer", mine, customer)
    # asking for the other reseller's lines of the same customer is refused
    other = call(functions, "request_file", "POST", route={"tenantId": tenant}, token=token,
                 body={"invoiceType": "onetime", "invoiceId": invoice, "view": "customer", "customerId": customer,
                       "resellerId": theirs})
    assert other.status_code == 403
    assert run_queue(ctx) == 1

    record, _ = ctx.files.get(tenant, made["id"])
    assert record.status == FileStatus.AVAILABLE, record.error
    assert mine in record.file_name and customer in record.file_name
    header, rows = _download(ctx, tenant, made["id"])
    assert not set(header) & removed_columns(lay, View.CUSTOMER)
    expected = [r for r in sim.iter_rows(invoice, "onetime")
                if r["CustomerId"].lower() == customer and r["ResellerMpnId"] == mine]
    whole = [r for r in sim.iter_rows(invoice, "onetime") if r["CustomerId"].lower() == customer]
    assert 0 < len(expected) < len(whole)  # the other reseller really sells to this customer too
    assert len(rows) == len(expected) == record.row_count
    assert {r["ResellerMpnId"] for r in rows} == {mine}
    assert {r["SubscriptionId"] for r in rows} == {r["SubscriptionId"] for r in expected}

    # the partner's whole-customer view is a different file, and the reseller cannot see it
    partner = call(functions, "request_file", "POST", route={"tenantId": tenant},
                   body={"invoiceType": "onetime", "invoiceId": invoice, "view": "customer", "customerId": customer})
    whole_id = json.loads(partner.get_body())["id"]
    assert partner.status_code == 202 and whole_id != made["id"]
    assert call(functions, "get_file", "GET", route={"tenantId": tenant, "fileId": whole_id},
                token=token).status_code == 404
    listed = json.loads(call(functions, "list_files", "GET", route={"tenantId": tenant}, token=token).get_body())
    assert listed["items"] == []  # resellers list approved versions only
    assert call(functions, "approve_file_version", "POST",
                route={"tenantId": tenant, "fileId": made["id"], "version": "1"}).status_code == 200
    listed = json.loads(call(functions, "list_files", "GET", route={"tenantId": tenant}, token=token).get_body())
    assert [f["id"] for f in listed["items"]] == [made["id"]]


def test_customer_level_configuration_of_a_shared_customer_stays_with_the_partner(indexed, functions, ctx) -> None:
    tenant, served = indexed["tenant"], indexed["served"]
    shared = indexed["customer"]
    mine = sorted(served[shared])[0]
    own = sorted(c for c, rs in served.items() if rs == {mine})
    others = sorted(c for c, rs in served.items() if mine not in rs)
    assert own and others
    token = _reseller_token(ctx, tenant, mine)
    subscription = sorted(ctx.reach.resolve(tenant, frozenset({mine})).subscriptions)[0]
    rule = {"percent": "5", "effectiveFrom": "2026-01-01"}
    cases = [({"level": "customer", "targetId": own[0]}, 201), ({"level": "subscription", "targetId": subscription}, 201),
             ({"level": "customer", "targetId": shared}, 403), ({"level": "customer", "targetId": others[0]}, 403),
             ({"level": "reseller", "targetId": mine}, 403)]
    for target, status in cases:
        resp = call(functions, "create_margin_rule", "POST", route={"tenantId": tenant}, token=token,
                    body={**rule, **target})
        assert resp.status_code == status, (target, resp.get_body())
    for customer, status in ((own[0], 200), (shared, 403), (others[0], 403)):
        resp = call(functions, "put_customer_identifier", "PUT", route={"tenantId": tenant, "customerId": customer},
                    token=token, body={"internalId": "X-1"})
        assert resp.status_code == status, customer


def test_a_record_of_a_customer_view_narrowed_to_a_reseller_is_seen_by_that_customer(indexed, functions,
                                                                                    ctx) -> None:
    """A customer principal sees the narrowed view of its own lines too (a subset of what it may see)."""
    tenant, customer = indexed["tenant"], indexed["customer"]
    reseller = sorted(indexed["served"][customer])[0]
    record = FileRecord(id="0d0d0d0d-0000-4000-8000-000000000001", tenant_id=tenant, invoice_type="onetime",
                        invoice_id=indexed["invoice"], view="customer", reseller_id=reseller, customer_id=customer,
                        status=FileStatus.AVAILABLE, created_at=utcnow())
    ctx.files.create(record)
    oid = "0c000000-0000-4000-8000-0000000000c1"
    ctx.principals.put(tenant, oid, PrincipalIn(role=Role.CUSTOMER, customer_ids=[customer]))
    token = token_for(tenant, role=None, object_id=oid)
    assert call(functions, "get_file", "GET", route={"tenantId": tenant, "fileId": record.id},
                token=token).status_code == 200


def test_direct_lines_make_customers_and_subscriptions_shared_in_the_index(ctx) -> None:
    """A customer served by a reseller and directly by the partner is shared (issue 14): its reseller creates
    nothing new for it; direct lines are nobody's reach."""
    index = ReachIndex(ctx.storage)
    index.record(TENANT, [("1234567", C1, S1), ("1234567", C2, S2)])
    assert index.resolve(TENANT, frozenset({"1234567"})).shared == frozenset()
    collector = ReachCollector(layout_for("onetime"))
    collector.add(pa.RecordBatch.from_pydict({"ResellerMpnId": ["-1", ""], "CustomerId": [C1, C1],
                                              "SubscriptionId": [S1, None]}))
    index.record(TENANT, collector.valid())  # a later file: the partner bills C1 (and S1) directly too
    assert index.resolve(TENANT, frozenset({"1234567"})) == Reach(frozenset({C1, C2}), frozenset({S1, S2}),
                                                                  frozenset({C1}), frozenset({S1}))
    assert index.resolve(TENANT, frozenset({"0"})) == Reach()
