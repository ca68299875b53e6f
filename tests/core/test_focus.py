"""The FOCUS export against the specification's own column table (docs/focus/focus-1.2-columns.json, copied as data
from the FOCUS_Spec repository's v1.2 tag): names, types, nullability, allowed values; and its costs, exactly."""

from __future__ import annotations

import json
from shared.core.money import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from shared.core import focus
from shared.core.columns import DAILY, ENGINE_COLUMNS
from shared.core.margins import MarginEngine, MarginRule
from shared.core.models import View
from shared.core.views import select_lines, project

SPEC = json.loads((Path(__file__).resolve().parents[2] / "docs" / "focus" / "focus-1.2-columns.json").read_text())
COLUMNS = {c["columnId"]: c for c in SPEC["columns"]}
ARROW_OF = {"Decimal": pa.types.is_decimal, "String": pa.types.is_string, "Date/Time": pa.types.is_timestamp,
            "JSON": pa.types.is_string}


def test_the_spec_table_is_the_published_v1_2() -> None:
    assert SPEC["version"] == "1.2" and "v1.2" in SPEC["source"]
    assert len(COLUMNS) == 57 and COLUMNS["BilledCost"]["allowsNulls"] is False


def test_every_mandatory_column_is_there_and_nothing_is_invented() -> None:
    names = focus.SCHEMA.names
    mandatory = {n for n, c in COLUMNS.items() if c["featureLevel"] == "Mandatory"}
    assert mandatory <= set(names), mandatory - set(names)
    unknown = [n for n in names if n not in COLUMNS and not n.startswith("x_")]
    assert not unknown, f"not FOCUS 1.2 columns and not x_-prefixed: {unknown}"


def test_types_and_nullability_follow_the_spec_table() -> None:
    for f in focus.SCHEMA:
        spec = COLUMNS.get(f.name)
        if spec is None:
            continue
        assert ARROW_OF[spec["dataType"]](f.type), (f.name, f.type, spec["dataType"])
        if not spec["allowsNulls"]:
            assert not f.nullable, f"{f.name} may not be null in FOCUS 1.2"


def _line(**over) -> dict:
    row = {c: None for c in DAILY.columns}
    row.update({"PartnerName": "Contoso partner", "CustomerId": "c1c1c1c1-0000-4000-8000-000000000001",
                "CustomerName": "Fabrikam", "Tier2MpnId": "1234567", "InvoiceNumber": "G000000001",
                "ProductId": "DZH318Z0BQ3Q", "SkuId": "0001", "PublisherName": "Microsoft",
                "SubscriptionId": "51515151-0000-4000-8000-000000000001", "ChargeStartDate": "2026-10-01T00:00:00Z",
                "ChargeEndDate": "2026-10-31T00:00:00Z", "UsageDate": "2026-10-17T00:00:00Z",
                "MeterCategory": "Virtual Machines", "MeterId": "m-1", "MeterName": "D2s v5", "MeterRegion": "EU West",
                "Unit": "1 Hour", "ResourceLocation": "westeurope",
                "ResourceURI": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
                "ChargeType": "new", "UnitPrice": Decimal("0.096"), "Quantity": Decimal("7.123456789"),
                "BillingPreTaxTotal": Decimal("0.630123456789012"), "BillingCurrency": "EUR",
                "PricingPreTaxTotal": Decimal("0.683827"), "PricingCurrency": "USD",
                "Tags": '{"env":"prod"}', "EffectiveUnitPrice": Decimal("0.0816"),
                "PCToBCExchangeRate": Decimal("0.9215"), "EntitlementId": "e1", "EntitlementDescription": "Azure plan"})
    row.update(over)
    return row


def _batch(rows: list[dict], rules: list[MarginRule]) -> pa.RecordBatch:
    types = {c: (pa.decimal128(38, 28) if c in DAILY.decimal_columns else pa.string()) for c in DAILY.columns}
    batch = pa.RecordBatch.from_pydict({c: pa.array([r[c] for r in rows], types[c]) for c in DAILY.columns})
    return MarginEngine(DAILY, rules).apply(batch)


