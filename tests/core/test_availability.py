"""The availability calendar: expected dates per type and period, with the expected dates written out."""

from __future__ import annotations

import itertools
from datetime import date

import pytest

from shared.core import availability
from shared.core.availability import (
    KnownFile,
    KnownInvoice,
    Period,
    legacy_period,
    new_commerce_period,
    recent_periods,
)
from shared.core.columns import FileType

LICENSE, USAGE, ONETIME, DAILY = FileType.LICENSE, FileType.USAGE, FileType.ONETIME, FileType.DAILY
d = date.fromisoformat


@pytest.mark.parametrize(("anniversary", "year", "month", "start", "end", "expected"), [
    # anniversary on the 1st and the 15th: plain months
    (1, 2026, 3, "2026-03-01", "2026-03-31", "2026-04-03"),
    (1, 2026, 2, "2026-02-01", "2026-02-28", "2026-03-03"),
    (15, 2026, 3, "2026-03-15", "2026-04-14", "2026-04-17"),
    (15, 2028, 2, "2028-02-15", "2028-03-14", "2028-03-17"),
    # 29th: February clamps to the 28th in a common year, stays the 29th in a leap year
    (29, 2026, 1, "2026-01-29", "2026-02-27", "2026-03-02"),
    (29, 2026, 2, "2026-02-28", "2026-03-28", "2026-03-31"),
    (29, 2028, 1, "2028-01-29", "2028-02-28", "2028-03-02"),
    (29, 2028, 2, "2028-02-29", "2028-03-28", "2028-03-31"),
    # 30th
    (30, 2026, 1, "2026-01-30", "2026-02-27", "2026-03-02"),
    (30, 2026, 2, "2026-02-28", "2026-03-29", "2026-04-01"),
    (30, 2028, 2, "2028-02-29", "2028-03-29", "2028-04-01"),
    # 31st: clamped in every short month, each period ends the day before the next clamped anniversary
    (31, 2026, 1, "2026-01-31", "2026-02-27", "2026-03-02"),
    (31, 2026, 2, "2026-02-28", "2026-03-30", "2026-04-02"),
    (31, 2026, 4, "2026-04-30", "2026-05-30", "2026-06-02"),
    (31, 2028, 1, "2028-01-31", "2028-02-28", "2028-03-02"),
    (31, 2028, 2, "2028-02-29", "2028-03-30", "2028-04-02"),
    # December to January
    (1, 2026, 12, "2026-12-01", "2026-12-31", "2027-01-03"),
    (15, 2026, 12, "2026-12-15", "2027-01-14", "2027-01-17"),
    (31, 2026, 12, "2026-12-31", "2027-01-30", "2027-02-02"),
    (30, 2027, 1, "2027-01-30", "2027-02-27", "2027-03-02"),
])
@pytest.mark.parametrize("file_type", [LICENSE, USAGE])
def test_legacy_periods(file_type, anniversary, year, month, start, end, expected) -> None:
    assert legacy_period(file_type, year, month, anniversary) == Period(file_type, d(start), d(end), d(expected))


@pytest.mark.parametrize(("year", "month", "end", "expected"), [
    (2026, 1, "2026-01-31", "2026-02-08"),
    (2026, 2, "2026-02-28", "2026-03-08"),  # common year
    (2028, 2, "2028-02-29", "2028-03-08"),  # leap year
    (2026, 4, "2026-04-30", "2026-05-08"),
    (2026, 12, "2026-12-31", "2027-01-08"),  # December to January
])
@pytest.mark.parametrize("file_type", [ONETIME, DAILY])
def test_new_commerce_periods(file_type, year, month, end, expected) -> None:
    assert new_commerce_period(file_type, year, month) == Period(file_type, date(year, month, 1), d(end),
                                                                 d(expected))


def test_periods_across_the_year_end_are_contiguous_for_every_anniversary() -> None:
    for anniversary in range(1, 32):
        periods = [legacy_period(LICENSE, y, m, anniversary) for y in (2027, 2028) for m in range(1, 13)]
        for before, after in itertools.pairwise(periods):
            assert (after.start - before.end).days == 1, (anniversary, before, after)


def test_recent_periods_include_the_running_one_newest_first() -> None:
    today = d("2027-01-05")
    assert [p.start for p in recent_periods(ONETIME, today, 3, None)] == [d("2027-01-01"), d("2026-12-01"),
                                                                          d("2026-11-01")]
    # the January period of anniversary 15 has not started on 5 January
    assert [p.start for p in recent_periods(LICENSE, today, 2, 15)] == [d("2026-12-15"), d("2026-11-15")]
    assert recent_periods(USAGE, today, 3, None) == []  # no anniversary: no legacy calendar


def test_late_only_after_the_expected_day_and_without_an_invoice() -> None:
    period = new_commerce_period(ONETIME, 2026, 10)  # expected 2026-11-08
    assert not availability.is_late(period, d("2026-11-08"), has_invoice=False)
    assert availability.is_late(period, d("2026-11-09"), has_invoice=False)
    assert not availability.is_late(period, d("2026-11-09"), has_invoice=True)


def test_build_matches_invoices_and_files_to_periods() -> None:
    invoices = [KnownInvoice("G1", d("2026-10-01"), (ONETIME, DAILY)),
                KnownInvoice("D1", d("2026-09-12"), (LICENSE, USAGE))]
    files = [KnownFile("f1", "G1", ONETIME, "Available", 2)]
    entries = availability.build(d("2026-11-22"), 3, 12, invoices, files)
    by_key = {(e.period.file_type, e.period.start): e for e in entries}
    october = by_key[(ONETIME, d("2026-10-01"))]
    assert (october.invoice_ids, [f.id for f in october.files], october.late) == (["G1"], ["f1"], False)
    assert by_key[(DAILY, d("2026-10-01"))].files == []
    assert not by_key[(ONETIME, d("2026-11-01"))].late  # expected 2026-12-08
    # licence period 12 Oct – 11 Nov was expected on 14 Nov; nothing came
    assert by_key[(LICENSE, d("2026-10-12"))].late
    assert by_key[(LICENSE, d("2026-10-12"))].period.expected == d("2026-11-14")
    assert by_key[(USAGE, d("2026-09-12"))].invoice_ids == ["D1"]
    assert len(entries) == 12  # four types, three periods each
