"""Storage goes away in the middle of a file and comes back: Azurite (the app's own, on its own ports and folder)
is stopped for 20 seconds while a daily rated usage file is being made, then started again on the same ports
with the same data. The local Functions host, its queue poller and the worker ride it out (the SDKs' retries, a
redelivered message, a lease taken over), and the file ends Available, exact, one version."""

from __future__ import annotations

import time

import requests

from devtools.azurite import Azurite
from devtools.load import file_sums, request_file, wait_available
from devtools.stack import Stack
from tests.conftest import SECRET_SETTING

OUTAGE_SECONDS = 20


def _status(api: str, tenant: str, headers: dict[str, str], file_id: str) -> dict:
    resp = requests.get(f"{api}/tenants/{tenant}/reconciliation-files/{file_id}", headers=headers, timeout=30)
    resp.raise_for_status()
    return resp.json()


def test_a_file_survives_storage_stopped_for_20_seconds_mid_file(sim, sim_env, issuer, tmp_path, monkeypatch) -> None:
    (tmp_path / "azurite").mkdir()
    storage = Azurite(location=str(tmp_path / "azurite")).start()
    monkeypatch.setenv("AzureWebJobsStorage", storage.connection_string)
    try:
        with Stack(port=0, issuer=issuer) as stack:
            api, tenant = stack.api, sim.tenant_id
            headers = stack.headers(tenant)
            body = {"displayName": "Sim", "clientId": sim.client_id, "clientSecretSetting": SECRET_SETTING}
            assert requests.put(f"{api}/tenants/{tenant}", json=body, headers=headers, timeout=30).ok
            invoice = next(i["id"] for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")
            want = sim.expected(invoice, "dailyratedusage")
            # Microsoft's export blobs come slowly, so the file is still being made when storage goes away.
            sim.faults.slow(count=10, delay=2.0, path_prefix="/blobs/")
            file_id = request_file(api, tenant, headers, invoice)
            deadline = time.monotonic() + 60
            while _status(api, tenant, headers, file_id)["status"] != "Processing":
                assert time.monotonic() < deadline, "the file never started"
                time.sleep(0.2)
            time.sleep(1.0)  # into the export's blobs

            storage.process.terminate()  # type: ignore[union-attr]
            storage.process.wait(10)  # type: ignore[union-attr]
            time.sleep(OUTAGE_SECONDS)
            storage.start()  # the same ports and folder: the same data
            back = time.monotonic()

            record = wait_available(api, tenant, headers, file_id, timeout=300)
            print(f"Available {time.monotonic() - back:.0f} s after storage came back")
            assert record["status"] == "Available", record
            assert record["version"] == 1, record
            rows, total = file_sums(api, tenant, headers, file_id)
            assert (rows, total) == (want.rows, want.total)
            versions = requests.get(f"{api}/tenants/{tenant}/reconciliation-files/{file_id}/versions",
                                    headers=headers, timeout=30).json()
            assert len(versions["items"]) <= 1, versions  # the settled version only (none before a regeneration)
    finally:
        sim.faults.reset()
        storage.stop()
