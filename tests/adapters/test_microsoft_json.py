"""Parsing Microsoft's JSON into exact decimals, both readers, and plain decimal text on the way out."""

from __future__ import annotations

import gzip
import io
import json
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from shared.core.columns import DAILY, ONETIME
from shared.adapters.microsoft_json import (
    FastPathUnsupported,
    batch_from_items,
    decimal_text,
    read_lines_careful,
    read_lines_fast,
    to_decimal_array,
)


def lines(*rows: dict | str) -> io.BytesIO:
    text = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"
    return io.BytesIO(text.encode())


def test_numbers_and_numeric_strings_become_the_same_exact_decimal() -> None:
    raw = '{"Subtotal": 0.1999968000511991808131, "CustomerId": "a"}\n{"Subtotal": "12.5", "CustomerId": "b"}\n'
    batch = pa.Table.from_batches(list(read_lines_fast(ONETIME, io.BytesIO(raw.encode()))))
    assert batch.column("Subtotal").to_pylist() == [Decimal("0.1999968000511991808131"), Decimal("12.5")]
    assert batch.schema.names[: len(ONETIME.columns)] == list(ONETIME.columns)


def test_keys_match_in_any_casing_and_missing_fields_are_empty() -> None:
    batch = next(read_lines_fast(ONETIME, lines({"subtotal": "1.10", "customerid": "x"})))
    assert batch.column("Subtotal").to_pylist() == [Decimal("1.1")]
    assert batch.column("CustomerId").to_pylist() == ["x"]
    assert batch.column("ReferenceId").to_pylist() == [None]


def test_unknown_fields_are_kept_after_microsofts_columns() -> None:
    batch = next(read_lines_fast(ONETIME, lines({"Subtotal": 1, "BrandNewField": "kept"})))
    assert batch.schema.names[-1] == "BrandNewField"
    assert batch.column("BrandNewField").to_pylist() == ["kept"]


@pytest.mark.parametrize("row", [
    {"Subtotal": 1, "MpnId": 1234567},            # a number where text is expected
    {"Subtotal": 1, "ProductQualifiers": ["AddOn"]},  # an array
    {"Subtotal": 1, "Extra": True},               # a boolean field Microsoft added
])
def test_fast_path_hands_odd_rows_to_the_careful_reader(row: dict) -> None:
    with pytest.raises(FastPathUnsupported):
        list(read_lines_fast(ONETIME, lines(row)))
    batch = next(read_lines_careful(ONETIME, lines(row)))
    assert batch.column("Subtotal").to_pylist() == [Decimal(1)]


def test_careful_reader_keeps_text_of_odd_values() -> None:
    batch = next(read_lines_careful(ONETIME, lines({"MpnId": 1234567, "ProductQualifiers": ["AddOn", "Trial"],
                                                    "Flag": True, "Subtotal": "-3.50"})))
    assert batch.column("MpnId").to_pylist() == ["1234567"]
    assert batch.column("ProductQualifiers").to_pylist() == ['["AddOn","Trial"]']
    assert batch.column("Flag").to_pylist() == ["true"]
    assert batch.column("Subtotal").to_pylist() == [Decimal("-3.5")]


def test_v1_keys_and_aliases_map_to_microsofts_columns() -> None:
    batch = batch_from_items(ONETIME, [{"totalForCustomer": "10.01", "pcToBCExchangeRate": 0.5, "attributes": {}}])
    assert batch.column("Total").to_pylist() == [Decimal("10.01")]
    assert "attributes" not in batch.schema.names
    daily = batch_from_items(DAILY, [{"resellerMpnId": "123", "unitOfMeasure": "1 Hour"}])
    assert daily.column("Tier2MpnId").to_pylist() == ["123"]
    assert daily.column("Unit").to_pylist() == ["1 Hour"]


def test_extra_field_appearing_late_is_padded_for_earlier_rows() -> None:
    batch = batch_from_items(ONETIME, [{"Subtotal": "1"}, {"Subtotal": "2", "Later": "x"}])
    assert batch.column("Later").to_pylist() == [None, "x"]


def test_text_in_an_amount_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Subtotal"):
        batch_from_items(ONETIME, [{"Subtotal": "N/A"}])


def test_more_places_than_28_round_half_even() -> None:
    arr = to_decimal_array(["0.12345678901234567890123456785"])
    assert arr.to_pylist() == [Decimal("0.1234567890123456789012345678")]


def test_gzip_stream_reads_like_plain() -> None:
    raw = gzip.compress(b'{"BillingPreTaxTotal": 0.490235765325545}\n')
    batch = next(read_lines_fast(DAILY, gzip.GzipFile(fileobj=io.BytesIO(raw))))
    assert batch.column("BillingPreTaxTotal").to_pylist() == [Decimal("0.490235765325545")]


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=Decimal("-9999999999"), max_value=Decimal("9999999999"), places=12,
                   allow_nan=False, allow_infinity=False))
def test_decimal_text_round_trips_exactly(value: Decimal) -> None:
    text = decimal_text(to_decimal_array([str(value)])).to_pylist()[0]
    assert "E" not in text and "e" not in text
    assert Decimal(text) == value
    assert not (("." in text) and text.endswith("0"))


def test_decimal_text_regional_separator() -> None:
    assert decimal_text(pa.array([Decimal("1234.50")], pa.decimal128(38, 28)), ",").to_pylist() == ["1234,5"]
