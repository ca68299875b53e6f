"""The money module's rules (shared/core/money.py): never float, a 100-digit context, ties away from zero, widened sums,
exact text, and the one home of Decimal in shared/."""

from __future__ import annotations

import subprocess
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from shared.core import money
from shared.core.money import (
    CENT,
    DECIMAL_TYPE,
    LARGEST,
    OutOfRange,
    arrow_sum,
    arrow_text,
    exact_sum,
    parse,
    plain,
    round_half_away,
    rounddown,
    to_decimal,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_type_holds_eighteen_integer_digits_and_twenty_places() -> None:
    assert DECIMAL_TYPE == pa.decimal128(38, 20)
    assert pa.array([LARGEST, LARGEST.copy_negate(), Decimal("12500000000000.01")], DECIMAL_TYPE).to_pylist()[0] \
        == Decimal("999999999999999999.99999999999999999999")


def test_parse_is_exact_and_names_out_of_range() -> None:
    assert parse(" 12500000000000.5 ") == Decimal("12500000000000.5")
    assert parse("0.123456789012345678905") == Decimal("0.12345678901234567890")  # half-even at the 20th place
    with pytest.raises(OutOfRange):
        parse("1000000000000000000")
    for bad in ("abc", "NaN", "Infinity"):
        with pytest.raises(InvalidOperation):
            parse(bad)


def test_sums_never_lose_a_digit() -> None:
    big = Decimal("999999999999999999.99999999999999999999")
    assert exact_sum([big, big, Decimal("0.00000000000000000002")]) == Decimal("2000000000000000000")
    assert big + big != exact_sum([big, big])  # the default 28-digit context rounds: why CONTEXT exists
    # decimal128 sums would overflow past 18 integer digits; widened to decimal256 they do not
    column = pa.array([LARGEST] * 1000, DECIMAL_TYPE)
    assert arrow_sum(column) == exact_sum([LARGEST] * 1000)
    assert arrow_sum(pa.array([None], DECIMAL_TYPE)) == 0


def test_ties_round_half_away_from_zero_and_rounddown_toward_zero() -> None:
    assert round_half_away(Decimal("1.005")) == Decimal("1.01")
    assert round_half_away(Decimal("-1.005")) == Decimal("-1.01")
    assert rounddown(Decimal("-12.345")) == Decimal("-12.34")
    assert rounddown(Decimal("3.9999999999999999999999999999")) == Decimal("3.99")
    assert round_half_away(Decimal("999999999999999999.995")) == Decimal("1000000000000000000.00")  # 21 digits
    assert CENT == Decimal("0.01")


def test_plain_text() -> None:
    assert plain(Decimal("12.5000")) == "12.5"
    assert plain(Decimal("1E+3")) == "1000"
    assert plain(Decimal("-0.000")) == "0"
    assert plain(Decimal("12500000000000.12345678901234567890")) == "12500000000000.1234567890123456789"


def test_to_decimal_never_takes_a_float() -> None:
    assert to_decimal("12.50") == Decimal("12.5") and to_decimal(7) == 7 and to_decimal(None) is None
    with pytest.raises(TypeError):
        to_decimal(0.1)


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=-LARGEST, max_value=LARGEST, places=20, allow_nan=False, allow_infinity=False)
       .filter(lambda v: v.adjusted() < 18))  # hypothesis may round to 10**18 in the default context
def test_arrow_text_is_the_exact_plain_text(value: Decimal) -> None:
    text = arrow_text(pa.array([value], DECIMAL_TYPE)).to_pylist()[0]
    assert text == plain(value)


def test_only_the_money_module_imports_decimal_in_shared() -> None:
    found = subprocess.run(["grep", "-rln", "--include=*.py", "from decimal import", "shared"], cwd=ROOT,
                           capture_output=True, text=True).stdout.split()
    assert found == ["shared/core/money.py"], found
    assert "Decimal" in money.__all__
