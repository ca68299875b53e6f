"""The one place that knows Microsoft's reconciliation columns, per file type.

Column names and order are Microsoft's CSV reconciliation files (../shared/reference/partner-center-api.md §5);
the one-time list is the new-commerce field list of the seed. Partner Center v1 JSON uses lowerCamel keys of the
same names, with the exceptions listed in `v1_aliases`; Graph export blobs use the column names. Keys are always
matched case-insensitively.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FileType(StrEnum):
    ONETIME = "onetime"
    LICENSE = "license"
    USAGE = "usage"
    DAILY = "dailyratedusage"


# Customer views exist for these file types only (usage and daily usage are for partners and resellers).
CUSTOMER_VIEW_TYPES: frozenset[FileType] = frozenset({FileType.ONETIME, FileType.LICENSE})

# Columns this system appends to Microsoft's, in this order (the margin engine fills them).
ENGINE_COLUMNS: tuple[str, ...] = (
    "ResellerInternalId",
    "CustomerInternalId",
    "SubscriptionInternalId",
    "PONumber",
    "ResellerMarginPercent",
    "ResellerSubtotal",
    "CustomerMarginPercent",
    "CustomerSubtotal",
)


@dataclass(frozen=True)
class Layout:
    """How one file type looks: Microsoft's columns and what the engine needs to know about them."""

    file_type: FileType
    columns: tuple[str, ...]
    decimal_columns: frozenset[str]
    cost_column: str
    total_column: str  # Microsoft's amount that adds up to the invoice (with tax where the file has tax)
    price_columns: tuple[str, ...]  # Microsoft's price columns, removed from reseller and customer views
    charge_date_column: str  # the date that selects the margin rule in force
    date_columns: frozenset[str]  # written in the regional date format when one is asked for
    reseller_column: str
    customer_column: str
    subscription_column: str
    product_column: str | None
    key_columns: tuple[str, ...]  # what identifies a line in findings and logs
    v1_aliases: dict[str, str] = field(default_factory=dict)  # lower-case v1 JSON key -> column
    margin_scale: int = 2  # decimal places of the engine's subtotals

    def column_for_key(self, key: str) -> str | None:
        """Microsoft column for a JSON key in any casing, or None for a field this layout does not know."""
        return _key_index(self).get(key.lower())


_KEY_CACHE: dict[FileType, dict[str, str]] = {}


def _key_index(layout: Layout) -> dict[str, str]:
    index = _KEY_CACHE.get(layout.file_type)
    if index is None:
        index = {c.lower(): c for c in layout.columns}
        index.update(layout.v1_aliases)
        _KEY_CACHE[layout.file_type] = index
    return index


ONETIME = Layout(
    file_type=FileType.ONETIME,
    columns=(
        "PartnerId", "CustomerId", "CustomerName", "CustomerDomainName", "CustomerCountry", "InvoiceNumber",
        "MpnId", "ResellerMpnId", "OrderId", "OrderDate", "ProductId", "SkuId", "AvailabilityId", "SkuName",
        "ProductName", "ChargeType", "UnitPrice", "Quantity", "Subtotal", "TaxTotal", "Total", "Currency",
        "PriceAdjustmentDescription", "PublisherName", "PublisherId", "SubscriptionDescription", "SubscriptionId",
        "ChargeStartDate", "ChargeEndDate", "TermAndBillingCycle", "EffectiveUnitPrice", "UnitType", "AlternateId",
        "BillableQuantity", "BillingFrequency", "PricingCurrency", "PCToBCExchangeRate", "PCToBCExchangeRateDate",
        "MeterDescription", "ReservationOrderId", "CreditReasonCode", "SubscriptionStartDate",
        "SubscriptionEndDate", "ReferenceId", "ProductQualifiers", "PromotionId",
    ),
    decimal_columns=frozenset({
        "UnitPrice", "Quantity", "Subtotal", "TaxTotal", "Total", "EffectiveUnitPrice", "BillableQuantity",
        "PCToBCExchangeRate",
    }),
    cost_column="Subtotal",
    total_column="Total",
    price_columns=("UnitPrice", "EffectiveUnitPrice", "Subtotal", "TaxTotal", "Total", "PriceAdjustmentDescription"),
    charge_date_column="ChargeStartDate",
    date_columns=frozenset({"OrderDate", "ChargeStartDate", "ChargeEndDate", "PCToBCExchangeRateDate", "SubscriptionStartDate", "SubscriptionEndDate"}),
    reseller_column="ResellerMpnId",
    customer_column="CustomerId",
    subscription_column="SubscriptionId",
    product_column="ProductId",
    key_columns=("ReferenceId",),
    v1_aliases={"totalforcustomer": "Total", "providername": "PublisherName", "providerid": "PublisherId"},
)

