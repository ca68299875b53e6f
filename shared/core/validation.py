"""Charge validation: checks Microsoft's lines while a partner-view file is being made, in the same single pass.

The validator sees every batch of a file before margins and views change it (`FilePlan.process` calls
`Validator.check`), keeps only small per-key state (64-bit hashes of line keys in sorted numpy arrays,
per-subscription sums, one exchange rate per currency pair and date), and stages everything it learns per
segment: the builder calls `begin_segment` (which forgets whatever a broken attempt left) and `end_segment`
(which commits), exactly as it adds a segment's totals only once the segment is complete.

Checks are vectorised (pyarrow.compute / numpy); Python looks only at the few lines a vectorised check flags.
The money formulas are screened in float64 only to choose which lines to check: a line whose float result is
off by more than 5e-7 (a cent is 1e-2), or which sits near a cent boundary where ROUNDDOWN could tip, is then
checked exactly in Decimal, and every value a finding reports is that exact Decimal. No amount in a file or a
finding ever passes through float.
Findings are kept in memory up to `cap` (counted beyond it) and written as `findings.csv` beside the file.

| rule | what it checks | severity | types | source |
|---|---|---|---|---|
| `SUBTOTAL_FORMULA` | usage-based (non-empty `UnitType`): `Subtotal = ROUNDDOWN(ROUNDDOWN(EffectiveUnitPrice × BillableQuantity, 2) × PCToBCExchangeRate, 2)`; seat-based (empty `UnitType`): `Subtotal = ROUNDDOWN(EffectiveUnitPrice × PCToBCExchangeRate, 2) × BillableQuantity`. ROUNDDOWN is toward zero (credits: −12.345 → −12.34). A line that matches neither formula is an error; one that matches only the other kind's formula is a warning | error / warning | onetime | seed field list; reference §6 |
| `TOTAL_FORMULA` | `Total = Subtotal + TaxTotal`, exactly | error | onetime | seed; reference §6 |
| `CHARGE_CYCLE` | a charge period ends before it starts, starts before the subscription, or ends after the subscription ends (error); a full cycle (`new`, `renew`, `cycleCharge`) that does not end one day before the same date 1 (Monthly) or 12 (Annual) months later (error) | error | onetime seat lines | reference §6 (NCE charge cycle) |
| `CHARGE_CYCLE_UNVERIFIED` | what Microsoft does not document: a cycle starting on the 29th–31st, an unknown billing frequency, a partial period (`addQuantity`, `removeQuantity`, …) whose end is not one day before a subscription anniversary (co-terminated or prorated) | info | onetime seat lines | reference §6, §9 |
| `DUPLICATE_REFERENCE` | the same `ReferenceId` twice in one file | error | onetime | seed (ReferenceId identifies a line) |
| `DUPLICATE_CHARGE` | the same subscription, charge type, charge period, quantity and amount billed twice in one invoice (onetime: `SubscriptionId, ChargeType, ChargeStartDate, ChargeEndDate, BillableQuantity, Subtotal`; other types: the layout's key columns plus quantity and amount) | warning (onetime: warning) | all | partner practice |
| `OVER_CREDIT` | the `removeQuantity`, `cancelImmediate` and `customerCredit` lines of a subscription and charge period credit more than that subscription and period was charged in the same invoice (error); credits for a period the invoice does not charge at all cannot be verified (info) | error / info | onetime | reference §6 (credits are their own negative lines) |
| `EXCHANGE_RATE` | one `PCToBCExchangeRate` per (`PricingCurrency`, `Currency`/`BillingCurrency`, `PCToBCExchangeRateDate`) in a file; a line with another rate than the first one seen | error | onetime, dailyratedusage | reference §6 (rate fixed at its date) |
| `INVOICE_TOTAL` | Σ `Total` of the lines against the invoice's `totalCharges` | error | onetime | reference §2.2, README (ties out) |
| `INVOICE_NUMBER` | a line whose `InvoiceNumber` is not the file's invoice | error | onetime, dailyratedusage, usage | completeness |
| `MISSING_CUSTOMER` | a line with no `CustomerId` (e.g. a removed relationship) | warning | all | completeness |
| `MONTH_OVER_MONTH` | per subscription, quantity or cost changed by more than `VALIDATION_CHANGE_THRESHOLD_PERCENT` against the previous month's Available partner-view file of the same type | warning | all | partner practice |
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.core.columns import FileType, Layout

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)
DEFAULT_CAP = 10_000
CREDIT_TYPES = ("removeQuantity", "cancelImmediate", "customerCredit")
FULL_CYCLE_TYPES = ("new", "renew", "cycleCharge")
BILL_MONTHS = {"monthly": 1, "annual": 12, "triennial": 36}
CENT = Decimal("0.01")

RULES: dict[str, str] = {
    "SUBTOTAL_FORMULA": "Subtotal against Microsoft's usage-based or seat-based formula",
    "TOTAL_FORMULA": "Total = Subtotal + TaxTotal",
    "CHARGE_CYCLE": "charge period against the subscription's dates and billing frequency",
    "CHARGE_CYCLE_UNVERIFIED": "charge period Microsoft's documentation does not let us verify",
    "DUPLICATE_REFERENCE": "the same ReferenceId twice in one file",
    "DUPLICATE_CHARGE": "the same charge billed twice in one invoice",
    "OVER_CREDIT": "credits larger than what was charged for the subscription and period",
    "EXCHANGE_RATE": "one exchange rate per currency pair and rate date",
    "INVOICE_TOTAL": "the lines add up to the invoice's totalCharges",
    "INVOICE_NUMBER": "every line belongs to the file's invoice",
    "MISSING_CUSTOMER": "every line names its customer",
    "MONTH_OVER_MONTH": "per-subscription change against the previous month",
}

QUANTITY_COLUMN = {FileType.ONETIME: "BillableQuantity", FileType.DAILY: "Quantity", FileType.LICENSE: "Quantity",
                   FileType.USAGE: "ConsumedQuantity"}
DUPLICATE_CHARGE_COLUMNS = {
    FileType.ONETIME: ("SubscriptionId", "ChargeType", "ChargeStartDate", "ChargeEndDate", "BillableQuantity",
                       "Subtotal"),
    FileType.DAILY: ("SubscriptionId", "EntitlementId", "MeterId", "ResourceURI", "UsageDate", "ChargeType",
                     "Quantity", "BillingPreTaxTotal"),
    FileType.LICENSE: ("OrderId", "SubscriptionId", "ChargeType", "ChargeStartDate", "ChargeEndDate", "Quantity",
                       "Subtotal"),
    FileType.USAGE: ("SubscriptionId", "DetailLineItemId", "ResourceGuid", "ChargeStartDate", "ConsumedQuantity",
                     "PretaxCharges"),
}
EXCHANGE_COLUMNS = {FileType.ONETIME: ("PricingCurrency", "Currency", "PCToBCExchangeRateDate"),
                    FileType.DAILY: ("PricingCurrency", "BillingCurrency", "PCToBCExchangeRateDate")}
FINDING_FIELDS = ("rule", "severity", "key", "expected", "actual", "message")


@dataclass
class Finding:
    rule: str
    severity: str
    key: dict[str, Any]
    expected: str | None
    actual: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity, "key": self.key, "expected": self.expected,
                "actual": self.actual, "message": self.message}


def _txt(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "") else text
    return str(value)


# ---- money formulas (exact, for the lines a vectorised check flagged, and for unit tests) ----------------------

def rounddown(value: Decimal, places: int = 2) -> Decimal:
    """Excel ROUNDDOWN: toward zero (−12.345 → −12.34)."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)


