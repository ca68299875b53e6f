"""Which invoices and unbilled periods exist relative to `today`, their data versions, and their totals.

New-commerce invoices (`G` + 9 digits) cover the last three complete calendar months and carry one-time lines and
daily rated usage; legacy invoices (`D0` + 8 characters) cover three anniversary periods and carry licence and
usage lines. Totals come from one streaming pass over the rows and are remembered per data version.
"""

from __future__ import annotations

import string
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal

from shared.core.columns import FileType, layout_for

from .catalog import BILLING_CURRENCY
from .dates import add_months, cycle_end, month_end, month_start
from .det import number
from .money import EXACT, ZERO, total
from .rows import REVISABLE, ROW_MAKERS, Dataset, Row
from .world import World, onetime_rows

LICENSE_ROWS = 40
USAGE_ROWS = 60
REVISED_ROWS_PER_VERSION = 3
# The column `Expected.total` sums: what the partner pays (daily usage is informational, so its pre-tax total).
TOTAL_COLUMNS = {FileType.ONETIME: "Total", FileType.LICENSE: "TotalForCustomer", FileType.USAGE: "PostTaxTotal",
                 FileType.DAILY: "BillingPreTaxTotal"}
PERIODS = ("current", "last")


@dataclass(frozen=True)
class Expected:
    """What a complete, correct download of one file must add up to."""

    rows: int
    cost_total: Decimal  # Σ of the layout's cost column
    total: Decimal  # Σ Total / TotalForCustomer / PostTaxTotal; Σ BillingPreTaxTotal for daily usage
    currency: str


@dataclass(frozen=True)
class Invoice:
    id: str
    legacy: bool
    start: date
    end: date
    invoice_date: date
    datasets: Mapping[FileType, Dataset]
    amendments: tuple[Mapping[str, str], ...] = field(default=())
    currency: str = BILLING_CURRENCY


def _base36(n: int, width: int) -> str:
    alphabet = string.digits + string.ascii_uppercase
    out = ""
    for _ in range(width):
        n, r = divmod(n, 36)
        out += alphabet[r]
    return out


