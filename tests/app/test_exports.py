"""Billing exports end to end: files made by the real worker from the simulator, exports made by the real job from
the stored file versions, downloaded through their SAS links and checked to the cent against the view's file."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from shared.core.money import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests

from shared.app import exports, file_requests
from shared.app.downloads import Requester
from shared.core.access import Caller
from shared.app.exports import ExportJob
from shared.core.exports import ExportIn, ExportStatus
from shared.core.margins import MarginRuleIn
from shared.core.models import CsvFormat, FileRequest
from tests.app.test_generation import download_rows, invoice_id, register, run_queue


def run_exports(ctx) -> int:
    queue = ctx.storage.queue(exports.queue_name(ctx))
    handled = 0
    for msg in queue.receive_messages(visibility_timeout=60):
        ExportJob(ctx).handle(msg.content, msg.dequeue_count)
        queue.delete_message(msg)
        handled += 1
    return handled


def make_file(ctx, sim, tenant, request: FileRequest):
    record, _ = file_requests.request_file(ctx, tenant, request)
    assert run_queue(ctx) == 1
    got, _ = ctx.files.get(tenant, record.id)
    assert got.status == "Available", got.error
    return got


def export(ctx, record, **body):
    made, created = exports.request_export(ctx, record, ExportIn.model_validate(body))
    assert created
    assert run_exports(ctx) == 1
    done = exports.get_export(ctx, record, made.id)
    assert done.status == ExportStatus.AVAILABLE, done.error
    link = exports.export_link(ctx, record, done.id, Requester(Caller(object_id="test", tenant_id=record.tenant_id)))
    return done, requests.get(link.url, timeout=60).content


def price(row: dict[str, str], view: str) -> Decimal:
    direct = (row.get("ResellerMpnId") or row.get("Tier2MpnId") or "") in ("", "0", "-1")
    return Decimal(row["CustomerSubtotal"] if view != "partner" or direct else row["ResellerSubtotal"])


def test_billing_summary_of_a_partner_view_ties_out_to_the_cent(sim_env, ctx, sim) -> None:
    tenant = register(ctx, sim)
    first = make_file(ctx, sim, tenant, FileRequest(invoice_type="onetime", invoice_id=invoice_id(sim)))
    reseller = next(x["ResellerMpnId"] for x in download_rows(ctx, tenant, first.id)
                    if x["ResellerMpnId"] not in ("", "0", "-1"))
    ctx.rules.create(tenant, MarginRuleIn.model_validate({"level": "reseller", "targetId": reseller,
                                                          "percent": "7.35", "effectiveFrom": "2000-01-01"}))
    file_requests.regenerate(ctx, tenant, first.id)  # version 2, with the reseller's margin
    assert run_queue(ctx) == 1
    record, _ = ctx.files.get(tenant, first.id)
    lines = download_rows(ctx, tenant, record.id)
    assert any(Decimal(x["ResellerSubtotal"]) != Decimal(x["Subtotal"]) for x in lines)
    done, data = export(ctx, record, kind="billing", format="csv")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert done.source_lines == len(lines) and done.rows == len(rows)
    assert sum(Decimal(r["Amount"]) for r in rows) == sum(price(x, "partner") for x in lines) == done.amount
    assert sum(int(r["Lines"]) for r in rows) == len(lines)
    # per customer and bill-to, to the cent
    want: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for x in lines:
        want[(x["CustomerId"], "customer" if x["ResellerMpnId"] in ("", "0", "-1") else "reseller")] += price(x, "partner")
    got: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in rows:
        got[(r["CustomerId"], r["BillTo"])] += Decimal(r["Amount"])
    assert got == want
    assert set(rows[0]) >= {"CustomerId", "CustomerInternalId", "SubscriptionId", "SubscriptionInternalId",
                            "PONumber", "ProductName", "Quantity", "ChargeStartDate", "ChargeEndDate", "Amount",
                            "Currency"}

    # the same export asked again is the same export; JSON and XLSX carry the same total
    again, created = exports.request_export(ctx, record, ExportIn(kind="billing", format="csv"))
    assert not created and again.id == done.id
    _, body = export(ctx, record, kind="billing", format="json")
    doc = json.loads(body)
    assert Decimal(doc["total"]) == done.amount and len(doc["lines"]) == len(rows)
    assert all(isinstance(x["Amount"], str) for x in doc["lines"])  # money as exact text, never a JSON number
    xlsx_export, body = export(ctx, record, kind="billing", format="xlsx")
    assert body[:2] == b"PK" and xlsx_export.amount == done.amount


def test_reseller_view_in_regional_csv_is_read_back_exactly(sim_env, ctx, sim) -> None:
    tenant = register(ctx, sim)
    inv = invoice_id(sim)
    partner = make_file(ctx, sim, tenant, FileRequest(invoice_type="onetime", invoice_id=inv))
    lines = download_rows(ctx, tenant, partner.id)
    reseller = next(x["ResellerMpnId"] for x in lines if x["ResellerMpnId"] not in ("", "0", "-1"))
    fmt = CsvFormat(delimiter=";", decimal_separator=",", date_format="eu")
    record = make_file(ctx, sim, tenant, FileRequest(invoice_type="onetime", invoice_id=inv, view="reseller",
                                                     reseller_id=reseller, csv_format=fmt))
    done, data = export(ctx, record, kind="billing", format="csv")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    own = [x for x in lines if x["ResellerMpnId"] == reseller]
    assert sum(Decimal(r["Amount"]) for r in rows) == sum(Decimal(x["CustomerSubtotal"]) for x in own)
    assert {r["BillTo"] for r in rows} == {"customer"} and {r["ResellerMpnId"] for r in rows} == {reseller}
    assert all(len(r["ChargeStartDate"]) == 10 and r["ChargeStartDate"][4] == "-" for r in rows)  # ISO again


def test_focus_export_of_daily_usage_ties_out_and_keeps_microsofts_prices(sim_env, ctx, sim) -> None:
    tenant = register(ctx, sim)
    inv = invoice_id(sim)
    record = make_file(ctx, sim, tenant, FileRequest(invoice_type="dailyratedusage", invoice_id=inv,
                                                     format="parquet"))
    url, _ = file_requests.download_link(ctx, tenant, record.id)
    view = pq.read_table(io.BytesIO(requests.get(url, timeout=60).content))
    done, data = export(ctx, record, kind="focus", format="csv")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert len(rows) == view.num_rows == done.rows
    lines = view.to_pylist()
    want = sum(price({k: (str(v) if v is not None else "") for k, v in x.items()}, "partner") for x in lines)
    assert sum(Decimal(r["BilledCost"]) for r in rows) == want == done.amount
    assert sum(Decimal(r["ContractedCost"]) for r in rows) == sum(x["BillingPreTaxTotal"] for x in lines)
    assert all(r["ChargePeriodStart"].endswith("T00:00:00Z") for r in rows)
    parquet_export, body = export(ctx, record, kind="focus", format="parquet")
    table = pq.read_table(io.BytesIO(body))
    assert str(table.schema.field("BilledCost").type) == "decimal128(38, 28)"
    assert parquet_export.amount == want
    spec = json.loads((Path(__file__).resolve().parents[2] / "docs" / "focus" / "focus-1.2-columns.json").read_text())
    for column in spec["columns"]:  # the simulator's real lines: no null where FOCUS 1.2 allows none
        if column["columnId"] in table.column_names and not column["allowsNulls"]:
            assert table.column(column["columnId"]).null_count == 0, column["columnId"]
        if column.get("allowedValues") and column["columnId"] in table.column_names:
            assert set(table.column(column["columnId"]).drop_null().to_pylist()) <= set(column["allowedValues"])
    assert [Decimal(r["BilledCost"]) for r in rows] == table.column("BilledCost").to_pylist()  # same rows, CSV or Parquet


def test_focus_needs_daily_usage_and_excel_files_are_refused(sim_env, ctx, sim) -> None:
    from shared.core.problems import Problem

    tenant = register(ctx, sim)
    record = make_file(ctx, sim, tenant, FileRequest(invoice_type="onetime", invoice_id=invoice_id(sim)))
    with pytest.raises(Problem) as refused:
        exports.request_export(ctx, record, ExportIn(kind="focus", format="csv"))
    assert refused.value.status == 400
    with pytest.raises(Problem) as refused:
        exports.request_export(ctx, record, ExportIn(kind="billing", format="parquet"))
    assert refused.value.status == 400
    xlsx = make_file(ctx, sim, tenant, FileRequest(invoice_type="onetime", invoice_id=invoice_id(sim),
                                                   format="xlsx"))
    with pytest.raises(Problem) as refused:
        exports.request_export(ctx, xlsx, ExportIn(kind="billing"))
    assert refused.value.status == 409


def test_a_version_whose_blob_is_gone_fails_clearly_and_asking_again_tries_again(sim_env, ctx, sim) -> None:
    tenant = register(ctx, sim)
    record = make_file(ctx, sim, tenant, FileRequest(invoice_type="onetime", invoice_id=invoice_id(sim)))
    blob = ctx.storage.files.get_blob_client(record.blob_name)
    saved = blob.download_blob().readall()
    blob.delete_blob()
    made, _ = exports.request_export(ctx, record, ExportIn(kind="billing"))
    assert run_exports(ctx) == 1
    failed = exports.get_export(ctx, record, made.id)
    assert failed.status == ExportStatus.FAILED and "gone" in failed.error
    blob.upload_blob(saved)
    again, created = exports.request_export(ctx, record, ExportIn(kind="billing"))
    assert not created and again.id == made.id and again.status == ExportStatus.QUEUED
    assert run_exports(ctx) == 1
    done = exports.get_export(ctx, record, made.id)
    assert done.status == ExportStatus.AVAILABLE
    assert run_exports(ctx) == 0  # nothing left over: one message per request
    ExportJob(ctx).handle(json.dumps({"tenantId": tenant, "exportId": made.id}))  # a redelivery: nothing happens
    assert exports.get_export(ctx, record, made.id) == done
