"""`make demo`: the main job end to end, on this machine, against real parts.

Azurite, the Partner Center simulator and the local Functions host start; the simulator's partner tenant is
registered through the API; a One Time reconciliation file is requested for its latest new-commerce invoice; the
queue worker makes it; the file is downloaded through its SAS link; and its rows and totals are checked against
the simulator's invoice, to the cent. Exits non-zero if anything does not tie out.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import time
from decimal import Decimal

import requests

from devtools.stack import ROOT, Stack

OUT = ROOT / ".run" / "demo"


def wait_for(api: str, path: str, headers: dict[str, str], timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        record = requests.get(f"{api}{path}", headers=headers, timeout=30).json()
        if record["status"] != last:
            progress = record.get("progressRows")
            rows = f" ({progress} rows so far)" if record["status"] == "Processing" and progress else ""
            print(f"  status: {record['status']}{rows}", flush=True)
            last = record["status"]
        if record["status"] in ("Available", "Failed"):
            return record
        time.sleep(0.3)
    raise SystemExit(f"timed out waiting for {path}")


def csv_totals(data: bytes, column: str) -> tuple[int, Decimal]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    rows, total = 0, Decimal(0)
    for row in reader:
        rows += 1
        total += Decimal(row[column] or 0)
    return rows, total


def main() -> int:
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # the demo prints its own story; warnings still show
    with Stack() as stack:
        api = stack.api
        tenant = stack.register_sample_tenant()
        invoice = next(i for i in stack.sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice")
        invoice_id = invoice["id"]
        auth = stack.headers(tenant)  # a partner admin of the simulator's tenant (token from the local issuer)
        print(f"Tenant {tenant}: requesting the One Time file of invoice {invoice_id}", flush=True)
        resp = requests.post(f"{api}/tenants/{tenant}/reconciliation-files",
                             json={"invoiceType": "onetime", "invoiceId": invoice_id}, headers=auth, timeout=30)
        resp.raise_for_status()
        record = wait_for(api, resp.headers["Location"].removeprefix("/api"), auth)
        if record["status"] != "Available":
            print(f"Generation failed: {record.get('error')}")
            return 1
        link = requests.get(f"{api}/tenants/{tenant}/reconciliation-files/{record['id']}/download",
                            headers=auth, allow_redirects=False, timeout=30)
        data = requests.get(link.headers["Location"], timeout=60).content
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / record["fileName"]
        path.write_bytes(data)
        rows, cost = csv_totals(data, "Subtotal")
        _, total = csv_totals(data, "Total")
        expected = stack.sim.expected(invoice_id, "onetime")
        invoice_total = Decimal(str(invoice["totalCharges"]))
        print(f"File:      {path.relative_to(ROOT)}")
        print(f"Rows:      {rows} (simulator invoice: {expected.rows})")
        print(f"Subtotal:  {cost} (simulator invoice: {expected.cost_total})")
        print(f"Total:     {total} (invoice totalCharges: {invoice_total} {invoice.get('currencyCode', '')})")
        print(f"Record:    rowCount {record['rowCount']}, totals {record['totals']}, source {record['source']}")
        ok = rows == expected.rows and cost == expected.cost_total and total == invoice_total
        print("Ties out to the cent." if ok else "DOES NOT TIE OUT.")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
