"""Exact decimal arithmetic for every amount the simulator produces; binary floats never touch money.

Products go through `EXACT`, a context that raises instead of rounding, so a silent loss of digits is impossible;
rounding happens only where Microsoft's formulas say so (ROUNDDOWN toward zero, ROUNDUP away from zero, as in
Excel).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import (
    ROUND_DOWN,
    ROUND_HALF_UP,
    ROUND_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
)

EXACT = Context(prec=100, traps=[Inexact, Rounded, InvalidOperation, Overflow, DivisionByZero])
_DIVIDE = Context(prec=40)
ZERO = Decimal(0)
ONE = Decimal(1)


def mul(*factors: Decimal) -> Decimal:
    """The exact product."""
    result = factors[0]
    for factor in factors[1:]:
        result = EXACT.multiply(result, factor)
    return result


def add(*terms: Decimal) -> Decimal:
    result = terms[0]
    for term in terms[1:]:
        result = EXACT.add(result, term)
    return result


def total(values: Iterable[Decimal]) -> Decimal:
    """The exact sum (no context precision limit on long columns)."""
    result = ZERO
    for value in values:
        result = EXACT.add(result, value)
    return result


def _step(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


def rounddown(value: Decimal, places: int = 2) -> Decimal:
    """Excel ROUNDDOWN: toward zero."""
    return value.quantize(_step(places), rounding=ROUND_DOWN)


def roundup(value: Decimal, places: int = 2) -> Decimal:
    """Excel ROUNDUP: away from zero."""
    return value.quantize(_step(places), rounding=ROUND_UP)


def round_half_up(value: Decimal, places: int) -> Decimal:
    return value.quantize(_step(places), rounding=ROUND_HALF_UP)


def prorate(amount: Decimal, days: int, of_days: int, places: int) -> Decimal:
    """amount × days / of_days, rounded half-up to `places` (the only division the simulator does)."""
    return round_half_up(_DIVIDE.divide(mul(amount, Decimal(days)), Decimal(of_days)), places)


def micros(n: int) -> Decimal:
    """n millionths, exactly."""
    return Decimal(n).scaleb(-6)


def text(value: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros ("720", "0.03825"), as Microsoft's JSON shows it."""
    if value.is_zero():
        return "0"
    return format(value.normalize(EXACT), "f")