def usage_subtotal(eup: Decimal, quantity: Decimal, rate: Decimal) -> Decimal:
    return rounddown(rounddown(eup * quantity) * rate)


def seat_subtotal(eup: Decimal, quantity: Decimal, rate: Decimal) -> Decimal:
    return rounddown(eup * rate) * quantity


def check_subtotal(usage_based: bool, eup: Decimal, quantity: Decimal, rate: Decimal,
                   subtotal: Decimal) -> tuple[str | None, Decimal]:
    """(None | "error" | "warning", the expected subtotal of the line's kind)."""
    own = usage_subtotal(eup, quantity, rate) if usage_based else seat_subtotal(eup, quantity, rate)
    if own == subtotal:
        return None, own
    other = seat_subtotal(eup, quantity, rate) if usage_based else usage_subtotal(eup, quantity, rate)
    return (WARNING if other == subtotal else ERROR), own


# ---- compact key hashing ---------------------------------------------------------------------------------------

_MIX = np.uint64(0x9E3779B97F4A7C15)
_NULL_HASH = np.uint64(0x51ED270B27A5C3D1)


_BASE = np.uint64(0x100000001B3 | 1)  # polynomial base (odd)
_CHUNK_BYTES = 1 << 17  # bytes of text hashed per numpy pass: keeps the temporaries to a few MB
_powers = np.ones(1, dtype=np.uint64)


def _base_powers(n: int) -> np.ndarray:
    """_BASE**0 .. _BASE**(n-1), modulo 2**64 (numpy's uint64 arithmetic wraps), grown on demand."""
    global _powers
    if len(_powers) < n:
        _powers = np.concatenate(([np.uint64(1)], np.cumprod(np.full(max(n, 2 * len(_powers)) - 1, _BASE))))
    return _powers[:n]


