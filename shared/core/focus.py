"""Daily rated usage as FOCUS 1.2 (FinOps Open Cost and Usage Specification): one FOCUS row per line of the view.

The column list, types and nullability are the specification's (docs/focus/focus-1.2-columns.json, copied from
its v1.2 tag; tests/core/test_focus.py checks this module against it). Every Mandatory column is present; the
Conditional and Recommended ones Microsoft's daily rated usage can fill are present too; provider-specific
columns carry the `x_` prefix the specification reserves for them.

Costs (exact decimals, in the billing currency):
- `BilledCost` = `EffectiveCost` = the view's price to bill (see shared.core.billing.price_to_bill): the partner's
  price in a partner view (to the reseller, or to a direct customer), the customer's price in a reseller view.
- `ContractedCost` = Microsoft's charge to the partner (`BillingPreTaxTotal`) and `ListCost` = Microsoft's list
  price × quantity in billing currency (`UnitPrice × Quantity × PCToBCExchangeRate`, exact to 28 places, half-even
  beyond as everywhere in the project), in a partner view. Reseller views never hold Microsoft's prices; as the
  specification allows no null there, both are the view's price to bill (the reseller's own list and contract).
- Unit prices (`ListUnitPrice`, `ContractedUnitPrice`, the `PricingCurrency…` ones) in partner views only, else
  null (they allow null).
"""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc

from shared.core.money import CONTEXT, ROUND_HALF_EVEN, Decimal
from shared.core.billing import price_to_bill
from shared.core.columns import DAILY, FileType, Layout
from shared.core.models import View

VERSION = "1.2"
DECIMAL = pa.decimal128(38, 28)  # the project's exact amounts: Microsoft's daily amounts carry up to 15 places
COST_TYPE = PRICE_TYPE = QUANTITY_TYPE = DECIMAL
TIME_TYPE = pa.timestamp("s", tz="UTC")
_CTX = CONTEXT
_Q28 = Decimal(1).scaleb(-28)

# Microsoft's MeterCategory -> FOCUS ServiceCategory (the specification's allowed values); anything else: Other.
SERVICE_CATEGORIES = {
    "virtual machines": "Compute", "container instances": "Compute", "azure app service": "Web",
    "app service": "Web", "functions": "Compute", "cloud services": "Compute", "batch": "Compute",
    "storage": "Storage", "backup": "Storage", "sql database": "Databases", "azure cosmos db": "Databases",
    "azure database for postgresql": "Databases", "azure database for mysql": "Databases", "redis cache": "Databases",
    "bandwidth": "Networking", "virtual network": "Networking", "load balancer": "Networking",
    "networking": "Networking", "vpn gateway": "Networking", "azure dns": "Networking",
    "key vault": "Security", "microsoft defender for cloud": "Security", "log analytics": "Management and Governance",
    "azure monitor": "Management and Governance", "insight and analytics": "Management and Governance",
    "cognitive services": "AI and Machine Learning", "azure openai": "AI and Machine Learning",
    "machine learning": "AI and Machine Learning", "event hubs": "Integration", "service bus": "Integration",
    "logic apps": "Integration", "azure synapse analytics": "Analytics", "azure data factory v2": "Analytics",
}

