"""Arrow helpers of the validator: Microsoft's date-time text as dates, calendar months, and masks as numpy."""

from __future__ import annotations

import calendar
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.core.money import ZERO

__all__ = ["add_months", "day", "dates", "empty", "floats", "month_index", "np_bool", "plus_days"]


def dates(arr: pa.Array) -> pa.Array:
    """ISO date-time text ("2026-10-01T00:00:00Z") → date32 (null where unreadable)."""
    head = pc.utf8_slice_codeunits(arr, 0, 10)
    ok = pc.fill_null(pc.match_substring_regex(head, r"^\d{4}-\d{2}-\d{2}$"), False)
    head = pc.if_else(ok, head, pa.scalar(None, pa.string()))
    return pc.cast(pc.strptime(head, "%Y-%m-%d", "s", error_is_null=True), pa.date32())


def month_index(d: pa.Array) -> pa.Array:
    return pc.add(pc.multiply(pc.year(d), 12), pc.month(d))


def plus_days(d: pa.Array, days: int) -> pa.Array:
    return pc.cast(pc.cast(pc.add(pc.cast(d, pa.int32()), pa.scalar(days, pa.int32())), pa.int32()), pa.date32())


def add_months(d: date, months: int) -> date:
    """The same day `months` later (or earlier), clamped to the month's last day (Jan 31 + 1 → Feb 28/29)."""
    index = d.year * 12 + d.month - 1 + months
    year, month0 = divmod(index, 12)
    return date(year, month0 + 1, min(d.day, calendar.monthrange(year, month0 + 1)[1]))


def day(text: str | None) -> date | None:
    """The date of Microsoft's date-time text, or None."""
    if not text:
        return None
    try:
        return date.fromisoformat(str(text)[:10])
    except ValueError:
        return None


def np_bool(arr: pa.Array) -> np.ndarray:
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False)


def floats(arr: pa.Array) -> np.ndarray:
    """A decimal column as float64 (nulls 0) — for screening only, never for a value."""
    return pc.cast(pc.fill_null(arr, pa.scalar(ZERO, arr.type)), pa.float64()).to_numpy()


def empty(arr: pa.Array) -> pa.Array:
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(arr), ""), True)
