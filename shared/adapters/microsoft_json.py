"""Turning Microsoft's JSON into Arrow record batches with exact decimals.

Two readers produce the same batches:
- the fast path: Arrow's streaming JSON reader over an export blob, with an explicit schema whose money columns
  are decimal128 (Arrow converts JSON numbers *and* numeric strings straight from their text, never via float);
- the careful path: Python's json with every number kept as its text, for v1 pages and for any blob the fast
  path cannot read (a number where text was expected, an array, a boolean, a field that appears mid-blob).

A batch always has the layout's columns, in Microsoft's order, followed by any field Microsoft added that the
layout does not know (kept, as text). Missing fields are nulls.
"""

from __future__ import annotations

import gzip
import json
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from shared.core.columns import Layout

DECIMAL_SCALE = 28
DECIMAL_TYPE = pa.decimal128(38, DECIMAL_SCALE)  # 10 integer digits, 28 places: every C# decimal amount
_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)
JSON_BLOCK_BYTES = 1024 * 1024  # measured: larger blocks buy little speed and cost ~70 MB of RSS


class FastPathUnsupported(Exception):
    """This blob needs the careful reader (the caller restarts the blob with it)."""


class BadValue(ValueError):
    """A value Microsoft sent that cannot be what its column says (e.g. text in an amount)."""


