"""Money: how every amount is held, parsed, added, rounded and written. The one home of `Decimal` in `shared/`.

Other modules import what they need from here (`from shared.core.money import Decimal, CENT, exact_sum`), in the
manner of beancount's `beancount/core/number.py`. The rules:

- **Never float.** Amounts go from Microsoft's JSON text straight into `Decimal` or Arrow decimals; binary floating
  point may only *screen* which lines an exact check looks at, never decide or carry a value.
- **Arrow type.** Microsoft's amounts are held as `DECIMAL_TYPE` = `decimal128(38, 20)`: 18 integer digits and 20
  places. 18 integer digits hold any line of any ISO 4217 currency Microsoft bills in (a Vietnamese-dong or
  Indonesian-rupiah line of 10^13 has room to spare: 10^18 - 1 is the largest); 20 places hold every amount,
  price, quantity and exchange rate seen (a C# `decimal` with more places, none seen, is rounded half-even at the
  20th when parsed). A value of 10^18 or more is refused as *out of range* (`OutOfRange`), never as "not a number".
- **Context.** Python's default context keeps 28 significant digits and would silently round an 18 + 20 digit
  amount, or refuse to quantize `5` to 20 places alongside it. Every domain operation runs in `CONTEXT`: 100
  digits (two 38-digit operands multiply exactly), ties half-even where a rounding is not ours to choose, and
  traps on invalid operations, division by zero and overflow. Use `exact()` for a block of arithmetic, or the
  helpers below.
- **Ties.** Our own rounding (margins) is **half away from zero** (`ROUND_HALF_UP`; Arrow's
  `"half_towards_infinity"`, `ARROW_ROUND_HALF_AWAY`): 1.005 -> 1.01 and -1.005 -> -1.01. Microsoft's formulas
  use Excel's ROUNDDOWN (toward zero): `rounddown`.
- **Sums.** An Arrow decimal column is summed after widening to `decimal256(76, scale)` (`widen`): 56 integer
  digits, so no number of lines can overflow; Python-side totals add in `CONTEXT` (`add`, `exact_sum`).
- **Text.** Amounts are written as plain decimal text without trailing zeros or exponent (`12.50` -> `12.5`,
  never `1E-7`): `plain` for one Decimal, `arrow_text` for an Arrow column (vectorised; the CSV writer's hot path).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from decimal import (
    ROUND_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ARROW_ROUND_HALF_AWAY", "CENT", "CONTEXT", "DECIMAL_TYPE", "Decimal", "INTEGER_DIGITS", "InvalidOperation",
    "LARGEST", "LIMIT", "MICRO", "OutOfRange", "QUANTUM", "ROUND_DOWN", "ROUND_HALF_EVEN", "ROUND_HALF_UP", "SCALE", "SUM_PRECISION", "ZERO",
    "add", "arrow_sum", "arrow_text", "exact", "exact_sum", "out_of_range", "parse", "plain", "plain_amounts", "quantum",
    "round_half_away", "rounddown", "to_decimal", "widen",
]

INTEGER_DIGITS = 18  # largest amount 10**18 - 1: any line in any ISO 4217 currency Microsoft bills in
SCALE = 20  # places kept of Microsoft's amounts, prices, quantities and rates
DECIMAL_TYPE = pa.decimal128(INTEGER_DIGITS + SCALE, SCALE)
SUM_PRECISION = 76  # decimal256's maximum: what a column is widened to before it is summed
ZERO = Decimal(0)
CENT = Decimal("0.01")  # the invoice currency's minor unit in our files (2 places)
MICRO = Decimal("0.000001")  # the 6-place quantum of daily rated usage subtotals
QUANTUM = Decimal(1).scaleb(-SCALE)
LIMIT = Decimal(10) ** INTEGER_DIGITS  # exclusive bound of |amount|
ARROW_ROUND_HALF_AWAY = "half_towards_infinity"  # Arrow's name for half away from zero (= ROUND_HALF_UP)
CONTEXT = Context(prec=100, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
LARGEST = CONTEXT.subtract(LIMIT, QUANTUM)  # the largest amount DECIMAL_TYPE holds: 10**18 - 1e-20


class OutOfRange(ValueError):
    """A number too large for `DECIMAL_TYPE` (|value| >= 10**18)."""


def exact() -> AbstractContextManager[Context]:
    """`with exact(): ...` runs a block of Decimal arithmetic in `CONTEXT` (100 digits), not the default 28."""
    return localcontext(CONTEXT)


def quantum(places: int) -> Decimal:
    """10**-places: CENT for 2, MICRO for 6."""
    return Decimal(1).scaleb(-places)


def out_of_range(value: Decimal) -> bool:
    return value.is_finite() and abs(value) >= LIMIT


def parse(text: str) -> Decimal:
    """Exact decimal text -> a Decimal of at most SCALE places (half-even beyond, below 1e-20).

    Raises InvalidOperation for text that is not a finite number, OutOfRange for |value| >= 10**18."""
    value = Decimal(text.strip())
    if not value.is_finite():
        raise InvalidOperation(text)
    if out_of_range(value):
        raise OutOfRange(text)
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN, context=CONTEXT)


def to_decimal(value: Any) -> Decimal | None:
    """A number from JSON or a stored summary (Decimal, int, numeric text) -> Decimal; None if it is none."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        raise TypeError("money never passes through float")
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        return None


