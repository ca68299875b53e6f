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
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from shared.core.columns import Layout
from shared.core.money import DECIMAL_TYPE, LARGEST, InvalidOperation, OutOfRange, parse

# Arrow's streaming JSON reader costs ~70 bytes of resident memory per byte of block (measured: 1 MiB blocks
# +72 MB, 512 KiB +37 MB, same speed), and fixes its schema at the first block: a field first seen in a later block
# stops it. So blocks are small, and the fields of the first PEEK_BYTES of a blob are found beforehand
# (`_fields_ahead`) and declared.
JSON_BLOCK_BYTES = 512 * 1024
PEEK_BYTES = 1024 * 1024
# A 512 KiB block is ~280 daily-usage lines; the checks and reordering below cost about a millisecond a batch
# whatever its size, so the reader's batches are joined to this many lines first (measured: 3 s less at 1 M lines).
FAST_BATCH_ROWS = 1_536


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
    """Exact text -> DECIMAL_TYPE. Values with more than 20 places are rounded half-even (below 1e-20); a value
    of 10**18 or more is refused as out of range (shared.core.money)."""
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
                out.append(parse(v))
            except OutOfRange as exc:
                raise BadValue(f"Column {column} holds {v.strip()!r}, which is out of range: amounts must be "
                               f"smaller than 10^18 in absolute value.") from exc
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


def _more_lines(stream: BinaryIO) -> bytes:
    """About PEEK_BYTES of whole lines after the first (fewer at the end of the stream)."""
    more = stream.read(PEEK_BYTES)
    return more + stream.readline() if more and not more.endswith(b"\n") else more


_AHEAD_TYPES = (pa.types.is_string, pa.types.is_integer, pa.types.is_boolean)


def _fields_ahead(lines: bytes) -> list[pa.Field]:
    """The text, integer and boolean fields of these lines, as Arrow infers them over all of them (its non-streaming
    reader unifies the blocks' fields). Anything else stays undeclared: where Arrow meets it, `_checked` or the
    reader itself sends the blob to the careful path, as before."""
    if not lines.strip():
        return []
    try:
        table = pj.read_json(pa.BufferReader(lines),
                             read_options=pj.ReadOptions(block_size=256 * 1024, use_threads=False),
                             parse_options=pj.ParseOptions(newlines_in_values=False))
    except pa.ArrowInvalid:
        return []  # the streaming reader will say so, with its own fallback
    return [f for f in table.schema if any(test(f.type) for test in _AHEAD_TYPES)]


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
            more = _more_lines(peek)  # type: ignore[arg-type]
        data = pa.CompressedInputStream(pa.OSFile(str(source)), "gzip")  # from the start: the first line too
    else:
        head, first = _peek_first_line(source)
        more = _more_lines(source)
        data = pa.PythonFile(_Prefixed(head + more, source), mode="r")
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
    for field in _fields_ahead(more):  # fields first seen after the first line, within PEEK_BYTES
        if field.name not in rename and layout.column_for_key(field.name) is None:
            fields.append(field)
            rename[field.name] = field.name
    schema = pa.schema(fields)
    # Fields that appear only later in the blob are inferred by Arrow; `_checked` sends the blob to the careful
    # reader if one of them came out as a float (not exact), a nested value, or a known column in other casing.
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer", newlines_in_values=False)
    try:
        reader = pj.open_json(data, parse_options=parse,
                              read_options=pj.ReadOptions(block_size=JSON_BLOCK_BYTES, use_threads=True))
        for batch in _joined(reader, FAST_BATCH_ROWS):
            yield canonical(layout, _in_range(_checked(layout, batch, rename)), rename)
    except pa.ArrowInvalid as exc:
        raise FastPathUnsupported(str(exc)[:200]) from exc
    finally:
        if isinstance(source, Path):
            data.close()  # ours; a stream given by the caller is the caller's to close


def _joined(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Consecutive batches joined to at least `rows` lines (the last may be fewer); one schema throughout (the
    streaming reader's, fixed at its first block)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)
            pending, count = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


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


_LARGEST = pa.scalar(LARGEST, DECIMAL_TYPE)
_SMALLEST = pa.scalar(LARGEST.copy_negate(), DECIMAL_TYPE)  # (unary minus would round in the default context)


def _in_range(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Arrow's JSON reader can let a 19-digit integer into decimal128(38, 20) unchecked (it still fits 128 bits):
    a batch with any |value| >= 10**18 goes to the careful reader, which names it as out of range."""
    for arr in batch.columns:
        if pa.types.is_decimal(arr.type) and arr.null_count < len(arr):
            extremes = pc.min_max(arr)  # compared as the 128-bit integers they are stored as
            if pc.greater(extremes["max"], _LARGEST).as_py() or pc.less(extremes["min"], _SMALLEST).as_py():
                raise FastPathUnsupported("a value out of range")
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
