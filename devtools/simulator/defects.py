"""Defects in Microsoft's data on request, so tests can prove each validation rule fires (`sim.faults.defect`).

A defect replaces one or two rows of an invoice's dataset with a wrong version of themselves; the rows are chosen
deterministically (and so that nothing else becomes wrong), and the same replacement is served by v1 pages and
Graph export blobs alike. `expected()` and the invoice's `totalCharges` follow the served rows (they stay what a
complete download adds up to), except for `invoice_total`, which changes `totalCharges` alone.

| kind | data | what changes | the finding |
|---|---|---|---|
| `subtotal` | onetime | a seat line's Subtotal and Total + 0.01 | SUBTOTAL_FORMULA error on its ReferenceId |
| `total` | onetime | a seat line's Total + 0.01 | TOTAL_FORMULA error |
| `duplicate_reference` | onetime | the second Azure plan line takes the first one's ReferenceId | DUPLICATE_REFERENCE error |
| `duplicate_charge` | onetime, daily | the second Azure plan line (daily: row 1) becomes a copy of the first (onetime: with its own ReferenceId) | DUPLICATE_CHARGE warning |
| `duplicate_charge_far` | daily | the last row becomes a copy of row 0 (in another export blob when there are several) | DUPLICATE_CHARGE warning |
| `exchange_rate_tail` | daily | every row from the middle on has PCToBCExchangeRate + 1e-9 (amounts kept) | EXCHANGE_RATE error on each |
| `missing_customer_far` | daily | the row before the last has no CustomerId (in the last export blob) | MISSING_CUSTOMER warning |
| `over_credit` | onetime | an Azure plan line becomes a customerCredit of one seat more than a charge that is alone in its subscription and period | OVER_CREDIT error on the credit's ReferenceId |
| `exchange_rate` | onetime | the last Azure plan line's PCToBCExchangeRate + 1e-9 (amounts recomputed with it) | EXCHANGE_RATE error |
| `missing_customer` | onetime, daily | the last Azure plan line (daily: row 0) has no CustomerId | MISSING_CUSTOMER warning |
| `charge_cycle` | onetime | a full-cycle seat charge alone in its subscription and period ends a day early | CHARGE_CYCLE error |
| `invoice_total` | invoice | totalCharges + 1.00 | INVOICE_TOTAL error |
| `no_cost` | onetime | an Azure plan line loses its Subtotal (omitted; its Total stays) | MISSING_COST error |
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

from shared.core.columns import FileType

from .catalog import TAX_PERCENTAGE
from .money import add, mul, rounddown, roundup, text
from .rows import Row

KINDS = frozenset({"subtotal", "total", "duplicate_reference", "duplicate_charge", "over_credit", "exchange_rate",
                   "missing_customer", "charge_cycle", "invoice_total", "no_cost", "duplicate_charge_far",
                   "missing_customer_far", "exchange_rate_tail"})
DAILY_KINDS = frozenset({"duplicate_charge", "missing_customer", "duplicate_charge_far", "missing_customer_far",
                         "exchange_rate_tail"})


def _cent(value: str, delta: str) -> str:
    return text(add(Decimal(value), Decimal(delta)))


def replacements(file_type: FileType, rows: list[Row], kinds: frozenset[str]) -> dict[int, Row]:
    """Row index -> the defective row that replaces it."""
    out: dict[int, Row] = {}
    if file_type == FileType.DAILY:
        if "duplicate_charge" in kinds and len(rows) > 1:
            out[1] = dict(rows[0])
        if "duplicate_charge_far" in kinds and len(rows) > 2:
            out[len(rows) - 1] = dict(rows[0])
        if "missing_customer_far" in kinds and len(rows) > 3:
            out[len(rows) - 2] = {**rows[len(rows) - 2], "CustomerId": ""}
        if "exchange_rate_tail" in kinds:
            for i in range(len(rows) // 2, len(rows)):
                rate = add(Decimal(out.get(i, rows[i])["PCToBCExchangeRate"]), Decimal("0.000000001"))
                out[i] = {**out.get(i, rows[i]), "PCToBCExchangeRate": text(rate)}
        if "missing_customer" in kinds and rows:
            out[0] = {**rows[0], "CustomerId": ""}
        return out
    if file_type != FileType.ONETIME:
        return out
    usage = [i for i, r in enumerate(rows) if r["UnitType"]]
    groups = Counter((r["SubscriptionId"], r["ChargeEndDate"]) for r in rows)
    solo = [i for i, r in enumerate(rows) if not r["UnitType"] and r["ChargeType"] in ("new", "renew", "cycleCharge")
            and groups[r["SubscriptionId"], r["ChargeEndDate"]] == 1 and int(r["BillableQuantity"]) > 0
            and date.fromisoformat(r["ChargeStartDate"][:10]).day <= 28]
    if "subtotal" in kinds:
        i = solo[0]
        out[i] = {**rows[i], "Subtotal": _cent(rows[i]["Subtotal"], "0.01"), "Total": _cent(rows[i]["Total"], "0.01")}
    if "total" in kinds:
        i = solo[1]
        out[i] = {**rows[i], "Total": _cent(rows[i]["Total"], "0.01")}
    if "duplicate_reference" in kinds:
        out[usage[1]] = {**rows[usage[1]], "ReferenceId": rows[usage[0]]["ReferenceId"]}
    if "duplicate_charge" in kinds:
        out[usage[2]] = {**rows[usage[0]], "ReferenceId": rows[usage[2]]["ReferenceId"]}
    if "over_credit" in kinds:
        charge = rows[solo[2]]
        seats = -(int(charge["BillableQuantity"]) + 1)
        unit = rounddown(mul(Decimal(charge["EffectiveUnitPrice"]), Decimal(charge["PCToBCExchangeRate"])), 2)
        subtotal = mul(unit, Decimal(seats))
        tax = mul(roundup(mul(unit, TAX_PERCENTAGE), 2), Decimal(seats))
        target = usage[3]
        out[target] = {**charge, "ChargeType": "customerCredit", "Quantity": str(seats),
                       "BillableQuantity": str(seats), "Subtotal": text(subtotal), "TaxTotal": text(tax),
                       "Total": text(add(subtotal, tax)), "ReferenceId": rows[target]["ReferenceId"],
                       "PriceAdjustmentDescription": '["Customer credit"]'}
    if "exchange_rate" in kinds:
        i = usage[-1]
        r = rows[i]
        rate = add(Decimal(r["PCToBCExchangeRate"]), Decimal("0.000000001"))
        subtotal = rounddown(mul(rounddown(mul(Decimal(r["EffectiveUnitPrice"]), Decimal(r["BillableQuantity"])), 2),
                                 rate), 2)
        tax = roundup(mul(subtotal, TAX_PERCENTAGE), 2)
        out[i] = {**r, "PCToBCExchangeRate": text(rate), "Subtotal": text(subtotal), "TaxTotal": text(tax),
                  "Total": text(add(subtotal, tax))}
    if "missing_customer" in kinds:
        i = usage[-2]
        out[i] = {**rows[i], "CustomerId": ""}
    if "no_cost" in kinds:
        i = usage[4]
        out[i] = {**rows[i], "Subtotal": None}
    if "charge_cycle" in kinds:
        i = solo[3]
        end = date.fromisoformat(rows[i]["ChargeEndDate"][:10]) - timedelta(days=1)
        out[i] = {**rows[i], "ChargeEndDate": f"{end.isoformat()}T00:00:00Z"}
    return out
