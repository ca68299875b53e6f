"""Snapshot parts in Azurite: a field that appears half way through a part, a segment read again, v1 pages gathered."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa

from shared.adapters.snapshot_parts import PartWriter, SnapshotSource, total_sums
from shared.adapters.snapshot_store import Snapshot
from shared.core.money import DECIMAL_TYPE

DEC = DECIMAL_TYPE  # the money module's amounts: decimal128(38, 20)


def batch(refs: list[str], amounts: list[str], extra: list[str] | None = None) -> pa.RecordBatch:
    arrays = [pa.array(refs), pa.array([Decimal(a) for a in amounts], DEC)]
    names = ["ReferenceId", "Subtotal"]
    if extra is not None:
        arrays.append(pa.array(extra))
        names.append("NewField")
    return pa.RecordBatch.from_arrays(arrays, names=names)


def read_back(ctx, writer: PartWriter, snapshot_id: str) -> list[pa.RecordBatch]:
    snapshot = Snapshot(snapshot_id, {"source": "graph", "dataVersion": "e1", "parts": writer.manifest_parts()})
    source = SnapshotSource(ctx.storage.files, snapshot)
    return [b for segment in source.segments() for b in segment.read(False)]


def test_a_field_appearing_half_way_continues_the_part_in_a_second_file(ctx) -> None:
    writer = PartWriter(ctx.storage.files, "snapshots/t", ("Subtotal",))
    writer.begin_segment(0)
    writer.write(batch(["a", "b"], ["1.10", "2.20"]))
    writer.write(batch(["c"], ["-0.00000000000000000001"], extra=["x"]))
    writer.end_segment()
    writer.finish({})
    (part,) = writer.manifest_parts()
    assert [f["name"] for f in part["files"]] == ["part-00000-00.parquet", "part-00000-01.parquet"]
    assert part["rows"] == 3 and Decimal(part["sums"]["Subtotal"]) == Decimal("3.29999999999999999999")
    got = read_back(ctx, writer, "snapshots/t")
    assert [b.schema.names for b in got] == [["ReferenceId", "Subtotal"], ["ReferenceId", "Subtotal", "NewField"]]
    assert [r["ReferenceId"] for b in got for r in b.to_pylist()] == ["a", "b", "c"]
    assert got[1].column("Subtotal").type == DEC and got[1].to_pylist()[0]["NewField"] == "x"


def test_a_segment_read_again_leaves_nothing_of_its_broken_attempt(ctx) -> None:
    writer = PartWriter(ctx.storage.files, "snapshots/r", ("Subtotal",))
    writer.begin_segment(0)
    writer.write(batch(["a"], ["1"]))
    writer.write(batch(["b"], ["2"], extra=["y"]))  # its first file is uploaded already
    writer.discard_segment()  # the blob broke off: read again
    writer.begin_segment(0)
    writer.write(batch(["a", "b"], ["1", "2"]))
    writer.end_segment()
    writer.finish({})
    names = sorted(b.name for b in ctx.storage.files.list_blobs(name_starts_with="snapshots/r/"))
    assert names == ["snapshots/r/part-00000-00.parquet"]
    assert total_sums(writer.manifest_parts()) == {"Subtotal": "3"}


def test_v1_pages_are_gathered_into_parts(ctx) -> None:
    writer = PartWriter(ctx.storage.files, "snapshots/v", ("Subtotal",), gather_rows=4)
    for page in range(5):
        writer.begin_segment(page)
        writer.write(batch([f"{page}a", f"{page}b"], ["1", "1"]))
        if page == 2:
            writer.discard_segment()  # a page read again is held until its end, never half in a part
            writer.begin_segment(page)
            writer.write(batch([f"{page}a", f"{page}b"], ["1", "1"]))
        writer.end_segment()
    writer.finish({})
    assert [p["rows"] for p in writer.manifest_parts()] == [4, 4, 2]
    got = read_back(ctx, writer, "snapshots/v")
    assert [r["ReferenceId"] for b in got for r in b.to_pylist()] == [f"{p}{x}" for p in range(5) for x in "ab"]