RULE = MarginRule(id="r", level="reseller", target_id="1234567", percent=Decimal("12.5"),
                  effective_from="2026-01-01")


def test_partner_view_costs_are_exact() -> None:
    out = focus.focus_batch(_batch([_line(), _line(Tier2MpnId="", CustomerName="Direct Ltd")], [RULE]),
                            View.PARTNER, "Contoso partner")
    row, direct = out.to_pylist()
    # ResellerSubtotal = round(0.630123456789012 × 1.125, 6) = 0.708889 (half away from zero)
    assert row["BilledCost"] == row["EffectiveCost"] == Decimal("0.708889")
    assert row["BillingAccountType"] == "Reseller" and row["BillingAccountId"] == "1234567"
    assert row["ContractedCost"] == Decimal("0.630123456789012")  # Microsoft's charge to the partner
    assert row["ListCost"] == Decimal("0.096") * Decimal("7.123456789") * Decimal("0.9215")  # exact
    assert row["ListUnitPrice"] == Decimal("0.096") * Decimal("0.9215")
    assert direct["BillingAccountType"] == "Customer" and direct["BillingAccountName"] == "Direct Ltd"
    assert direct["BilledCost"] == Decimal("0.630123")  # CustomerSubtotal of a direct line: cost, 6 places
    assert row["ServiceCategory"] == "Compute" and row["ChargeCategory"] == "Usage"
    assert row["ChargePeriodStart"].isoformat() == "2026-10-17T00:00:00+00:00"
    assert row["ChargePeriodEnd"].isoformat() == "2026-10-18T00:00:00+00:00"
    assert row["BillingPeriodEnd"].isoformat() == "2026-11-01T00:00:00+00:00"  # exclusive
    assert row["ResourceName"] == "vm1" and row["Tags"] == '{"env":"prod"}'


def test_reseller_view_has_no_microsoft_price_and_no_null_cost() -> None:
    full = _batch([_line()], [RULE])
    view = project(DAILY, select_lines(DAILY, full, View.RESELLER, "1234567"), View.RESELLER)
    assert "BillingPreTaxTotal" not in view.schema.names
    row = focus.focus_batch(view, View.RESELLER, "Reseller 1234567").to_pylist()[0]
    assert row["BilledCost"] == row["ListCost"] == row["ContractedCost"] == Decimal("0.708889")
    assert row["ListUnitPrice"] is None and row["PricingCurrencyEffectiveCost"] is None
    assert row["BillingAccountType"] == "Customer"


def test_non_nullable_columns_hold_no_null_and_allowed_values_hold() -> None:
    rows = [_line(), _line(MeterCategory=None, PublisherName=None, ChargeType="Refund", Tags="")]
    out = focus.focus_batch(_batch(rows, []), View.PARTNER, "Contoso partner")
    for f in out.schema:
        spec = COLUMNS.get(f.name)
        if spec and not spec["allowsNulls"]:
            assert out.column(f.name).null_count == 0, f.name
        if spec and spec.get("allowedValues"):
            values = set(out.column(f.name).drop_null().to_pylist())
            assert values <= set(spec["allowedValues"]), (f.name, values)
    assert out.column("ChargeCategory").to_pylist() == ["Usage", "Credit"]


def test_csv_dates_are_focus_text() -> None:
    out = focus.iso_text(focus.focus_batch(_batch([_line()], []), View.PARTNER, "P"))
    assert out.column("ChargePeriodStart").to_pylist() == ["2026-10-17T00:00:00Z"]


def test_only_daily_usage() -> None:
    from shared.core.columns import ONETIME

    with pytest.raises(ValueError):
        focus.focus_batch(pa.RecordBatch.from_pydict({c: [] for c in ENGINE_COLUMNS}), View.PARTNER, "P", ONETIME)
