"""The reseller reach index in Table Storage: which customers and subscriptions belong to which reseller.

A reseller principal's reach (its customers' views, their customer- and subscription-level rules and identifiers)
is not configured by hand: the worker learns it while it streams a partner-view file, from the lines' reseller
column (`ResellerMpnId`; `Tier2MpnId` in daily rated usage), `CustomerId` and `SubscriptionId`.

Table `ResellerReach`, PartitionKey = tenant id, two kinds of row (ids validated, lower-case GUIDs):

- `r|{mpnId}|{customerId}|{subscriptionId}` (subscription empty when a line has none): what a reseller serves;
  read by one RowKey range query per reseller id (and all of them, keys only, when a file is indexed). Direct
  lines are rows of the owner `0` (`shared.core.ownership.DIRECT`): the partner serving a customer itself.
- `s|{customerId}` / `u|{subscriptionId}`: a customer / subscription served by more than one party (two resellers,
  or a reseller and the partner directly). No reseller creates configuration for it (each still has the customer
  view of its own lines, and its own earlier rules keep applying to its own lines only). A marker is never
  removed (once shared, the customer stays the partner's).

Rows have deterministic keys and fixed contents, and only rows the index lacks are written (upserts), so a
redelivered message re-indexes harmlessly and next month's file writes next to nothing; new `r|` rows are written
before the tenant's rows are read for shared customers, so two files indexed at once cannot both miss one.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Iterable, Iterator
from typing import Any

from azure.data.tables import UpdateMode

from shared.adapters.storage import Storage
from shared.core.access import Reach
from shared.core.models import MPN_ID_PATTERN
from shared.core.ownership import DIRECT
from shared.core.reach import SEPARATOR, Triple, shared_of

log = logging.getLogger(__name__)

TABLE = "ResellerReach"
BATCH = 100  # entities per table transaction (the service's limit)
WRITERS = 4  # transactions in flight at once

_MPN = re.compile(MPN_ID_PATTERN)


# ---- the index ----------------------------------------------------------------------------------------------------

def _range(prefix: str) -> dict[str, str]:
    """RowKey bounds of every row starting with `prefix` (ids never hold '|', and '}' sorts right after it)."""
    return {"lo": prefix, "hi": prefix[:-1] + "}"}


class ReachIndex:
    """The ResellerReach table: written by the worker, read per request by `resolve` (the `ReachResolver`)."""

    def __init__(self, storage: Storage) -> None:
        self.table = storage.table(TABLE)

    def writer(self, tenant_id: str) -> "ReachWriter":
        """Index one file's lines while it streams (see ReachWriter)."""
        return ReachWriter(self, tenant_id)

    def record(self, tenant_id: str, triples: Iterable[Triple]) -> int:
        """Index what lines showed, at once; returns how many reseller rows were new (0 when the same lines are
        indexed again)."""
        writer = self.writer(tenant_id)
        writer.submit(set(triples))
        return writer.finish()

    def resolve(self, tenant_id: str, reseller_ids: frozenset[str]) -> Reach:
        """Customers and subscriptions of `reseller_ids` in `tenant_id` (one range query per reseller, one for
        the shared customers)."""
        tenant_id = tenant_id.lower()
        customers: set[str] = set()
        subscriptions: set[str] = set()
        for reseller in sorted(r for r in reseller_ids if r and r != DIRECT and _MPN.fullmatch(r)):
            for row in self._query(tenant_id, f"r|{reseller}|"):
                customers.add(row["customer_id"])
                if row.get("subscription_id"):
                    subscriptions.add(row["subscription_id"])
        shared = {row["customer_id"] for row in self._query(tenant_id, "s|")} & customers if customers else set()
        shared_subscriptions = ({row["RowKey"][2:] for row in self._query(tenant_id, "u|", ["RowKey"])}
                                & subscriptions if subscriptions else set())
        return Reach(frozenset(customers), frozenset(subscriptions), frozenset(shared),
                     frozenset(shared_subscriptions))

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


class ReachWriter:
    """One file's indexing, beside its streaming: the tenant's keys are read once, each segment's new triples are
    written in the background as the worker hands them over (`submit`), and `finish` waits for them, then marks
    the shared customers. Only rows the index lacks are written: next month's file of the same customers, or a
    redelivered message, writes next to nothing."""

    def __init__(self, index: ReachIndex, tenant_id: str) -> None:
        self.index, self.tenant_id = index, tenant_id.lower()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reach")  # one at a time, in order
        self._held: Future[set[str]] = self._pool.submit(index._keys, self.tenant_id)
        self._pending: list[Future[None]] = []
        self.triples: set[Triple] = set()
        self.new_rows = 0

    def submit(self, triples: set[Triple]) -> None:
        fresh = triples - self.triples
        if fresh:
            self.triples |= fresh
            self._pending.append(self._pool.submit(self._write, fresh))

    def _write(self, triples: set[Triple]) -> None:
        held = self._held.result()
        rows = sorted({f"r|{r}|{c}|{s}" for r, c, s in triples} - held)
        self.index._upsert(self.tenant_id, [_row(key) for key in rows])
        held.update(rows)
        self.new_rows += len(rows)

    def finish(self) -> int:
        """Wait for the writes (their errors surface here), mark shared customers; returns the new row count."""
        try:
            for pending in self._pending:
                pending.result()
            held = self._held.result()
            # who serves this file's customers: read again after writing, so of two files indexed at once, the
            # one that reads last sees the other's rows too
            keys = self.index._keys(self.tenant_id, "r|") if self.new_rows else held
            customers = {c for _, c, _ in self.triples}
            rows = [tuple(key.split(SEPARATOR)[1:]) for key in keys if key.startswith("r|")]
            shared_customers, shared_subscriptions = shared_of(t for t in rows if t[1] in customers)  # type: ignore[misc]
            shared = {f"s|{c}" for c in shared_customers} | {f"u|{s}" for s in shared_subscriptions}
            self.index._upsert(self.tenant_id, [_row(key) for key in sorted(shared - held)])
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        log.info("reseller reach indexed: %d of %d rows new, %d shared markers", self.new_rows,
                 len(self.triples), len(shared), extra={"tenant": self.tenant_id})
        return self.new_rows

    def close(self) -> None:
        """Stop without finishing (the file failed): writes already under way complete, the rest are dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _row(key: str) -> dict[str, Any]:
    """An index row from its RowKey: the ids again as properties, for people reading the table."""
    kind, *ids = key.split(SEPARATOR)
    if kind == "r":
        return {"RowKey": key, "kind": "reseller", "reseller_id": ids[0], "customer_id": ids[1],
                "subscription_id": ids[2]}
    if kind == "u":
        return {"RowKey": key, "kind": "sharedSubscription", "subscription_id": ids[0]}
    return {"RowKey": key, "kind": "shared", "customer_id": ids[0]}
