"""The Partner Center simulator speaks Microsoft's wire formats, over real HTTPS, with data that adds up.

Everything goes through `requests` (and MSAL for tokens) against a running simulator; assertions compare what
came over the wire with the simulator's own canonical rows and totals, computed with Decimal.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from itertools import islice
from pathlib import Path

import msal
import pytest
import requests

from devtools.simulator import Simulator
from devtools.simulator.catalog import TAX_PERCENTAGE
from devtools.simulator.dates import add_months
from devtools.simulator.wire import v1_encoder
from shared.core.columns import FileType, layout_for

PC_SCOPE = "https://api.partnercenter.microsoft.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ROOT = Path(__file__).resolve().parents[2]
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    simulator = Simulator(seed=7, size=300, rows_per_blob=110, poll_retry_after=0).start()
    with pytest.MonkeyPatch.context() as patch:
        # requests lets REQUESTS_CA_BUNDLE override a session's `verify`, so the bundle is set the way the app does.
        patch.setenv("REQUESTS_CA_BUNDLE", simulator.ca_path)
        yield simulator
    simulator.stop()


@pytest.fixture(autouse=True)
def clean(sim: Simulator) -> Iterator[None]:
    yield
    sim.faults.reset()
    sim.export_options.inline_manifest = False


def token(sim: Simulator, scope: str) -> str:
    resp = requests.post(f"{sim.base_url}/{sim.tenant_id}/oauth2/v2.0/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": sim.client_id, "client_secret": sim.client_secret,
        "scope": scope})
    resp.raise_for_status()
    return resp.json()["access_token"]


@pytest.fixture(scope="module")
def pc(sim: Simulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sim, PC_SCOPE)}"}


@pytest.fixture(scope="module")
def graph(sim: Simulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sim, GRAPH_SCOPE)}"}


def invoice_ids(sim: Simulator, prefix: str) -> list[str]:
    return [str(inv["id"]) for inv in sim.invoices() if str(inv["id"]).startswith(prefix)]


def number(value: object) -> Decimal:
    """v1 sends numbers as JSON numbers or numeric strings; both must be exact."""
    assert isinstance(value, (str, Decimal, int)), value
    return Decimal(str(value))


def get_json(url: str, headers: dict[str, str]) -> dict:
    resp = requests.get(url, headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    return json.loads(resp.text, parse_float=Decimal)


# --- Entra -------------------------------------------------------------------------------------------------------


def test_msal_acquires_tokens_that_open_the_apis(sim: Simulator) -> None:
    app = msal.ConfidentialClientApplication(sim.client_id, client_credential=sim.client_secret,
                                             authority=f"{sim.base_url}/{sim.tenant_id}", instance_discovery=False)
    pc_result = app.acquire_token_for_client(scopes=[PC_SCOPE])
    graph_result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert pc_result["token_type"] == "Bearer" and pc_result["expires_in"] == 3600
    pc_headers = {"Authorization": f"Bearer {pc_result['access_token']}"}
    assert requests.get(f"{sim.base_url}/v1/invoices", headers=pc_headers, timeout=10).status_code == 200
    graph_headers = {"Authorization": f"Bearer {graph_result['access_token']}"}
    resp = requests.post(f"{sim.base_url}/v1.0/reports/partners/billing/usage/billed/export", headers=graph_headers,
                         json={"invoiceId": invoice_ids(sim, "G")[0]}, timeout=10)
    assert resp.status_code == 202


def test_wrong_secret_is_refused_like_entra(sim: Simulator) -> None:
    app = msal.ConfidentialClientApplication(sim.client_id, client_credential="not-the-secret",
                                             authority=f"{sim.base_url}/{sim.tenant_id}", instance_discovery=False)
    result = app.acquire_token_for_client(scopes=[PC_SCOPE])
    assert result["error"] == "invalid_client" and "AADSTS7000215" in result["error_description"]


def test_each_api_needs_its_own_token(sim: Simulator, pc: dict[str, str], graph: dict[str, str]) -> None:
    invoices = f"{sim.base_url}/v1/invoices"
    for headers in ({}, graph, {"Authorization": "Bearer forged.token"}):
        resp = requests.get(invoices, headers=headers, timeout=10)
        assert resp.status_code == 401
        assert set(resp.json()) == {"code", "description", "data", "source"}
    export = f"{sim.base_url}/v1.0/reports/partners/billing/usage/billed/export"
    for headers in ({}, pc):
        resp = requests.post(export, headers=headers, json={"invoiceId": "G000000001"}, timeout=10)
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "InvalidAuthenticationToken"


# --- Partner Center v1 -------------------------------------------------------------------------------------------


def test_invoice_list_pages_and_describes_each_invoice(sim: Simulator, pc: dict[str, str]) -> None:
    first = get_json(f"{sim.base_url}/v1/invoices?size=4&offset=0", pc)
    assert first["links"]["next"]["uri"] == "/invoices?size=4&offset=4"
    invoices = first["items"] + get_json(f"{sim.base_url}/v1{first['links']['next']['uri']}", pc)["items"]
    assert len(invoices) == 6
    for invoice in invoices:
        providers = {d["billingProvider"] for d in invoice["invoiceDetails"]}
        if invoice["invoiceType"] == "OneTime":
            assert re.fullmatch(r"G\d{9}", invoice["id"]) and providers == {"one_time"}
        else:
            assert re.fullmatch(r"D0[0-9A-Z]{8}", invoice["id"]) and providers == {"office", "azure"}
        assert invoice["currencyCode"] == "EUR" and invoice["attributes"]["objectType"] == "Invoice"
    notes = [a for i in invoices for a in i["amendments"]]
    assert notes and notes[0]["documentType"] == "adjustment_note"


def collect_offset(sim: Simulator, pc: dict[str, str], invoice_id: str, provider: str) -> list[dict]:
    url = f"{sim.base_url}/v1/invoices/{invoice_id}/lineitems?provider={provider}" \
          "&invoicelineitemtype=billinglineitems&size=7&offset=0"
    items = []
    while url:
        page = get_json(url, pc)
        assert page["totalCount"] == len(page["items"]) <= 7
        items += page["items"]
        nxt = page["links"].get("next")
        assert nxt is None or not nxt["uri"].startswith("/v1")  # relative to .../v1, as Microsoft's
        url = f"{sim.base_url}/v1{nxt['uri']}" if nxt else ""
    return items


def test_offset_paging_reaches_every_legacy_row_and_the_invoice_adds_up(sim: Simulator, pc: dict[str, str]) -> None:
    invoice_id = invoice_ids(sim, "D0")[0]
    licence = collect_offset(sim, pc, invoice_id, "office")
    usage = collect_offset(sim, pc, invoice_id, "azure")
    expected = sim.expected(invoice_id, "license")
    assert len(licence) == expected.rows
    assert sum(number(i["subtotal"]) for i in licence) == expected.cost_total
    assert sum(number(i["totalForCustomer"]) for i in licence) == expected.total
    assert {i["attributes"]["objectType"] for i in licence} == {"LicenseBasedLineItem"}
    assert len(usage) == sim.expected(invoice_id, "usage").rows
    assert {i["billingProvider"] for i in usage} == {"azure"}
    served = get_json(f"{sim.base_url}/v1/invoices/{invoice_id}", pc)
    paid = sum(number(i["totalForCustomer"]) for i in licence) + sum(number(i["postTaxTotal"]) for i in usage)
    assert served["totalCharges"] == paid
    assert served["invoiceType"] == "Recurring"


def test_seek_paging_returns_the_canonical_onetime_rows(sim: Simulator, pc: dict[str, str]) -> None:
    invoice_id = invoice_ids(sim, "G")[0]
    url = f"{sim.base_url}/v1/invoices/{invoice_id}/lineitems?Provider=OneTime&InvoiceLineItemType=BillingLineItems" \
          "&size=17"
    page = get_json(url, pc)
    items = page["items"]
    while "next" in page["links"]:
        nxt = page["links"]["next"]
        assert page["continuationToken"] == nxt["headers"][0]["value"]
        assert nxt["headers"][0]["key"] == "MS-ContinuationToken" and "seekOperation=Next" in nxt["uri"]
        page = get_json(f"{url}&seekOperation=Next", {**pc, "MS-ContinuationToken": page["continuationToken"]})
        items += page["items"]
    assert "continuationToken" not in page
    canonical = list(sim.iter_rows(invoice_id, "onetime"))
    assert len(items) == len(canonical) == sim.expected(invoice_id, "onetime").rows
    layout = layout_for("onetime")
    strings = 0
    for item, row in zip(items, canonical):
        assert item["attributes"]["objectType"] == "OneTimeInvoiceLineItem"
        fields = {layout.column_for_key(k): v for k, v in item.items()}
        fields.pop(None, None)  # invoiceLineItemType, billingProvider, attributes, futureField
        assert set(fields) == {c for c, v in row.items() if v is not None}
        for column, value in fields.items():
            if column in layout.decimal_columns:
                strings += isinstance(value, str)
                assert number(value) == Decimal(row[column]), column
            elif column == "ProductQualifiers":
                assert json.dumps(value) == row[column]
            else:
                assert value == row[column], column
    assert 0 < strings < len(items) * len(layout.decimal_columns)  # some rows send numeric strings, most do not


def test_size_above_2000_and_unknown_invoices_are_refused(sim: Simulator, pc: dict[str, str]) -> None:
    invoice_id = invoice_ids(sim, "G")[0]
    resp = requests.get(f"{sim.base_url}/v1/invoices/{invoice_id}/lineitems?provider=onetime"
                        "&invoicelineitemtype=usagelineitems&size=2001", headers=pc, timeout=10)
    assert resp.status_code == 400 and set(resp.json()) == {"code", "description", "data", "source"}
    resp = requests.get(f"{sim.base_url}/v1/invoices/G999999999", headers=pc, timeout=10)
    assert resp.status_code == 404 and resp.json()["code"] == 1000


def test_unbilled_daily_usage_pages_with_seek(sim: Simulator, pc: dict[str, str]) -> None:
    url = f"{sim.base_url}/v1/invoices/unbilled/lineitems?provider=onetime&invoicelineitemtype=usagelineitems" \
          "&currencycode=EUR&period=current&size=2000"
    page = get_json(url, pc)
    assert "next" not in page["links"]
    expected = sim.unbilled_expected("current")
    assert len(page["items"]) == expected.rows
    assert sum(number(i["billingPreTaxTotal"]) for i in page["items"]) == expected.cost_total
    assert {i["invoiceNumber"] for i in page["items"]} == {""}


# --- Graph exports -----------------------------------------------------------------------------------------------


def export(sim: Simulator, graph: dict[str, str], path: str, body: dict) -> dict:
    """POST an export and poll it to the end, as the documented client does; returns the final operation."""
    resp = requests.post(f"{sim.base_url}/v1.0/reports/partners/billing/{path}/export", json=body, headers=graph,
                         timeout=10)
    assert resp.status_code == 202, resp.text
    location = resp.headers["Location"]
    assert location.startswith(f"{sim.base_url}/v1.0/reports/partners/billing/operations/")
    for _ in range(200):
        resp = requests.get(location, headers=graph, timeout=10)
        operation = json.loads(resp.text, parse_float=Decimal)
        if operation["status"] in ("succeeded", "failed"):
            return operation
        assert operation["status"] in ("notStarted", "running")
        time.sleep(int(resp.headers["Retry-After"]))
    raise AssertionError("export never finished")


def manifest_of(graph: dict[str, str], operation: dict) -> dict:
    assert operation["status"] == "succeeded", operation
    return operation.get("resourceLocation") or get_json(operation["resourceLocation@odata.navigationLink"], graph)


def download(manifest: dict) -> list[dict]:
    rows = []
    for blob in manifest["blobs"]:
        resp = requests.get(f"{manifest['rootDirectory']}/{blob['name']}?{manifest['sasToken']}", timeout=30)
        assert resp.status_code == 200 and len(resp.content) == blob["sizeInBytes"]
        lines = gzip.decompress(resp.content).decode().splitlines()
        assert len(lines) == blob["itemCount"]
        rows += [json.loads(line, parse_float=Decimal) for line in lines]
    return rows


def test_graph_usage_export_end_to_end(sim: Simulator, graph: dict[str, str]) -> None:
    invoice_id = invoice_ids(sim, "G")[1]
    operation = export(sim, graph, "usage/billed", {"invoiceId": invoice_id, "attributeSet": "full"})
    manifest = manifest_of(graph, operation)
    assert manifest["dataFormat"] == "compressedJSON" and manifest["partnerTenantId"] == sim.tenant_id
    assert manifest["blobCount"] == len(manifest["blobs"]) > 1
    assert f"InvoiceId={invoice_id}" in manifest["rootDirectory"] and "se=" in manifest["sasToken"]
    rows = download(manifest)
    expected = sim.expected(invoice_id, "dailyratedusage")
    assert len(rows) == expected.rows
    assert sum(number(r["BillingPreTaxTotal"]) for r in rows) == expected.cost_total  # every decimal place
    assert set().union(*rows) <= set(layout_for("dailyratedusage").columns) | {"FutureField"}
    assert {r["InvoiceNumber"] for r in rows} == {invoice_id}


def test_graph_reconciliation_export_matches_the_invoice(sim: Simulator, pc: dict[str, str],
                                                         graph: dict[str, str]) -> None:
    sim.export_options.inline_manifest = True
    invoice_id = invoice_ids(sim, "G")[0]
    operation = export(sim, graph, "reconciliation/billed", {"invoiceId": invoice_id})
    rows = download(operation["resourceLocation"])
    served = get_json(f"{sim.base_url}/v1/invoices/{invoice_id}", pc)
    assert sum(number(r["Total"]) for r in rows) == served["totalCharges"]
    assert sum(number(r["Subtotal"]) for r in rows).quantize(CENT) == sim.expected(invoice_id, "onetime").cost_total


def test_exports_without_data_fail_with_no_data_available(sim: Simulator, pc: dict[str, str],
                                                          graph: dict[str, str]) -> None:
    legacy = invoice_ids(sim, "D0")[0]
    operation = export(sim, graph, "usage/billed", {"invoiceId": legacy})
    assert operation["status"] == "failed" and operation["error"] == {"code": "5000", "message": "No data available"}
    invoice_id = invoice_ids(sim, "G")[0]
    sim.faults.no_data(invoice_id)
    assert export(sim, graph, "reconciliation/billed", {"invoiceId": invoice_id})["status"] == "failed"
    page = get_json(f"{sim.base_url}/v1/invoices/{invoice_id}/lineitems?provider=onetime"
                    "&invoicelineitemtype=billinglineitems", pc)
    assert page["items"] == [] and "continuationToken" not in page


def test_unbilled_usage_export(sim: Simulator, graph: dict[str, str]) -> None:
    operation = export(sim, graph, "usage/unbilled", {"currencyCode": "EUR", "billingPeriod": "last",
                                                      "attributeSet": "basic"})
    rows = download(manifest_of(graph, operation))
    expected = sim.unbilled_expected("last")
    assert len(rows) == expected.rows
    assert sum(number(r["BillingPreTaxTotal"]) for r in rows) == expected.cost_total
    assert "MeterCategory" not in rows[0]  # the basic attribute set


def test_expired_or_forged_sas_is_refused(sim: Simulator, graph: dict[str, str]) -> None:
    sim.faults.expire_sas()
    manifest = manifest_of(graph, export(sim, graph, "usage/billed", {"invoiceId": invoice_ids(sim, "G")[2]}))
    url = f"{manifest['rootDirectory']}/{manifest['blobs'][0]['name']}"
    resp = requests.get(f"{url}?{manifest['sasToken']}", timeout=10)
    assert resp.status_code == 403 and b"<Code>AuthenticationFailed</Code>" in resp.content
    fresh = manifest_of(graph, export(sim, graph, "usage/billed", {"invoiceId": invoice_ids(sim, "G")[2]}))
    forged = fresh["sasToken"].replace("sig=", "sig=x")
    assert requests.get(f"{url}?{forged}", timeout=10).status_code == 403
    assert requests.get(f"{url}?{fresh['sasToken']}", timeout=10).status_code == 200


def test_truncated_blob_fails_to_decompress(sim: Simulator, graph: dict[str, str]) -> None:
    manifest = manifest_of(graph, export(sim, graph, "usage/billed", {"invoiceId": invoice_ids(sim, "G")[0]}))
    sim.faults.truncate_blobs()
    resp = requests.get(f"{manifest['rootDirectory']}/{manifest['blobs'][0]['name']}?{manifest['sasToken']}",
                        timeout=10)
    assert resp.status_code == 200 and len(resp.content) < manifest["blobs"][0]["sizeInBytes"]
    with pytest.raises((EOFError, gzip.BadGzipFile, zlib.error)):
        gzip.decompress(resp.content)


def test_revision_changes_etag_and_keeps_totals_consistent(sim: Simulator, pc: dict[str, str],
                                                           graph: dict[str, str]) -> None:
    invoice_id = invoice_ids(sim, "G")[0]
    before = manifest_of(graph, export(sim, graph, "usage/billed", {"invoiceId": invoice_id}))
    old = sim.expected(invoice_id, "dailyratedusage")
    assert sim.faults.revise(invoice_id) == 1
    after = manifest_of(graph, export(sim, graph, "usage/billed", {"invoiceId": invoice_id}))
    assert after["eTag"] != before["eTag"]
    new = sim.expected(invoice_id, "dailyratedusage")
    assert new.rows == old.rows and new.cost_total != old.cost_total
    assert sum(number(r["BillingPreTaxTotal"]) for r in download(after)) == new.cost_total
    legacy = invoice_ids(sim, "D0")[0]
    sim.faults.revise(legacy)
    served = get_json(f"{sim.base_url}/v1/invoices/{legacy}", pc)
    assert served["totalCharges"] == sim.expected(legacy, "license").total + sim.expected(legacy, "usage").total


# --- faults ------------------------------------------------------------------------------------------------------


def test_throttling_answers_429_with_retry_after(sim: Simulator, pc: dict[str, str], graph: dict[str, str]) -> None:
    sim.faults.throttle(count=1, path_prefix="/v1/invoices", retry_after=7)
    headers = {**pc, "MS-RequestId": "5d0c7a4e-0000-4000-8000-000000000001"}
    first = requests.get(f"{sim.base_url}/v1/invoices", headers=headers, timeout=10)
    assert first.status_code == 429 and first.headers["Retry-After"] == "7"
    assert first.json() == {"statusCode": 429, "message": "Rate limit is exceeded. Try again in 7 seconds."}
    assert first.headers["MS-RequestId"] == headers["MS-RequestId"]
    assert requests.get(f"{sim.base_url}/v1/invoices", headers=headers, timeout=10).status_code == 200
    retried = [r for r in sim.requests if r.headers.get("ms-requestid") == headers["MS-RequestId"]]
    assert [r.status for r in retried] == [429, 200]
    sim.faults.throttle(path_prefix="/v1.0/")
    resp = requests.post(f"{sim.base_url}/v1.0/reports/partners/billing/usage/billed/export", headers=graph,
                         json={"invoiceId": "G1"}, timeout=10)
    assert resp.status_code == 429 and resp.json()["error"]["code"] == "TooManyRequests"


def test_server_errors_and_failing_invoices(sim: Simulator, pc: dict[str, str]) -> None:
    sim.faults.server_error(count=1, status=503, retry_after=2)
    resp = requests.get(f"{sim.base_url}/v1/invoices", headers=pc, timeout=10)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"
    invoice_id = invoice_ids(sim, "D0")[0]
    sim.faults.fail_invoice(invoice_id)
    url = f"{sim.base_url}/v1/invoices/{invoice_id}/lineitems?provider=office&invoicelineitemtype=billinglineitems"
    assert [requests.get(url, headers=pc, timeout=10).status_code for _ in range(2)] == [500, 500]
    sim.faults.clear_invoice(invoice_id)
    assert requests.get(url, headers=pc, timeout=10).status_code == 200


def test_faults_over_http_and_published_invoices(sim: Simulator, pc: dict[str, str]) -> None:
    resp = requests.post(f"{sim.base_url}/_sim/faults", timeout=10,
                         json={"slow": {"delay": 0.2}, "publish_next_invoice": None})
    assert resp.status_code == 200
    published = resp.json()["publish_next_invoice"]["id"]
    started = time.monotonic()
    ids = [i["id"] for i in get_json(f"{sim.base_url}/v1/invoices?size=2000", pc)["items"]]
    assert time.monotonic() - started >= 0.2
    assert ids[0] == published and len(ids) == 7
    assert requests.post(f"{sim.base_url}/_sim/reset", timeout=10).status_code == 200
    assert published not in invoice_ids(sim, "G")
    assert requests.post(f"{sim.base_url}/_sim/faults", json={"drop_tables": {}}, timeout=10).status_code == 400


# --- data --------------------------------------------------------------------------------------------------------


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    def first_rows(seed: int) -> list[dict]:
        sim = Simulator(seed=seed, size=300)
        return list(islice(sim.iter_rows(invoice_ids(sim, "G")[-1], "dailyratedusage"), 40))

    assert first_rows(7) == first_rows(7)
    assert first_rows(7) != first_rows(8)
    assert Simulator(seed=7).client_secret == Simulator(seed=7).client_secret != Simulator(seed=8).client_secret


@pytest.mark.parametrize("file_type", list(FileType))
def test_every_v1_key_maps_back_to_a_project_column(sim: Simulator, file_type: FileType) -> None:
    prefix = "D0" if file_type in (FileType.LICENSE, FileType.USAGE) else "G"
    layout = layout_for(file_type)
    encoder = v1_encoder(file_type)
    for row in islice(sim.iter_rows(invoice_ids(sim, prefix)[0], file_type), 60):
        item = json.loads(encoder.encode(row, numbers_as_strings=False, future_field=False))
        columns = {layout.column_for_key(key) for key in item} - {None}
        assert columns == {c for c, v in row.items() if v is not None}


def rounddown(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_DOWN)


def roundup(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_UP)


def test_every_onetime_line_follows_microsofts_formulas(sim: Simulator) -> None:
    for invoice_id in invoice_ids(sim, "G"):
        rates: dict[tuple[str, str, str], str] = {}
        references = set()
        for row in sim.iter_rows(invoice_id, "onetime"):
            eup, qty = Decimal(row["EffectiveUnitPrice"]), Decimal(row["BillableQuantity"])
            rate, subtotal = Decimal(row["PCToBCExchangeRate"]), Decimal(row["Subtotal"])
            if row["UnitType"]:  # usage-based
                assert subtotal == rounddown(rounddown(eup * qty) * rate)
                assert Decimal(row["TaxTotal"]) == roundup(subtotal * TAX_PERCENTAGE)
            else:  # seat-based
                assert subtotal == rounddown(eup * rate) * qty
                assert Decimal(row["TaxTotal"]) == roundup(rounddown(eup * rate) * TAX_PERCENTAGE) * qty
                if row["ChargeType"] in ("new", "renew", "cycleCharge", "customerCredit"):
                    start = date.fromisoformat(row["ChargeStartDate"][:10])
                    months = 12 if row["BillingFrequency"] == "Annual" else 1
                    assert row["ChargeEndDate"][:10] == (add_months(start, months) - timedelta(days=1)).isoformat()
            assert Decimal(row["Total"]) == subtotal + Decimal(row["TaxTotal"])
            key = (row["PricingCurrency"], row["Currency"], row["PCToBCExchangeRateDate"])
            assert rates.setdefault(key, row["PCToBCExchangeRate"]) == row["PCToBCExchangeRate"]
            references.add(row["ReferenceId"])
        assert len(references) == sim.expected(invoice_id, "onetime").rows
        assert {pair[0] for pair in rates} == {"EUR", "USD"}


def test_cli_prints_its_coordinates_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "devtools.simulator", "--seed", "3", "--size", "50",
                             "--workdir", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        info = json.loads(proc.stdout.readline())
        config = requests.get(f"{info['base_url']}/{info['tenant_id']}/v2.0/.well-known/openid-configuration",
                              verify=info["ca_path"], timeout=10)
        assert config.json()["token_endpoint"].startswith(info["base_url"])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
