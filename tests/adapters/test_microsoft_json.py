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
    BadValue,
    FastPathUnsupported,
    batch_from_items,
    read_lines_careful,
    read_lines_fast,
    to_decimal_array,
)
from shared.core.money import arrow_text as decimal_text


def lines(*rows: dict | str) -> io.BytesIO:
    text = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"
    return io.BytesIO(text.encode())


def test_numbers_and_numeric_strings_become_the_same_exact_decimal() -> None:
    raw = '{"Subtotal": 0.19999680005119918081, "CustomerId": "a"}\n{"Subtotal": "12.5", "CustomerId": "b"}\n'
    batch = pa.Table.from_batches(list(read_lines_fast(ONETIME, io.BytesIO(raw.encode()))))
    assert batch.column("Subtotal").to_pylist() == [Decimal("0.19999680005119918081"), Decimal("12.5")]
    assert batch.schema.names[: len(ONETIME.columns)] == list(ONETIME.columns)


def test_more_than_twenty_places_are_rounded_half_even_by_the_careful_reader() -> None:
    raw = b'{"Subtotal": 0.1999968000511991808150}\n{"Subtotal": "0.1999968000511991808250"}\n'
    with pytest.raises(FastPathUnsupported):
        list(read_lines_fast(ONETIME, io.BytesIO(raw)))
    batch = next(read_lines_careful(ONETIME, io.BytesIO(raw)))
    assert batch.column("Subtotal").to_pylist() == [Decimal("0.19999680005119918082"),
                                                    Decimal("0.19999680005119918082")]


@pytest.mark.parametrize("text", ["12500000000.12", "999999999999999999.99999999999999999999", "-12500000000000",
                                  "5"])
def test_large_amounts_of_every_currency_are_exact_on_both_readers(text: str) -> None:
    """18 integer digits and 20 places (a dong or rupiah line of 10^13 has room to spare)."""
    raw = f'{{"Subtotal": {text}, "Total": "{text}"}}\n{{"Subtotal": "5", "Total": 5}}\n'.encode()
    for reader in (read_lines_fast, read_lines_careful):
        batch = pa.Table.from_batches(list(reader(ONETIME, io.BytesIO(raw))))
        assert batch.column("Subtotal").to_pylist() == [Decimal(text), Decimal(5)], reader
        assert batch.column("Total").to_pylist() == [Decimal(text), Decimal(5)], reader


@pytest.mark.parametrize("text", ["1000000000000000000", "1234567890123456789", "-99999999999999999999.5",
                                  "1E+30"])
def test_an_amount_out_of_range_is_named_so_and_never_a_number_error(text: str) -> None:
    """Before: decimal128(38, 28) held ten integer digits, and the careful path's quantize under Python's default
    28-digit context refused even the "5" beside a large value ("holds '5', which is not a number")."""
    raw = f'{{"Subtotal": "5"}}\n{{"Subtotal": {text}}}\n'.encode()
    with pytest.raises(FastPathUnsupported):
        list(read_lines_fast(ONETIME, io.BytesIO(raw)))
    with pytest.raises(BadValue, match="out of range") as info:
        list(read_lines_careful(ONETIME, io.BytesIO(raw)))
    assert "not a number" not in str(info.value)


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


def test_more_places_than_20_round_half_even() -> None:
    arr = to_decimal_array(["0.123456789012345678905", "0.123456789012345678915", "12500000000000.123456789012345678915"])
    assert arr.to_pylist() == [Decimal("0.12345678901234567890"), Decimal("0.12345678901234567892"),
                               Decimal("12500000000000.12345678901234567892")]


def test_gzip_stream_reads_like_plain() -> None:
    raw = gzip.compress(b'{"BillingPreTaxTotal": 0.490235765325545}\n')
    batch = next(read_lines_fast(DAILY, gzip.GzipFile(fileobj=io.BytesIO(raw))))
    assert batch.column("BillingPreTaxTotal").to_pylist() == [Decimal("0.490235765325545")]


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=Decimal("-999999999999999999"), max_value=Decimal("999999999999999999"), places=20,
                   allow_nan=False, allow_infinity=False))
def test_decimal_text_round_trips_exactly(value: Decimal) -> None:
    text = decimal_text(to_decimal_array([str(value)])).to_pylist()[0]
    assert "E" not in text and "e" not in text
    assert Decimal(text) == value
    assert not (("." in text) and text.endswith("0"))


def test_decimal_text_regional_separator() -> None:
    assert decimal_text(pa.array([Decimal("1234.50")], pa.decimal128(38, 20)), ",").to_pylist() == ["1234,5"]


def _late_field_rows(late_at: int, rows: int = 60) -> list[dict]:
    out = [{"Subtotal": f"{n}.25", "CustomerId": f"c{n:04d}", "Padding": "x" * 40} for n in range(rows)]
    out[late_at]["FutureField"] = "arrived late"
    return out


@pytest.mark.parametrize("as_path", [False, True])
def test_a_field_first_seen_after_the_first_block_stays_on_the_fast_path(monkeypatch, tmp_path, as_path) -> None:
    """Arrow's streaming reader fixes its schema at the first block; the fields of the first PEEK_BYTES are declared
    beforehand, so small blocks do not send a blob with a late field to the slow careful reader."""
    from shared.adapters import microsoft_json

    monkeypatch.setattr(microsoft_json, "JSON_BLOCK_BYTES", 1024)  # ~12 rows a block: the field is in block 4
    rows = _late_field_rows(late_at=45)
    source = lines(*rows)
    if as_path:
        path = tmp_path / "blob.json.gz"
        path.write_bytes(gzip.compress(source.getvalue()))
        source = path
    fast = pa.Table.from_batches(list(read_lines_fast(ONETIME, source)))
    careful = pa.Table.from_batches(list(read_lines_careful(ONETIME, lines(*rows))))
    assert fast.column("FutureField").to_pylist() == [None] * 45 + ["arrived late"] + [None] * 14
    assert fast.schema.names == careful.schema.names
    assert fast.column("Subtotal").to_pylist() == careful.column("Subtotal").to_pylist()


def test_a_field_first_seen_beyond_the_peek_still_goes_to_the_careful_reader(monkeypatch) -> None:
    from shared.adapters import microsoft_json

    monkeypatch.setattr(microsoft_json, "JSON_BLOCK_BYTES", 1024)
    monkeypatch.setattr(microsoft_json, "PEEK_BYTES", 512)
    with pytest.raises(FastPathUnsupported):
        list(read_lines_fast(ONETIME, lines(*_late_field_rows(late_at=45))))