# (name, Arrow type, nullable) in the specification's (alphabetical) order, then our x_ columns.
SCHEMA = pa.schema([
    pa.field("BilledCost", COST_TYPE, False), pa.field("BillingAccountId", pa.string(), False),
    pa.field("BillingAccountName", pa.string(), True), pa.field("BillingAccountType", pa.string(), False),
    pa.field("BillingCurrency", pa.string(), False), pa.field("BillingPeriodEnd", TIME_TYPE, False),
    pa.field("BillingPeriodStart", TIME_TYPE, False), pa.field("ChargeCategory", pa.string(), False),
    pa.field("ChargeClass", pa.string(), True), pa.field("ChargeDescription", pa.string(), True),
    pa.field("ChargeFrequency", pa.string(), False), pa.field("ChargePeriodEnd", TIME_TYPE, False),
    pa.field("ChargePeriodStart", TIME_TYPE, False), pa.field("ConsumedQuantity", QUANTITY_TYPE, True),
    pa.field("ConsumedUnit", pa.string(), True), pa.field("ContractedCost", COST_TYPE, False),
    pa.field("ContractedUnitPrice", PRICE_TYPE, True), pa.field("EffectiveCost", COST_TYPE, False),
    pa.field("InvoiceId", pa.string(), True), pa.field("InvoiceIssuerName", pa.string(), False),
    pa.field("ListCost", COST_TYPE, False), pa.field("ListUnitPrice", PRICE_TYPE, True),
    pa.field("PricingCategory", pa.string(), True), pa.field("PricingCurrency", pa.string(), True),
    pa.field("PricingCurrencyContractedUnitPrice", PRICE_TYPE, True),
    pa.field("PricingCurrencyEffectiveCost", PRICE_TYPE, True),
    pa.field("PricingCurrencyListUnitPrice", PRICE_TYPE, True), pa.field("PricingQuantity", QUANTITY_TYPE, True),
    pa.field("PricingUnit", pa.string(), True), pa.field("ProviderName", pa.string(), False),
    pa.field("PublisherName", pa.string(), False), pa.field("RegionId", pa.string(), True),
    pa.field("RegionName", pa.string(), True), pa.field("ResourceId", pa.string(), True),
    pa.field("ResourceName", pa.string(), True), pa.field("ServiceCategory", pa.string(), False),
    pa.field("ServiceName", pa.string(), False), pa.field("SkuId", pa.string(), True),
    pa.field("SkuMeter", pa.string(), True), pa.field("SkuPriceId", pa.string(), True),
    pa.field("SubAccountId", pa.string(), True), pa.field("SubAccountName", pa.string(), True),
    pa.field("SubAccountType", pa.string(), True), pa.field("Tags", pa.string(), True),
    pa.field("x_CustomerId", pa.string(), True), pa.field("x_CustomerName", pa.string(), True),
    pa.field("x_CustomerInternalId", pa.string(), True), pa.field("x_ResellerMpnId", pa.string(), True),
    pa.field("x_ResellerInternalId", pa.string(), True), pa.field("x_SubscriptionInternalId", pa.string(), True),
    pa.field("x_PONumber", pa.string(), True), pa.field("x_MeterCategory", pa.string(), True),
])
# FOCUS data types of our Arrow types (what tests compare with the specification's table).
FOCUS_TYPES = {DECIMAL: "Decimal", TIME_TYPE: "Date/Time", pa.string(): "String"}
JSON_COLUMNS = frozenset({"Tags"})  # FOCUS type JSON, written as JSON text


def _col(batch: pa.RecordBatch, name: str, typ: pa.DataType = pa.string()) -> pa.Array:
    idx = batch.schema.get_field_index(name)
    if idx < 0:
        return pa.nulls(batch.num_rows, typ)
    arr = batch.column(idx)
    return arr if arr.type == typ else pc.cast(arr, typ)


def _day_time(text: pa.Array, days: int = 0) -> pa.Array:
    """yyyy-mm-dd… text -> UTC midnight of that day (+ `days`); unreadable text -> null."""
    day = pc.utf8_slice_codeunits(text, 0, 10)
    ok = pc.fill_null(pc.match_substring_regex(day, r"^\d{4}-\d{2}-\d{2}$"), False)
    stamp = pc.strptime(pc.if_else(ok, day, pa.scalar(None, pa.string())), format="%Y-%m-%d", unit="s")
    if days:
        stamp = pc.add(stamp, pa.scalar(timedelta(days=days), pa.duration("s")))
    return pc.cast(stamp, TIME_TYPE)


def _exact(values: list[Decimal | None], quantum: Decimal) -> list[Decimal | None]:
    return [None if v is None else v.quantize(quantum, rounding=ROUND_HALF_EVEN, context=_CTX) for v in values]


def _product(*columns: pa.Array, quantum: Decimal, typ: pa.DataType) -> pa.Array:
    """Row-wise product of decimal columns in Python's Decimal (exact; 120 digits), then rounded once."""
    lists = [c.to_pylist() for c in columns]
    out = []
    for row in zip(*lists):
        if any(v is None for v in row):
            out.append(None)
            continue
        value = Decimal(1)
        for v in row:
            value = _CTX.multiply(value, v)
        out.append(value)
    return pa.array(_exact(out, quantum), typ)


def service_category(meter_category: pa.Array) -> pa.Array:
    keys = pc.utf8_lower(pc.fill_null(meter_category, ""))
    known = pa.array(list(SERVICE_CATEGORIES))
    index = pc.index_in(keys, value_set=known)
    mapped = pc.take(pa.array(list(SERVICE_CATEGORIES.values())), index)
    return pc.fill_null(mapped, "Other")


