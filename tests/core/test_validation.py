"""Charge validation without storage: Microsoft's formulas on hand-written lines, and every simulator defect
caught exactly once, on its line, while clean data stays silent."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from devtools.simulator.defects import KINDS
from devtools.simulator.ledger import Ledger
from devtools.simulator.world import World
from shared.core.columns import FileType, layout_for
from shared.adapters.microsoft_json import batch_from_items
from shared.core.validation import ERROR, WARNING, HashSet64, Validator, check_subtotal, rounddown, seat_subtotal, \
    usage_subtotal


def test_rounddown_is_toward_zero() -> None:
    assert rounddown(D("12.349")) == D("12.34")
    assert rounddown(D("-12.349")) == D("-12.34")


def test_seat_based_formula() -> None:
    # ROUNDDOWN(EUP × rate, 2) × BillableQuantity: 10.999 × 0.9 = 9.8991 → 9.89 × 3
    assert seat_subtotal(D("10.999"), D(3), D("0.9")) == D("29.67")
    assert check_subtotal(False, D("10.999"), D(3), D("0.9"), D("29.67")) == (None, D("29.67"))
    assert check_subtotal(False, D("10.999"), D(3), D("0.9"), D("29.70"))[0] == ERROR
    assert check_subtotal(False, D("10.999"), D(3), D("0.9"), D("29.69"))[0] == WARNING  # the usage formula


def test_seat_based_credit_rounds_the_unit_price_then_multiplies() -> None:
    assert seat_subtotal(D("10.999"), D(-2), D("0.9")) == D("-19.78")
    assert check_subtotal(False, D("10.999"), D(-2), D("0.9"), D("-19.78"))[0] is None


def test_usage_based_formula_rounds_twice() -> None:
    # ROUNDDOWN(ROUNDDOWN(0.0123 × 1234.5, 2) × 0.912345678, 2): 15.18435 → 15.18 → 13.849... → 13.84
    assert usage_subtotal(D("0.0123"), D("1234.5"), D("0.912345678")) == D("13.84")
    assert usage_subtotal(D("0.0123"), D("-1234.5"), D("0.912345678")) == D("-13.84")  # toward zero


def test_a_line_matching_only_the_other_formula_is_a_warning() -> None:
    eup, qty, rate = D("0.0123"), D("1234.5"), D("0.912345678")
    seat = seat_subtotal(eup, qty, rate)
    assert seat != usage_subtotal(eup, qty, rate)
    assert check_subtotal(True, eup, qty, rate, seat)[0] == WARNING


def test_hash_set() -> None:
    import numpy as np

    s = HashSet64()
    for k in range(50):
        s.add_sorted_unique(np.arange(k * 10, k * 10 + 10, dtype=np.uint64))
    assert len(s) == 500 and len(s.levels) < 10
    assert s.contains(np.array([0, 499, 500], dtype=np.uint64)).tolist() == [True, True, False]


def _findings(ledger: Ledger, inv, file_type: FileType, batch_rows: int = 40) -> set[tuple]:
    layout = layout_for(file_type)
    rows = [r for _, r in ledger.rows(inv.datasets[file_type])]
    v = Validator(layout, invoice_id=inv.id)
    for k in range(0, len(rows), batch_rows):
        v.begin_segment()
        v.check(batch_from_items(layout, rows[k:k + batch_rows]))
        if k == 0:  # a broken attempt of a segment is forgotten
            v.begin_segment()
            v.check(batch_from_items(layout, rows[k:k + batch_rows]))
        v.end_segment()
    report = v.finish({"id": inv.id, "totalCharges": ledger.total_charges(inv),
                       "billingPeriodStartDate": f"{inv.start.isoformat()}T00:00:00Z"})
    return {(f.rule, f.severity, tuple(sorted(f.key.items()))) for f in report.findings}


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger(World(7, 600), date(2026, 11, 22), 12)


def test_clean_data_has_no_errors(ledger: Ledger) -> None:
    for inv in ledger.invoices():
        for file_type in inv.datasets:
            assert not [f for f in _findings(ledger, inv, file_type) if f[1] != "info"], (inv.id, file_type)


EXPECTED = {"subtotal": ("SUBTOTAL_FORMULA", "error"), "total": ("TOTAL_FORMULA", "error"),
            "duplicate_reference": ("DUPLICATE_REFERENCE", "error"), "duplicate_charge": ("DUPLICATE_CHARGE", "warning"),
            "over_credit": ("OVER_CREDIT", "error"), "exchange_rate": ("EXCHANGE_RATE", "error"),
            "missing_customer": ("MISSING_CUSTOMER", "warning"), "charge_cycle": ("CHARGE_CYCLE", "error"),
            "invoice_total": ("INVOICE_TOTAL", "error")}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_defect_is_found_once_on_its_line(ledger: Ledger, kind: str) -> None:
    inv = next(i for i in ledger.invoices() if not i.legacy)
    ledger.reset()
    clean = _findings(ledger, inv, FileType.ONETIME)
    ledger.add_defect(inv.id, kind)
    try:
        new = _findings(ledger, inv, FileType.ONETIME) - clean
    finally:
        ledger.reset()
    assert len(new) == 1 and next(iter(new))[:2] == EXPECTED[kind], new
    key = dict(next(iter(new))[2])
    if kind == "invoice_total":
        assert key == {"InvoiceNumber": inv.id}
        return
    # the key names the defective line: a served line with that ReferenceId differs from the clean data
    ledger.add_defect(inv.id, kind)
    try:
        served = {r["ReferenceId"]: r for _, r in ledger.rows(inv.datasets[FileType.ONETIME])}
    finally:
        ledger.reset()
    original = {r["ReferenceId"]: r for _, r in ledger.rows(inv.datasets[FileType.ONETIME])}
    assert served[key["ReferenceId"]] != original.get(key["ReferenceId"])


@pytest.mark.parametrize("kind", ["duplicate_charge", "missing_customer"])
def test_daily_usage_defects(ledger: Ledger, kind: str) -> None:
    inv = next(i for i in ledger.invoices() if not i.legacy)
    ledger.reset()
    clean = _findings(ledger, inv, FileType.DAILY, 100)
    ledger.add_defect(inv.id, kind)
    try:
        new = _findings(ledger, inv, FileType.DAILY, 100) - clean
    finally:
        ledger.reset()
    assert [f[:2] for f in new] == [EXPECTED[kind]]
