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
from shared.core.validation import ERROR, WARNING, Validator, later_copies, check_subtotal, rounddown, seat_subtotal, \
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


def test_later_copies_are_every_copy_of_a_key_but_its_first_line() -> None:
    import numpy as np

    hashes = np.array([5, 7, 5, 9, 7, 5], dtype=np.uint64)
    lines = np.array([10, 11, 3, 12, 40, 13], dtype=np.int64)  # in no particular order: line numbers decide
    assert later_copies(hashes, lines).tolist() == [10, 13, 40]
    assert later_copies(np.zeros(0, np.uint64), np.zeros(0, np.int64)).tolist() == []


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
            "invoice_total": ("INVOICE_TOTAL", "error"), "no_cost": ("MISSING_COST", "error"),
            "duplicate_charge_far": ("DUPLICATE_CHARGE", "warning"),
            "missing_customer_far": ("MISSING_CUSTOMER", "warning")}
DAILY_ONLY = {"duplicate_charge_far", "missing_customer_far", "exchange_rate_tail"}


@pytest.mark.parametrize("kind", sorted(KINDS - DAILY_ONLY))
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


@pytest.mark.parametrize("kind", ["duplicate_charge", "missing_customer", "duplicate_charge_far",
                                  "missing_customer_far"])
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


# ---- exact means exact (issue 14, defect 6) ---------------------------------------------------------------------

def test_seat_formula_is_exact_like_csharp_decimal() -> None:
    """Python's default 28-digit context rounds 1.3333333333333333333333333333 × 3 up to 4 (then 4.00); C#'s
    decimal keeps 3.9999999999999999999999999999 and ROUNDDOWN gives 3.99."""
    assert seat_subtotal(D("1.3333333333333333333333333333"), D(1), D(3)) == D("3.99")
    assert usage_subtotal(D("1.3333333333333333333333333333"), D(3), D(1)) == D("3.99")


def _line(ref: str, **values: str | None) -> dict:
    base = {"ReferenceId": ref, "CustomerId": "c1", "SubscriptionId": "s-" + ref, "ChargeType": "new",
            "UnitType": "", "BillingFrequency": "", "EffectiveUnitPrice": "10", "BillableQuantity": "1",
            "PCToBCExchangeRate": "1", "Subtotal": "10", "TaxTotal": "1.9", "Total": "11.9",
            "PricingCurrency": "EUR", "Currency": "EUR", "PCToBCExchangeRateDate": "2026-10-01"}
    return {**base, **values}


def _report(*lines: dict, invoice: dict | None = None):
    layout = layout_for(FileType.ONETIME)
    v = Validator(layout, invoice_id="G1")
    v.begin_segment()
    v.check(batch_from_items(layout, list(lines)))
    v.end_segment()
    return v.finish(invoice)


def _rules(report) -> list[tuple[str, str, str | None]]:
    return sorted((f.rule, f.severity, f.key.get("ReferenceId")) for f in report.findings)


def test_the_float_screen_does_not_skip_a_value_exactly_on_a_cent_boundary() -> None:
    # 1.33333333333333333333 × 3 is 4.0 in float (frac == 0, skipped before); exactly it is 3.99999999999999999999
    report = _report(_line("a", EffectiveUnitPrice="1.33333333333333333333", PCToBCExchangeRate="3",
                           Subtotal="4.00", TaxTotal="0", Total="4.00"))
    assert _rules(report) == [("SUBTOTAL_FORMULA", ERROR, "a")]
    assert (report.findings[0].expected, report.findings[0].actual) == ("3.99", "4")


def test_the_total_check_has_no_tolerance() -> None:
    report = _report(_line("a"), _line("b", Total="11.9000001"), _line("c", Total="11.90000000000000000001"))
    assert _rules(report) == [("TOTAL_FORMULA", ERROR, "b"), ("TOTAL_FORMULA", ERROR, "c")]


def test_large_amounts_are_checked_exactly() -> None:
    big = _line("a", UnitType="1 Hour", EffectiveUnitPrice="98425.19685", BillableQuantity="5000",
                PCToBCExchangeRate="25400", Subtotal="12499999999950", TaxTotal="1249999999995",
                Total="13749999999945")
    assert _report(big, invoice={"id": "G1", "totalCharges": "13749999999945"}).findings == []
    off = _report({**big, "Subtotal": "12499999999950.01", "Total": "13749999999945.01"},
                  invoice={"id": "G1", "totalCharges": "13749999999945"})
    assert _rules(off) == [("INVOICE_TOTAL", ERROR, None), ("SUBTOTAL_FORMULA", ERROR, "a")]