def focus_batch(batch: pa.RecordBatch, view: View, issuer: str, layout: Layout = DAILY) -> pa.RecordBatch:
    """One daily-rated-usage batch of the view (engine columns filled) as FOCUS rows."""
    if layout.file_type != FileType.DAILY:
        raise ValueError("FOCUS exports are made from daily rated usage.")
    n = batch.num_rows
    partner = view == View.PARTNER
    bill_to, bill_to_id, billed = price_to_bill(layout, batch, view)
    billed = pc.cast(billed, COST_TYPE)
    quantity = _col(batch, "Quantity", QUANTITY_TYPE)
    if partner:
        unit, effective, rate = (_col(batch, c, PRICE_TYPE) for c in ("UnitPrice", "EffectiveUnitPrice",
                                                                       "PCToBCExchangeRate"))
        contracted = pc.cast(_col(batch, "BillingPreTaxTotal", PRICE_TYPE), COST_TYPE)
        listed = _product(unit, quantity, rate, quantum=_Q28, typ=COST_TYPE)
        list_unit = _product(unit, rate, quantum=_Q28, typ=PRICE_TYPE)
        contracted_unit = _product(effective, rate, quantum=_Q28, typ=PRICE_TYPE)
        pc_list, pc_contracted = unit, effective
        pc_effective = _col(batch, "PricingPreTaxTotal", PRICE_TYPE)
    else:
        contracted = listed = billed
        list_unit = contracted_unit = pc_list = pc_contracted = pc_effective = pa.nulls(n, PRICE_TYPE)
    uri = _col(batch, "ResourceURI")
    charge_type = pc.utf8_lower(pc.fill_null(_col(batch, "ChargeType"), ""))
    category = pc.if_else(pc.match_substring_regex(charge_type, "refund|credit"), "Credit", "Usage")
    customer_name = _col(batch, "CustomerName")
    tags = _col(batch, "Tags")
    tags = pc.if_else(pc.fill_null(pc.starts_with(pc.utf8_trim_whitespace(tags), "{"), False), tags,
                      pa.scalar(None, pa.string()))
    meter_category = _col(batch, "MeterCategory")
    columns = {
        "BilledCost": billed, "BillingAccountId": bill_to_id,
        "BillingAccountName": pc.if_else(pc.equal(bill_to, "customer"), customer_name, pa.scalar(None, pa.string())),
        "BillingAccountType": pc.if_else(pc.equal(bill_to, "customer"), "Customer", "Reseller"),
        "BillingCurrency": _col(batch, "BillingCurrency"),
        "BillingPeriodEnd": _day_time(_col(batch, "ChargeEndDate"), 1),
        "BillingPeriodStart": _day_time(_col(batch, "ChargeStartDate")),
        "ChargeCategory": category, "ChargeClass": pa.nulls(n, pa.string()),
        "ChargeDescription": _col(batch, "MeterName"), "ChargeFrequency": pa.repeat(pa.scalar("Usage-Based"), n),
        "ChargePeriodEnd": _day_time(_col(batch, "UsageDate"), 1),
        "ChargePeriodStart": _day_time(_col(batch, "UsageDate")),
        "ConsumedQuantity": quantity, "ConsumedUnit": _col(batch, "Unit"), "ContractedCost": contracted,
        "ContractedUnitPrice": contracted_unit, "EffectiveCost": billed, "InvoiceId": _col(batch, "InvoiceNumber"),
        "InvoiceIssuerName": pa.repeat(pa.scalar(issuer), n), "ListCost": listed, "ListUnitPrice": list_unit,
        "PricingCategory": pa.repeat(pa.scalar("Standard"), n), "PricingCurrency": _col(batch, "PricingCurrency"),
        "PricingCurrencyContractedUnitPrice": pc_contracted, "PricingCurrencyEffectiveCost": pc_effective,
        "PricingCurrencyListUnitPrice": pc_list, "PricingQuantity": quantity, "PricingUnit": _col(batch, "Unit"),
        "ProviderName": pa.repeat(pa.scalar("Microsoft"), n),
        "PublisherName": pc.fill_null(_col(batch, "PublisherName"), "Microsoft"),
        "RegionId": _col(batch, "ResourceLocation"), "RegionName": _col(batch, "MeterRegion"),
        "ResourceId": uri, "ResourceName": pc.if_else(pc.equal(uri, ""), pa.scalar(None, pa.string()),
                                                      pc.replace_substring_regex(uri, r"^.*/", "")),
        "ServiceCategory": service_category(meter_category),
        "ServiceName": pc.fill_null(meter_category, "Azure"), "SkuId": _col(batch, "SkuId"),
        "SkuMeter": _col(batch, "MeterName"), "SkuPriceId": _col(batch, "MeterId"),
        "SubAccountId": _col(batch, "EntitlementId"), "SubAccountName": _col(batch, "EntitlementDescription"),
        "SubAccountType": pa.repeat(pa.scalar("Azure subscription"), n), "Tags": tags,
        "x_CustomerId": _col(batch, layout.customer_column), "x_CustomerName": customer_name,
        "x_CustomerInternalId": _col(batch, "CustomerInternalId"),
        "x_ResellerMpnId": _col(batch, layout.reseller_column),
        "x_ResellerInternalId": _col(batch, "ResellerInternalId"),
        "x_SubscriptionInternalId": _col(batch, "SubscriptionInternalId"), "x_PONumber": _col(batch, "PONumber"),
        "x_MeterCategory": meter_category,
    }
    arrays = [pc.cast(columns[f.name], f.type) for f in SCHEMA]
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def iso_text(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Date/Time columns as FOCUS's text format (2026-10-01T00:00:00Z), for CSV."""
    arrays = [pc.strftime(c, format="%Y-%m-%dT%H:%M:%SZ") if c.type == TIME_TYPE else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
