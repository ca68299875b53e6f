"""Margin rules and identifier mappings: what a partner (or a reseller) agrees, as validated data.

The engine (shared.core.margins) applies them; storage (shared.adapters.pricing) keeps them. Percents are Decimal
from the request's text, never through binary float: -100 < percent <= 1000, at most 4 places.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Protocol

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    model_validator,
)

from shared.core.models import MPN_ID_PATTERN, ApiModel
from shared.core.money import CONTEXT, Decimal, plain, quantum
from shared.core.ownership import DIRECT_RESELLER_IDS, line_owner  # re-exported

PERCENT_PLACES = 4
PERCENT_MIN = Decimal(-100)  # exclusive: -100 % would make the line free
PERCENT_MAX = Decimal(1000)  # inclusive


# ---- rules -----------------------------------------------------------------------------------------------------

class MarginLevel(StrEnum):
    RESELLER = "reseller"
    CUSTOMER = "customer"
    SUBSCRIPTION = "subscription"


def _percent_in(value: Any) -> Any:
    """Numbers become Decimal through their text, never through binary float arithmetic."""
    if isinstance(value, bool):
        raise ValueError("percent must be a number or a decimal string")  # noqa: TRY004 (pydantic wants ValueError)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("percent must be finite")
        return Decimal(str(value))  # str(12.345) == "12.345": the shortest text that reads back as that number
    if isinstance(value, str):
        return value.strip()
    return value


def _percent_check(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("percent must be finite")
    if not (PERCENT_MIN < value <= PERCENT_MAX):
        raise ValueError(f"percent must be greater than {PERCENT_MIN} and at most {PERCENT_MAX}")
    if value != value.quantize(quantum(PERCENT_PLACES), context=CONTEXT):
        raise ValueError(f"percent has more than {PERCENT_PLACES} decimal places")
    if value == 0:
        return Decimal(0)
    return Decimal(plain(value))  # 12.50 -> 12.5, 1E+1 -> 10: stable JSON text


MarginPercent = Annotated[Decimal, BeforeValidator(_percent_in), AfterValidator(_percent_check)]
TargetId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
ProductId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:/-]+$")]


def _owner_check(value: str) -> str:
    if line_owner(value) in DIRECT_RESELLER_IDS:
        raise ValueError("an owner is a reseller's MPN id (digits, not 0)")
    return value


OwnerId = Annotated[str, StringConstraints(pattern=MPN_ID_PATTERN), AfterValidator(_owner_check)]


class _RuleFields(ApiModel):
    level: MarginLevel
    target_id: TargetId = Field(description="Reseller MPN id, customer id or subscription id, per level.")
    percent: MarginPercent
    effective_from: date
    effective_to: date | None = Field(default=None, description="Exclusive; open-ended when absent.")
    product_id: ProductId | None = None
    owner_reseller_id: OwnerId | None = Field(default=None, description=(
        "The reseller that owns the rule: it applies only to that reseller's lines. Set to the caller's reseller id "
        "when a reseller writes it; absent for the partner's own rules, which apply to every line they name."))

    @model_validator(mode="after")
    def _check(self) -> _RuleFields:
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError("effectiveTo must be after effectiveFrom (it is exclusive)")
        if self.level == MarginLevel.RESELLER and (not self.target_id.isdigit() or self.target_id == "0"):
            raise ValueError("a reseller rule's targetId is the reseller's MPN id (digits, not 0)")
        if self.level == MarginLevel.RESELLER and self.owner_reseller_id is not None:
            raise ValueError("ownerResellerId is for customer and subscription rules (reseller rules are the "
                             "partner's)")
        return self


class MarginRuleIn(_RuleFields):
    """A rule as a request body (camelCase, unknown fields refused)."""


class MarginRule(_RuleFields):
    """A stored rule."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=100)]

    def active_on(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day < self.effective_to)


class _RuleLike(Protocol):
    level: MarginLevel
    target_id: str
    product_id: str | None
    owner_reseller_id: str | None
    effective_from: date
    effective_to: date | None


def overlaps(a: _RuleLike, b: _RuleLike) -> bool:
    """Would both rules compete for the same line on some day? (Same level, target and product; ranges meet; and
    lines both may apply to: two resellers' own rules never meet, each applies to its own lines only.)"""
    if a.level != b.level or a.target_id.lower() != b.target_id.lower():
        return False
    if a.owner_reseller_id and b.owner_reseller_id and a.owner_reseller_id != b.owner_reseller_id:
        return False
    if (a.product_id or "").lower() != (b.product_id or "").lower():
        return False
    a_before_b_ends = b.effective_to is None or a.effective_from < b.effective_to
    b_before_a_ends = a.effective_to is None or b.effective_from < a.effective_to
    return a_before_b_ends and b_before_a_ends


# ---- mappings --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mappings:
    """The partner's own ids for Microsoft's: written on every line so files join with the partner's systems."""

    resellers: dict[str, str] = field(default_factory=dict)  # reseller MPN id -> internal id
    customers: dict[str, str] = field(default_factory=dict)  # customer id -> internal id
    subscriptions: dict[str, str] = field(default_factory=dict)  # subscription id -> internal id
    po_numbers: dict[str, str] = field(default_factory=dict)  # subscription id -> PO number
    # reseller id -> the identifiers that reseller wrote: on its own lines they take the place of the partner's
    owned: dict[str, "Mappings"] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        data: dict[str, Any] = {"resellers": dict(sorted(self.resellers.items())),
                                "customers": dict(sorted(self.customers.items())),
                                "subscriptions": dict(sorted(self.subscriptions.items())),
                                "poNumbers": dict(sorted(self.po_numbers.items()))}
        if self.owned:
            data["owned"] = {owner: m.snapshot() for owner, m in sorted(self.owned.items())}
        return data

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> "Mappings":
        """The mappings a version was made with, read back from its `snapshot()` (the approved figures)."""
        def ids(key: str) -> dict[str, str]:
            raw = data.get(key) or {}
            return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

        owned = data.get("owned") or {}
        return cls(resellers=ids("resellers"), customers=ids("customers"), subscriptions=ids("subscriptions"),
                   po_numbers=ids("poNumbers"),
                   owned={str(k): cls.from_snapshot(v) for k, v in owned.items() if isinstance(v, dict)})