class Ledger:
    """The invoices of one simulator and the data versions that `revise` bumps."""

    def __init__(self, world: World, today: date, anniversary_day: int) -> None:
        if not 1 <= anniversary_day <= 28:
            raise ValueError("billing_anniversary_day must be 1..28")
        self.world = world
        self.today = today
        self._g_base = 10_000_000 + number(world.seed, "G") % 80_000_000
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        self._published: list[Invoice] = []
        self._expected: dict[tuple, Expected] = {}
        self._defects: dict[str, frozenset[str]] = {}  # invoice id (lower case) -> defect kinds
        self._defect_rows: dict[tuple, dict[int, Row]] = {}
        first = month_start(today)
        base = [self._new_commerce(add_months(first, -k)) for k in (3, 2, 1)]
        note = {"id": self._g_id(add_months(first, -3), 1), "documentType": "adjustment_note",
                "amendsOf": base[0].id, "invoiceType": "OneTime"}
        base[0] = replace(base[0], amendments=(note,))
        latest = today.replace(day=anniversary_day)
        while cycle_end(latest, 1) >= today:
            latest = add_months(latest, -1)
        self._base = base + [self._legacy(add_months(latest, -k)) for k in (2, 1, 0)]
        self.unbilled: dict[str, Mapping[FileType, Dataset]] = {
            "current": self._unbilled(first, max(1, today.day - 1)),
            "last": self._unbilled(add_months(first, -1), None),
        }

    # --- the calendar -------------------------------------------------------------------------------------------

    def _g_id(self, start: date, offset: int = 0) -> str:
        return f"G{self._g_base + (start.year * 12 + start.month) * 37 + offset:09d}"

    def _new_commerce(self, start: date) -> Invoice:
        end = month_end(start)
        inv_id = self._g_id(start)
        days = (end - start).days + 1
        size = self.world.size
        datasets = {
            FileType.ONETIME: Dataset(inv_id, FileType.ONETIME, inv_id, start, end, days, onetime_rows(size)),
            FileType.DAILY: Dataset(inv_id, FileType.DAILY, inv_id, start, end, days, size),
        }
        return Invoice(inv_id, legacy=False, start=start, end=end, invoice_date=add_months(start, 1).replace(day=8),
                       datasets=datasets)

    def _legacy(self, start: date) -> Invoice:
        end = cycle_end(start, 1)
        inv_id = "D0" + _base36(number(self.world.seed, "D", start), 8)
        days = (end - start).days + 1
        datasets = {
            FileType.LICENSE: Dataset(inv_id, FileType.LICENSE, inv_id, start, end, days, LICENSE_ROWS),
            FileType.USAGE: Dataset(inv_id, FileType.USAGE, inv_id, start, end, days, USAGE_ROWS),
        }
        return Invoice(inv_id, legacy=True, start=start, end=end, invoice_date=end + timedelta(days=3),
                       datasets=datasets)

    def _unbilled(self, start: date, usage_days: int | None) -> Mapping[FileType, Dataset]:
        key = f"U{start:%Y%m}"
        end = month_end(start)
        days = usage_days or (end - start).days + 1
        size = self.world.size
        return {
            FileType.DAILY: Dataset(key, FileType.DAILY, "", start, end, days, size, billed=False),
            FileType.ONETIME: Dataset(key, FileType.ONETIME, "", start, end, days, onetime_rows(size), billed=False),
        }

    def invoices(self) -> list[Invoice]:
        """Newest first."""
        with self._lock:
            every = self._base + self._published
        return sorted(every, key=lambda inv: (inv.invoice_date, inv.id), reverse=True)

    def invoice(self, invoice_id: str) -> Invoice | None:
        return next((inv for inv in self.invoices() if inv.id.lower() == invoice_id.lower()), None)

    def publish_next(self) -> Invoice:
        """The next month's new-commerce invoice appears (for automation demos)."""
        with self._lock:
            latest = max(inv.start for inv in self._base + self._published
                         if not inv.legacy and inv.currency == BILLING_CURRENCY)
            invoice = self._new_commerce(add_months(latest, 1))
            self._published.append(invoice)
        return invoice

    def publish_vnd(self) -> list[Invoice]:
        """The two invoices in Vietnamese dong of devtools/simulator/vnd.py appear (once; `reset` removes them)."""
        from .vnd import CURRENCY, rows_for

        first = add_months(month_start(self.today), -2)
        out = []
        with self._lock:
            for k, variant in enumerate(("vnd-a", "vnd-b")):
                start = add_months(first, k)
                inv_id = self._g_id(start, 11)
                found = next((inv for inv in self._published if inv.id == inv_id), None)
                if found is None:
                    end = month_end(start)
                    probe = Dataset(inv_id, FileType.ONETIME, inv_id, start, end, (end - start).days + 1, 0,
                                    currency=CURRENCY, variant=variant)
                    rows = len(rows_for(self.world, probe, first, k == 1))
                    found = Invoice(inv_id, legacy=False, start=start, end=end,
                                    invoice_date=add_months(start, 1).replace(day=8),
                                    datasets={FileType.ONETIME: replace(probe, rows=rows)}, currency=CURRENCY)
                    self._published.append(found)
                out.append(found)
        return out

    # --- data versions ------------------------------------------------------------------------------------------

    def version(self, key: str) -> int:
        return self._versions.get(key, 0)

    def revise(self, invoice_id: str) -> int:
        """Microsoft re-rates an invoice: a few usage quantities change and the data version goes up."""
        invoice = self.invoice(invoice_id)
        if invoice is None:
            raise KeyError(invoice_id)
        with self._lock:
            self._versions[invoice.id] = self.version(invoice.id) + 1
            return self._versions[invoice.id]

    def reset(self) -> None:
        with self._lock:
            self._versions.clear()
            self._published.clear()
            self._defects.clear()

    # --- defects in the data (devtools/simulator/defects.py) ---------------------------------------------------

    def add_defect(self, invoice_id: str, kind: str) -> None:
        from .defects import KINDS

        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}")
        invoice = self.invoice(invoice_id)
        if invoice is None or invoice.legacy:
            raise KeyError(f"no new-commerce invoice {invoice_id}")
        with self._lock:
            self._defects[invoice.id.lower()] = self._defects.get(invoice.id.lower(), frozenset()) | {kind}

    def defects(self, ds: Dataset) -> frozenset[str]:
        return self._defects.get(ds.key.lower(), frozenset()) if ds.billed else frozenset()

    def _replacements(self, ds: Dataset, version: int, defects: frozenset[str]) -> dict[int, Row]:
        from .defects import replacements

        key = (ds, version, defects)
        found = self._defect_rows.get(key)
        if found is None:
            clean = [row for _, row in self.rows(ds, version=version, defects=frozenset())]
            found = self._defect_rows[key] = replacements(ds.file_type, clean, defects)
        return found

    def _revised(self, ds: Dataset, version: int) -> Mapping[int, int]:
        """Row index -> the latest revision that changed it (a few hashes per revision; not worth caching)."""
        touched: dict[int, int] = {}
        for v in range(1, version + 1):
            for j in range(REVISED_ROWS_PER_VERSION):
                touched[number(self.world.seed, "revise", ds.key, ds.file_type, v, j) % ds.rows] = v
        return touched

    # --- rows and totals ----------------------------------------------------------------------------------------

    def rows(self, ds: Dataset, start: int = 0, stop: int | None = None,
             version: int | None = None, defects: frozenset[str] | None = None) -> Iterator[tuple[int, Row]]:
        """(index, canonical row) for rows start..stop of the dataset at a data version (default: current), with
        the defects asked for (default: the invoice's current ones)."""
        version = self.version(ds.key) if version is None else version
        defects = self.defects(ds) if defects is None else defects
        replaced = self._replacements(ds, version, defects) if defects else {}
        revised = self._revised(ds, version) if ds.file_type in REVISABLE and version else {}
        make = ROW_MAKERS[ds.file_type]
        world = self.world
        if ds.variant:
            from .vnd import rows_for

            fixed = rows_for(world, ds, add_months(ds.start, -1 if ds.variant == "vnd-b" else 0), ds.variant == "vnd-b")
            make = lambda _w, _ds, i, _rev: fixed[i]  # noqa: E731
        for i in range(start, ds.rows if stop is None else min(stop, ds.rows)):
            row = replaced.get(i)
            yield i, dict(row) if row is not None else make(world, ds, i, revised.get(i, 0))

    def expected(self, ds: Dataset) -> Expected:
        version = self.version(ds.key)
        defects = self.defects(ds)
        key = (ds.key, ds.file_type, version, defects)
        found = self._expected.get(key)
        if found is None:
            cost_column = layout_for(ds.file_type).cost_column
            total_column = TOTAL_COLUMNS[ds.file_type]
            cost = paid = ZERO
            for _, row in self.rows(ds, version=version, defects=defects):
                if row[cost_column] is not None:  # a line without a cost (the no_cost defect) adds none
                    cost = EXACT.add(cost, Decimal(row[cost_column]))
                paid = EXACT.add(paid, Decimal(row[total_column]))
            found = self._expected[key] = Expected(ds.rows, cost, paid, ds.currency)
        return found

    def total_charges(self, invoice: Invoice) -> Decimal:
        """Σ of what the invoice charges: one-time Total, or licence TotalForCustomer + usage PostTaxTotal."""
        charges = total(self.expected(ds).total for ft, ds in invoice.datasets.items() if ft != FileType.DAILY)
        if "invoice_total" in self._defects.get(invoice.id.lower(), ()):
            charges = total([charges, Decimal("1.00")])
        return charges
