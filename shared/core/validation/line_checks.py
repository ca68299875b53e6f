"""The per-batch checks of the validator (a mixin of `Validator`, which holds the state and the findings).

Each check is vectorised (pyarrow.compute / numpy); Python looks only at the few lines a vectorised check flags, and
every value a finding reports is an exact Decimal. Sums are taken widened (shared.core.money) and added exactly.
"""

from __future__ import annotations

from datetime import timedelta
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.core.columns import FileType, Layout
from shared.core.money import ZERO, Decimal, arrow_sum, exact_sum, widen
from shared.core.validation.arrow_dates import add_months, dates, day, empty, floats, month_index, np_bool, plus_days
from shared.core.validation.formulas import check_subtotal, screen_subtotals
from shared.core.validation.duplicates import DuplicateStore
from shared.core.validation.hashing import row_hashes
from shared.core.validation.report import Finding, text
from shared.core.validation.rules import (
    BILL_MONTHS,
    CREDIT_TYPES,
    DUPLICATE_CHARGE_COLUMNS,
    ERROR,
    EXCHANGE_COLUMNS,
    FULL_CYCLE_TYPES,
    INFO,
    QUANTITY_COLUMN,
    WARNING,
)

RANK_MISSING_COST, RANK_DUPLICATE_REFERENCE, RANK_DUPLICATE_CHARGE, RANK_OTHERS = range(4)  # a batch's checks in order


def duplicate_rules(file_type: FileType) -> list[tuple[str, str, tuple[str, ...]]]:
    """(rule, severity, key columns) of the duplicate checks of a file type."""
    rules = [("DUPLICATE_CHARGE", WARNING, DUPLICATE_CHARGE_COLUMNS[file_type])]
    if file_type == FileType.ONETIME:
        rules.insert(0, ("DUPLICATE_REFERENCE", ERROR, ("ReferenceId",)))
    return rules


