"""The slice as a client sees it: HTTP → queue → worker → Blob → Table status → SAS download, all through the
local Functions host (real HTTP, real queue polling with base64 messages), Azurite and the simulator."""

from __future__ import annotations

import csv
import io
import time
from decimal import Decimal

import requests

from devtools.stack import Stack
from tests.conftest import SECRET_SETTING


def test_request_generate_download_over_http(sim, sim_env, issuer) -> None:
    with Stack(port=0, issuer=issuer) as stack:
        api = stack.api
        tenant = sim.tenant_id
        auth = stack.headers(tenant)  # a partner admin of the simulator's tenant
        assert requests.get(f"{api}/tenants/{tenant}", timeout=30).status_code == 401  # no token, no entry
        body = {"displayName": "Sim", "clientId": sim.client_id, "clientSecretSetting": SECRET_SETTING}
        assert requests.put(f"{api}/tenants/{tenant}", json=body, headers=auth, timeout=30).status_code == 201
        invoice = next(i for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")
        resp = requests.post(f"{api}/tenants/{tenant}/reconciliation-files",
                             json={"invoiceType": "onetime", "invoiceId": invoice["id"]}, headers=auth, timeout=30)
        assert resp.status_code == 202
        location = resp.headers["Location"]
        seen = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            record = requests.get(f"{stack.host.url}{location}", headers=auth, timeout=30).json()
            if not seen or seen[-1] != record["status"]:
                seen.append(record["status"])
            if record["status"] in ("Available", "Failed"):
                break
            time.sleep(0.1)
        assert seen[-1] == "Available", record
        link = requests.get(f"{stack.host.url}{location}/download", headers=auth, allow_redirects=False,
                            timeout=30)
        assert link.status_code == 302
        data = requests.get(link.headers["Location"], timeout=30).content
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
        expected = sim.expected(invoice["id"], "onetime")
        assert len(rows) == expected.rows == record["rowCount"]
        assert sum(Decimal(r["Subtotal"]) for r in rows) == expected.cost_total
        assert sum(Decimal(r["Total"]) for r in rows) == Decimal(str(invoice["totalCharges"]))


def _settled(get, url: str, done=("Available", "Failed"), timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = get(url).json()
        if record["status"] in done:
            return record
        time.sleep(0.1)
    raise AssertionError(f"{url} did not settle: {record}")


def test_billing_summary_and_focus_export_over_http_tie_out_to_the_cent(sim, sim_env, issuer) -> None:
    """The exports through the host: the files and the exports made by their queue triggers, downloaded through
    their links and checked against the file's own lines (the view) to the cent."""
    with Stack(port=0, issuer=issuer) as stack:
        api, tenant, auth = stack.api, sim.tenant_id, stack.headers(sim.tenant_id)

        def get(url: str) -> requests.Response:
            return requests.get(url, headers=auth, timeout=60)

        body = {"displayName": "Sim", "clientId": sim.client_id, "clientSecretSetting": SECRET_SETTING}
        assert requests.put(f"{api}/tenants/{tenant}", json=body, headers=auth, timeout=30).status_code == 201
        invoice = next(i for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")
        for file_type, kind in (("onetime", "billing"), ("dailyratedusage", "focus")):
            resp = requests.post(f"{api}/tenants/{tenant}/reconciliation-files", headers=auth, timeout=30,
                                 json={"invoiceType": file_type, "invoiceId": invoice["id"]})
            file_url = f"{stack.host.url}{resp.headers['Location']}"
            assert _settled(get, file_url)["status"] == "Available"
            file_link = requests.get(f"{file_url}/download", headers=auth, allow_redirects=False, timeout=30)
            lines = list(csv.DictReader(io.StringIO(
                requests.get(file_link.headers["Location"], timeout=60).content.decode("utf-8-sig"))))
            reseller_column = "ResellerMpnId" if file_type == "onetime" else "Tier2MpnId"
            want = sum(Decimal(x["CustomerSubtotal"] if x[reseller_column] in ("", "0", "-1")
                               else x["ResellerSubtotal"]) for x in lines)
            made = requests.post(f"{file_url}/exports", json={"kind": kind}, headers=auth, timeout=30)
            assert made.status_code == 202, made.text
            export_url = f"{stack.host.url}{made.headers['Location']}"
            export = _settled(get, export_url)
            assert export["status"] == "Available", export
            link = requests.get(f"{export_url}/download", headers=auth, allow_redirects=False, timeout=30)
            assert link.status_code == 302
            rows = list(csv.DictReader(io.StringIO(
                requests.get(link.headers["Location"], timeout=60).content.decode("utf-8-sig"))))
            amount = "Amount" if kind == "billing" else "BilledCost"
            assert sum(Decimal(r[amount]) for r in rows) == want == Decimal(export["amount"]), kind
            assert round(want, 2) == round(sum(Decimal(r[amount]) for r in rows), 2)  # to the cent, and beyond