def add(*values: Decimal) -> Decimal:
    """The exact sum of a few Decimals (CONTEXT: no digit is lost for amounts of up to 100 digits)."""
    return exact_sum(values)


def exact_sum(values: Iterable[Decimal | int | None]) -> Decimal:
    total = ZERO
    for value in values:
        if value is not None:
            total = CONTEXT.add(total, value)
    return total


def rounddown(value: Decimal, places: int = 2) -> Decimal:
    """Excel ROUNDDOWN: toward zero (-12.345 -> -12.34), as Microsoft's Subtotal formulas."""
    return value.quantize(quantum(places), rounding=ROUND_DOWN, context=CONTEXT)


def round_half_away(value: Decimal, places: int = 2) -> Decimal:
    """Our rounding: half away from zero (1.005 -> 1.01, -1.005 -> -1.01)."""
    return value.quantize(quantum(places), rounding=ROUND_HALF_UP, context=CONTEXT)


def plain(value: Decimal) -> str:
    """Exact decimal text without trailing zeros or exponent: Decimal("12.5000") -> "12.5", 1E+3 -> "1000"."""
    text = format(value.normalize(CONTEXT), "f")
    return "0" if text in ("-0", "") else text


def plain_amounts(value: Any) -> Any:
    """A JSON-ready answer with every Decimal in it (nested in dicts and lists) as `plain` text: amounts never
    travel as JSON numbers, which most clients read as binary floats."""
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, dict):
        return {k: plain_amounts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_amounts(v) for v in value]
    return value


# ---- Arrow decimals ----------------------------------------------------------------------------------------------

def widen(arr: pa.Array | pa.ChunkedArray, precision: int = SUM_PRECISION) -> pa.Array | pa.ChunkedArray:
    """The column as decimal256(76, its scale): room for any sum of its values. (A smaller `precision` for
    element-wise arithmetic, whose result type Arrow makes one digit wider: 39 for adding two 38-digit columns.)"""
    return pc.cast(arr, pa.decimal256(precision, arr.type.scale))


def arrow_sum(arr: pa.Array | pa.ChunkedArray) -> Decimal:
    """Exact sum of a decimal column, widened first so millions of lines cannot overflow; nulls are skipped."""
    total = pc.sum(widen(arr)).as_py()
    return ZERO if total is None else total


_TINY = Decimal("0.000001")


def _tiny_text(tiny: pa.Array) -> pa.Array:
    """Arrow writes |x| < 1e-6 as 1.0E-7. Shifted by one away from zero they print plainly ("1.0000001"), and
    the leading 1 becomes the 0 it stood for: exact, and still vectorised."""
    wide = pc.cast(tiny, pa.decimal256(min(SUM_PRECISION, tiny.type.precision + 2), tiny.type.scale))
    one = pa.scalar(Decimal(1), wide.type)
    shifted = pc.if_else(pc.less(wide, 0), pc.subtract(wide, one), pc.add(wide, one))
    # RE2 replacement "\\10" is group 1 (the sign) followed by "0".
    return pc.replace_substring_regex(pc.cast(shifted, pa.string()), pattern=r"^(-?)1", replacement=r"\10",
                                      max_replacements=1)


def arrow_text(arr: pa.Array, decimal_separator: str = ".") -> pa.Array:
    """Decimals as plain text without trailing zeros (never scientific notation): 12.50 -> "12.5".

    With more than 6 places Arrow writes 0 as "0E-20" and 0 < |x| < 1e-6 as "1.0E-7": those are found by value
    (cheaper than searching every text for an "E", which measured a sixth of the CSV's cost) and rewritten."""
    text = pc.cast(arr, pa.string())
    zero = None
    if arr.type.scale > 6 and pc.any(pc.less(pc.abs(arr), pa.scalar(_TINY, arr.type))).as_py():  # else none
        zero = pc.equal(arr, pa.scalar(ZERO, arr.type))
        tiny = pc.fill_null(pc.and_(pc.less(pc.abs(arr), pa.scalar(_TINY, arr.type)), pc.invert(zero)), False)
        if pc.any(tiny).as_py():
            text = pc.replace_with_mask(text, tiny, _tiny_text(pc.filter(arr, tiny)))
    if arr.type.scale > 0:  # every value then has a point: trailing zeros, then a bare point, can go
        text = pc.ascii_rtrim(pc.ascii_rtrim(text, characters="0"), characters=".")
    if zero is not None:
        text = pc.if_else(zero, "0", text)
    if decimal_separator != ".":
        text = pc.replace_substring(text, ".", decimal_separator)
    return text
