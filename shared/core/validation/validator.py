"""The validator: checks Microsoft's lines while a partner-view file is being made, in the same single pass.

It sees every batch of a file before margins and views change it (`FilePlan.process` calls `Validator.check`),
keeps only small per-key state (per-subscription sums, one exchange rate per currency pair and date) and hands
every line's 64-bit key hash to a `DuplicateStore` (on disk in the worker: shared.adapters.duplicate_spill), which
says at `finish` which lines repeat an earlier one; it stages everything it learns per segment: the builder calls
`begin_segment` (which forgets whatever a broken attempt left) and `end_segment` (which commits), exactly as it
adds a segment's totals only once the segment is complete. The rules are in `rules.CATALOGUE`; the per-batch
checks in `line_checks`; what only the whole file can tell (credits against charges, the invoice total, the
previous month) in `finish`. Findings are kept in memory up to `cap` (counted beyond it).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pyarrow as pa

from shared.core.columns import FileType, Layout
from shared.core.money import ZERO, Decimal, exact, exact_sum, to_decimal
from shared.core.validation.arrow_dates import add_months, day
from shared.core.validation.duplicates import DuplicateStore, MemoryDuplicates
from shared.core.validation.line_checks import LineChecks, State, merge_credit
from shared.core.validation.report import Finding, Report, text
from shared.core.validation.rules import BILL_MONTHS, DEFAULT_CAP, ERROR, INFO, WARNING

__all__ = ["State", "Validator"]

_AFTER_LINES = 2**62  # where the whole file's findings stand: after every line's


class Validator(LineChecks):
    def __init__(self, layout: Layout, *, invoice_id: str | None = None, cap: int = DEFAULT_CAP,
                 duplicates: DuplicateStore | None = None) -> None:
        """`duplicates`: where the key hashes go (the worker passes a disk spill; by default, memory)."""
        self.layout = layout
        self.invoice_id = invoice_id
        self.cap = cap
        self.duplicates = duplicates if duplicates is not None else MemoryDuplicates()
        self.done = State()
        self.seg = State()

    # ---- segments ---------------------------------------------------------------------------------------------
    def begin_segment(self) -> None:
        self.seg = State()
        self.duplicates.begin_segment()

    def end_segment(self) -> None:
        s, d = self.seg, self.done
        self.duplicates.end_segment()
        room = max(0, self.cap - len(d.findings))
        d.findings.extend(s.findings[:room])
        d.where.extend(s.where[:room])
        d.counts.update(s.counts)
        for k, v in s.rates.items():
            d.rates.setdefault(k, v)
        for k, (cost, qty) in s.subscriptions.items():
            acc = d.subscriptions.setdefault(k, [ZERO, ZERO])
            acc[0], acc[1] = exact_sum((acc[0], cost)), exact_sum((acc[1], qty))
        for k, part in s.credits.items():
            merge_credit(d.credits.setdefault(k, [ZERO, ZERO, None, None, None]), part)
        d.total = exact_sum((d.total, s.total))
        d.rows += s.rows
        self.seg = State()

    # ---- findings ---------------------------------------------------------------------------------------------
    def _add(self, state: State, rule: str, severity: str, key: dict[str, Any], expected: Any, actual: Any,
             message: str) -> None:
        state.counts[(rule, severity)] += 1
        if len(self.done.findings) + len(state.findings) < self.cap:
            state.findings.append(Finding(rule, severity, key, text(expected), text(actual), message))
            state.where.append(self._where)

    # ---- the pass ---------------------------------------------------------------------------------------------
    def check(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        first_line = self.done.rows + self.seg.rows  # the same numbers when a broken segment is read again
        self.seg.rows += batch.num_rows
        self._check_batch(batch, self.seg, first_line)

    # ---- the end ----------------------------------------------------------------------------------------------
    def finish(self, invoice: dict[str, Any] | None = None, previous: dict[str, Any] | None = None,
               threshold_percent: Decimal = Decimal(50)) -> Report:
        d = self.done
        self._merge_duplicates()
        end = State()
        self._where = (_AFTER_LINES, 0)
        period_start = day((invoice or {}).get("billingPeriodStartDate"))
        for (sub, period), (charged, credited, ref, frequency, first_start) in d.credits.items():
            if credited <= 0 or credited <= charged:
                continue
            self._over_credit(end, sub, period, charged, credited, ref, _cycle_start(period, frequency, first_start),
                              period_start)
        if invoice is not None and self.layout.file_type == FileType.ONETIME and invoice.get("totalCharges") is not None:
            want = to_decimal(invoice["totalCharges"])
            if want is not None and want != d.total:
                self._add(end, "INVOICE_TOTAL", ERROR, {"InvoiceNumber": invoice.get("id")}, want, d.total,
                          f"The lines add up to {text(d.total)}, but the invoice's total is {text(want)} "
                          f"(a difference of {text(exact_sum((want, d.total.copy_negate())))}); lines may be "
                          "missing or extra.")
        if previous:
            self._month_over_month(end, previous, threshold_percent)
        self.seg = end
        self.end_segment()
        self.close()
        return Report(self.done.findings, self.done.counts)

    def _merge_duplicates(self) -> None:
        """The duplicates among the lines' findings, in the order of the lines (and of a batch's checks), the
        first `cap` of all kept, exactly as if each had been found while its line streamed by."""
        d = self.done
        found = self.duplicate_findings()
        if not found:
            return
        keyed = [((*w, 0), w, f) for w, f in zip(d.where, d.findings)]
        keyed += [(place, place[:2], f) for place, f in found]
        keyed.sort(key=lambda item: item[0])  # stable: a batch's findings of one check keep their order
        keyed = keyed[:self.cap]
        d.where = [w for _, w, _ in keyed]
        d.findings = [f for _, _, f in keyed]

    def close(self) -> None:
        """Release the duplicate store (its temporary files); `finish` does, and a failed build should."""
        self.duplicates.close()

    def _over_credit(self, end: State, sub: str, period: str, charged: Decimal, credited: Decimal, ref: str | None,
                     cycle_start: date | None, period_start: date | None) -> None:
        """An error only when the data must be wrong: the refunded cycle lies within this invoice's period, so its
        charge belongs to this invoice. A cycle that started earlier was charged (at least partly) in an earlier
        invoice, which this check does not see: a warning that says so."""
        key = {"ReferenceId": ref}
        head = f"Subscription {sub} is credited {text(credited)} for the period ending {day(period)}"
        if charged == 0:
            self._add(end, "OVER_CREDIT", INFO, key, charged, credited,
                      f"{head}, which this invoice does not charge; the original charge cannot be checked here.")
        elif cycle_start is None or period_start is None or cycle_start < period_start:
            since = f"started on {cycle_start}" if cycle_start else "has an unknown start"
            before = f"before this invoice's billing period ({period_start})" if period_start else \
                "possibly before this invoice's billing period (unknown)"
            self._add(end, "OVER_CREDIT", WARNING, key, charged, credited,
                      f"{head}, more than the {text(charged)} charged for it in this invoice; but the refunded cycle "
                      f"{since}, {before}, so it was charged in an earlier invoice, which this check cannot see.")
        else:
            self._add(end, "OVER_CREDIT", ERROR, key, charged, credited,
                      f"{head}, more than the {text(charged)} charged for it in this invoice (the cycle started on "
                      f"{cycle_start}, within this invoice's billing period).")

    def _month_over_month(self, end: State, previous: dict[str, Any], threshold: Decimal) -> None:
        before = previous.get("subscriptions") or {}
        for sub, (cost, qty) in sorted(self.done.subscriptions.items()):
            prior = before.get(sub)
            if not prior:
                continue
            for label, now, then in (("cost", cost, to_decimal(prior.get("cost"))),
                                     ("quantity", qty, to_decimal(prior.get("quantity")))):
                if then is None or then == 0:
                    continue
                with exact():
                    change = (now - then) / abs(then) * 100
                if abs(change) > threshold:
                    self._add(end, "MONTH_OVER_MONTH", WARNING, {self.layout.subscription_column: sub}, then, now,
                              f"Subscription {sub}'s {label} went from {text(then)} to {text(now)} "
                              f"({change:+.1f} %) since {previous.get('invoiceId') or 'the previous month'}.")

    def summary(self) -> dict[str, Any]:
        """Per-subscription totals, stored beside the file as summary.json for next month's comparison."""
        return {"invoiceType": self.layout.file_type.value, "invoiceId": self.invoice_id, "rows": self.done.rows,
                "subscriptions": {k: {"cost": text(c), "quantity": text(q)}
                                  for k, (c, q) in sorted(self.done.subscriptions.items())}}


def _cycle_start(period_end: str | None, frequency: str | None, first_start: str | None) -> date | None:
    """The first day of the cycle a credit refunds: one billing period before the day after its end (Monthly,
    Annual, Triennial); else the credit's own earliest start, which lies within that cycle."""
    months = BILL_MONTHS.get((frequency or "").strip().lower())
    last = day(period_end)
    if months and last is not None:
        return add_months(last + timedelta(days=1), -months)
    return day(first_start)
