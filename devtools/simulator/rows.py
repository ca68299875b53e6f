"""Canonical reconciliation rows, one at a time from (seed, dataset, index).

A canonical row maps each column of the project's layout (`shared.core.columns`) to its exact text, or to None where
the wire omits the field. Amounts follow the seed's formulas with exact decimals:

- one-time seat lines (UnitType ""):  Subtotal = ROUNDDOWN(EUP × rate, 2) × BillableQuantity,
  TaxTotal = ROUNDUP(ROUNDDOWN(EUP × rate, 2) × TaxPercentage, 2) × BillableQuantity;
- one-time usage lines (UnitType set): Subtotal = ROUNDDOWN(ROUNDDOWN(EUP × BillableQuantity, 2) × rate, 2),
  TaxTotal = ROUNDUP(Subtotal × TaxPercentage, 2); Total = Subtotal + TaxTotal;
- daily rated usage: PricingPreTaxTotal = Quantity × EUP (exact),
  BillingPreTaxTotal = PricingPreTaxTotal × PCToBCExchangeRate kept to 15 decimal places.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache

from shared.core.columns import FileType

from .catalog import (
    BILLING_CURRENCY,
    LEGACY_OFFERS,
    LEGACY_SERVICES,
    MARKETPLACE_METERS,
    METERS,
    PEC_RATE,
    SEAT_PRODUCTS,
    TAX_PERCENTAGE,
    Meter,
)
from .dates import DAY, add_months, cycle_end, iso_local, iso_z
from .det import Draws, guid, hexid, number
from .money import (
    ONE,
    ZERO,
    add,
    micros,
    mul,
    prorate,
    round_half_up,
    rounddown,
    roundup,
    text,
)
from .world import Customer, World

Row = dict[str, str | None]


@dataclass(frozen=True)
class Dataset:
    """One file's worth of rows: a billed invoice's file or an unbilled period's."""

    key: str  # invoice id, or "U" + YYYYMM for unbilled data
    file_type: FileType
    invoice_number: str  # "" for unbilled
    start: date
    end: date  # last day of the charge period
    usage_days: int  # days that carry daily usage (a current month is not over yet)
    rows: int
    billed: bool = True
    currency: str = BILLING_CURRENCY
    variant: str = ""  # "" (generated from the seed), "vnd-a" / "vnd-b" (devtools/simulator/vnd.py)


@lru_cache(maxsize=256)
def exchange_rate(seed: int, pricing_currency: str, rate_date: date) -> Decimal:
    """One rate per pricing currency, billing currency and rate date, like 0.912345678."""
    if pricing_currency == BILLING_CURRENCY:
        return ONE
    return Decimal(880_000_000 + number(seed, "fx", pricing_currency, BILLING_CURRENCY, rate_date) % 60_000_000
                   ).scaleb(-9)


def _order_date(d: Draws, day: date) -> str:
    return f"{day.isoformat()}T{d.below(24):02d}:{d.below(60):02d}:{d.below(60):02d}.{d.below(10**7):07d}Z"


def _reseller_mpn(world: World, customer: Customer, subscription_id: str, direct: str) -> str:
    reseller = world.reseller_of(customer, subscription_id)
    return reseller.mpn_id if reseller else direct


_SEAT_CHARGES = (("cycleCharge", 45), ("new", 15), ("renew", 10), ("addQuantity", 12), ("removeQuantity", 6),
                 ("cancelImmediate", 6), ("customerCredit", 6))
_TERMS = {(1, "Monthly"): "One-Month commitment for monthly billing",
          (12, "Monthly"): "One-Year commitment for monthly billing",
          (12, "Annual"): "One-Year commitment for annual billing"}


def _weighted(d: Draws, choices: tuple[tuple[str, int], ...]) -> str:
    roll = d.below(sum(w for _, w in choices))
    for value, weight in choices:
        if roll < weight:
            return value
        roll -= weight
    raise AssertionError("weights exhausted")


