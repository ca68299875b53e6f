"""The names index: learned from a file's lines, written once (a redelivery or next month's file writes only what
changed), resellers of a customer accumulated, names as last seen."""

from __future__ import annotations

import pyarrow as pa

from shared.adapters.names_index import NamesIndex
from shared.core.columns import ONETIME
from shared.core.names import NameEntry, NamesCollector, matches

T = "0e6e8694-4cf8-4c73-8796-2f30d28d88fc"
C1 = "C1C1C1C1-0000-4000-8000-000000000001"
S1 = "51515151-0000-4000-8000-000000000001"


def _batch(rows: list[tuple]) -> pa.RecordBatch:
    names = ["ResellerMpnId", "CustomerId", "CustomerName", "SubscriptionId", "SubscriptionDescription"]
    return pa.RecordBatch.from_arrays([pa.array([r[i] for r in rows], pa.string()) for i in range(5)], names=names)


def test_collector_keeps_valid_ids_and_names() -> None:
    c = NamesCollector(ONETIME)
    c.add(_batch([("1234567", C1, "Fabrikam Ltd", S1, "Microsoft 365 E3 - Fabrikam"),
                  ("", C1, "Fabrikam Ltd", S1, "Microsoft 365 E3 - Fabrikam"),
                  ("0", "not-a-guid", "Nobody", "", ""), ("7654321", C1, None, None, None)]))
    by = {(e.kind, e.id): e for e in c.entries()}
    assert set(by) == {("reseller", "1234567"), ("reseller", "7654321"), ("customer", C1.lower()),
                       ("subscription", S1.lower())}
    assert by[("customer", C1.lower())].name == "Fabrikam Ltd"
    assert by[("customer", C1.lower())].reseller_ids == ("1234567", "7654321")
    sub = by[("subscription", S1.lower())]
    assert (sub.customer_id, sub.customer_name, sub.reseller_ids) == (C1.lower(), "Fabrikam Ltd", ("1234567",))
    assert matches(sub, "e3 fabRIKAM") and not matches(sub, "contoso")


def test_recording_again_writes_nothing_and_merges_resellers(ctx) -> None:
    index = NamesIndex(ctx.storage)
    first = [NameEntry("customer", C1.lower(), "Fabrikam Ltd", reseller_ids=("1234567",))]
    assert index.record(T, first) == 1
    assert index.record(T, first) == 0  # a redelivered message: nothing written
    assert index.record(T, [NameEntry("customer", C1.lower(), None, reseller_ids=("7654321",))]) == 1
    (entry,) = index.list(T)
    assert entry.name == "Fabrikam Ltd" and entry.reseller_ids == ("1234567", "7654321")
