"""Time a Graph daily-usage export of one new-commerce invoice: generation (first export), then download.

    python -m devtools.simulator.bench --size 1000000 [--workdir DIR] [--verify]

Prints one JSON line. With --workdir the blobs stay cached, so a second run times the download alone.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from decimal import Decimal

import requests

from .core import Simulator
from .money import EXACT


def _export(sim: Simulator, session: requests.Session, invoice_id: str) -> dict:
    token = session.post(f"{sim.base_url}/{sim.tenant_id}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": sim.client_id, "client_secret": sim.client_secret,
        "scope": "https://graph.microsoft.com/.default"}).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    location = session.post(f"{sim.base_url}/v1.0/reports/partners/billing/usage/billed/export",
                            json={"invoiceId": invoice_id, "attributeSet": "full"}).headers["Location"]
    while True:
        resp = session.get(location)
        operation = resp.json()
        if operation["status"] == "succeeded":
            return session.get(operation["resourceLocation@odata.navigationLink"]).json()
        if operation["status"] == "failed":
            raise RuntimeError(operation)
        time.sleep(float(resp.headers.get("Retry-After", "1")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--workdir")
    parser.add_argument("--verify", action="store_true", help="also check Σ BillingPreTaxTotal against expected()")
    args = parser.parse_args()
    with Simulator(size=args.size, workdir=args.workdir) as sim:
        os.environ["REQUESTS_CA_BUNDLE"] = sim.ca_path
        session = requests.Session()
        invoice_id = next(str(i["id"]) for i in sim.invoices() if str(i["id"]).startswith("G"))
        started = time.perf_counter()
        manifest = _export(sim, session, invoice_id)
        exported = time.perf_counter()
        rows, compressed, cost = 0, 0, Decimal(0)
        for blob in manifest["blobs"]:
            resp = session.get(f"{manifest['rootDirectory']}/{blob['name']}?{manifest['sasToken']}", stream=True)
            resp.raise_for_status()
            with gzip.GzipFile(fileobj=resp.raw) as lines:
                for line in lines:
                    rows += 1
                    if args.verify:
                        cost = EXACT.add(cost, Decimal(json.loads(line, parse_float=Decimal)["BillingPreTaxTotal"]))
            compressed += blob["sizeInBytes"]
        downloaded = time.perf_counter()
        result = {"rows": rows, "blobs": manifest["blobCount"], "compressed_mb": round(compressed / 1e6, 1),
                  "export_seconds": round(exported - started, 1), "download_seconds": round(downloaded - exported, 1)}
        if args.verify:
            result["sum_matches"] = cost == sim.expected(invoice_id, "dailyratedusage").cost_total
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
