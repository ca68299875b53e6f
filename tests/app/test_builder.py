"""The pieces that keep a million-line file fast and small: batch coalescing, vectorised key hashing, the hash
set, block uploads that overlap segments (and still fail loudly), native gzip reading, allocator settings."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from azure.core.exceptions import ResourceNotFoundError
from hypothesis import given, settings, strategies as st

from shared.app.builder import _batches
from shared.core.columns import FileType, layout_for
from shared.app.context import AppContext
from shared.adapters.microsoft_json import read_lines_careful, read_lines_fast
from shared.core.validation.duplicates import later_copies
from shared.core.validation.hashing import _column_hash, _string_hashes
from shared.adapters.file_writers import BlockBlobSink


def _batch(values: list[int], name: str = "n") -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(values, pa.int64())], names=[name])


def test_small_batches_are_joined_in_order_and_a_new_schema_starts_a_new_batch() -> None:
    pieces = [_batch([1, 2]), _batch([]), _batch([3]), _batch([4, 5, 6]), _batch([7], "other"), _batch([8])]
    out = list(_batches(iter(pieces), min_rows=3))
    assert [b.num_rows for b in out] == [3, 3, 1, 1]
    assert [b.schema.names[0] for b in out] == ["n", "n", "other", "n"]
    assert sum((b.column(0).to_pylist() for b in out), []) == [1, 2, 3, 4, 5, 6, 7, 8]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=40)), min_size=1, max_size=80), st.integers(0, 79))
def test_a_string_hashes_the_same_wherever_it_sits(values: list[str | None], cut: int) -> None:
    arr = pa.array(values, pa.string())
    whole = _string_hashes(arr)
    cut = min(cut, len(values))
    assert (_string_hashes(arr.slice(cut)) == whole[cut:]).all()  # slices share the buffers at an offset
    assert (_column_hash(arr) == whole).all()  # through the per-batch dictionary too
    for v, h in zip(values, whole):
        if v is not None:
            assert h == _string_hashes(pa.array([v]))[0]
    distinct = {v: int(h) for v, h in zip(values, whole) if v is not None}
    assert len(set(distinct.values())) == len(distinct)  # no collision among these


def test_hashes_tell_apart_what_a_naive_sum_would_not() -> None:
    tricky = ["", "\x00", "\x00\x00", "ab", "ba", "a", "aa", "/subscriptions/1/rg", "/subscriptions/1/rh", None]
    hashes = [int(h) for h in _string_hashes(pa.array(tricky, pa.string()))]
    assert len(set(hashes)) == len(tricky)


def test_later_copies_match_a_python_set_over_many_lines() -> None:
    rng = np.random.default_rng(7)
    hashes = rng.integers(0, 3000, size=20_000).astype(np.uint64)  # many repeats
    seen: set[int] = set()
    expected = []
    for line, h in enumerate(hashes.tolist()):
        if h in seen:
            expected.append(line)
        seen.add(h)
    shuffled = rng.permutation(len(hashes))
    assert later_copies(hashes[shuffled], shuffled.astype(np.int64)).tolist() == expected


def test_a_failed_block_upload_fails_the_file_even_though_segments_do_not_wait(ctx: AppContext) -> None:
    blob = ctx.storage.blob_service.get_blob_client("no-such-container", "t/refused.csv")  # Azurite answers 404
    sink = BlockBlobSink(blob, block_size=64 * 1024)
    sink.begin_segment(0)
    sink.write(b"x" * 100_000)
    with pytest.raises(ResourceNotFoundError):
        sink.end_segment()
        sink.begin_segment(1)
        sink.write(b"y")
        sink.end_segment()
        sink.commit(b"h\n", "text/csv", {})


def test_segments_that_do_not_wait_for_their_uploads_still_commit_in_order(ctx: AppContext) -> None:
    blob = ctx.storage.files.get_blob_client("t/md5.csv")
    sink = BlockBlobSink(blob, block_size=64 * 1024)
    for segment in range(3):
        sink.begin_segment(segment)
        sink.write(bytes([65 + segment]) * 150_000)
        sink.end_segment()
    sink.commit(b"h\n", "text/csv", {})
    data = blob.download_blob().readall()
    assert data == b"h\n" + b"A" * 150_000 + b"B" * 150_000 + b"C" * 150_000
    staged = blob.get_block_list("committed")[0]
    assert [b.size for b in staged] == [2, 150_000, 150_000, 150_000]  # the header block, staged last, comes first


def _gzip_file(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "part-00000.json.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    return path


def test_an_export_blob_on_disk_reads_the_same_natively_and_carefully(tmp_path: Path) -> None:
    layout = layout_for(FileType.DAILY)
    rows = [{"CustomerId": f"c{i}", "BillingPreTaxTotal": f"0.{i:03d}0000001", "Quantity": i, "NewField": "kept"}
            for i in range(2_000)]
    path = _gzip_file(tmp_path, rows)
    fast = pa.Table.from_batches(list(read_lines_fast(layout, path)))
    careful = pa.Table.from_batches(list(read_lines_careful(layout, path)))
    assert fast.num_rows == careful.num_rows == 2_000
    for column in ("CustomerId", "BillingPreTaxTotal", "Quantity", "NewField"):
        assert fast.column(column).to_pylist() == careful.column(column).to_pylist()
    assert str(fast.column("BillingPreTaxTotal")[5].as_py()).startswith("0.0050000001")


def test_a_truncated_export_blob_on_disk_is_a_broken_stream(tmp_path: Path) -> None:
    path = _gzip_file(tmp_path, [{"CustomerId": f"c{i}", "Quantity": i} for i in range(50_000)])
    path.write_bytes(path.read_bytes()[:-4000])
    with pytest.raises(OSError):
        list(read_lines_fast(layout_for(FileType.DAILY), path))


def test_memory_settings_put_arrow_on_the_system_allocator() -> None:
    from shared.adapters.memory import configure_memory

    configure_memory()
    assert pa.default_memory_pool().backend_name == "system"


def test_read_ahead_keeps_order_raises_in_the_consumer_and_stops_when_closed() -> None:
    from shared.app.builder import read_ahead

    assert list(read_ahead(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise OSError("truncated")

    got = []
    with pytest.raises(OSError, match="truncated"):
        for item in read_ahead(failing()):
            got.append(item)
    assert got == [1]

    closed = []

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append(True)

    reader = read_ahead(endless(), depth=2)
    assert [next(reader) for _ in range(5)] == [0, 1, 2, 3, 4]
    reader.close()  # the consumer stops early (a broken segment): the producer stops and closes its source
    assert closed == [True]
