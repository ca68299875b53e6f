"""When Microsoft's billing data for a period should be there: pure date arithmetic, no I/O.

The rules (Microsoft's usual timing; its delays vary, so "late" is a hint for a person, not an error):

- `onetime` and `dailyratedusage` cover a **calendar month** and usually appear by the **8th of the next
  month** (the new-commerce invoice date).
- `license` and `usage` (legacy) cover a **billing month that starts on the partner's billing anniversary day**
  and ends the day before the next anniversary; they usually appear **two days after that next anniversary**,
  i.e. two days after the billing month closes (Partner Center's legacy invoice date).

Anniversary days 29, 30 and 31 do not exist in every month: the anniversary is then **clamped to the month's
last day** (anniversary 31 → 28 February in a common year, 29 in a leap year, 30 April), and each billing month
ends the day before the next (clamped) anniversary. A tenant without an anniversary day has no legacy calendar.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from shared.core.columns import FileType

NEW_COMMERCE_TYPES = (FileType.ONETIME, FileType.DAILY)
LEGACY_TYPES = (FileType.LICENSE, FileType.USAGE)
NEW_COMMERCE_DAY = 8  # One Time and daily rated usage: by the 8th of the following month
LEGACY_DELAY = timedelta(days=2)  # License and Usage: two days after the anniversary that closes the period
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Period:
    """One billing period of one file type and the day its data is expected."""

    file_type: FileType
    start: date
    end: date  # inclusive
    expected: date

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True)
class KnownInvoice:
    """What the calendar needs to know about an invoice Microsoft has published."""

    id: str
    period_start: date | None
    file_types: tuple[FileType, ...]


@dataclass(frozen=True)
class KnownFile:
    """What the calendar needs to know about a reconciliation file we hold."""

    id: str
    invoice_id: str
    file_type: FileType
    status: str
    version: int


@dataclass
class Entry:
    """A period's row in the calendar: expected date, whether Microsoft delivered, whether we made files."""

    period: Period
    invoice_ids: list[str] = field(default_factory=list)
    files: list[KnownFile] = field(default_factory=list)
    late: bool = False


# ---- month arithmetic -----------------------------------------------------------------------------------------

def days_in_month(year: int, month: int) -> int:
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return (nxt - DAY).day


def add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def anniversary_in(year: int, month: int, day: int) -> date:
    """The anniversary in that month, clamped to the month's last day (31 → 30 April, → 28/29 February)."""
    return date(year, month, min(day, days_in_month(year, month)))


# ---- periods --------------------------------------------------------------------------------------------------

def new_commerce_period(file_type: FileType, year: int, month: int) -> Period:
    """The calendar month; expected on the 8th of the next month (December → 8 January of the next year)."""
    ny, nm = add_months(year, month, 1)
    start = date(year, month, 1)
    return Period(file_type, start, date(ny, nm, 1) - DAY, date(ny, nm, NEW_COMMERCE_DAY))


def legacy_period(file_type: FileType, year: int, month: int, anniversary_day: int) -> Period:
    """The billing month starting on the (clamped) anniversary in `month`; expected two days after the next one."""
    ny, nm = add_months(year, month, 1)
    start, next_start = anniversary_in(year, month, anniversary_day), anniversary_in(ny, nm, anniversary_day)
    return Period(file_type, start, next_start - DAY, next_start + LEGACY_DELAY)


def period_of(file_type: FileType, year: int, month: int, anniversary_day: int | None) -> Period | None:
    """The period of `file_type` that starts in that month (None: legacy type without an anniversary)."""
    if file_type in NEW_COMMERCE_TYPES:
        return new_commerce_period(file_type, year, month)
    if anniversary_day is None:
        return None
    return legacy_period(file_type, year, month, anniversary_day)


def recent_periods(file_type: FileType, today: date, months: int, anniversary_day: int | None) -> list[Period]:
    """The `months` latest periods that have started by `today` (the running one included), newest first."""
    out: list[Period] = []
    year, month = today.year, today.month
    while len(out) < months:
        period = period_of(file_type, year, month, anniversary_day)
        if period is None:
            return []
        if period.start <= today:
            out.append(period)
        year, month = add_months(year, month, -1)
    return out


def file_types_for(anniversary_day: int | None) -> tuple[FileType, ...]:
    return NEW_COMMERCE_TYPES + (LEGACY_TYPES if anniversary_day is not None else ())


# ---- the calendar ---------------------------------------------------------------------------------------------

def is_late(period: Period, today: date, has_invoice: bool) -> bool:
    """Past the expected day and Microsoft has still not published the invoice."""
    return today > period.expected and not has_invoice


def build(today: date, months: int, anniversary_day: int | None, invoices: Iterable[KnownInvoice],
          files: Iterable[KnownFile]) -> list[Entry]:
    """Per file type and period: the invoices that cover it, our files of those invoices, and the late flag."""
    invoices, files = list(invoices), list(files)
    entries: list[Entry] = []
    for file_type in file_types_for(anniversary_day):
        for period in recent_periods(file_type, today, months, anniversary_day):
            ids = [i.id for i in invoices if file_type in i.file_types
                   and i.period_start is not None and period.contains(i.period_start)]
            matched = [f for f in files if f.file_type == file_type and f.invoice_id in ids]
            entries.append(Entry(period, ids, matched, is_late(period, today, bool(ids))))
    return entries