DAILY = Layout(
    file_type=FileType.DAILY,
    columns=(
        "PartnerId", "PartnerName", "CustomerId", "CustomerName", "CustomerDomainName", "CustomerCountry", "MpnId",
        "Tier2MpnId", "InvoiceNumber", "ProductId", "SkuId", "AvailabilityId", "SkuName", "ProductName",
        "PublisherName", "PublisherId", "SubscriptionDescription", "SubscriptionId", "ChargeStartDate",
        "ChargeEndDate", "UsageDate", "MeterType", "MeterCategory", "MeterId", "MeterSubCategory", "MeterName",
        "MeterRegion", "Unit", "ResourceLocation", "ConsumedService", "ResourceGroup", "ResourceURI", "ChargeType",
        "UnitPrice", "Quantity", "UnitType", "BillingPreTaxTotal", "BillingCurrency", "PricingPreTaxTotal",
        "PricingCurrency", "ServiceInfo1", "ServiceInfo2", "Tags", "AdditionalInfo", "EffectiveUnitPrice",
        "PCToBCExchangeRate", "PCToBCExchangeRateDate", "EntitlementId", "EntitlementDescription",
        "PartnerEarnedCreditPercentage", "CreditPercentage", "CreditType", "BenefitOrderID", "BenefitID",
        "BenefitType",
    ),
    decimal_columns=frozenset({
        "UnitPrice", "Quantity", "BillingPreTaxTotal", "PricingPreTaxTotal", "EffectiveUnitPrice",
        "PCToBCExchangeRate", "PartnerEarnedCreditPercentage", "CreditPercentage",
    }),
    cost_column="BillingPreTaxTotal",
    total_column="BillingPreTaxTotal",
    price_columns=("UnitPrice", "EffectiveUnitPrice", "BillingPreTaxTotal", "PricingPreTaxTotal",
                   "PartnerEarnedCreditPercentage"),
    charge_date_column="UsageDate",
    date_columns=frozenset({"ChargeStartDate", "ChargeEndDate", "UsageDate", "PCToBCExchangeRateDate"}),
    reseller_column="Tier2MpnId",
    customer_column="CustomerId",
    subscription_column="SubscriptionId",
    product_column="ProductId",
    key_columns=("SubscriptionId", "EntitlementId", "MeterId", "ResourceURI", "UsageDate"),
    v1_aliases={
        "resellermpnid": "Tier2MpnId",
        "unitofmeasure": "Unit",
        "rateofpartnerearnedcredit": "PartnerEarnedCreditPercentage",
        "rateofcredit": "CreditPercentage",
    },
    margin_scale=6,
)

LICENSE = Layout(
    file_type=FileType.LICENSE,
    columns=(
        "PartnerId", "CustomerId", "CustomerName", "MpnId", "ResellerMpnId", "OrderId", "SubscriptionId",
        "SyndicationPartnerSubscriptionNumber", "OfferId", "DurableOfferId", "OfferName", "SubscriptionStartDate",
        "SubscriptionEndDate", "ChargeStartDate", "ChargeEndDate", "ChargeType", "UnitPrice", "Quantity", "Amount",
        "TotalOtherDiscount", "Subtotal", "Tax", "TotalForCustomer", "Currency", "DomainName", "SubscriptionName",
        "SubscriptionDescription", "BillingCycleType",
    ),
    decimal_columns=frozenset({"UnitPrice", "Quantity", "Amount", "TotalOtherDiscount", "Subtotal", "Tax",
                               "TotalForCustomer"}),
    cost_column="Subtotal",
    total_column="TotalForCustomer",
    price_columns=("UnitPrice", "Amount", "TotalOtherDiscount", "Subtotal", "Tax", "TotalForCustomer"),
    charge_date_column="ChargeStartDate",
    date_columns=frozenset({"SubscriptionStartDate", "SubscriptionEndDate", "ChargeStartDate", "ChargeEndDate"}),
    reseller_column="ResellerMpnId",
    customer_column="CustomerId",
    subscription_column="SubscriptionId",
    product_column="OfferId",
    key_columns=("OrderId", "SubscriptionId", "ChargeType", "ChargeStartDate"),
    v1_aliases={"tier2mpnid": "ResellerMpnId"},
)

USAGE = Layout(
    file_type=FileType.USAGE,
    columns=(
        "PartnerId", "PartnerName", "PartnerBillableAccountId", "CustomerCompanyName", "MpnId", "ResellerMpnId",
        "InvoiceNumber", "ChargeStartDate", "ChargeEndDate", "SubscriptionId", "SubscriptionName",
        "SubscriptionDescription", "OrderId", "ServiceName", "ServiceType", "ResourceGuid", "ResourceName", "Region",
        "Sku", "DetailLineItemId", "ConsumedQuantity", "IncludedQuantity", "OverageQuantity", "ListPrice",
        "PretaxCharges", "TaxAmount", "PostTaxTotal", "Currency", "PretaxEffectiveRate", "PostTaxEffectiveRate",
        "ChargeType", "CustomerId", "DomainName", "BillingCycleType", "Unit", "CustomerBillableAccount", "UsageDate",
        "MeteredRegion", "MeteredService", "MeteredServiceType", "Project", "ServiceInfo",
    ),
    decimal_columns=frozenset({
        "ConsumedQuantity", "IncludedQuantity", "OverageQuantity", "ListPrice", "PretaxCharges", "TaxAmount",
        "PostTaxTotal", "PretaxEffectiveRate", "PostTaxEffectiveRate",
    }),
    cost_column="PretaxCharges",
    total_column="PostTaxTotal",
    price_columns=("ListPrice", "PretaxCharges", "TaxAmount", "PostTaxTotal", "PretaxEffectiveRate",
                   "PostTaxEffectiveRate"),
    charge_date_column="ChargeStartDate",
    date_columns=frozenset({"ChargeStartDate", "ChargeEndDate", "UsageDate"}),
    reseller_column="ResellerMpnId",
    customer_column="CustomerId",
    subscription_column="SubscriptionId",
    product_column=None,
    key_columns=("SubscriptionId", "DetailLineItemId", "ResourceGuid", "ChargeStartDate"),
    v1_aliases={"tier2mpnid": "ResellerMpnId"},
)

LAYOUTS: dict[FileType, Layout] = {lay.file_type: lay for lay in (ONETIME, DAILY, LICENSE, USAGE)}


def layout_for(file_type: FileType | str) -> Layout:
    return LAYOUTS[FileType(file_type)]
