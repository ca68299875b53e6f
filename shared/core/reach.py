"""Which reseller serves which customer and subscription, as Microsoft's own lines show it: the pure part.

A reseller principal's reach (its customers' views, their customer- and subscription-level rules and identifiers)
is not configured by hand: it is learned from the lines' reseller column (`ResellerMpnId`; `Tier2MpnId` in daily
rated usage), `CustomerId` and `SubscriptionId`. `ReachCollector` keeps a file's distinct keys while it streams;
`shared.adapters.reach_index` stores and resolves them.

Whose each line is comes from `shared.core.ownership`, the same function the margin engine uses. Direct lines are
kept too, under the owner `DIRECT` ("0"): they make a customer or subscription "shared" (served by more than one
party), never part of a reseller's reach (no reseller principal can hold the id 0).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from shared.core.access import Reach
from shared.core.columns import Layout
from shared.core.models import GUID_PATTERN, MPN_ID_PATTERN
from shared.core.ownership import DIRECT, line_owner

Triple = tuple[str, str, str]  # (owner: reseller MPN id or DIRECT, customer id, subscription id or "")

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
    """Triples whose ids are well-formed: an owner (a reseller's MPN id, or DIRECT for a direct line), a customer
    GUID, a subscription GUID or nothing; GUIDs lower-case. Anything else cannot become a key and is not reach."""
    out: set[Triple] = set()
    for key in keys:
        parts = [p.strip() for p in key.split(SEPARATOR)]
        if len(parts) != 3:
            continue
        reseller, customer, subscription = line_owner(parts[0]), parts[1].lower(), parts[2].lower()
        if reseller != DIRECT and (not _MPN.fullmatch(reseller) or int(reseller) <= 0):
            continue
        if not _GUID.fullmatch(customer):
            continue
        out.add((reseller, customer, subscription if _GUID.fullmatch(subscription) else ""))
    return out


# ---- who is shared, what a reseller reaches ----------------------------------------------------------------------

def shared_of(triples: Iterable[Triple]) -> tuple[set[str], set[str]]:
    """Customers and subscriptions served by more than one party (resellers, or a reseller and the partner
    directly): their configuration stays with the partner for anything new."""
    customers: dict[str, set[str]] = {}
    subscriptions: dict[str, set[str]] = {}
    for owner, customer, subscription in triples:
        customers.setdefault(customer, set()).add(owner)
        if subscription:
            subscriptions.setdefault(subscription, set()).add(owner)
    return ({c for c, o in customers.items() if len(o) > 1}, {s for s, o in subscriptions.items() if len(o) > 1})


def reach_of(triples: Iterable[Triple], reseller_ids: Iterable[str]) -> Reach:
    """What `reseller_ids` serve among `triples`, with the shared ones (what the index answers, computed in memory)."""
    triples = list(triples)
    ids = {line_owner(r) for r in reseller_ids} - {DIRECT}
    customers = {c for o, c, _ in triples if o in ids}
    subscriptions = {s for o, _, s in triples if o in ids and s}
    shared_customers, shared_subscriptions = shared_of(triples)
    return Reach(frozenset(customers), frozenset(subscriptions), frozenset(shared_customers & customers),
                 frozenset(shared_subscriptions & subscriptions))
