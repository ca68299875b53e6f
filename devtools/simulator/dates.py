"""Calendar helpers and the date texts Microsoft's APIs use."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

DAY = timedelta(days=1)


def add_months(d: date, months: int) -> date:
    """The same day `months` later, clamped to the month's end."""
    index = d.year * 12 + d.month - 1 + months
    year, month0 = divmod(index, 12)
    return date(year, month0 + 1, min(d.day, calendar.monthrange(year, month0 + 1)[1]))


def month_start(d: date) -> date:
    return d.replace(day=1)


def month_end(d: date) -> date:
    return add_months(month_start(d), 1) - DAY


def cycle_end(start: date, months: int) -> date:
    """Charge cycles end one day before the same date `months` later (reference §6)."""
    return add_months(start, months) - DAY


@lru_cache(maxsize=4096)
def iso_z(d: date) -> str:
    """New-commerce and Graph form: 2026-10-01T00:00:00Z."""
    return f"{d.isoformat()}T00:00:00Z"


def iso_local(d: date) -> str:
    """Legacy line items and exchange-rate dates carry no zone: 2026-10-12T00:00:00."""
    return f"{d.isoformat()}T00:00:00"


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