def _finalize(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the whole hash."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _string_hashes(arr: pa.Array) -> np.ndarray:
    """A 64-bit hash of each string's UTF-8 bytes, computed over Arrow's buffers (no Python object per value).

    A polynomial hash modulo 2**64 (sum of (byte+1) * BASE**position), mixed with the length and finalised. Not
    for adversaries: for Microsoft's data two different keys collide with probability about n**2 / 2**64, and a
    collision could only add a duplicate warning, never hide one. Nulls hash to _NULL_HASH.
    """
    n = len(arr)
    out = np.empty(n, dtype=np.uint64)
    if n == 0:
        return out
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset: arr.offset + n + 1].astype(np.int64)
    data = arr.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    lo = 0
    while lo < n:
        # As many strings as fit in _CHUNK_BYTES (at least one).
        hi = int(np.searchsorted(offsets, offsets[lo] + _CHUNK_BYTES, side="right")) - 1
        hi = min(max(hi, lo + 1), n)
        o = offsets[lo: hi + 1]
        start = o[0]
        lengths = np.diff(o)
        position = np.arange(o[-1] - start) - np.repeat(o[:-1] - start, lengths)
        terms = (data[start: o[-1]].astype(np.uint64) + np.uint64(1)) * _base_powers(int(lengths.max()) + 1)[position]
        sums = np.concatenate((np.zeros(1, np.uint64), np.cumsum(terms, dtype=np.uint64)))
        h = sums[o[1:] - start] - sums[o[:-1] - start]
        out[lo:hi] = _finalize(h ^ (lengths.astype(np.uint64) * _MIX))
        lo = hi
    if arr.null_count:
        out[_nulls(arr)] = _NULL_HASH
    return out


def _nulls(arr: pa.Array) -> np.ndarray:
    return arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else np.zeros(len(arr), dtype=bool)


