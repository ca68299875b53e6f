"""Two new-commerce invoices billed in Vietnamese dong, published on request (`sim.faults.publish_vnd_invoices()`).

They carry what EUR data never reaches: Azure plan lines of about 10^13 dong (invoice totals above 10^12; a
decimal128(38, 28) with ten integer digits failed such a file), and seat removals and additions that refund or
charge a cycle billed in the *earlier* invoice (Microsoft-consistent data on which OVER_CREDIT must not report an
error):

- invoice A (two months back): a 49-seat monthly subscription's cycle charge (cycle on the 15th), a 57-seat annual
  subscription bought on the 20th, and a huge Azure plan line;
- invoice B (last month): the monthly subscription's next cycle charge; 2 seats added on the 3rd and 5 removed on
  the 5th for the cycle that started in A's month (the credit exceeds what B charges for it); on the annual
  subscription 1 seat added and 3 removed for the cycle bought in A's month; a new 10-seat subscription; and
  another huge Azure plan line.

Every amount follows the seed's formulas exactly (rows.py), with a 10 % tax; `totalCharges` is the exact sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from .dates import add_months, cycle_end, iso_z
from .det import guid, hexid
from .money import add, mul, prorate, rounddown, roundup, text
from .rows import Dataset, Row, _onetime
from .world import World

CURRENCY = "VND"
SYMBOL = "₫"
TAX = Decimal("0.1")
USD_RATE = Decimal("25400")  # dong per US dollar, one rate per invoice month
SEAT_PRICE = Decimal("2500000")  # a month of the seat product, in dong (priced in dong: rate 1)
ANNUAL_PRICE = Decimal("30000000")  # a year of the annual product


@dataclass(frozen=True)
class _Line:
    kind: str  # "seat" or "azure"
    charge: str
    subscription: str
    customer: int
    quantity: int | Decimal
    eup: Decimal
    start: date
    end: date
    term_start: date
    term_end: date
    frequency: str = "Monthly"
    unit_price: Decimal = SEAT_PRICE


def _lines(first: date, second: bool) -> list[_Line]:
    """The lines of invoice A (`second` False: the month `first`) or B (the month after)."""
    a = first
    b = add_months(first, 1)
    term = add_months(a.replace(day=15), -6)  # the monthly subscription's one-year term started earlier
    monthly = dict(subscription="vnd-monthly", customer=0, term_start=term, term_end=cycle_end(term, 12))
    bought = a.replace(day=20)
    annual = dict(subscription="vnd-annual", customer=1, term_start=bought, term_end=cycle_end(bought, 12),
                  frequency="Annual", unit_price=ANNUAL_PRICE)
    if not second:
        cycle = a.replace(day=15)
        return [
            _Line("seat", "cycleCharge", quantity=49, eup=SEAT_PRICE, start=cycle, end=cycle_end(cycle, 1), **monthly),
            _Line("seat", "new", quantity=57, eup=ANNUAL_PRICE, start=bought, end=cycle_end(bought, 12), **annual),
            _Line("azure", "new", "vnd-azure", 2, Decimal("5000"), Decimal("98425.19685"), a, add_months(a, 1)
                  - timedelta(days=1), date(2024, 1, 1), date(2024, 1, 1)),
        ]
    old_cycle = a.replace(day=15)
    old_end = cycle_end(old_cycle, 1)
    days = (old_end - old_cycle).days + 1
    new_cycle = b.replace(day=15)
    annual_end = cycle_end(bought, 12)
    annual_days = (annual_end - bought).days + 1
    fresh = b.replace(day=8)
    return [
        _Line("seat", "cycleCharge", quantity=46, eup=SEAT_PRICE, start=new_cycle, end=cycle_end(new_cycle, 1),
              **monthly),
        _Line("seat", "addQuantity", quantity=2, start=b.replace(day=3), end=old_end,
              eup=prorate(SEAT_PRICE, (old_end - b.replace(day=3)).days + 1, days, 6), **monthly),
        _Line("seat", "removeQuantity", quantity=-5, start=b.replace(day=5), end=old_end,
              eup=prorate(SEAT_PRICE, (old_end - b.replace(day=5)).days + 1, days, 6), **monthly),
        _Line("seat", "addQuantity", quantity=1, start=b.replace(day=2), end=annual_end,
              eup=prorate(ANNUAL_PRICE, (annual_end - b.replace(day=2)).days + 1, annual_days, 6), **annual),
        _Line("seat", "removeQuantity", quantity=-3, start=b.replace(day=4), end=annual_end,
              eup=prorate(ANNUAL_PRICE, (annual_end - b.replace(day=4)).days + 1, annual_days, 6), **annual),
        _Line("seat", "new", "vnd-fresh", 2, 10, SEAT_PRICE, fresh, cycle_end(fresh, 1), fresh, cycle_end(fresh, 12)),
        _Line("azure", "new", "vnd-azure", 2, Decimal("10000"), Decimal("39370.07874"), b, add_months(b, 1)
              - timedelta(days=1), date(2024, 1, 1), date(2024, 1, 1)),
    ]


def rows_for(world: World, ds: Dataset, first: date, second: bool) -> list[Row]:
    out = []
    for i, line in enumerate(_lines(first, second)):
        customer = world.customer(line.customer)
        subscription = guid(world.seed, "vnd", line.subscription)
        if line.kind == "seat":
            unit = rounddown(line.eup, 2)  # priced in dong: rate 1
            quantity = Decimal(line.quantity)
            subtotal, tax = mul(unit, quantity), mul(roundup(mul(unit, TAX), 2), quantity)
            fields = dict(UnitType="", PricingCurrency=CURRENCY, PCToBCExchangeRate="1",
                          BillingFrequency=line.frequency, ProductId="CFQ7TTC0LFLX", SkuId="0002",
                          AvailabilityId="CFQ7TTC0LFM2", SkuName="Microsoft 365 E3", ProductName="Microsoft 365 E3",
                          UnitPrice=text(line.unit_price), Quantity=str(line.quantity),
                          TermAndBillingCycle=f"One-Year commitment for {line.frequency.lower()} billing",
                          MeterDescription="", SubscriptionEndDate=iso_z(line.term_end),
                          PublisherName="Microsoft Corporation", PublisherId="",
                          PriceAdjustmentDescription="[]" if line.charge in ("new", "cycleCharge") else
                          '["Price for given billing period"]')
        else:
            subtotal = rounddown(mul(rounddown(mul(line.eup, line.quantity), 2), USD_RATE), 2)
            tax = roundup(mul(subtotal, TAX), 2)
            fields = dict(UnitType="1 Hour", PricingCurrency="USD", PCToBCExchangeRate=text(USD_RATE),
                          BillingFrequency="", ProductId="DZH318Z0BQ4W", SkuId="006F", AvailabilityId="DZH318Z0BQ40",
                          SkuName="D2s v3", ProductName="Virtual Machines Dsv3 Series",
                          UnitPrice=text(line.eup), Quantity="1", TermAndBillingCycle="D2s v3 (1 Hour)",
                          MeterDescription="Virtual Machines - D2s v3", SubscriptionEndDate="",
                          PublisherName="Microsoft", PublisherId="", PriceAdjustmentDescription="[]")
        order = hexid(12, world.seed, "vnd-order", ds.key, i)
        row = _onetime(world, ds, i, customer, OrderId=order, OrderDate=iso_z(line.start),
                       ChargeType=line.charge, Subtotal=text(subtotal), TaxTotal=text(tax),
                       Total=text(add(subtotal, tax)), SubscriptionDescription=f"VND {line.subscription}",
                       SubscriptionId=subscription, ChargeStartDate=iso_z(line.start),
                       ChargeEndDate=iso_z(line.end), EffectiveUnitPrice=text(line.eup), AlternateId=order,
                       BillableQuantity=text(Decimal(line.quantity)), ReservationOrderId="", CreditReasonCode="",
                       SubscriptionStartDate=iso_z(line.term_start), ProductQualifiers="[]", PromotionId="",
                       **fields)
        row["Currency"] = CURRENCY
        out.append(row)
    return out