def onetime_row(world: World, ds: Dataset, i: int, _revision: int) -> Row:
    """A new-commerce invoice reconciliation line (seat-based ~70 %, Azure plan ~20 %, marketplace metered)."""
    d = Draws(world.seed, "onetime", ds.key, i)
    roll = d.below(100)
    customer = world.pick_customer(d)
    if roll < 70:
        row = _seat_line(world, ds, i, d, customer)
    else:
        row = _usage_line(world, ds, i, d, customer, d.pick(METERS) if roll < 90 else d.pick(MARKETPLACE_METERS))
    if row["PromotionId"] == "" and d.chance(4):
        row["PromotionId"] = None  # a few rows omit an optional field, as real payloads do
    return row


def _seat_line(world: World, ds: Dataset, i: int, d: Draws, customer: Customer) -> Row:
    product = d.pick(SEAT_PRODUCTS)
    anniversary = d.between(1, 28)  # NCE's month-end rule is unconfirmed (reference §9), so avoid days 29-31
    frequency = "Annual" if d.chance(20) else "Monthly"
    term = 12 if frequency == "Annual" or d.chance(70) else 1
    bill_months = 12 if frequency == "Annual" else 1
    charge = _weighted(d, _SEAT_CHARGES)
    if charge == "cycleCharge" and (frequency, term) != ("Monthly", 12):
        charge = "renew"  # only monthly-billed annual terms have mid-term cycle charges
    this_cycle = ds.start.replace(day=anniversary)
    if charge in ("new", "renew"):
        term_start = this_cycle
    elif charge == "cycleCharge":
        term_start = add_months(this_cycle, -d.between(1, 11))
    else:
        term_start = add_months(this_cycle, -bill_months * d.below(term // bill_months))
    cycle_start = term_start if frequency == "Annual" else this_cycle
    cycle_last = cycle_end(cycle_start, bill_months)
    unit_price = round_half_up(mul(product.monthly_price, Decimal(bill_months),
                                   Decimal("1.2") if term == 1 else ONE), 2)
    seats = d.between(1, 300)
    promotion = ""
    adjustment = "[]"
    charge_start = this_cycle
    effective = unit_price
    if charge in ("addQuantity", "removeQuantity", "cancelImmediate"):
        latest = min(ds.end, cycle_last)
        offset = d.between(1, 27) if charge == "addQuantity" else d.below(7)  # NCE refunds only within 7 days
        charge_start = min(this_cycle + timedelta(days=offset), latest)
        effective = prorate(unit_price, (cycle_last - charge_start).days + 1, (cycle_last - cycle_start).days + 1, 6)
        quantity = {"addQuantity": d.between(1, 20), "removeQuantity": -d.between(1, 5),
                    "cancelImmediate": -seats}[charge]
        adjustment = '["Price for given billing period"]'
    elif charge == "customerCredit":
        quantity = -d.between(1, 3)
        adjustment = '["Customer credit"]'
    else:
        quantity = seats
        if d.chance(10):
            promotion = f"{product.product_id}:{product.sku_id}:{hexid(12, world.seed, 'promo', product).upper()}"
            effective = mul(unit_price, Decimal("0.95"))
            adjustment = '["5.0% promotion discount"]'
    rate = exchange_rate(world.seed, product.pricing_currency, ds.start)
    unit_after_rate = rounddown(mul(effective, rate), 2)
    billable = Decimal(quantity)
    subtotal = mul(unit_after_rate, billable)
    tax = mul(roundup(mul(unit_after_rate, TAX_PERCENTAGE), 2), billable)
    order_id = hexid(12, world.seed, "order", ds.key, i)
    return _onetime(
        world, ds, i, customer,
        OrderId=order_id, OrderDate=_order_date(d, charge_start), ProductId=product.product_id,
        SkuId=product.sku_id, AvailabilityId=product.availability_id, SkuName=product.name,
        ProductName=product.name, ChargeType=charge, UnitPrice=text(unit_price), Quantity=str(quantity),
        Subtotal=text(subtotal), TaxTotal=text(tax), Total=text(add(subtotal, tax)),
        PriceAdjustmentDescription=adjustment, PublisherName=product.publisher, PublisherId=product.publisher_id,
        SubscriptionDescription=f"{product.name} - {customer.name[:24]}",
        SubscriptionId=guid(world.seed, "seat-subscription", customer.index, product.product_id, i % 7),
        ChargeStartDate=iso_z(charge_start), ChargeEndDate=iso_z(cycle_last),
        TermAndBillingCycle=_TERMS[term, frequency], EffectiveUnitPrice=text(effective), UnitType="",
        AlternateId=hexid(12, world.seed, "alternate", order_id), BillableQuantity=str(quantity),
        BillingFrequency=frequency if ds.billed else "", PricingCurrency=product.pricing_currency,
        PCToBCExchangeRate=text(rate), MeterDescription="", ReservationOrderId="", CreditReasonCode="",
        SubscriptionStartDate=iso_z(term_start), SubscriptionEndDate=iso_z(cycle_end(term_start, term)),
        ProductQualifiers='["AddOn"]' if product.add_on else "[]", PromotionId=promotion,
    )


def _usage_line(world: World, ds: Dataset, i: int, d: Draws, customer: Customer, meter: Meter) -> Row:
    microsoft = meter.publisher == "Microsoft"
    pec = microsoft and customer.managed
    effective = mul(meter.unit_price, ONE - PEC_RATE) if pec else meter.unit_price
    billable = micros(d.between(1, meter.max_daily_micros * 31))
    rate = exchange_rate(world.seed, "USD", ds.start)
    subtotal = rounddown(mul(rounddown(mul(effective, billable), 2), rate), 2)
    tax = roundup(mul(subtotal, TAX_PERCENTAGE), 2)
    if microsoft:
        subscription_id, order_id, start = customer.azure_plan_id, customer.azure_plan_order, customer.azure_plan_start
        description = "Azure plan"
    else:
        subscription_id = guid(world.seed, "saas", customer.index, meter.meter_id)
        order_id = hexid(12, world.seed, "saas-order", customer.index, meter.meter_id)
        start, description = date(2024, 1 + customer.index % 12, 1 + customer.index % 28), meter.product_name
    return _onetime(
        world, ds, i, customer,
        OrderId=order_id, OrderDate=_order_date(d, ds.end), ProductId=meter.product_id, SkuId=meter.sku_id,
        AvailabilityId=meter.availability_id, SkuName=meter.sku_name, ProductName=meter.product_name,
        ChargeType="new", UnitPrice=text(meter.unit_price),
        Quantity="1", Subtotal=text(subtotal), TaxTotal=text(tax), Total=text(add(subtotal, tax)),
        PriceAdjustmentDescription='["15.0% Partner earned credit for services managed"]' if pec else "[]",
        PublisherName=meter.publisher, PublisherId=meter.publisher_id, SubscriptionDescription=description,
        SubscriptionId=subscription_id, ChargeStartDate=iso_z(ds.start), ChargeEndDate=iso_z(ds.end),
        TermAndBillingCycle=f"{meter.name} ({meter.unit})", EffectiveUnitPrice=text(effective),
        UnitType=meter.unit, AlternateId=order_id, BillableQuantity=text(billable), BillingFrequency="",
        PricingCurrency="USD", PCToBCExchangeRate=text(rate),
        MeterDescription=f"{meter.category} - {meter.name}", ReservationOrderId="", CreditReasonCode="",
        SubscriptionStartDate=iso_z(start), SubscriptionEndDate="", ProductQualifiers="[]", PromotionId="",
    )


def _onetime(world: World, ds: Dataset, i: int, customer: Customer, **fields: str) -> Row:
    """Assemble the line in the layout's column order."""
    return {
        "PartnerId": world.tenant_id, "CustomerId": customer.customer_id, "CustomerName": customer.name,
        "CustomerDomainName": customer.domain, "CustomerCountry": customer.country,
        "InvoiceNumber": ds.invoice_number, "MpnId": world.mpn_id, "ResellerMpnId": _reseller_mpn(world, customer, fields["SubscriptionId"], "0"),
        "OrderId": fields["OrderId"], "OrderDate": fields["OrderDate"], "ProductId": fields["ProductId"],
        "SkuId": fields["SkuId"], "AvailabilityId": fields["AvailabilityId"], "SkuName": fields["SkuName"],
        "ProductName": fields["ProductName"], "ChargeType": fields["ChargeType"], "UnitPrice": fields["UnitPrice"],
        "Quantity": fields["Quantity"], "Subtotal": fields["Subtotal"], "TaxTotal": fields["TaxTotal"],
        "Total": fields["Total"], "Currency": BILLING_CURRENCY,
        "PriceAdjustmentDescription": fields["PriceAdjustmentDescription"],
        "PublisherName": fields["PublisherName"], "PublisherId": fields["PublisherId"],
        "SubscriptionDescription": fields["SubscriptionDescription"], "SubscriptionId": fields["SubscriptionId"],
        "ChargeStartDate": fields["ChargeStartDate"], "ChargeEndDate": fields["ChargeEndDate"],
        "TermAndBillingCycle": fields["TermAndBillingCycle"], "EffectiveUnitPrice": fields["EffectiveUnitPrice"],
        "UnitType": fields["UnitType"], "AlternateId": fields["AlternateId"],
        "BillableQuantity": fields["BillableQuantity"], "BillingFrequency": fields["BillingFrequency"],
        "PricingCurrency": fields["PricingCurrency"], "PCToBCExchangeRate": fields["PCToBCExchangeRate"],
        "PCToBCExchangeRateDate": iso_local(ds.start), "MeterDescription": fields["MeterDescription"],
        "ReservationOrderId": fields["ReservationOrderId"], "CreditReasonCode": fields["CreditReasonCode"],
        "SubscriptionStartDate": fields["SubscriptionStartDate"], "SubscriptionEndDate": fields["SubscriptionEndDate"],
        "ReferenceId": guid(world.seed, "reference", ds.key, i), "ProductQualifiers": fields["ProductQualifiers"],
        "PromotionId": fields["PromotionId"],
    }


_BILLING_PLACES = Decimal(1).scaleb(-15)


@lru_cache(maxsize=64)
def _daily_template(world: World, ds: Dataset, r: int) -> tuple[Row, Decimal, Decimal, int]:
    """What a resource's rows share on every day: the row minus its daily fields, EUP, rate, largest quantity."""
    res = world.resource(r)
    meter, customer = res.meter, res.customer
    pec = PEC_RATE if customer.managed else ZERO
    effective = mul(meter.unit_price, ONE - pec) if pec else meter.unit_price
    rate = exchange_rate(world.seed, "USD", ds.start)
    row: Row = {
        "PartnerId": world.tenant_id, "PartnerName": world.partner_name, "CustomerId": customer.customer_id,
        "CustomerName": customer.name, "CustomerDomainName": customer.domain, "CustomerCountry": customer.country,
        "MpnId": world.mpn_id, "Tier2MpnId": _reseller_mpn(world, customer, customer.azure_plan_id, ""), "InvoiceNumber": ds.invoice_number,
        "ProductId": meter.product_id, "SkuId": meter.sku_id, "AvailabilityId": meter.availability_id,
        "SkuName": meter.sku_name, "ProductName": meter.product_name, "PublisherName": meter.publisher,
        "PublisherId": meter.publisher_id, "SubscriptionDescription": "Azure plan",
        "SubscriptionId": customer.azure_plan_id, "ChargeStartDate": iso_z(ds.start),
        "ChargeEndDate": iso_z(ds.end), "UsageDate": "", "MeterType": meter.meter_type,
        "MeterCategory": meter.category, "MeterId": meter.meter_id, "MeterSubCategory": meter.subcategory,
        "MeterName": meter.name, "MeterRegion": "EU West" if res.location == "westeurope" else "EU North",
        "Unit": meter.unit, "ResourceLocation": res.location, "ConsumedService": meter.consumed_service,
        "ResourceGroup": res.resource_group, "ResourceURI": res.resource_uri, "ChargeType": "new",
        "UnitPrice": text(meter.unit_price), "Quantity": "", "UnitType": meter.unit,
        "BillingPreTaxTotal": "", "BillingCurrency": BILLING_CURRENCY,
        "PricingPreTaxTotal": "", "PricingCurrency": "USD", "ServiceInfo1": "",
        "ServiceInfo2": "", "Tags": res.tags, "AdditionalInfo": res.additional_info,
        "EffectiveUnitPrice": text(effective), "PCToBCExchangeRate": text(rate),
        "PCToBCExchangeRateDate": iso_z(ds.start), "EntitlementId": res.entitlement_id,
        "EntitlementDescription": res.entitlement_description, "PartnerEarnedCreditPercentage": text(pec),
        "CreditPercentage": "0", "CreditType": "", "BenefitOrderID": "", "BenefitID": "", "BenefitType": "",
    }
    return row, effective, rate, meter.max_daily_micros


def daily_row(world: World, ds: Dataset, i: int, revision: int) -> Row:
    """A daily rated usage row: resource i // days on day i % days of the period."""
    r, day = divmod(i, ds.usage_days)
    template, effective, rate, max_micros = _daily_template(world, ds, r)
    d = Draws(world.seed, "daily", ds.key, i, revision) if revision else Draws(world.seed, "daily", ds.key, i)
    quantity = micros(d.between(1, max_micros))
    pricing = mul(quantity, effective)
    row = template.copy()
    row["UsageDate"] = iso_z(ds.start + DAY * day)
    row["Quantity"] = text(quantity)
    row["PricingPreTaxTotal"] = text(pricing)
    row["BillingPreTaxTotal"] = text(mul(pricing, rate).quantize(_BILLING_PLACES))
    if d.below(40) == 0:
        row["ServiceInfo2"] = None  # a few rows omit an optional field
    return row


_LICENSE_CHARGES = (("Cycle fee", 60), ("Prorate fees when purchase", 15), ("Cancel instance prorate", 10),
                    ("Renew fee", 15))


def license_row(world: World, ds: Dataset, i: int, _revision: int) -> Row:
    """A legacy licence-based (Office) line for the anniversary billing period."""
    d = Draws(world.seed, "license", ds.key, i)
    customer = world.pick_customer(d)
    offer = d.pick(LEGACY_OFFERS)
    charge = _weighted(d, _LICENSE_CHARGES)
    quantity = d.between(1, 120)
    base = mul(offer.monthly_price, Decimal(quantity))
    period_days = (ds.end - ds.start).days + 1
    start = ds.start
    if charge in ("Prorate fees when purchase", "Cancel instance prorate"):
        start = ds.start + timedelta(days=d.between(1, period_days - 1))
        base = prorate(base, (ds.end - start).days + 1, period_days, 2)
    amount = -base if charge == "Cancel instance prorate" else base
    discount = round_half_up(mul(amount, Decimal("0.05")), 2) if d.chance(15) else ZERO
    subtotal = add(amount, -discount)
    tax = round_half_up(mul(subtotal, TAX_PERCENTAGE), 2)
    subscription_start = add_months(ds.start, -d.below(11))
    return {
        "PartnerId": world.tenant_id, "CustomerId": customer.customer_id, "CustomerName": customer.name,
        "MpnId": world.mpn_id, "ResellerMpnId": _reseller_mpn(world, customer, guid(world.seed, "legacy-sub", i), "-1"),
        "OrderId": guid(world.seed, "legacy-order", i).upper(), "SubscriptionId": guid(world.seed, "legacy-sub", i),
        "SyndicationPartnerSubscriptionNumber": None if d.chance(5) else "",
        "OfferId": offer.offer_id, "DurableOfferId": offer.durable_offer_id, "OfferName": offer.name,
        "SubscriptionStartDate": iso_local(subscription_start),
        "SubscriptionEndDate": iso_local(cycle_end(subscription_start, 12)),
        "ChargeStartDate": iso_local(start), "ChargeEndDate": iso_local(ds.end), "ChargeType": charge,
        "UnitPrice": text(offer.monthly_price), "Quantity": str(quantity), "Amount": text(amount),
        "TotalOtherDiscount": text(discount), "Subtotal": text(subtotal), "Tax": text(tax),
        "TotalForCustomer": text(add(subtotal, tax)), "Currency": BILLING_CURRENCY, "DomainName": customer.domain,
        "SubscriptionName": offer.name, "SubscriptionDescription": offer.name, "BillingCycleType": "Monthly",
    }


def usage_row(world: World, ds: Dataset, i: int, revision: int) -> Row:
    """A legacy usage-based (Azure MS-AZR-0145P) line; revisions change its consumed quantity."""
    d = Draws(world.seed, "usage", ds.key, i)
    customer = world.pick_customer(d)
    service = d.pick(LEGACY_SERVICES)
    q = Draws(world.seed, "usage-qty", ds.key, i, revision)
    consumed = micros(q.between(1, service.max_micros))
    pretax = round_half_up(mul(consumed, service.list_price), 2)
    tax = round_half_up(mul(pretax, TAX_PERCENTAGE), 2)
    return {
        "PartnerId": world.tenant_id, "PartnerName": world.partner_name,
        "PartnerBillableAccountId": world.billable_account_id, "CustomerCompanyName": customer.name,
        "MpnId": world.mpn_id, "InvoiceNumber": ds.invoice_number,
        "ResellerMpnId": _reseller_mpn(world, customer, guid(world.seed, "azure-0145p", customer.index), "-1"),
        "ChargeStartDate": iso_local(ds.start), "ChargeEndDate": iso_local(ds.end),
        "SubscriptionId": guid(world.seed, "azure-0145p", customer.index), "SubscriptionName": "Microsoft Azure",
        "SubscriptionDescription": f"Azure - {customer.name[:24]}",
        "OrderId": guid(world.seed, "azure-0145p-order", customer.index).upper(),
        "ServiceName": service.service_name, "ServiceType": service.service_type,
        "ResourceGuid": guid("legacy-resource", service.resource_name), "ResourceName": service.resource_name,
        "Region": service.region, "Sku": "", "DetailLineItemId": str(i + 1), "ConsumedQuantity": text(consumed),
        "IncludedQuantity": "0", "OverageQuantity": text(consumed), "ListPrice": text(service.list_price),
        "PretaxCharges": text(pretax), "TaxAmount": text(tax), "PostTaxTotal": text(add(pretax, tax)),
        "Currency": BILLING_CURRENCY, "PretaxEffectiveRate": text(service.list_price),
        "PostTaxEffectiveRate": text(round_half_up(mul(service.list_price, ONE + TAX_PERCENTAGE), 6)),
        "ChargeType": "Assess usage fee for current cycle", "CustomerId": customer.customer_id,
        "DomainName": customer.domain, "BillingCycleType": "Monthly", "Unit": service.unit,
        "CustomerBillableAccount": "", "UsageDate": "", "MeteredRegion": "", "MeteredService": "",
        "MeteredServiceType": "", "Project": None if d.chance(5) else "", "ServiceInfo": "",
    }


ROW_MAKERS: dict[FileType, Callable[[World, Dataset, int, int], Row]] = {
    FileType.ONETIME: onetime_row,
    FileType.DAILY: daily_row,
    FileType.LICENSE: license_row,
    FileType.USAGE: usage_row,
}
# File types whose quantities a revision changes (the data Microsoft re-rates after an invoice).
REVISABLE = frozenset({FileType.DAILY, FileType.USAGE})
