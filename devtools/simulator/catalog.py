"""What the simulated partner sells: seat products, Azure meters, marketplace items, legacy offers.

Identifiers have Microsoft's shapes (12-character product ids, 4-character SKU ids, meter GUIDs) but are made up.
Prices are in the product's pricing currency.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .det import guid

BILLING_CURRENCY = "EUR"
CURRENCY_SYMBOL = "€"
TAX_PERCENTAGE = Decimal("0.19")  # the partner's market; one rate keeps the seed's TaxTotal formulas checkable
PEC_RATE = Decimal("0.15")  # partner earned credit on Azure for managed customers


@dataclass(frozen=True)
class SeatProduct:
    """A licence sold per seat (Subtotal = ROUNDDOWN(EUP × rate, 2) × BillableQuantity)."""

    product_id: str
    sku_id: str
    availability_id: str
    name: str
    monthly_price: Decimal
    pricing_currency: str = BILLING_CURRENCY
    publisher: str = "Microsoft Corporation"
    publisher_id: str = ""
    add_on: bool = False


@dataclass(frozen=True)
class Meter:
    """An Azure or marketplace meter (Subtotal = ROUNDDOWN(ROUNDDOWN(EUP × qty, 2) × rate, 2))."""

    meter_id: str
    product_id: str
    sku_id: str
    availability_id: str
    product_name: str
    sku_name: str
    category: str
    subcategory: str
    name: str
    unit: str
    unit_price: Decimal  # USD
    max_daily_micros: int  # largest quantity of one resource in one day, in millionths
    consumed_service: str
    resource_type: str
    meter_type: str
    publisher: str = "Microsoft"
    publisher_id: str = ""


SEAT_PRODUCTS: tuple[SeatProduct, ...] = (
    SeatProduct("CFQ7TTC0LH18", "0001", "CFQ7TTC0LHSF", "Microsoft 365 Business Basic", Decimal("5.60")),
    SeatProduct("CFQ7TTC0LDPB", "0001", "CFQ7TTC0LDPC", "Microsoft 365 Business Standard", Decimal("11.70")),
    SeatProduct("CFQ7TTC0LCHC", "0002", "CFQ7TTC0LCHD", "Microsoft 365 Business Premium", Decimal("20.60")),
    SeatProduct("CFQ7TTC0LFLX", "0002", "CFQ7TTC0LFM2", "Microsoft 365 E3", Decimal("33.70")),
    SeatProduct("CFQ7TTC0LF8Q", "0001", "CFQ7TTC0LF8R", "Office 365 E1", Decimal("9.40")),
    SeatProduct("CFQ7TTC0LH16", "0001", "CFQ7TTC0LH17", "Exchange Online (Plan 1)", Decimal("3.70")),
    SeatProduct("CFQ7TTC0HL8W", "0001", "CFQ7TTC0K59S", "Power BI Premium Per User", Decimal("18.70"), add_on=True),
    SeatProduct("CFQ7TTC0MM8R", "0002", "CFQ7TTC0MM8S", "Microsoft 365 Copilot", Decimal("28.10"), add_on=True),
    SeatProduct("DZH318Z0BW7N", "0004", "DZH318Z0BW7P", "Contoso Backup for Microsoft 365 (per user)",
                Decimal("2.49"), "USD", "Contoso Software Ltd", "contososoftware"),
    SeatProduct("DZH318Z0C1KM", "0001", "DZH318Z0C1KN", "Fabrikam Secure Mail Gateway", Decimal("4.15"), "USD",
                "Fabrikam Inc", "fabrikaminc"),
)


def _meter(key: str, product_id: str, sku_id: str, product: str, sku: str, category: str, sub: str, name: str,
           unit: str, price: str, max_daily: int, service: str, rtype: str, mtype: str) -> Meter:
    return Meter(guid("meter", key), product_id, sku_id, product_id[:8] + "0" + sku_id[1:], product, sku, category,
                 sub, name, unit, Decimal(price), max_daily, service, rtype, mtype)


METERS: tuple[Meter, ...] = (
    _meter("d2sv3", "DZH318Z0BQ4W", "006F", "Virtual Machines Dsv3 Series", "D2s v3", "Virtual Machines",
           "Dsv3 Series", "D2s v3", "1 Hour", "0.096", 24_000_000, "Microsoft.Compute", "virtualMachines",
           "1 Compute Hour"),
    _meter("b2ms", "DZH318Z0BQ3P", "00QK", "Virtual Machines BS Series", "B2ms", "Virtual Machines", "BS Series",
           "B2ms", "1 Hour", "0.0832", 24_000_000, "Microsoft.Compute", "virtualMachines", "1 Compute Hour"),
    _meter("p10", "DZH318Z0BP88", "003T", "Premium SSD Managed Disks", "P10 LRS", "Storage",
           "Premium SSD Managed Disks", "P10 LRS Disk", "1/Month", "19.7120", 32_258, "Microsoft.Compute", "disks",
           "1/Month"),
    _meter("lrs", "DZH318Z0BNZJ", "0019", "General Block Blob v2", "Hot LRS", "Storage", "General Block Blob v2",
           "Hot LRS Data Stored", "1 GB/Month", "0.0184", 9_000_000, "Microsoft.Storage", "storageAccounts",
           "1 GB/Month"),
    _meter("bw", "DZH318Z0BNVX", "006G", "Bandwidth Inter-Region", "Intra Continent", "Bandwidth",
           "Inter-Region", "Intra Continent Data Transfer Out", "1 GB", "0.02", 50_000_000, "Microsoft.Network",
           "publicIPAddresses", "1 GB"),
    _meter("sqlvc", "DZH318Z0BQ5S", "0034", "SQL Database Single/Elastic Pool General Purpose", "2 vCore",
           "SQL Database", "Single/Elastic Pool General Purpose - Compute Gen5", "vCore", "1 Hour", "0.5044",
           48_000_000, "Microsoft.Sql", "servers/databases", "1 Hour"),
    _meter("p1v3", "DZH318Z0BNVC", "0044", "Azure App Service Premium v3 Plan", "P1 v3", "Azure App Service",
           "Premium v3 Plan", "P1 v3 App", "1 Hour", "0.169", 24_000_000, "Microsoft.Web", "serverfarms",
           "1 Hour"),
    _meter("la", "DZH318Z0BP04", "0017", "Log Analytics", "Analytics Logs", "Log Analytics", "Analytics Logs",
           "Analytics Logs Data Ingestion", "1 GB", "2.76", 4_000_000, "Microsoft.OperationalInsights",
           "workspaces", "1 GB"),
)

MARKETPLACE_METERS: tuple[Meter, ...] = (
    Meter(guid("meter", "tailspin-api"), "DZH318Z0C3RT", "0002", "DZH318Z0C3RV", "Tailspin Geocoding API",
          "Pay as you go", "SaaS", "Tailspin", "API calls", "1K calls", Decimal("0.4125"), 2_000_000, "", "",
          "1K calls",
          "Tailspin Toys", "tailspintoys"),
    Meter(guid("meter", "wwi-scan"), "DZH318Z0C5PL", "0001", "DZH318Z0C5PM", "Wide World Threat Scanning",
          "Metered", "SaaS", "WWI", "Scanned GB", "1 GB", Decimal("0.0875"), 5_000_000, "", "", "1 GB",
          "Wide World Importers", "wideworldimporters"),
)


@dataclass(frozen=True)
class LegacyOffer:
    offer_id: str
    durable_offer_id: str
    name: str
    monthly_price: Decimal


LEGACY_OFFERS: tuple[LegacyOffer, ...] = tuple(
    LegacyOffer(guid("offer", name).upper(), guid("durable", name).upper(), name, Decimal(price))
    for name, price in (
        ("Office 365 Business Premium", "10.50"), ("Office 365 E3", "19.70"), ("Exchange Online (Plan 1)", "3.40"),
        ("Microsoft 365 Business", "16.90"), ("Project Online Professional", "25.30"), ("Visio Online Plan 2", "12.60"),
    )
)


@dataclass(frozen=True)
class LegacyService:
    service_name: str
    service_type: str
    resource_name: str
    region: str
    unit: str
    list_price: Decimal  # billing currency
    max_micros: int


LEGACY_SERVICES: tuple[LegacyService, ...] = (
    LegacyService("Virtual Machines", "Standard_D2 VM", "Compute Hours", "EU West", "Hours", Decimal("0.1265"),
                  744_000_000),
    LegacyService("Storage", "Standard IO", "Block Blob LRS Data Stored", "EU North", "GB", Decimal("0.0202"),
                  5_000_000_000),
    LegacyService("SQL Database", "Standard", "S1 Database Days", "EU West", "Days", Decimal("0.9611"), 31_000_000),
    LegacyService("Data Transfer", "Data Transfer Out", "Data Transfer Out (GB)", "Zone 1", "GB", Decimal("0.0736"),
                  900_000_000),
)