def _column_hash(arr: pa.Array) -> np.ndarray:
    """A stable 64-bit hash per value: strings via their (per-batch) dictionary, decimals via their bits."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_decimal(arr.type):
        filled = pc.fill_null(arr, pa.scalar(Decimal(0), arr.type))
        if isinstance(filled, pa.ChunkedArray):
            filled = filled.combine_chunks()
        words = np.frombuffer(filled.buffers()[1], dtype=np.uint64)[2 * filled.offset: 2 * (filled.offset + len(filled))]
        h = words[0::2] * _MIX + words[1::2]
        if arr.null_count:
            h = np.where(_nulls(arr), _NULL_HASH, h)
        return h
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    encoded = pc.dictionary_encode(arr)
    table = _string_hashes(encoded.dictionary)
    indices = encoded.indices
    idx = np.frombuffer(indices.buffers()[1], dtype=np.int32)[indices.offset: indices.offset + len(indices)]
    h = table[idx] if len(table) else np.zeros(len(idx), np.uint64)
    if indices.null_count:
        h = np.where(_nulls(indices), _NULL_HASH, h)
    return h


def row_hashes(batch: pa.RecordBatch, columns: Iterable[str]) -> np.ndarray:
    h = np.zeros(batch.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in columns:
            h = h * _MIX + _column_hash(batch.column(name))
            h ^= h >> np.uint64(29)
    return h


class HashSet64:
    """A set of 64-bit hashes as a few sorted numpy arrays (8 bytes a key; merged like an LSM tree)."""

    def __init__(self) -> None:
        self.levels: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(level) for level in self.levels)

    def contains(self, h: np.ndarray) -> np.ndarray:
        found = np.zeros(len(h), dtype=bool)
        for level in self.levels:
            idx = np.searchsorted(level, h)
            idx[idx == len(level)] = len(level) - 1
            found |= level[idx] == h
        return found

    def add_sorted_unique(self, values: np.ndarray) -> None:
        if not len(values):
            return
        self.levels.append(values)
        while len(self.levels) >= 2 and len(self.levels[-2]) <= 2 * len(self.levels[-1]):
            top = self.levels.pop()
            # Levels are disjoint (only new hashes are added): a stable sort of two sorted runs is one merge.
            self.levels[-1] = np.sort(np.concatenate((self.levels[-1], top)), kind="stable")

    def absorb(self, other: "HashSet64") -> None:
        for level in other.levels:
            self.add_sorted_unique(level)


# ---- date helpers --------------------------------------------------------------------------------------------

def _dates(arr: pa.Array) -> pa.Array:
    """ISO date-time text ("2026-10-01T00:00:00Z") → date32 (null where unreadable)."""
    head = pc.utf8_slice_codeunits(arr, 0, 10)
    ok = pc.fill_null(pc.match_substring_regex(head, r"^\d{4}-\d{2}-\d{2}$"), False)
    head = pc.if_else(ok, head, pa.scalar(None, pa.string()))
    return pc.cast(pc.strptime(head, "%Y-%m-%d", "s", error_is_null=True), pa.date32())


def _month_index(d: pa.Array) -> pa.Array:
    return pc.add(pc.multiply(pc.year(d), 12), pc.month(d))


def _plus_days(d: pa.Array, days: int) -> pa.Array:
    return pc.cast(pc.cast(pc.add(pc.cast(d, pa.int32()), pa.scalar(days, pa.int32())), pa.int32()), pa.date32())


def _add_months(d: date, months: int) -> date:
    import calendar

    index = d.year * 12 + d.month - 1 + months
    year, month0 = divmod(index, 12)
    return date(year, month0 + 1, min(d.day, calendar.monthrange(year, month0 + 1)[1]))


def _np_bool(arr: pa.Array) -> np.ndarray:
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False)


def _float(arr: pa.Array) -> np.ndarray:
    return pc.cast(pc.fill_null(arr, pa.scalar(Decimal(0), arr.type)), pa.float64()).to_numpy()


def _empty(arr: pa.Array) -> pa.Array:
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(arr), ""), True)


# ---- state ---------------------------------------------------------------------------------------------------

@dataclass
class _State:
    """What one segment learns (staged) or what the committed segments learnt."""

    findings: list[Finding] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # (rule, severity) -> n
    references: HashSet64 = field(default_factory=HashSet64)
    charges: HashSet64 = field(default_factory=HashSet64)
    rates: dict[tuple, Decimal] = field(default_factory=dict)
    subscriptions: dict[str, list[Decimal]] = field(default_factory=dict)  # id -> [cost, quantity]
    credits: dict[tuple, list[Any]] = field(default_factory=dict)  # (sub, end) -> [charged, credited, key]
    total: Decimal = Decimal(0)
    rows: int = 0


class Validator:
    def __init__(self, layout: Layout, *, invoice_id: str | None = None, cap: int = DEFAULT_CAP) -> None:
        self.layout = layout
        self.invoice_id = invoice_id
        self.cap = cap
        self.done = _State()
        self.seg = _State()

    # ---- segments ---------------------------------------------------------------------------------------------
    def begin_segment(self) -> None:
        self.seg = _State()

    def end_segment(self) -> None:
        s, d = self.seg, self.done
        room = max(0, self.cap - len(d.findings))
        d.findings.extend(s.findings[:room])
        d.counts.update(s.counts)
        d.references.absorb(s.references)
        d.charges.absorb(s.charges)
        for k, v in s.rates.items():
            d.rates.setdefault(k, v)
        for k, (cost, qty) in s.subscriptions.items():
            acc = d.subscriptions.setdefault(k, [Decimal(0), Decimal(0)])
            acc[0] += cost
            acc[1] += qty
        for k, (charged, credited, key) in s.credits.items():
            acc = d.credits.setdefault(k, [Decimal(0), Decimal(0), None])
            acc[0] += charged
            acc[1] += credited
            acc[2] = acc[2] or key
        d.total += s.total
        d.rows += s.rows
        self.seg = _State()

    # ---- findings ---------------------------------------------------------------------------------------------
    def _add(self, state: _State, rule: str, severity: str, key: dict[str, Any], expected: Any, actual: Any,
             message: str) -> None:
        state.counts[(rule, severity)] += 1
        if len(self.done.findings) + len(state.findings) < self.cap:
            state.findings.append(Finding(rule, severity, key, _txt(expected), _txt(actual), message))

    def _keys(self, batch: pa.RecordBatch, mask: np.ndarray) -> list[dict[str, Any]]:
        where = pa.array(np.nonzero(mask)[0])
        cols = {c: batch.column(c).take(where).to_pylist() for c in self.layout.key_columns}
        return [{c: cols[c][i] for c in cols} for i in range(len(where))]

    def _rows(self, batch: pa.RecordBatch, mask: np.ndarray, columns: Iterable[str]) -> list[dict[str, Any]]:
        where = pa.array(np.nonzero(mask)[0])
        names = list(dict.fromkeys([*self.layout.key_columns, *columns]))
        return pa.RecordBatch.from_arrays([batch.column(c).take(where) for c in names], names=names).to_pylist()

    def _key_of(self, row: dict[str, Any]) -> dict[str, Any]:
        return {c: row.get(c) for c in self.layout.key_columns}

    # ---- the pass ---------------------------------------------------------------------------------------------
    def check(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        s = self.seg
        s.rows += batch.num_rows
        ft = self.layout.file_type
        s.total += _decimal_sum(batch.column(self.layout.total_column))
        self._duplicates(batch, s)
        self._missing_customer(batch, s)
        self._invoice_number(batch, s)
        self._subscriptions(batch, s)
        if ft in EXCHANGE_COLUMNS:
            self._exchange_rates(batch, s)
        if ft == FileType.ONETIME:
            self._money(batch, s)
            self._charge_cycle(batch, s)
            self._credits(batch, s)

    def _duplicates(self, batch: pa.RecordBatch, s: _State) -> None:
        ft = self.layout.file_type
        checks = [("DUPLICATE_CHARGE", WARNING, DUPLICATE_CHARGE_COLUMNS[ft], "charges")]
        if ft == FileType.ONETIME:
            checks.insert(0, ("DUPLICATE_REFERENCE", ERROR, ("ReferenceId",), "references"))
        reported = np.zeros(batch.num_rows, dtype=bool)
        for rule, severity, columns, attr in checks:
            h = row_hashes(batch, columns)
            order = np.argsort(h, kind="stable")
            sorted_h = h[order]
            dup = np.zeros(len(h), dtype=bool)
            dup[order[1:][sorted_h[1:] == sorted_h[:-1]]] = True  # later copies within the batch
            dup |= getattr(self.done, attr).contains(h) | getattr(s, attr).contains(h)
            getattr(s, attr).add_sorted_unique(np.unique(h[~dup]))
            dup &= ~reported  # a line reported as a duplicate reference is not reported twice
            if not dup.any():
                continue
            reported |= dup
            for row in self._rows(batch, dup, columns):
                if rule == "DUPLICATE_REFERENCE":
                    message = (f"ReferenceId {row.get('ReferenceId')} appears more than once in this invoice; "
                               "each charge line should appear once, so this amount may be billed twice.")
                else:
                    message = (f"Subscription {row.get('SubscriptionId')} has the same {row.get('ChargeType')} "
                               "charge for the same period, quantity and amount more than once; it may be billed "
                               "twice.")
                self._add(s, rule, severity, self._key_of(row), "1 line", "2 or more lines", message)

    def _missing_customer(self, batch: pa.RecordBatch, s: _State) -> None:
        missing = _np_bool(_empty(batch.column(self.layout.customer_column)))
        if missing.any():
            for row in self._rows(batch, missing, (self.layout.subscription_column,)):
                self._add(s, "MISSING_CUSTOMER", WARNING, self._key_of(row), "a CustomerId", None,
                          f"This line of subscription {row.get(self.layout.subscription_column)} names no customer "
                          "(the relationship may have been removed); it cannot be passed on to a customer.")

    def _invoice_number(self, batch: pa.RecordBatch, s: _State) -> None:
        if not self.invoice_id or "InvoiceNumber" not in batch.schema.names or self.invoice_id.startswith("UNBILLED"):
            return
        col = batch.column("InvoiceNumber")
        wrong = _np_bool(pc.not_equal(col, self.invoice_id))
        if not wrong.any():
            return
        wrong &= ~_np_bool(_empty(col)) & ~_np_bool(pc.equal(pc.utf8_upper(col), self.invoice_id.upper()))
        if wrong.any():
            for row in self._rows(batch, wrong, ("InvoiceNumber",)):
                self._add(s, "INVOICE_NUMBER", ERROR, self._key_of(row), self.invoice_id, row["InvoiceNumber"],
                          f"This line belongs to invoice {row['InvoiceNumber']}, not {self.invoice_id}.")

    def _subscriptions(self, batch: pa.RecordBatch, s: _State) -> None:
        lay = self.layout
        qty = QUANTITY_COLUMN[lay.file_type]
        subs = batch.column(lay.subscription_column)
        if subs.null_count == 0 and len(subs) and pc.all(pc.equal(subs, subs[0])).as_py():
            acc = s.subscriptions.setdefault(subs[0].as_py(), [Decimal(0), Decimal(0)])
            acc[0] += _decimal_sum(batch.column(lay.cost_column))
            acc[1] += _decimal_sum(batch.column(qty))
            return
        table = pa.Table.from_batches([batch.select([lay.subscription_column, lay.cost_column, qty])])
        grouped = table.group_by(lay.subscription_column, use_threads=False).aggregate(
            [(lay.cost_column, "sum"), (qty, "sum")])
        for sub, cost, quantity in zip(*(grouped.column(i).to_pylist() for i in range(3))):
            acc = s.subscriptions.setdefault(sub or "", [Decimal(0), Decimal(0)])
            acc[0] += cost or 0
            acc[1] += quantity or 0

    def _exchange_rates(self, batch: pa.RecordBatch, s: _State) -> None:
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
            mask = ~_np_bool(pc.is_null(rates))
            for k in keys:
                col = batch.column(k)
                mask &= _np_bool(pc.is_null(col)) if g[k] is None else _np_bool(pc.equal(col, g[k]))
            if ref is None:
                ref = s.rates[key] = rates[int(np.argmax(mask))].as_py()
            mask &= _np_bool(pc.not_equal(rates, pa.scalar(ref, rates.type)))
            for row in self._rows(batch, mask, ("PCToBCExchangeRate",)):
                self._add(s, "EXCHANGE_RATE", ERROR, self._key_of(row), ref, row["PCToBCExchangeRate"],
                          f"The exchange rate {key[0]}→{key[1]} of {key[2]} is {_txt(ref)} on other lines of this "
                          f"invoice, but {_txt(row['PCToBCExchangeRate'])} on this one.")

    def _money(self, batch: pa.RecordBatch, s: _State) -> None:
        eup, bq, rate = (batch.column(c) for c in ("EffectiveUnitPrice", "BillableQuantity", "PCToBCExchangeRate"))
        sub, tax, total = (batch.column(c) for c in ("Subtotal", "TaxTotal", "Total"))
        usage = _np_bool(pc.invert(_empty(batch.column("UnitType"))))
        present = ~(_np_bool(pc.is_null(eup)) | _np_bool(pc.is_null(bq)) | _np_bool(pc.is_null(rate))
                    | _np_bool(pc.is_null(sub)))
        e, q, r, st = _float(eup), _float(bq), _float(rate), _float(sub)
        unit = e * r * 100  # seat: cents per unit before ROUNDDOWN
        amount = e * q * 100  # usage: cents before the first ROUNDDOWN
        seat_exp = np.trunc(unit) / 100 * q
        usage_exp = np.trunc(np.trunc(amount) / 100 * r * 100) / 100
        expected = np.where(usage, usage_exp, seat_exp)
        near = np.where(usage, _near_integer(amount) | _near_integer(np.trunc(amount) * r), _near_integer(unit))
        flagged = present & ((np.abs(expected - st) > 5e-7) | near)
        if flagged.any():
            cols = ("EffectiveUnitPrice", "BillableQuantity", "PCToBCExchangeRate", "Subtotal", "UnitType")
            for row in self._rows(batch, flagged, cols):
                is_usage = bool((row.get("UnitType") or "").strip())
                verdict, own = check_subtotal(is_usage, row["EffectiveUnitPrice"], row["BillableQuantity"],
                                              row["PCToBCExchangeRate"], row["Subtotal"])
                if verdict is None:
                    continue
                kind = "usage-based" if is_usage else "seat-based"
                message = (f"Subtotal is {_txt(row['Subtotal'])} but Microsoft's {kind} formula gives {_txt(own)}"
                           + (" (it matches the other formula: the line's kind may be unusual)." if verdict == WARNING
                              else "; the line may be mispriced."))
                self._add(s, "SUBTOTAL_FORMULA", verdict, self._key_of(row), own, row["Subtotal"], message)
        t_present = ~(_np_bool(pc.is_null(sub)) | _np_bool(pc.is_null(tax)) | _np_bool(pc.is_null(total)))
        t_flag = t_present & (np.abs(st + _float(tax) - _float(total)) > 5e-7)
        if t_flag.any():
            for row in self._rows(batch, t_flag, ("Subtotal", "TaxTotal", "Total")):
                want = row["Subtotal"] + row["TaxTotal"]
                if want != row["Total"]:
                    self._add(s, "TOTAL_FORMULA", ERROR, self._key_of(row), want, row["Total"],
                              f"Total is {_txt(row['Total'])} but Subtotal {_txt(row['Subtotal'])} plus tax "
                              f"{_txt(row['TaxTotal'])} is {_txt(want)}.")

    def _charge_cycle(self, batch: pa.RecordBatch, s: _State) -> None:
        freq = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(batch.column("BillingFrequency"), "")))
        seat = _np_bool(pc.not_equal(freq, "")) & ~_np_bool(pc.invert(_empty(batch.column("UnitType"))))
        if not seat.any():
            return
        start, end = _dates(batch.column("ChargeStartDate")), _dates(batch.column("ChargeEndDate"))
        sub_start, sub_end = _dates(batch.column("SubscriptionStartDate")), _dates(batch.column("SubscriptionEndDate"))
        months = pc.fill_null(pc.cast(pc.index_in(freq, pa.array(list(BILL_MONTHS))), pa.int32()), -1).to_numpy()
        bill = np.where(months >= 0, np.array(list(BILL_MONTHS.values()))[np.maximum(months, 0)], 0)
        known = months >= 0
        dated = ~_np_bool(pc.is_null(start)) & ~_np_bool(pc.is_null(end))
        bad_order = _np_bool(pc.less(end, start))
        bad_order |= _np_bool(pc.less(start, sub_start))
        bad_order |= _np_bool(pc.greater(end, sub_end))
        after = _plus_days(end, 1)
        span = pc.subtract(_month_index(after), _month_index(start)).to_numpy(zero_copy_only=False)
        same_day = _np_bool(pc.equal(pc.day(after), pc.day(start)))
        full = _np_bool(pc.is_in(batch.column("ChargeType"), pa.array(FULL_CYCLE_TYPES)))
        late_start = _np_bool(pc.greater(pc.day(start), 28))
        span = np.nan_to_num(np.asarray(span, dtype=float), nan=-1)
        full_ok = same_day & (span == bill)
        bad_full = seat & dated & known & full & ~late_start & ~full_ok
        anniv_day = pc.day(sub_start)
        aligned = _np_bool(pc.equal(pc.day(after), anniv_day))
        unverified = seat & dated & ~bad_order & ~bad_full & (
            ~known | (full & late_start) | (~full & ~aligned) | _np_bool(pc.greater(anniv_day, 28)))
        error = seat & dated & (bad_order | bad_full)
        cols = ("ChargeType", "ChargeStartDate", "ChargeEndDate", "SubscriptionStartDate", "SubscriptionEndDate",
                "BillingFrequency")
        if error.any():
            for row, months_n in zip(self._rows(batch, error, cols), bill[error]):
                cs, ce = _day(row["ChargeStartDate"]), _day(row["ChargeEndDate"])
                want = (_add_months(cs, int(months_n)) - timedelta(days=1)).isoformat() if cs and months_n else None
                self._add(s, "CHARGE_CYCLE", ERROR, self._key_of(row), want, ce.isoformat() if ce else None,
                          f"The {row['ChargeType']} charge runs {cs} to {ce}, which does not fit a "
                          f"{row['BillingFrequency']} cycle of a subscription running "
                          f"{_day(row['SubscriptionStartDate'])} to {_day(row['SubscriptionEndDate'])} "
                          "(a cycle ends one day before the same date of the next period).")
        if unverified.any():
            for row in self._rows(batch, unverified, cols):
                self._add(s, "CHARGE_CYCLE_UNVERIFIED", INFO, self._key_of(row), None,
                          f"{_day(row['ChargeStartDate'])}..{_day(row['ChargeEndDate'])}",
                          f"The {row['ChargeType']} charge period could not be verified: Microsoft does not "
                          "document this case (month-end purchase, co-terminated or prorated period).")

    def _credits(self, batch: pa.RecordBatch, s: _State) -> None:
        total = batch.column("Total")
        zero = pa.scalar(Decimal(0), total.type)
        credit = pc.and_(pc.is_in(batch.column("ChargeType"), pa.array(CREDIT_TYPES)), pc.less(total, zero))
        credit = pc.fill_null(credit, False)
        positive = pc.fill_null(pc.greater(total, zero), False)
        if not _np_bool(credit).any() and not s.credits and not self.done.credits:
            pass
        null = pa.scalar(None, total.type)
        table = pa.table({"sub": batch.column("SubscriptionId"), "end": batch.column("ChargeEndDate"),
                          "charged": pc.if_else(positive, total, null), "credited": pc.if_else(credit, total, null),
                          "ref": pc.if_else(credit, batch.column("ReferenceId"), pa.scalar(None, pa.string()))})
        grouped = table.group_by(["sub", "end"], use_threads=False).aggregate(
            [("charged", "sum"), ("credited", "sum"), ("ref", "first")])
        for g in grouped.to_pylist():
            acc = s.credits.setdefault((g["sub"], g["end"]), [Decimal(0), Decimal(0), None])
            acc[0] += g["charged_sum"] or 0
            acc[1] += -(g["credited_sum"] or 0)
            acc[2] = acc[2] or g["ref_first"]

    # ---- the end ----------------------------------------------------------------------------------------------
    def finish(self, invoice: dict[str, Any] | None = None, previous: dict[str, Any] | None = None,
               threshold_percent: Decimal = Decimal(50)) -> "Report":
        d = self.done
        end = _State()
        for (sub, period), (charged, credited, ref) in d.credits.items():
            if credited <= 0 or credited <= charged:
                continue
            key = {"ReferenceId": ref}
            if charged == 0:
                self._add(end, "OVER_CREDIT", INFO, key, charged, credited,
                          f"Subscription {sub} is credited {_txt(credited)} for the period ending {_day(period)}, "
                          "which this invoice does not charge; the original charge cannot be checked here.")
            else:
                self._add(end, "OVER_CREDIT", ERROR, key, charged, credited,
                          f"Subscription {sub} is credited {_txt(credited)} for the period ending {_day(period)}, "
                          f"more than the {_txt(charged)} charged for it in this invoice.")
        if invoice is not None and self.layout.file_type == FileType.ONETIME and invoice.get("totalCharges") is not None:
            want = Decimal(str(invoice["totalCharges"]))
            if want != d.total:
                self._add(end, "INVOICE_TOTAL", ERROR, {"InvoiceNumber": invoice.get("id")}, want, d.total,
                          f"The lines add up to {_txt(d.total)}, but the invoice's total is {_txt(want)} "
                          f"(a difference of {_txt(want - d.total)}); lines may be missing or extra.")
        if previous:
            self._month_over_month(end, previous, threshold_percent)
        self.seg = end
        self.end_segment()
        return Report(self.done.findings, self.done.counts)

    def _month_over_month(self, end: _State, previous: dict[str, Any], threshold: Decimal) -> None:
        before = previous.get("subscriptions") or {}
        for sub, (cost, qty) in sorted(self.done.subscriptions.items()):
            prior = before.get(sub)
            if not prior:
                continue
            for label, now, then in (("cost", cost, _dec(prior.get("cost"))), ("quantity", qty,
                                                                              _dec(prior.get("quantity")))):
                if then is None or then == 0:
                    continue
                change = (now - then) / abs(then) * 100
                if abs(change) > threshold:
                    self._add(end, "MONTH_OVER_MONTH", WARNING, {self.layout.subscription_column: sub}, then, now,
                              f"Subscription {sub}'s {label} went from {_txt(then)} to {_txt(now)} "
                              f"({change:+.1f} %) since {previous.get('invoiceId') or 'the previous month'}.")

    def summary(self) -> dict[str, Any]:
        """Per-subscription totals, stored beside the file as summary.json for next month's comparison."""
        return {"invoiceType": self.layout.file_type.value, "invoiceId": self.invoice_id, "rows": self.done.rows,
                "subscriptions": {k: {"cost": _txt(c), "quantity": _txt(q)}
                                  for k, (c, q) in sorted(self.done.subscriptions.items())}}