def column_type(layout: Layout, column: str) -> pa.DataType:
    return DECIMAL_TYPE if column in layout.decimal_columns else pa.string()


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def to_decimal_array(values: pa.Array | list[str | None], column: str = "") -> pa.Array:
    """Exact text -> decimal128. Values with more than 28 places are rounded half-even (below 1e-28)."""
    arr = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
    arr = pc.if_else(pc.equal(pc.utf8_trim_whitespace(arr), ""), pa.scalar(None, pa.string()), arr)
    try:
        return pc.cast(arr, DECIMAL_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out = []
        for v in arr.to_pylist():
            if v is None:
                out.append(None)
                continue
            try:
                out.append(Decimal(v.strip()).quantize(_QUANTUM, rounding=ROUND_HALF_EVEN))
            except InvalidOperation as exc:
                raise BadValue(f"Column {column} holds {v!r}, which is not a number.") from exc
        return pa.array(out, DECIMAL_TYPE)


def batch_from_items(layout: Layout, items: Iterable[dict[str, Any]]) -> pa.RecordBatch:
    """The careful path: JSON objects (numbers as text) -> one canonical batch."""
    known: dict[str, list[Any]] = {c: [] for c in layout.columns}
    extra: dict[str, list[Any]] = {}
    extra_names: dict[str, str] = {}  # lower-case key -> first spelling seen
    n = 0
    for item in items:
        seen: set[str] = set()
        for key, value in item.items():
            column = layout.column_for_key(key)
            if column is None:
                if key in ("attributes", "invoiceLineItemType", "billingProvider") or key.startswith("@"):
                    continue  # envelope metadata of the v1 API, not a charge field
                column = extra_names.setdefault(key.lower(), key)
                target = extra.setdefault(column, [None] * n)
            else:
                target = known[column]
            if column in seen:
                continue
            seen.add(column)
            target.append(_text(value))
        n += 1
        for column, values in (*known.items(), *extra.items()):
            if len(values) < n:
                values.append(None)
    arrays = [
        to_decimal_array(known[c], c) if c in layout.decimal_columns else pa.array(known[c], pa.string())
        for c in layout.columns
    ]
    arrays += [pa.array(v, pa.string()) for v in extra.values()]
    return pa.RecordBatch.from_arrays(arrays, names=[*layout.columns, *extra.keys()])


def _loads(line: bytes) -> dict[str, Any]:
    return json.loads(line, parse_float=str, parse_int=str)


def read_lines_careful(layout: Layout, source: BinaryIO | Path, batch_rows: int = 20_000) -> Iterator[pa.RecordBatch]:
    """JSON lines, one Python object at a time, in batches: slower, accepts anything well-formed.

    `source` is a stream of JSON lines, or the path of a gzip file of them (an export blob)."""
    if isinstance(source, Path):
        with gzip.open(source, "rb") as stream:
            yield from read_lines_careful(layout, stream, batch_rows)  # type: ignore[arg-type]
        return
    stream = source
    chunk: list[dict[str, Any]] = []
    for line in stream:
        if line.strip():
            chunk.append(_loads(line))
        if len(chunk) >= batch_rows:
            yield batch_from_items(layout, chunk)
            chunk = []
    if chunk:
        yield batch_from_items(layout, chunk)


def _peek_first_line(stream: BinaryIO) -> tuple[bytes, dict[str, Any] | None]:
    first = b""
    while not first.strip():
        line = stream.readline()
        if not line:
            return first, None
        first += line
    return first, _loads(first)


class _Prefixed:
    """A byte stream with some already-read bytes put back in front (Arrow reads from `read`)."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest, self.closed = head, rest, False

    def read(self, size: int = -1) -> bytes:
        if self.head:
            if size < 0:
                out, self.head = self.head + self.rest.read(), b""
                return out
            out, self.head = self.head[:size], self.head[size:]
            if len(out) < size:
                out += self.rest.read(size - len(out))
            return out
        return self.rest.read(size)


def read_lines_fast(layout: Layout, source: BinaryIO | Path) -> Iterator[pa.RecordBatch]:
    """Arrow's streaming JSON reader. Raises FastPathUnsupported when the blob needs the careful reader.

    `source` is a stream of JSON lines, or the path of a gzip file of them (an export blob): that one Arrow
    decompresses and parses natively, in its own threads, without Python's lock.
    """
    if isinstance(source, Path):
        with gzip.open(source, "rb") as peek:
            head, first = _peek_first_line(peek)  # type: ignore[arg-type]
        data = pa.CompressedInputStream(pa.OSFile(str(source)), "gzip")  # from the start: the first line too
    else:
        head, first = _peek_first_line(source)
        data = pa.PythonFile(_Prefixed(head, source), mode="r")
    if first is None:
        return
    fields, rename = [], {}
    for key, value in first.items():
        column = layout.column_for_key(key)
        if column is None:
            if not (isinstance(value, str) or value is None):
                raise FastPathUnsupported(f"unknown non-text field {key}")
            fields.append(pa.field(key, pa.string()))
            rename[key] = key
        else:
            fields.append(pa.field(key, column_type(layout, column)))
            rename[key] = column
    # Layout columns absent from the first line: declare them in Microsoft's casing (so they parse if they
    # turn up later in the blob); a different casing later would be an unexpected field -> careful path.
    present = set(rename.values())
    for column in layout.columns:
        if column not in present:
            fields.append(pa.field(column, column_type(layout, column)))
            rename[column] = column
    schema = pa.schema(fields)
    # Fields that appear only later in the blob are inferred by Arrow; `_checked` sends the blob to the careful
    # reader if one of them came out as a float (not exact), a nested value, or a known column in other casing.
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer", newlines_in_values=False)
    try:
        reader = pj.open_json(data, parse_options=parse,
                              read_options=pj.ReadOptions(block_size=JSON_BLOCK_BYTES, use_threads=True))
        for batch in reader:
            yield canonical(layout, _checked(layout, batch, rename), rename)
    except pa.ArrowInvalid as exc:
        raise FastPathUnsupported(str(exc)[:200]) from exc
    finally:
        if isinstance(source, Path):
            data.close()  # ours; a stream given by the caller is the caller's to close


def _checked(layout: Layout, batch: pa.RecordBatch, declared: dict[str, str]) -> pa.RecordBatch:
    for name, arr in zip(batch.schema.names, batch.columns):
        if name in declared:
            continue
        if layout.column_for_key(name) is not None:
            raise FastPathUnsupported(f"field {name} in another casing")
        kind = arr.type
        if not (pa.types.is_string(kind) or pa.types.is_null(kind) or pa.types.is_integer(kind)
                or pa.types.is_boolean(kind)):
            raise FastPathUnsupported(f"field {name} arrived as {kind}")
    return batch


def canonical(layout: Layout, batch: pa.RecordBatch, rename: dict[str, str]) -> pa.RecordBatch:
    """Reorder to Microsoft's columns, then extras; fill absent columns with nulls."""
    by_name = {rename.get(name, name): batch.column(i) for i, name in enumerate(batch.schema.names)}
    arrays, names = [], []
    for column in layout.columns:
        arr = by_name.pop(column, None)
        arrays.append(arr if arr is not None else pa.nulls(batch.num_rows, column_type(layout, column)))
        names.append(column)
    for name, arr in by_name.items():
        if pa.types.is_boolean(arr.type):
            arr = pc.if_else(arr, "true", "false")
        arrays.append(arr if arr.type == pa.string() else pc.cast(arr, pa.string()))
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


# ---- output formatting -----------------------------------------------------------------------------------------

_TINY = Decimal("0.000001")


def _tiny_text(tiny: pa.Array) -> pa.Array:
    """Arrow writes |x| < 1e-6 as 1.0E-7. Shifted by one away from zero they print plainly ("1.0000001"), and
    the leading 1 becomes the 0 it stood for: exact, and still vectorised."""
    wide = pc.cast(tiny, pa.decimal256(40, tiny.type.scale))
    one = pa.scalar(Decimal(1), pa.decimal256(40, tiny.type.scale))
    shifted = pc.if_else(pc.less(wide, 0), pc.subtract(wide, one), pc.add(wide, one))
    # RE2 replacement "\\10" is group 1 (the sign) followed by "0".
    return pc.replace_substring_regex(pc.cast(shifted, pa.string()), pattern=r"^(-?)1", replacement=r"\10",
                                      max_replacements=1)


def decimal_text(arr: pa.Array, decimal_separator: str = ".") -> pa.Array:
    """Decimals as plain text without trailing zeros (never scientific notation): 12.50 -> "12.5".

    With more than 6 places Arrow writes 0 as "0E-28" and 0 < |x| < 1e-6 as "1.0E-7": those are found by value
    (cheaper than searching every text for an "E", which measured a sixth of the CSV's cost) and rewritten."""
    text = pc.cast(arr, pa.string())
    zero = None
    if arr.type.scale > 6 and pc.any(pc.less(pc.abs(arr), pa.scalar(_TINY, arr.type))).as_py():  # else none
        zero = pc.equal(arr, pa.scalar(Decimal(0), arr.type))
        tiny = pc.fill_null(pc.and_(pc.less(pc.abs(arr), pa.scalar(_TINY, arr.type)), pc.invert(zero)), False)
        if pc.any(tiny).as_py():
            text = pc.replace_with_mask(text, tiny, _tiny_text(pc.filter(arr, tiny)))
    if arr.type.scale > 0:  # every value then has a point: trailing zeros, then a bare point, can go
        text = pc.ascii_rtrim(pc.ascii_rtrim(text, characters="0"), characters=".")
    if zero is not None:
        text = pc.if_else(zero, "0", text)
    if decimal_separator != ".":
        text = pc.replace_substring(text, ".", decimal_separator)
    return text