# ---- a line with no cost (defect 5) ------------------------------------------------------------------------------

def test_a_line_without_cost_is_an_error_and_is_counted() -> None:
    from shared.core.margins import Mappings
    from shared.core.reconcile import FilePlan

    lines = [_line("a"), _line("b", Subtotal=None, TaxTotal=None, Total="100")]
    assert _rules(_report(*lines)) == [("MISSING_COST", ERROR, "b")]
    layout = layout_for(FileType.ONETIME)
    out, tally = FilePlan(layout, [], Mappings()).process(batch_from_items(layout, lines))
    assert tally.no_cost_lines == 1 and tally.rows == 2
    assert tally.sums.cost == D(10) and tally.sums.microsoft_total == D("111.9")


# ---- duplicates as the README says (defect 14) --------------------------------------------------------------------

def test_an_exact_duplicate_line_is_a_duplicate_reference_and_a_duplicate_charge() -> None:
    report = _report(_line("a"), _line("a"), _line("z", SubscriptionId="s-a"))
    assert _rules(report) == [("DUPLICATE_CHARGE", WARNING, "a"), ("DUPLICATE_CHARGE", WARNING, "z"),
                              ("DUPLICATE_REFERENCE", ERROR, "a")]


# ---- credits for a cycle billed earlier (defect 14) ---------------------------------------------------------------

def _seat(ref: str, charge: str, quantity: int, eup: str, start: str, end: str, sub_start: str = "2026-03-15",
          frequency: str = "Monthly", sub: str = "s49") -> dict:
    subtotal = rounddown(D(eup)) * quantity
    return _line(ref, SubscriptionId=sub, ChargeType=charge, BillableQuantity=str(quantity), EffectiveUnitPrice=eup,
                 Subtotal=str(subtotal), TaxTotal="0", Total=str(subtotal), BillingFrequency=frequency,
                 ChargeStartDate=f"{start}T00:00:00Z", ChargeEndDate=f"{end}T00:00:00Z",
                 SubscriptionStartDate=f"{sub_start}T00:00:00Z", SubscriptionEndDate="2027-03-14T00:00:00Z")


MAY = {"id": "G1", "billingPeriodStartDate": "2026-05-01T00:00:00Z"}


def test_a_credit_for_a_cycle_billed_in_an_earlier_invoice_is_a_warning_with_the_reason() -> None:
    """The issue's case: cycle Apr 15 – May 14 charged in April's invoice; May's holds +2 seats and −5 seats."""
    report = _report(_seat("add", "addQuantity", 2, "8", "2026-05-03", "2026-05-14"),
                     _seat("rem", "removeQuantity", -5, "11.2", "2026-05-05", "2026-05-14"), invoice=MAY)
    assert _rules(report) == [("OVER_CREDIT", WARNING, "rem")]
    assert "started on 2026-04-15, before this invoice's billing period (2026-05-01)" in report.findings[0].message
    annual = _report(_seat("add", "addQuantity", 1, "300", "2026-05-02", "2027-01-19", "2026-01-20", "Annual", "s57"),
                     _seat("rem", "removeQuantity", -3, "299", "2026-05-04", "2027-01-19", "2026-01-20", "Annual",
                           "s57"), invoice=MAY)
    assert _rules(annual) == [("OVER_CREDIT", WARNING, "rem")]


def test_a_credit_beyond_a_charge_of_the_same_period_within_the_invoice_is_an_error() -> None:
    report = _report(_seat("new", "new", 2, "10", "2026-05-15", "2026-06-14", "2026-05-15"),
                     _seat("rem", "removeQuantity", -3, "10", "2026-05-16", "2026-06-14", "2026-05-15"), invoice=MAY)
    assert _rules(report) == [("OVER_CREDIT", ERROR, "rem")]


def test_simulated_removals_of_cycles_billed_a_month_earlier_raise_no_error(ledger: Ledger) -> None:
    """The dong invoices (devtools/simulator/vnd.py): removals in the second refund cycles billed in the first."""
    try:
        invoices = ledger.publish_vnd()
        for inv in invoices:
            findings = _findings(ledger, inv, FileType.ONETIME, batch_rows=3)
            assert not [f for f in findings if f[1] == ERROR], findings
        assert sorted(f[:2] for f in _findings(ledger, invoices[1], FileType.ONETIME)) == \
            [("OVER_CREDIT", WARNING), ("OVER_CREDIT", WARNING)]
    finally:
        ledger.reset()
