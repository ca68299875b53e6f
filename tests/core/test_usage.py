"""Consumption alerts, pure: exact per-customer daily sums while a file streams (a re-read segment counts once),
a budget exceeded once per month, a spike once per day against the trailing 7-day average."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pyarrow as pa

from shared.core.columns import layout_for
from shared.core.usage import Budget, UsageCollector, alerts

C = "c1c1c1c1-0000-4000-8000-000000000001"
DAILY = layout_for("dailyratedusage")


def lines(rows: list[tuple[str, str, str, str]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({
        "CustomerId": [r[0] for r in rows], "UsageDate": [r[1] for r in rows], "Tier2MpnId": [r[3] for r in rows],
        "CustomerSubtotal": pa.array([Decimal(r[2]) for r in rows], pa.decimal128(38, 28))})


def test_collector_sums_exactly_and_a_reread_segment_counts_once() -> None:
    usage = UsageCollector(DAILY)
    usage.begin_segment()
    usage.add(lines([(C.upper(), "2026-11-01T00:00:00Z", "0.100001", "123"), (C, "2026-11-01", "0.2", "123")]))
    usage.end_segment()
    usage.begin_segment()
    usage.add(lines([(C, "2026-11-02", "1.000001", "123")]))
    usage.begin_segment()  # the segment broke and is read again
    usage.add(lines([(C, "2026-11-02", "1.000001", "0")]))
    usage.end_segment()
    assert usage.daily() == {C: {date(2026, 11, 1): Decimal("0.300001"), date(2026, 11, 2): Decimal("1.000001")}}
    assert usage.resellers == {C: {"123"}}  # "0": a direct customer's line names no reseller


def budget(amount: str, spike: str | None = None) -> Budget:
    return Budget(tenant_id="t", customer_id=C, monthly_budget=Decimal(amount),
                  spike_percent=Decimal(spike) if spike else None)


def test_budget_exceeded_once_per_month_to_the_cent() -> None:
    daily = {date(2026, 11, d): Decimal("10.005") for d in range(1, 11)}  # 100.05 in November
    assert alerts(budget("100.05"), daily) == []  # reaching the budget is not exceeding it
    got = alerts(budget("100.04"), daily)
    assert [(a.kind, a.key, a.data["spent"], a.data["over"]) for a in got] == \
        [("budgetExceeded", "2026-11", "100.05", "0.01")]
    daily[date(2026, 12, 1)] = Decimal("200")
    assert [a.key for a in alerts(budget("100.04"), daily)] == ["2026-11", "2026-12"]


def test_a_spike_over_the_trailing_seven_day_average() -> None:
    start = date(2026, 11, 1)
    daily = {start + timedelta(days=i): Decimal("10") for i in range(7)}
    daily[start + timedelta(days=7)] = Decimal("15")  # +50 %: not above a 50 % threshold
    daily[start + timedelta(days=8)] = Decimal("16")  # average of the 7 days before: 10.714286; +49.3 %
    daily[start + timedelta(days=10)] = Decimal("30")  # day 9 had no usage (0): average 10.142857
    got = alerts(budget("1000000", spike="50"), daily)
    assert [(a.kind, a.key) for a in got] == [("spike", "2026-11-11")]
    assert got[0].data["trailingAverage"] == "10.142857"
    assert alerts(budget("1000000"), daily) == []  # no threshold, no spike alerts


def test_sums_stay_exact_for_large_negative_and_many_amounts_across_compactions(monkeypatch) -> None:
    """The per-customer-day sums are exact integer sums (numpy limbs), however large, negative or many the amounts,
    across the segment's compactions and a segment read again."""
    import random
    from decimal import localcontext

    from shared.core import usage as module

    with localcontext() as exact:
        exact.prec = 100  # the expected sums exact too
        _check_exact_sums(monkeypatch, module, random.Random(5))


def _check_exact_sums(monkeypatch, module, rnd) -> None:

    monkeypatch.setattr(module, "COMPACT_ROWS", 50)  # many compactions
    customers = [f"c{k}c1c1c1-0000-4000-8000-00000000000{k}" for k in range(4)]
    expected: dict[str, dict[date, Decimal]] = {}
    usage = UsageCollector(DAILY)
    for segment in range(6):
        usage.begin_segment()
        if segment == 2:  # a broken attempt: none of it counts
            usage.add(lines([(customers[0], "2026-11-03", "99999999.5", "1")] * 30))
            usage.begin_segment()
        for _ in range(4):
            rows = []
            for _ in range(40):
                c, d = rnd.choice(customers), f"2026-11-{rnd.randint(1, 9):02d}"
                amount = Decimal(rnd.randint(-10**30, 10**30)).scaleb(-28) if rnd.random() < 0.3 else \
                    Decimal(rnd.randint(-10**8, 10**8)).scaleb(-6)
                amount = amount.quantize(Decimal(1).scaleb(-28))  # one exponent: pyarrow's Decimal conversion
                rows.append((c, d, format(amount, "f"), "7"))
                day = date.fromisoformat(d)
                expected.setdefault(c, {})[day] = expected.get(c, {}).get(day, Decimal(0)) + amount
            usage.add(lines(rows))
        usage.end_segment()
    assert usage.daily() == expected
    assert usage.daily([customers[1]]) == {customers[1]: expected[customers[1]]}


def _held_after(n_lines: int) -> int:
    """Python-side memory (numpy included) a collector holds after `n_lines` lines of 50 customers × 30 days."""
    import tracemalloc

    rows = [(f"c{k % 50:07d}-0000-4000-8000-000000000001", f"2026-11-{k % 30 + 1:02d}", "1.25", str(k % 3))
            for k in range(2_000)]
    batch = lines(rows)
    tracemalloc.start()
    try:
        usage = UsageCollector(DAILY)
        for k in range(n_lines // batch.num_rows):
            if k % 10 == 0:
                usage.begin_segment()
            usage.add(batch)
            if k % 10 == 9:
                usage.end_segment()
        return tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


def test_the_collector_memory_follows_customers_and_days_not_lines() -> None:
    small, large = _held_after(20_000), _held_after(400_000)
    assert large - small < 200_000, (small, large)
