"""Which customers and subscriptions belong to which reseller, learned from Microsoft's own lines.

A reseller principal's reach (its customers' views, their customer- and subscription-level rules and identifiers)
is not configured by hand: the worker learns it while it streams a partner-view file, from the lines' reseller
column (`ResellerMpnId`; `Tier2MpnId` in daily rated usage), `CustomerId` and `SubscriptionId`.

Table `ResellerReach`, PartitionKey = tenant id, three kinds of row (ids validated, lower-case GUIDs):

- `r|{mpnId}|{customerId}|{subscriptionId}` (subscription empty when a line has none): what a reseller serves;
  read by one RowKey range query per reseller id.
- `c|{customerId}|{mpnId}`: who serves a customer; read once per indexing run, to find shared customers.
- `s|{customerId}`: a customer served by more than one reseller. Its customer-level rules and identifiers would
  change, and reveal, another reseller's prices, so they stay with the partner; each reseller still gets the
  customer view of its own lines. A marker is never removed (once shared, the customer stays the partner's).

Rows have deterministic keys and fixed contents, and only rows the index lacks are written (upserts), so a
redelivered message re-indexes harmlessly and next month's file writes next to nothing; the `c|` rows are written
before they are read, so two files indexed at once cannot both miss a shared customer.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from azure.data.tables import UpdateMode

from shared.columns import Layout
from shared.margins import DIRECT_RESELLER_IDS
from shared.models import GUID_PATTERN, MPN_ID_PATTERN
from shared.principals import Reach
from shared.storage import Storage

log = logging.getLogger(__name__)

TABLE = "ResellerReach"
BATCH = 100  # entities per table transaction (the service's limit)
WRITERS = 4  # transactions in flight at once

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
    memory grows with distinct keys, not lines. Ids are checked and normalised once, at the end (`valid`).
    Reading a segment again adds nothing new."""

    layout: Layout
    keys: set[str] = field(default_factory=set)

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
        self.keys.update(pc.unique(joined).to_pylist())

    def valid(self) -> set[Triple]:
        """Triples whose ids are well-formed: a reseller (not a direct line: empty, 0, -1), a customer GUID, a
        subscription GUID or nothing; GUIDs lower-case. Anything else cannot become a key and is not reach."""
        out: set[Triple] = set()
        for key in self.keys:
            parts = [p.strip() for p in key.split(SEPARATOR)]
            if len(parts) != 3:
                continue
            reseller, customer, subscription = parts[0], parts[1].lower(), parts[2].lower()
            if reseller in DIRECT_RESELLER_IDS or not _MPN.match(reseller) or int(reseller) <= 0:
                continue
            if not _GUID.match(customer):
                continue
            out.add((reseller, customer, subscription if _GUID.match(subscription) else ""))
        return out


# ---- the index ----------------------------------------------------------------------------------------------------

def _range(prefix: str) -> dict[str, str]:
    """RowKey bounds of every row starting with `prefix` (ids never hold '|', and '}' sorts right after it)."""
    return {"lo": prefix, "hi": prefix[:-1] + "}"}


class ReachIndex:
    """The ResellerReach table: written by the worker, read per request by `resolve` (the `ReachResolver`)."""

    def __init__(self, storage: Storage) -> None:
        self.table = storage.table(TABLE)

    def record(self, tenant_id: str, triples: Iterable[Triple]) -> int:
        """Write what a file's lines showed that the index does not hold yet; returns how many reseller rows were
        new (0 when the same lines are indexed again). Costs one read of the tenant's keys, plus writes for what
        is new: next month's file of the same customers writes next to nothing."""
        tenant_id = tenant_id.lower()
        triples = set(triples)
        if not triples:
            return 0
        held = self._keys(tenant_id)
        pairs = {f"c|{c}|{r}" for r, c, _ in triples}
        new_pairs = sorted(pairs - held)
        self._upsert(tenant_id, [_row(key) for key in new_pairs])
        # who serves this file's customers: read again after writing, so of two files indexed at once, the one
        # that reads last sees the other's pairs too
        pair_keys = self._keys(tenant_id, "c|") if new_pairs else held
        customers = {c for _, c, _ in triples}
        served: dict[str, set[str]] = {}
        for key in pair_keys:
            kind, *ids = key.split(SEPARATOR)
            if kind == "c" and ids[0] in customers:
                served.setdefault(ids[0], set()).add(ids[1])
        shared = {f"s|{c}" for c, resellers in served.items() if len(resellers) > 1}
        new_rows = sorted({f"r|{r}|{c}|{s}" for r, c, s in triples} - held)
        self._upsert(tenant_id, [_row(key) for key in new_rows + sorted(shared - held)])
        log.info("reseller reach indexed: %d of %d rows new, %d shared customers", len(new_rows), len(triples),
                 len(shared), extra={"tenant": tenant_id})
        return len(new_rows)

    def resolve(self, tenant_id: str, reseller_ids: frozenset[str]) -> Reach:
        """Customers and subscriptions of `reseller_ids` in `tenant_id` (one range query per reseller, one for
        the shared customers)."""
        tenant_id = tenant_id.lower()
        customers: set[str] = set()
        subscriptions: set[str] = set()
        for reseller in sorted(r for r in reseller_ids if r and _MPN.match(r)):
            for row in self._query(tenant_id, f"r|{reseller}|"):
                customers.add(row["customer_id"])
                if row.get("subscription_id"):
                    subscriptions.add(row["subscription_id"])
        shared = {row["customer_id"] for row in self._query(tenant_id, "s|")} & customers if customers else set()
        return Reach(frozenset(customers), frozenset(subscriptions), frozenset(shared))

    def __call__(self, tenant_id: str, reseller_ids: frozenset[str]) -> Reach:
        return self.resolve(tenant_id, reseller_ids)

    def _query(self, tenant_id: str, prefix: str, select: list[str] | None = None) -> Iterator[Any]:
        return iter(self.table.query_entities("PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                                              parameters={"pk": tenant_id, **_range(prefix)}, select=select))

    def _keys(self, tenant_id: str, prefix: str | None = None) -> set[str]:
        """The tenant's RowKeys (of one kind, with `prefix`): the index holds its facts in its keys."""
        if prefix is not None:
            return {e["RowKey"] for e in self._query(tenant_id, prefix, ["RowKey"])}
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id}, select=["RowKey"])
        return {e["RowKey"] for e in rows}

    def _upsert(self, tenant_id: str, rows: list[dict[str, Any]]) -> None:
        """Idempotent: a row's key and contents depend only on the ids, so writing it twice changes nothing.
        Transactions of 100 rows, a few at once (one partition takes them in parallel)."""
        ops = [("upsert", {"PartitionKey": tenant_id, **row}, {"mode": UpdateMode.REPLACE}) for row in rows]
        chunks = [ops[i:i + BATCH] for i in range(0, len(ops), BATCH)]
        if len(chunks) <= 1:
            for chunk in chunks:
                self.table.submit_transaction(chunk)
            return
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            list(pool.map(self.table.submit_transaction, chunks))


def _row(key: str) -> dict[str, Any]:
    """An index row from its RowKey: the ids again as properties, for people reading the table."""
    kind, *ids = key.split(SEPARATOR)
    if kind == "r":
        return {"RowKey": key, "kind": "reseller", "reseller_id": ids[0], "customer_id": ids[1],
                "subscription_id": ids[2]}
    if kind == "c":
        return {"RowKey": key, "kind": "customer", "customer_id": ids[0], "reseller_id": ids[1]}
    return {"RowKey": key, "kind": "shared", "customer_id": ids[0]}
