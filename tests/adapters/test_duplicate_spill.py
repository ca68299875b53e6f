"""The validator's duplicate detection on disk (issue #16, memory flat in N): the same findings as in memory, a
segment read again after a broken attempt forgotten, nothing per line left in the process's memory."""

from __future__ import annotations

import os
import tracemalloc
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from devtools.simulator.defects import KINDS
from devtools.simulator.ledger import Ledger
from devtools.simulator.world import World
from shared.adapters.duplicate_spill import DuplicateSpill
from shared.adapters.microsoft_json import batch_from_items
from shared.core.columns import FileType, layout_for
from shared.core.validation import MemoryDuplicates, Validator


def _keys(first: int, n: int) -> pa.RecordBatch:
    return pa.record_batch({"ReferenceId": [f"r{first + i}" for i in range(n)]})


def test_later_copies_across_segments_and_a_discarded_attempt() -> None:
    spill = DuplicateSpill(partitions=8)
    try:
        spill.begin_segment()
        spill.add("R", np.array([1, 2, 3], np.uint64), 0)
        spill.add_keys(_keys(0, 3), 0)
        spill.end_segment()
        spill.begin_segment()  # a broken attempt: its hashes (a copy of 1, and 2) must not count
        spill.add("R", np.array([1, 2], np.uint64), 3)
        spill.add_keys(_keys(3, 2), 3)
        spill.begin_segment()  # read again: other lines this time
        spill.add("R", np.array([9, 3], np.uint64), 3)
        spill.add_keys(_keys(3, 2), 3)
        spill.end_segment()
        spill.begin_segment()
        spill.add("R", np.array([3, 9, 3, 7], np.uint64), 5)
        spill.add_keys(_keys(5, 4), 5)
        spill.end_segment()
        count, lines = spill.later_copies("R", 10)
        assert count == 4 and lines.tolist() == [4, 5, 6, 7]  # 3 (line 2) and 9 (line 3) are the first copies
        assert spill.later_copies("R", 2)[0] == 4 and spill.later_copies("R", 2)[1].tolist() == [4, 5]
        assert [(batch, row["ReferenceId"]) for batch, row in spill.rows(np.array([4, 7]))] == [(3, "r4"), (5, "r7")]
        assert spill.later_copies("OTHER", 10)[0] == 0
        path = spill.path
        assert os.path.isdir(path)
    finally:
        spill.close()
    assert not os.path.exists(path)  # the temporary files go with the store


