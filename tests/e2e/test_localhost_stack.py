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
