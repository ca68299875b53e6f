"""The simulated partner's world: its tenant and app, Tier-2 resellers, customers, Azure plans and resources.

Everything is derived from the seed; how many customers exist grows with `size` so that large invoices spread
over many subscriptions rather than repeating a few.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cached_property, lru_cache

from .catalog import METERS, Meter
from .det import Draws, guid, hexid, number

_ADJECTIVES = ("Alpine", "Blue", "Bright", "Coastal", "Golden", "Northern", "Rapid", "Silver", "Summit", "Urban")
_NOUNS = ("Bakery", "Logistics", "Dental", "Architects", "Brewing", "Clinic", "Motors", "Robotics", "Textiles",
          "Travel", "Foods", "Legal")
_SUFFIXES = ("GmbH", "AG", "B.V.", "SAS", "Ltd", "S.L.", "S.r.l.")
_COUNTRIES = ("DE", "DE", "DE", "AT", "NL", "FR", "BE", "IE", "ES", "IT")
_RESELLER_NAMES = ("Adatum IT", "Proseware Systems", "Lucerne Digital", "Litware Services", "Margie's IT",
                   "Trey Consulting", "Woodgrove Tech", "Humongous Support")
_ENVIRONMENTS = ("Production", "Dev/Test", "Sandbox")
SHARED_CUSTOMERS = 3  # customers served by two resellers (reseller principals' customer views are narrowed)


@dataclass(frozen=True)
class Reseller:
    mpn_id: str
    name: str


@dataclass(frozen=True)
class Customer:
    index: int
    customer_id: str
    name: str
    domain: str
    country: str
    reseller: Reseller | None
    managed: bool  # earns partner earned credit on Azure
    azure_plan_id: str
    azure_plan_order: str
    azure_plan_start: date
    entitlements: tuple[tuple[str, str], ...]  # (EntitlementId, EntitlementDescription)


@dataclass(frozen=True)
class Resource:
    """One Azure resource; it produces one daily rated usage row per day."""

    customer: Customer
    entitlement_id: str
    entitlement_description: str
    meter: Meter
    resource_group: str
    resource_uri: str
    location: str
    tags: str
    additional_info: str


def onetime_rows(size: int) -> int:
    """One-time lines per invoice for a given daily usage size."""
    return min(20_000, max(40, size // 20))


class World:
    """Entities of one seed, produced on demand and remembered."""

    def __init__(self, seed: int, size: int) -> None:
        self.seed = seed
        self.size = size
        draws = Draws(seed, "partner")
        self.tenant_id = guid(seed, "partner-tenant")
        self.partner_name = f"{draws.pick(_ADJECTIVES)} Cloud Partners GmbH"
        self.mpn_id = str(draws.between(1_000_000, 3_999_999))
        self.billable_account_id = str(draws.between(1_000_000_000, 9_999_999_999))
        self.client_id = guid(seed, "app")
        self.client_secret = "sim8Q~" + hexid(34, seed, "client-secret")
        self.customer_count = max(12, min(5000, onetime_rows(size) // 4))
        self.reseller_count = max(3, min(300, self.customer_count // 6))
        self._customers: dict[int, Customer] = {}  # at most customer_count
        self._reseller_base = 4_000_000 + number(seed, "reseller-mpn") % 1_000_000

    def reseller(self, k: int) -> Reseller:
        # 104729 is prime, so k ↦ MpnId is one-to-one below 5,000,000 resellers.
        mpn = 4_000_000 + (self._reseller_base + k * 104_729) % 5_000_000
        return Reseller(str(mpn), f"{_RESELLER_NAMES[k % len(_RESELLER_NAMES)]} {k + 1}")

    def customer(self, c: int) -> Customer:
        found = self._customers.get(c)
        if found is None:
            found = self._customers[c] = self._make_customer(c)
        return found

    def _make_customer(self, c: int) -> Customer:
        d = Draws(self.seed, "customer", c)
        name = f"{d.pick(_ADJECTIVES)} {d.pick(_NOUNS)} {c + 1} {d.pick(_SUFFIXES)}"
        slug = "".join(ch for ch in name.lower() if ch.isalnum())[:20]
        reseller = None if d.chance(34) else self.reseller(d.below(self.reseller_count))
        entitlements = tuple(
            (guid(self.seed, "entitlement", c, k), f"{_ENVIRONMENTS[k]} - {slug}") for k in range(d.between(1, 3))
        )
        return Customer(
            index=c,
            customer_id=guid(self.seed, "customer", c),
            name=name,
            domain=f"{slug}.onmicrosoft.com",
            country=d.pick(_COUNTRIES),
            reseller=reseller,
            managed=d.chance(60),
            azure_plan_id=guid(self.seed, "azure-plan", c),
            azure_plan_order=hexid(12, self.seed, "azure-plan-order", c),
            azure_plan_start=date(2022 + d.below(3), d.between(1, 12), d.between(1, 28)),
            entitlements=entitlements,
        )

    @cached_property
    def shared_customers(self) -> frozenset[int]:
        """Customers that buy from two resellers (the first SHARED_CUSTOMERS with a reseller): some of their
        subscriptions come through their own reseller, the others through `second_reseller`."""
        resold = (c for c in map(self.customer, range(self.customer_count)) if c.reseller is not None)
        return frozenset(c.index for c, _ in zip(resold, range(SHARED_CUSTOMERS)))

    def second_reseller(self, customer: Customer) -> Reseller | None:
        """The other reseller of a shared customer; None for every other customer."""
        if customer.reseller is None or customer.index not in self.shared_customers:
            return None
        return next(r for r in map(self.reseller, range(self.reseller_count)) if r != customer.reseller)

    def reseller_of(self, customer: Customer, subscription_id: str) -> Reseller | None:
        """Who sells this subscription: the customer's reseller, or for the shared customer either of its two
        (by subscription, so every line of a subscription has one reseller)."""
        second = self.second_reseller(customer)
        if second is not None and number(self.seed, "second-reseller", subscription_id) % 2:
            return second
        return customer.reseller

    def pick_customer(self, d: Draws) -> Customer:
        return self.customer(d.below(self.customer_count))

    def resource(self, r: int) -> Resource:
        return _resource(self, r)


@lru_cache(maxsize=8192)  # rows walk resources in order, so a bounded cache hits almost always
def _resource(world: World, r: int) -> Resource:
    d = Draws(world.seed, "resource", r)
    customer = world.pick_customer(d)
    entitlement_id, description = d.pick(customer.entitlements)
    meter = d.pick(METERS)
    group = f"rg-{d.pick(('web', 'data', 'core', 'shared', 'apps'))}-{d.below(20):02d}"
    name = f"{meter.resource_type.split('/')[0][:-1].lower()}-{hexid(6, world.seed, 'resource-name', r)}"
    provider = meter.consumed_service
    tags = f'{{"env":"{d.pick(("prod", "test", "dev"))}","costCenter":"{d.between(100, 999)}"}}' \
        if d.chance(60) else ""
    info = f'{{"ServiceType":"Standard_{meter.sku_name.replace(" ", "_")}"}}' \
        if meter.category == "Virtual Machines" else ""
    return Resource(
        customer=customer,
        entitlement_id=entitlement_id,
        entitlement_description=description,
        meter=meter,
        resource_group=group,
        resource_uri=f"/subscriptions/{entitlement_id}/resourceGroups/{group}/providers/{provider}/"
                     f"{meter.resource_type}/{name}",
        location=d.pick(("westeurope", "northeurope", "germanywestcentral")),
        tags=tags,
        additional_info=info,
    )