@dataclass
class State:
    """What one segment learns (staged) or what the committed segments learnt. Duplicates are not here: every
    line's key hash goes to the `DuplicateStore` (on disk in the worker), judged once the whole file is seen."""

    findings: list[Finding] = field(default_factory=list)
    # where each finding stands in the file: (its batch's first line, the check's rank), so the duplicates found at
    # the end take their place among them (findings.csv in the order of the lines, as when found while streaming)
    where: list[tuple[int, int]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # (rule, severity) -> n
    rates: dict[tuple, Decimal] = field(default_factory=dict)
    subscriptions: dict[str, list[Decimal]] = field(default_factory=dict)  # id -> [cost, quantity]
    # (sub, charge end) -> [charged, credited, credit's key, its frequency, earliest credit start]
    credits: dict[tuple, list[Any]] = field(default_factory=dict)
    total: Decimal = ZERO
    rows: int = 0


class LineChecks:
    """What one batch can tell: `check` runs every check that applies to the layout's file type."""

    layout: Layout
    invoice_id: str | None
    done: State
    cap: int
    duplicates: DuplicateStore
    _where: tuple[int, int] = (0, 0)

    def _add(self, state: State, rule: str, severity: str, key: dict[str, Any], expected: Any, actual: Any,
             message: str) -> None:
        raise NotImplementedError

    def _rows(self, batch: pa.RecordBatch, mask: np.ndarray, columns: Iterable[str]) -> list[dict[str, Any]]:
        where = pa.array(np.nonzero(mask)[0])
        names = list(dict.fromkeys([*self.layout.key_columns, *columns]))
        return pa.RecordBatch.from_arrays([batch.column(c).take(where) for c in names], names=names).to_pylist()

    def _key_of(self, row: dict[str, Any]) -> dict[str, Any]:
        return {c: row.get(c) for c in self.layout.key_columns}

    def _check_batch(self, batch: pa.RecordBatch, s: State, first_line: int) -> None:
        ft = self.layout.file_type
        s.total = exact_sum((s.total, arrow_sum(batch.column(self.layout.total_column))))
        self._where = (first_line, RANK_MISSING_COST)
        self._missing_cost(batch, s)
        self._duplicates(batch, first_line)
        self._where = (first_line, RANK_OTHERS)
        self._missing_customer(batch, s)
        self._invoice_number(batch, s)
        self._subscriptions(batch, s)
        if ft in EXCHANGE_COLUMNS:
            self._exchange_rates(batch, s)
        if ft == FileType.ONETIME:
            self._money(batch, s)
            self._charge_cycle(batch, s)
            self._credits(batch, s)

    def _missing_cost(self, batch: pa.RecordBatch, s: State) -> None:
        lay = self.layout
        cost = batch.column(lay.cost_column)
        if not cost.null_count:
            return
        for row in self._rows(batch, np_bool(pc.is_null(cost)), (lay.total_column,)):
            total = text(row[lay.total_column])
            self._add(s, "MISSING_COST", ERROR, self._key_of(row), f"a {lay.cost_column}", None,
                      f"This line has no {lay.cost_column}" + (f" (its {lay.total_column} is {total})" if total else "")
                      + ": it carries no cost, so it has no margin and is left out of the file's totals.")

    def _duplicates(self, batch: pa.RecordBatch, first_line: int) -> None:
        """Each rule on its own: an exact duplicate line is both a duplicate reference and a duplicate charge. Only
        the hashes (and the columns a finding names) are handed over; `duplicate_findings` judges at the end."""
        for rule, _, columns in duplicate_rules(self.layout.file_type):
            self.duplicates.add(rule, row_hashes(batch, columns), first_line)
        self.duplicates.add_keys(batch.select(self._finding_columns()), first_line)

    def _finding_columns(self) -> list[str]:
        """What a duplicate's finding names: the line's key, its ReferenceId (one-time), subscription, charge type."""
        extra = ("ReferenceId",) if self.layout.file_type == FileType.ONETIME else ()
        return list(dict.fromkeys([*self.layout.key_columns, *extra, "SubscriptionId", "ChargeType"]))

    def duplicate_findings(self) -> list[tuple[tuple[int, int, int], Finding]]:
        """The later copies of every key, each rule's first `cap` with its place among the other findings (their
        counts go to `done.counts`)."""
        d = self.done
        out = []
        for rule, severity, _ in duplicate_rules(self.layout.file_type):
            count, lines = self.duplicates.later_copies(rule, self.cap)
            if not count:
                continue
            d.counts[(rule, severity)] += count
            rank = RANK_DUPLICATE_REFERENCE if rule == "DUPLICATE_REFERENCE" else RANK_DUPLICATE_CHARGE
            for line, (batch_start, row) in zip(lines.tolist(), self.duplicates.rows(lines)):
                if rule == "DUPLICATE_REFERENCE":
                    message = (f"ReferenceId {row.get('ReferenceId')} appears more than once in this invoice; "
                               "each charge line should appear once, so this amount may be billed twice.")
                else:
                    message = (f"Subscription {row.get('SubscriptionId')} has the same {row.get('ChargeType')} "
                               "charge for the same period, quantity and amount more than once; it may be billed "
                               "twice.")
                out.append(((batch_start, rank, line),
                            Finding(rule, severity, self._key_of(row), "1 line", "2 or more lines", message)))
        return out

    def _missing_customer(self, batch: pa.RecordBatch, s: State) -> None:
        missing = np_bool(empty(batch.column(self.layout.customer_column)))
        if missing.any():
            for row in self._rows(batch, missing, (self.layout.subscription_column,)):
                self._add(s, "MISSING_CUSTOMER", WARNING, self._key_of(row), "a CustomerId", None,
                          f"This line of subscription {row.get(self.layout.subscription_column)} names no customer "
                          "(the relationship may have been removed); it cannot be passed on to a customer.")

    def _invoice_number(self, batch: pa.RecordBatch, s: State) -> None:
        if not self.invoice_id or "InvoiceNumber" not in batch.schema.names or self.invoice_id.startswith("UNBILLED"):
            return
        col = batch.column("InvoiceNumber")
        wrong = np_bool(pc.not_equal(col, self.invoice_id))
        if not wrong.any():
            return
        wrong &= ~np_bool(empty(col)) & ~np_bool(pc.equal(pc.utf8_upper(col), self.invoice_id.upper()))
        if wrong.any():
            for row in self._rows(batch, wrong, ("InvoiceNumber",)):
                self._add(s, "INVOICE_NUMBER", ERROR, self._key_of(row), self.invoice_id, row["InvoiceNumber"],
                          f"This line belongs to invoice {row['InvoiceNumber']}, not {self.invoice_id}.")

    def _subscriptions(self, batch: pa.RecordBatch, s: State) -> None:
        lay = self.layout
        qty = QUANTITY_COLUMN[lay.file_type]
        subs = batch.column(lay.subscription_column)
        if subs.null_count == 0 and len(subs) and pc.all(pc.equal(subs, subs[0])).as_py():
            acc = s.subscriptions.setdefault(subs[0].as_py(), [ZERO, ZERO])
            acc[0] = exact_sum((acc[0], arrow_sum(batch.column(lay.cost_column))))
            acc[1] = exact_sum((acc[1], arrow_sum(batch.column(qty))))
            return
        table = pa.table({"sub": subs, "cost": widen(batch.column(lay.cost_column)), "qty": widen(batch.column(qty))})
        grouped = table.group_by("sub", use_threads=False).aggregate([("cost", "sum"), ("qty", "sum")])
        for sub, cost, quantity in zip(*(grouped.column(i).to_pylist() for i in range(3))):
            acc = s.subscriptions.setdefault(sub or "", [ZERO, ZERO])
            acc[0] = exact_sum((acc[0], cost))
            acc[1] = exact_sum((acc[1], quantity))

    def _exchange_rates(self, batch: pa.RecordBatch, s: State) -> None:
        keys = EXCHANGE_COLUMNS[self.layout.file_type]
        table = pa.Table.from_batches([batch.select([*keys, "PCToBCExchangeRate"])])
        grouped = table.group_by(list(keys), use_threads=False).aggregate(
            [("PCToBCExchangeRate", "min"), ("PCToBCExchangeRate", "max")])
        for g in grouped.to_pylist():
            key = tuple(g[k] for k in keys)
            lo, hi = g["PCToBCExchangeRate_min"], g["PCToBCExchangeRate_max"]
            if lo is None:
                continue
            ref = self.done.rates.get(key) or s.rates.get(key)
            if ref is not None and lo == hi == ref:
                continue
            if ref is None and lo == hi:
                s.rates[key] = lo
                continue
            rates = batch.column("PCToBCExchangeRate")
            mask = ~np_bool(pc.is_null(rates))
            for k in keys:
                col = batch.column(k)
                mask &= np_bool(pc.is_null(col)) if g[k] is None else np_bool(pc.equal(col, g[k]))
            if ref is None:
                ref = s.rates[key] = rates[int(np.argmax(mask))].as_py()
            mask &= np_bool(pc.not_equal(rates, pa.scalar(ref, rates.type)))
            for row in self._rows(batch, mask, ("PCToBCExchangeRate",)):
                self._add(s, "EXCHANGE_RATE", ERROR, self._key_of(row), ref, row["PCToBCExchangeRate"],
                          f"The exchange rate {key[0]}→{key[1]} of {key[2]} is {text(ref)} on other lines of this "
                          f"invoice, but {text(row['PCToBCExchangeRate'])} on this one.")

    def _money(self, batch: pa.RecordBatch, s: State) -> None:
        eup, bq, rate = (batch.column(c) for c in ("EffectiveUnitPrice", "BillableQuantity", "PCToBCExchangeRate"))
        sub, tax, total = (batch.column(c) for c in ("Subtotal", "TaxTotal", "Total"))
        usage = np_bool(pc.invert(empty(batch.column("UnitType"))))
        present = ~(np_bool(pc.is_null(eup)) | np_bool(pc.is_null(bq)) | np_bool(pc.is_null(rate))
                    | np_bool(pc.is_null(sub)))
        flagged = present & screen_subtotals(usage, floats(eup), floats(bq), floats(rate), floats(sub))
        if flagged.any():
            cols = ("EffectiveUnitPrice", "BillableQuantity", "PCToBCExchangeRate", "Subtotal", "UnitType")
            for row in self._rows(batch, flagged, cols):
                is_usage = bool((row.get("UnitType") or "").strip())
                verdict, own = check_subtotal(is_usage, row["EffectiveUnitPrice"], row["BillableQuantity"],
                                              row["PCToBCExchangeRate"], row["Subtotal"])
                if verdict is None:
                    continue
                kind = "usage-based" if is_usage else "seat-based"
                message = (f"Subtotal is {text(row['Subtotal'])} but Microsoft's {kind} formula gives {text(own)}"
                           + (" (it matches the other formula: the line's kind may be unusual)." if verdict == WARNING
                              else "; the line may be mispriced."))
                self._add(s, "SUBTOTAL_FORMULA", verdict, self._key_of(row), own, row["Subtotal"], message)
        # Total = Subtotal + TaxTotal, exactly, vectorised: the sum is taken in decimal256 (it cannot overflow).
        wrong = pc.not_equal(pc.add(widen(sub, 39), widen(tax, 39)), widen(total, 40))
        t_flag = np_bool(wrong)
        if t_flag.any():
            for row in self._rows(batch, t_flag, ("Subtotal", "TaxTotal", "Total")):
                want = exact_sum((row["Subtotal"], row["TaxTotal"]))
                self._add(s, "TOTAL_FORMULA", ERROR, self._key_of(row), want, row["Total"],
                          f"Total is {text(row['Total'])} but Subtotal {text(row['Subtotal'])} plus tax "
                          f"{text(row['TaxTotal'])} is {text(want)}.")

    def _charge_cycle(self, batch: pa.RecordBatch, s: State) -> None:
        freq = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(batch.column("BillingFrequency"), "")))
        seat = np_bool(pc.not_equal(freq, "")) & ~np_bool(pc.invert(empty(batch.column("UnitType"))))
        if not seat.any():
            return
        start, end = dates(batch.column("ChargeStartDate")), dates(batch.column("ChargeEndDate"))
        sub_start, sub_end = dates(batch.column("SubscriptionStartDate")), dates(batch.column("SubscriptionEndDate"))
        months = pc.fill_null(pc.cast(pc.index_in(freq, pa.array(list(BILL_MONTHS))), pa.int32()), -1).to_numpy()
        bill = np.where(months >= 0, np.array(list(BILL_MONTHS.values()))[np.maximum(months, 0)], 0)
        known = months >= 0
        dated = ~np_bool(pc.is_null(start)) & ~np_bool(pc.is_null(end))
        bad_order = np_bool(pc.less(end, start))
        bad_order |= np_bool(pc.less(start, sub_start))
        bad_order |= np_bool(pc.greater(end, sub_end))
        after = plus_days(end, 1)
        span = pc.subtract(month_index(after), month_index(start)).to_numpy(zero_copy_only=False)
        same_day = np_bool(pc.equal(pc.day(after), pc.day(start)))
        full = np_bool(pc.is_in(batch.column("ChargeType"), pa.array(FULL_CYCLE_TYPES)))
        late_start = np_bool(pc.greater(pc.day(start), 28))
        span = np.nan_to_num(np.asarray(span, dtype=float), nan=-1)
        full_ok = same_day & (span == bill)
        bad_full = seat & dated & known & full & ~late_start & ~full_ok
        anniv_day = pc.day(sub_start)
        aligned = np_bool(pc.equal(pc.day(after), anniv_day))
        unverified = seat & dated & ~bad_order & ~bad_full & (
            ~known | (full & late_start) | (~full & ~aligned) | np_bool(pc.greater(anniv_day, 28)))
        error = seat & dated & (bad_order | bad_full)
        cols = ("ChargeType", "ChargeStartDate", "ChargeEndDate", "SubscriptionStartDate", "SubscriptionEndDate",
                "BillingFrequency")
        if error.any():
            for row, months_n in zip(self._rows(batch, error, cols), bill[error]):
                cs, ce = day(row["ChargeStartDate"]), day(row["ChargeEndDate"])
                want = (add_months(cs, int(months_n)) - timedelta(days=1)).isoformat() if cs and months_n else None
                self._add(s, "CHARGE_CYCLE", ERROR, self._key_of(row), want, ce.isoformat() if ce else None,
                          f"The {row['ChargeType']} charge runs {cs} to {ce}, which does not fit a "
                          f"{row['BillingFrequency']} cycle of a subscription running "
                          f"{day(row['SubscriptionStartDate'])} to {day(row['SubscriptionEndDate'])} "
                          "(a cycle ends one day before the same date of the next period).")
        if unverified.any():
            for row in self._rows(batch, unverified, cols):
                self._add(s, "CHARGE_CYCLE_UNVERIFIED", INFO, self._key_of(row), None,
                          f"{day(row['ChargeStartDate'])}..{day(row['ChargeEndDate'])}",
                          f"The {row['ChargeType']} charge period could not be verified: Microsoft does not "
                          "document this case (month-end purchase, co-terminated or prorated period).")

    def _credits(self, batch: pa.RecordBatch, s: State) -> None:
        """Per (subscription, charge end): what this invoice charges and credits, and what the credits say about
        the cycle they refund (billing frequency, earliest start), for `finish` to judge."""
        total = widen(batch.column("Total"))
        zero = pa.scalar(ZERO, total.type)
        credit = pc.fill_null(pc.and_(pc.is_in(batch.column("ChargeType"), pa.array(CREDIT_TYPES)),
                                      pc.less(total, zero)), False)
        positive = pc.fill_null(pc.greater(total, zero), False)
        null, no_text = pa.scalar(None, total.type), pa.scalar(None, pa.string())
        table = pa.table({"sub": batch.column("SubscriptionId"), "end": batch.column("ChargeEndDate"),
                          "charged": pc.if_else(positive, total, null), "credited": pc.if_else(credit, total, null),
                          "ref": pc.if_else(credit, batch.column("ReferenceId"), no_text),
                          "freq": pc.if_else(credit, batch.column("BillingFrequency"), no_text),
                          "start": pc.if_else(credit, batch.column("ChargeStartDate"), no_text)})
        grouped = table.group_by(["sub", "end"], use_threads=False).aggregate(
            [("charged", "sum"), ("credited", "sum"), ("ref", "first"), ("freq", "first"), ("start", "min")])
        for g in grouped.to_pylist():
            acc = s.credits.setdefault((g["sub"], g["end"]), [ZERO, ZERO, None, None, None])
            merge_credit(acc, [g["charged_sum"], (g["credited_sum"] or ZERO).copy_negate(), g["ref_first"],
                               g["freq_first"], g["start_min"]])


def merge_credit(acc: list[Any], part: list[Any]) -> None:
    """[charged, credited, first credit's ReferenceId, its BillingFrequency, earliest credit start] += part."""
    acc[0] = exact_sum((acc[0], part[0]))
    acc[1] = exact_sum((acc[1], part[1]))
    acc[2] = acc[2] or part[2]
    acc[3] = acc[3] or part[3]
    acc[4] = min(v for v in (acc[4], part[4]) if v) if (acc[4] or part[4]) else None