def test_spill_and_memory_agree_on_random_hashes_over_many_segments() -> None:
    rng = np.random.default_rng(3)
    spill, memory = DuplicateSpill(partitions=16), MemoryDuplicates()
    try:
        line = 0
        for segment in range(30):
            for store in (spill, memory):
                store.begin_segment()
            n = int(rng.integers(1, 400))
            hashes = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
            hashes[rng.random(n) < 0.2] = np.uint64(12345)  # repeats across segments, in every partition's way
            hashes[: n // 3] = rng.choice(hashes, n // 3)
            if segment % 7 == 3:  # a broken attempt first
                for store in (spill, memory):
                    store.add("C", hashes[::-1].copy(), line)
                    store.begin_segment()
            for store in (spill, memory):
                store.add("C", hashes, line)
                store.end_segment()
            line += n
        assert spill.later_copies("C", 50)[0] == memory.later_copies("C", 50)[0] > 0
        assert spill.later_copies("C", 50)[1].tolist() == memory.later_copies("C", 50)[1].tolist()
    finally:
        spill.close()


def _report(ledger: Ledger, inv, file_type: FileType, duplicates, cap: int, batch_rows: int) -> list[dict]:
    layout = layout_for(file_type)
    rows = [r for _, r in ledger.rows(inv.datasets[file_type])]
    rows = rows + rows[:7] + rows[3:5]  # exact copies at the end, beside the simulator's own
    v = Validator(layout, invoice_id=inv.id, cap=cap, duplicates=duplicates)
    for k in range(0, len(rows), batch_rows):
        v.begin_segment()
        v.check(batch_from_items(layout, rows[k:k + batch_rows]))
        if k == batch_rows:  # a broken attempt of a segment is forgotten
            v.begin_segment()
            v.check(batch_from_items(layout, rows[k:k + batch_rows]))
        v.end_segment()
    report = v.finish({"id": inv.id, "totalCharges": ledger.total_charges(inv),
                       "billingPeriodStartDate": f"{inv.start.isoformat()}T00:00:00Z"})
    return [f.to_dict() for f in report.findings] + [{"counts": sorted(report.counts.items())}]


@pytest.mark.parametrize("cap,batch_rows", [(10_000, 40), (3, 40), (7, 13)])
def test_the_spill_gives_the_same_findings_in_the_same_order(cap: int, batch_rows: int) -> None:
    """Every defect three times, copies at the end: findings.csv (order, cap and counts) as the in-memory store
    gives it, which is the order the lines came in (checked against the former HashSet64 code when it changed)."""
    ledger = Ledger(World(7, 600), date(2026, 11, 22), 12)
    inv = next(i for i in ledger.invoices() if not i.legacy)
    for kind in sorted(KINDS):
        for _ in range(3):
            ledger.add_defect(inv.id, kind)
    try:
        for file_type in inv.datasets:
            memory = _report(ledger, inv, file_type, MemoryDuplicates(), cap, batch_rows)
            spill = _report(ledger, inv, file_type, DuplicateSpill(partitions=4), cap, batch_rows)
            assert spill == memory
            assert any(f.get("rule", "").startswith("DUPLICATE_") for f in spill)
    finally:
        ledger.reset()


def _daily_batches(lines: int, rows_per_batch: int = 2_000):
    """Synthetic daily usage: one real batch of the simulator's, every line made distinct by its ResourceURI."""
    ledger = Ledger(World(7, 600), date(2026, 11, 22), 12)
    inv = next(i for i in ledger.invoices() if not i.legacy)
    layout = layout_for(FileType.DAILY)
    template = batch_from_items(layout, [r for _, r in ledger.rows(inv.datasets[FileType.DAILY])][:rows_per_batch])
    where = template.schema.get_field_index("ResourceURI")
    for first in range(0, lines, template.num_rows):
        uris = pa.array([f"/subscriptions/x/resource-{first + i}" for i in range(template.num_rows)])
        yield template.set_column(where, "ResourceURI", uris)


def _held_after(lines: int) -> int:
    """Python-side memory (numpy included) the validator still holds after `lines` lines, before `finish`."""
    layout = layout_for(FileType.DAILY)
    batches = list(_daily_batches(lines))
    tracemalloc.start()
    try:
        v = Validator(layout, invoice_id="G1", duplicates=DuplicateSpill())
        for k, batch in enumerate(batches):
            if k % 5 == 0:
                v.begin_segment()
            v.check(batch)
            if k % 5 == 4:
                v.end_segment()
        v.end_segment()
        held = tracemalloc.get_traced_memory()[0]
        v.close()
        return held
    finally:
        tracemalloc.stop()


def test_the_validator_memory_does_not_grow_with_the_lines() -> None:
    """20,000 lines and 400,000 lines leave the same memory held: the hashes went to disk (HashSet64 kept 8 bytes a
    line: 2.3 MB more here, measured)."""
    small, large = _held_after(20_000), _held_after(400_000)
    assert large - small < 1_000_000, (small, large)


def test_a_partition_too_big_to_sort_at_once_is_split_and_finds_the_same(monkeypatch) -> None:
    """Past SORT_RECORDS records a partition is split by the next hash bits (so memory at the end stays flat at
    20 M lines): the same later copies, the same first `limit`, and no file left behind."""
    import shared.adapters.duplicate_spill as module

    monkeypatch.setattr(module, "SORT_RECORDS", 16)
    rng = np.random.default_rng(11)
    spill, memory = DuplicateSpill(partitions=2), MemoryDuplicates()
    try:
        line = 0
        for _ in range(12):
            hashes = rng.integers(0, 2**64 - 1, size=300, dtype=np.uint64, endpoint=True)
            hashes[::3] = rng.choice(hashes[:40], 100)  # repeats, within and across segments
            for store in (spill, memory):
                store.begin_segment()
                store.add("C", hashes, line)
                store.end_segment()
            line += len(hashes)
        files = sorted(os.listdir(spill.path))
        assert spill.later_copies("C", 37)[0] == memory.later_copies("C", 37)[0] > 1000
        assert spill.later_copies("C", 37)[1].tolist() == memory.later_copies("C", 37)[1].tolist()
        assert sorted(os.listdir(spill.path)) == files  # the split's files are gone
    finally:
        spill.close()