DECIMAL = pa.decimal128(38, 28)


def _near_integer(x: np.ndarray) -> np.ndarray:
    """Float values too close to a cent boundary to trust: the exact check decides these."""
    frac = np.abs(x - np.round(x))
    return (frac < 1e-6 * np.maximum(1.0, np.abs(x))) & (frac > 0)


def _decimal_sum(arr: pa.Array) -> Decimal:
    value = pc.sum(arr).as_py()
    return value if value is not None else Decimal(0)


def _day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _dec(value: Any) -> Decimal | None:
    try:
        return None if value is None else Decimal(str(value))
    except InvalidOperation:
        return None


@dataclass
class Report:
    findings: list[Finding]
    counts: Counter

    def totals(self) -> dict[str, Any]:
        by_severity = Counter()
        by_rule: dict[str, dict[str, int]] = {}
        for (rule, severity), n in self.counts.items():
            by_severity[severity] += n
            by_rule.setdefault(rule, {})[severity] = by_rule.get(rule, {}).get(severity, 0) + n
        return {"error": by_severity[ERROR], "warning": by_severity[WARNING], "info": by_severity[INFO],
                "byRule": dict(sorted(by_rule.items())), "kept": len(self.findings)}

    def csv_bytes(self) -> bytes:
        return findings_csv(self.findings)


def _key_text(key: dict[str, Any]) -> str:
    return "; ".join(f"{k}={'' if v is None else v}" for k, v in key.items())


def _parse_key(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in text.split("; ") if text else []:
        name, _, value = part.partition("=")
        out[name] = value or None
    return out


def findings_csv(findings: list[Finding]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(FINDING_FIELDS)
    for f in findings:
        writer.writerow([f.rule, f.severity, _key_text(f.key), f.expected or "", f.actual or "", f.message])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def read_findings_csv(data: bytes) -> list[dict[str, Any]]:
    rows = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    return [{"rule": r["rule"], "severity": r["severity"], "key": _parse_key(r["key"]),
             "expected": r["expected"] or None, "actual": r["actual"] or None, "message": r["message"]}
            for r in rows]
