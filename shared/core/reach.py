"""Which reseller serves which customer and subscription, as Microsoft's own lines show it: the pure part.

A reseller principal's reach (its customers' views, their customer- and subscription-level rules and identifiers)
is not configured by hand: it is learned from the lines' reseller column (`ResellerMpnId`; `Tier2MpnId` in daily
rated usage), `CustomerId` and `SubscriptionId`. `ReachCollector` keeps a file's distinct keys while it streams;
`shared.adapters.reach_index` stores and resolves them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from shared.core.columns import Layout
from shared.core.margins import DIRECT_RESELLER_IDS
from shared.core.models import GUID_PATTERN, MPN_ID_PATTERN

Triple = tuple[str, str, str]  # (reseller MPN id, customer id, subscription id or "")

_MPN = re.compile(MPN_ID_PATTERN)
_GUID = re.compile(GUID_PATTERN)

# ---- learning it from the lines ---------------------------------------------------------------------------------

SEPARATOR = "|"  # joins a line's ids into one key; an id holding it is malformed and dropped by `valid`


def _text(column: pa.Array) -> pa.Array:
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


@dataclass
class ReachCollector:
    """The distinct (reseller, customer, subscription) keys of a file's lines. Per batch, in Arrow: the three ids
    are joined into one string and `unique` keeps each once, so Python sees only a batch's distinct keys and
    memory grows with distinct keys, not lines. Ids are checked and normalised once per key (`drain`, `valid`).
    Reading a segment again adds nothing new."""

    layout: Layout
    keys: set[str] = field(default_factory=set)
    fresh: set[str] = field(default_factory=set)  # keys seen since the last `drain`

    def add(self, batch: pa.RecordBatch) -> None:
        lay = self.layout
        names = batch.schema.names
        if lay.reseller_column not in names or lay.customer_column not in names or not batch.num_rows:
            return
        sub = (_text(batch.column(lay.subscription_column)) if lay.subscription_column in names
               else pa.nulls(batch.num_rows, pa.string()))
        joined = pc.binary_join_element_wise(_text(batch.column(lay.reseller_column)),
                                             _text(batch.column(lay.customer_column)), sub, SEPARATOR,
                                             null_handling="replace", null_replacement="")
        new = set(pc.unique(joined).to_pylist()) - self.keys
        self.keys |= new
        self.fresh |= new

    def drain(self) -> set[Triple]:
        """The valid triples of the keys seen since the last drain (the worker hands them on segment by segment)."""
        out = _valid(self.fresh)
        self.fresh = set()
        return out

    def valid(self) -> set[Triple]:
        """Every valid triple seen."""
        return _valid(self.keys)


def _valid(keys: Iterable[str]) -> set[Triple]:
    """Triples whose ids are well-formed: a reseller (not a direct line: empty, 0, -1), a customer GUID, a
    subscription GUID or nothing; GUIDs lower-case. Anything else cannot become a key and is not reach."""
    out: set[Triple] = set()
    for key in keys:
        parts = [p.strip() for p in key.split(SEPARATOR)]
        if len(parts) != 3:
            continue
        reseller, customer, subscription = parts[0], parts[1].lower(), parts[2].lower()
        if reseller in DIRECT_RESELLER_IDS or not _MPN.fullmatch(reseller) or int(reseller) <= 0:
            continue
        if not _GUID.fullmatch(customer):
            continue
        out.add((reseller, customer, subscription if _GUID.fullmatch(subscription) else ""))
    return out
