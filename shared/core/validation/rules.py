"""The catalogue of charge-validation rules: the one list the validator, the API and the README table come from.

README.md's table under "## Charge validation" is `markdown_table()` verbatim (tests/core/test_validation_rules.py
fails if the two differ), so a rule is described once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.core.columns import FileType

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)
DEFAULT_CAP = 10_000  # findings kept per file (the rest are counted)

CREDIT_TYPES = ("removeQuantity", "cancelImmediate", "customerCredit")
FULL_CYCLE_TYPES = ("new", "renew", "cycleCharge")
BILL_MONTHS = {"monthly": 1, "annual": 12, "triennial": 36}
QUANTITY_COLUMN = {FileType.ONETIME: "BillableQuantity", FileType.DAILY: "Quantity", FileType.LICENSE: "Quantity",
                   FileType.USAGE: "ConsumedQuantity"}
DUPLICATE_CHARGE_COLUMNS = {
    FileType.ONETIME: ("SubscriptionId", "ChargeType", "ChargeStartDate", "ChargeEndDate", "BillableQuantity",
                       "Subtotal"),
    FileType.DAILY: ("SubscriptionId", "EntitlementId", "MeterId", "ResourceURI", "UsageDate", "ChargeType",
                     "Quantity", "BillingPreTaxTotal"),
    FileType.LICENSE: ("OrderId", "SubscriptionId", "ChargeType", "ChargeStartDate", "ChargeEndDate", "Quantity",
                       "Subtotal"),
    FileType.USAGE: ("SubscriptionId", "DetailLineItemId", "ResourceGuid", "ChargeStartDate", "ConsumedQuantity",
                     "PretaxCharges"),
}
EXCHANGE_COLUMNS = {FileType.ONETIME: ("PricingCurrency", "Currency", "PCToBCExchangeRateDate"),
                    FileType.DAILY: ("PricingCurrency", "BillingCurrency", "PCToBCExchangeRateDate")}


@dataclass(frozen=True)
class Rule:
    id: str
    summary: str  # a few words (the API's list of rules)
    checks: str  # what it checks, for the README table (Markdown)
    severity: str
    types: str
    source: str


CATALOGUE: tuple[Rule, ...] = (
    Rule("SUBTOTAL_FORMULA", "Subtotal against Microsoft's usage-based or seat-based formula",
         "usage-based lines (those with a `UnitType`): `Subtotal = ROUNDDOWN(ROUNDDOWN(EffectiveUnitPrice × "
         "BillableQuantity, 2) × PCToBCExchangeRate, 2)`; seat-based lines: `ROUNDDOWN(EffectiveUnitPrice × "
         "PCToBCExchangeRate, 2) × BillableQuantity`; ROUNDDOWN toward zero, computed exactly (100 digits, as C# "
         "`decimal` does: 1.3333333333333333333333333333 × 3 → 3.99). Matching neither is an error; matching only "
         "the other kind's formula a warning",
         "error / warning", "onetime", "Microsoft's new-commerce field list (seed 001)"),
    Rule("TOTAL_FORMULA", "Total = Subtotal + TaxTotal",
         "`Total = Subtotal + TaxTotal`, exactly (no tolerance)", "error", "onetime", "seed 001"),
    Rule("MISSING_COST", "every line has a cost",
         "a line whose cost (`Subtotal`; `PretaxCharges` usage; `BillingPreTaxTotal` daily usage) is empty: it has "
         "no margin and is not in the totals; the file record's `noCostLines` counts such lines",
         "error", "all", "completeness"),
    Rule("CHARGE_CYCLE", "charge period against the subscription's dates and billing frequency",
         "a charge ending before it starts, outside the subscription, or a full cycle (`new`, `renew`, "
         "`cycleCharge`) that does not end one day before the same date 1 (Monthly) or 12 (Annual) months later",
         "error", "onetime seat lines", "seed 000 (charge cycle), reference §6"),
    Rule("CHARGE_CYCLE_UNVERIFIED", "charge period Microsoft's documentation does not let us verify",
         "cycles starting on the 29th–31st, unknown frequencies, partial (co-termed, prorated) periods: "
         "Microsoft's rule is not documented", "info", "onetime seat lines", "reference §6, §9"),
    Rule("DUPLICATE_REFERENCE", "the same ReferenceId twice in one file",
         "the same `ReferenceId` twice (an exact duplicate line raises this and `DUPLICATE_CHARGE`)",
         "error", "onetime", "seed 001"),
    Rule("DUPLICATE_CHARGE", "the same charge billed twice in one invoice",
         "the same subscription, charge type, charge period, quantity and amount twice, whatever the lines' "
         "`ReferenceId` (daily usage: its key columns, charge type, quantity and amount)",
         "warning", "all", "partner practice"),
    Rule("OVER_CREDIT", "credits larger than what was charged for the subscription and period",
         "`removeQuantity` / `cancelImmediate` / `customerCredit` lines of a subscription and period crediting more "
         "than the invoice charged for it: an error when the refunded cycle lies within the invoice's billing "
         "period; a warning, with the reason, when the cycle started before it (it was charged in an earlier "
         "invoice, which this check does not see); info when the invoice charged nothing for that period",
         "error / warning / info", "onetime", "reference §6"),
    Rule("EXCHANGE_RATE", "one exchange rate per currency pair and rate date",
         "one `PCToBCExchangeRate` per pricing currency, billing currency and rate date within an invoice",
         "error", "onetime, daily usage", "reference §6"),
    Rule("INVOICE_TOTAL", "the lines add up to the invoice's totalCharges",
         "Σ `Total` against the invoice's `totalCharges`, exactly", "error", "onetime", "reference §2.2"),
    Rule("INVOICE_NUMBER", "every line belongs to the file's invoice",
         "a line of another invoice", "error", "types with `InvoiceNumber`", "completeness"),
    Rule("MISSING_CUSTOMER", "every line names its customer",
         "a line with no `CustomerId` (a removed relationship)", "warning", "all", "completeness"),
    Rule("MONTH_OVER_MONTH", "per-subscription change against the previous month",
         "per subscription, quantity or cost changed by more than `VALIDATION_CHANGE_THRESHOLD_PERCENT` (50) "
         "against last month's file (its `summary.json`)", "warning", "all", "partner practice"),
)

RULES: dict[str, str] = {rule.id: rule.summary for rule in CATALOGUE}


def markdown_table() -> str:
    """The README's rules table, generated from the catalogue."""
    lines = ["| rule | what it checks | severity | types | source |", "|---|---|---|---|---|"]
    lines += [f"| `{r.id}` | {r.checks} | {r.severity} | {r.types} | {r.source} |" for r in CATALOGUE]
    return "\n".join(lines)
