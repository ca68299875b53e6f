"""Timer schedules as the Functions host reads them: six-field NCRONTAB in UTC, or a TimeSpan interval.

NCRONTAB is `{second} {minute} {hour} {day} {month} {day-of-week}`; croniter parses it with
`second_at_beginning=True`. NCrontab requires *both* day-of-month and day-of-week to match when both are
restricted (`0 0 0 13 * 5` is "Friday the 13th"), unlike Vixie cron's "either" rule, hence `day_or=False`.
A five-field expression is accepted with second 0, as the host does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

from croniter import croniter
from croniter.croniter import CroniterError

from .settings import SettingsError, is_timespan, parse_timespan


class Schedule(Protocol):
    """Anything that can say when it next fires."""

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (UTC, timezone-aware)."""
        ...


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC, like the host's schedules."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class CronSchedule:
    """An NCRONTAB expression evaluated in UTC."""

    expression: str

    def __post_init__(self) -> None:
        fields = self.expression.split()
        if len(fields) not in (5, 6):
            raise SettingsError(
                f"NCRONTAB needs six fields (second minute hour day month day-of-week): {self.expression!r}")
        try:
            croniter(self._six_fields, datetime(2000, 1, 1, tzinfo=timezone.utc), second_at_beginning=True)
        except (CroniterError, ValueError) as exc:
            raise SettingsError(f"invalid NCRONTAB expression {self.expression!r}: {exc}") from exc

    @property
    def _six_fields(self) -> str:
        fields = self.expression.split()
        return " ".join(["0", *fields] if len(fields) == 5 else fields)

    def next_after(self, moment: datetime) -> datetime:
        start = _utc(moment).replace(microsecond=0)  # NCrontab ignores fractions of a second
        it = croniter(self._six_fields, start, ret_type=datetime, second_at_beginning=True, day_or=False)
        return _utc(it.get_next(datetime))

    def __str__(self) -> str:
        return self.expression


@dataclass(frozen=True)
class IntervalSchedule:
    """A TimeSpan schedule (`00:05:00`): fires every interval, counted from the previous occurrence."""

    interval: timedelta

    def __post_init__(self) -> None:
        if self.interval <= timedelta(0):
            raise SettingsError("a TimeSpan schedule must be positive")

    def next_after(self, moment: datetime) -> datetime:
        return _utc(moment) + self.interval

    def __str__(self) -> str:
        return str(self.interval)


def parse_schedule(expression: str) -> CronSchedule | IntervalSchedule:
    """A resolved `schedule` binding property as a Schedule."""
    text = expression.strip()
    if is_timespan(text):
        return IntervalSchedule(parse_timespan(text))
    return CronSchedule(text)


def next_occurrence(expression: str, after: datetime) -> datetime:
    """Convenience for tests and tools: the next UTC occurrence of a schedule strictly after `after`."""
    return parse_schedule(expression).next_after(after)
