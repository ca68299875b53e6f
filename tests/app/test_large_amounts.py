"""Amounts of every currency end to end (issue 14, defects 4 and 5): the simulator's invoices in Vietnamese dong,
with lines of about 10^13 dong and invoice totals above 10^12, through the real worker (Graph export on Arrow's fast
reader, v1 pages on the careful one) into Azurite; the file ties out to the invoice to the dong. And a line without
a cost: an error finding on that line, and the record counts it."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest

from shared.app import findings
from shared.core.models import FileStatus
from tests.app.test_generation import download_rows, generate


@pytest.mark.parametrize("source", ["graph", "v1"])
def test_an_invoice_in_dong_ties_out_to_the_dong(sim_env, ctx, sim, monkeypatch, source) -> None:
    if source == "v1":
        monkeypatch.setenv("ONETIME_GRAPH_FROM", "2099-01-01")
        from shared.adapters.settings import reset_settings
        from shared.app.context import get_context, reset_context

        reset_settings()
        reset_context()
        ctx = get_context()
    published = sim.faults.publish_vnd_invoices()
    for entry in published:
        inv = entry["id"]
        invoice = next(i for i in sim.invoices() if i["id"] == inv)
        charges = Decimal(str(invoice["totalCharges"]))
        assert invoice["currencyCode"] == "VND" and charges > 10**12
        tenant, record = generate(ctx, sim, "onetime", inv)
        assert record.status == FileStatus.AVAILABLE, record.error
        assert record.source.value == source
        expected = sim.expected(inv, "onetime")
        assert record.row_count == expected.rows
        assert record.totals.cost == expected.cost_total
        assert record.totals.microsoft_total == expected.total == charges
        assert record.invoice_total == charges and record.invoice_difference == 0
        assert record.no_cost_lines == 0
        # seat removals refund cycles billed in the first invoice: warnings with their reason, never errors
        assert record.findings["error"] == 0, record.findings
        rows = download_rows(ctx, tenant, record.id)
        served = {r["ReferenceId"]: r for r in sim.iter_rows(inv, "onetime")}
        for row in rows:  # every amount exactly as Microsoft sent it, to the dong
            for column in ("Subtotal", "TaxTotal", "Total", "EffectiveUnitPrice", "PCToBCExchangeRate"):
                assert Decimal(row[column]) == Decimal(served[row["ReferenceId"]][column]), column
        with localcontext(prec=100):
            assert sum(Decimal(r["Total"]) for r in rows) == charges
            assert max(abs(Decimal(r["Subtotal"])) for r in rows) > 10**12


def test_a_line_without_cost_is_an_error_finding_and_counted_on_the_record(sim_env, ctx, sim) -> None:
    from tests.app.test_generation import invoice_id

    inv = invoice_id(sim)
    sim.faults.defect(inv, "no_cost")
    tenant, record = generate(ctx, sim, "onetime", inv)
    assert record.status == FileStatus.AVAILABLE, record.error
    assert record.no_cost_lines == 1
    assert record.findings["byRule"]["MISSING_COST"] == {"error": 1}
    page = findings.findings_page(ctx, record, "error", "MISSING_COST", 50, None)
    key = page["items"][0]["key"]["ReferenceId"]
    line = next(r for r in sim.iter_rows(inv, "onetime") if r["ReferenceId"] == key)
    assert line["Subtotal"] is None and line["Total"]
    assert record.public()["noCostLines"] == 1
    from functions.openapi_api import document

    assert "noCostLines" in document()["components"]["schemas"]["FileRecord"]["properties"]
    expected = sim.expected(inv, "onetime")
    assert record.totals.cost == expected.cost_total and record.invoice_difference == 0
