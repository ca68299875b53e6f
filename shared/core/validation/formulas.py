"""Microsoft's Subtotal formulas, exactly, and the float screen that picks which lines to check with them.

Exact means C# `decimal`'s answer: the products are taken in shared.core.money's 100-digit CONTEXT (Python's default
28 digits would round 1.3333333333333333333333333333 × 3 up to 4.00 before ROUNDDOWN; exact is 3.99). The float
screen only chooses lines: a line is checked exactly when its float result differs from its Subtotal at all, or
when any intermediate lies within a millionth (relative) of a cent boundary, boundaries included, where float
rounding could tip ROUNDDOWN either way.
"""

from __future__ import annotations

import numpy as np

from shared.core.money import CONTEXT, Decimal, rounddown
from shared.core.validation.rules import ERROR, WARNING

__all__ = ["check_subtotal", "near_boundary", "rounddown", "screen_subtotals", "seat_subtotal", "usage_subtotal"]


def usage_subtotal(eup: Decimal, quantity: Decimal, rate: Decimal) -> Decimal:
    """ROUNDDOWN(ROUNDDOWN(EffectiveUnitPrice × BillableQuantity, 2) × PCToBCExchangeRate, 2)."""
    return rounddown(CONTEXT.multiply(rounddown(CONTEXT.multiply(eup, quantity)), rate))


def seat_subtotal(eup: Decimal, quantity: Decimal, rate: Decimal) -> Decimal:
    """ROUNDDOWN(EffectiveUnitPrice × PCToBCExchangeRate, 2) × BillableQuantity."""
    return CONTEXT.multiply(rounddown(CONTEXT.multiply(eup, rate)), quantity)


def check_subtotal(usage_based: bool, eup: Decimal, quantity: Decimal, rate: Decimal,
                   subtotal: Decimal) -> tuple[str | None, Decimal]:
    """(None | "error" | "warning", the expected subtotal of the line's kind)."""
    own = usage_subtotal(eup, quantity, rate) if usage_based else seat_subtotal(eup, quantity, rate)
    if own == subtotal:
        return None, own
    other = seat_subtotal(eup, quantity, rate) if usage_based else usage_subtotal(eup, quantity, rate)
    return (WARNING if other == subtotal else ERROR), own


def near_boundary(x: np.ndarray) -> np.ndarray:
    """Float values too close to a whole number of cents to trust, *including* those exactly on one (the exact
    value may lie just below it: 3.9999999999999999999999999999 is 4.0 in float)."""
    return np.abs(x - np.round(x)) < 1e-6 * np.maximum(1.0, np.abs(x))


def screen_subtotals(usage: np.ndarray, e: np.ndarray, q: np.ndarray, r: np.ndarray,
                     st: np.ndarray) -> np.ndarray:
    """Which lines need the exact check (float64 inputs; the answer never decides a finding by itself)."""
    unit = e * r * 100  # seat: cents per unit before ROUNDDOWN
    amount = e * q * 100  # usage: cents before the first ROUNDDOWN
    seat_exp = np.trunc(unit) / 100 * q
    usage_exp = np.trunc(np.trunc(amount) / 100 * r * 100) / 100
    expected = np.where(usage, usage_exp, seat_exp)
    near = np.where(usage, near_boundary(amount) | near_boundary(np.trunc(amount) * r), near_boundary(unit))
    return (expected != st) | near
