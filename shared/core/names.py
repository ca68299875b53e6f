"""Names of resellers, customers and subscriptions, as Microsoft's lines show them: the pure part.

The margins page lets a person pick a customer or a subscription by name instead of typing a GUID. The names come
from the lines themselves (`CustomerName` / `CustomerCompanyName`, `SubscriptionDescription` /
`SubscriptionName`), learned while a partner-view file streams, like the reseller reach (shared.core.reach):
per batch, Arrow keeps each distinct (reseller, customer, customer name, subscription, subscription name) once,
so memory follows distinct subscriptions, not lines. `shared.adapters.names_index` stores them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from shared.core.columns import FileType, Layout
from shared.core.ownership import DIRECT_RESELLER_IDS
from shared.core.models import GUID_PATTERN, MPN_ID_PATTERN

SEPARATOR = "\x1f"  # unit separator: never in a name or an id
MAX_NAME = 200
_GUID = re.compile(GUID_PATTERN)
_MPN = re.compile(MPN_ID_PATTERN)

CUSTOMER_NAME = {FileType.ONETIME: "CustomerName", FileType.DAILY: "CustomerName", FileType.LICENSE: "CustomerName",
                 FileType.USAGE: "CustomerCompanyName"}
SUBSCRIPTION_NAME = {FileType.ONETIME: "SubscriptionDescription", FileType.DAILY: "SubscriptionDescription",
                     FileType.LICENSE: "SubscriptionName", FileType.USAGE: "SubscriptionName"}


@dataclass(frozen=True)
class NameEntry:
    """One thing a rule can target: kind (reseller, customer, subscription), its id, and what the lines call it.
    A subscription also names its customer; customers and subscriptions name the resellers that sold them."""

    kind: str
    id: str
    name: str | None = None
    customer_id: str | None = None
    customer_name: str | None = None
    reseller_ids: tuple[str, ...] = ()


def _text(batch: pa.RecordBatch, name: str) -> pa.Array:
    idx = batch.schema.get_field_index(name)
    if idx < 0:
        return pa.nulls(batch.num_rows, pa.string())
    arr = batch.column(idx)
    return arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())


@dataclass
class NamesCollector:
    """Per batch, only subscriptions (customers, for lines without one) not seen before are looked at: a batch of
    known ones costs one `unique` over a column. A subscription's reseller is the one its first lines show."""

    layout: Layout
    keys: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)

    def add(self, batch: pa.RecordBatch) -> None:
        lay = self.layout
        if not batch.num_rows or batch.schema.get_field_index(lay.customer_column) < 0:
            return
        customer, sub = _text(batch, lay.customer_column), _text(batch, lay.subscription_column)
        key = pc.coalesce(pc.if_else(pc.equal(sub, ""), pa.scalar(None, pa.string()), sub), customer)
        new = [k for k in pc.unique(key).to_pylist() if k not in self.seen]
        if not new:
            return
        self.seen.update(new)
        batch = batch.filter(pc.fill_null(pc.is_in(key, value_set=pa.array(new, pa.string())), False))
        parts = [_text(batch, lay.reseller_column), _text(batch, lay.customer_column),
                 _text(batch, CUSTOMER_NAME[lay.file_type]), _text(batch, lay.subscription_column),
                 _text(batch, SUBSCRIPTION_NAME[lay.file_type])]
        joined = pc.binary_join_element_wise(*parts, SEPARATOR, null_handling="replace", null_replacement="")
        self.keys |= set(pc.unique(joined).to_pylist())

    def entries(self) -> list[NameEntry]:
        """Valid ids only (lower-case GUIDs, MPN ids); names trimmed; the last name seen wins for an id."""
        customers: dict[str, tuple[str | None, set[str]]] = {}
        subscriptions: dict[str, tuple[str | None, str, set[str]]] = {}
        resellers: set[str] = set()
        for key in sorted(self.keys):
            fields = key.split(SEPARATOR)
            if len(fields) != 5:
                continue
            reseller, customer, customer_name, sub, sub_name = (f.strip() for f in fields)
            customer, sub = customer.lower(), sub.lower()
            if not _GUID.match(customer):
                continue
            sold_by = set()
            if reseller not in DIRECT_RESELLER_IDS and _MPN.match(reseller) and int(reseller) > 0:
                resellers.add(reseller)
                sold_by.add(reseller)
            name, seen = customers.get(customer, (None, set()))
            customers[customer] = (customer_name[:MAX_NAME] or name, seen | sold_by)
            if _GUID.match(sub):
                sname, _, sseen = subscriptions.get(sub, (None, customer, set()))
                subscriptions[sub] = (sub_name[:MAX_NAME] or sname, customer, sseen | sold_by)
        out = [NameEntry("reseller", r) for r in sorted(resellers)]
        out += [NameEntry("customer", c, n, reseller_ids=tuple(sorted(s))) for c, (n, s) in customers.items()]
        out += [NameEntry("subscription", s, n, customer_id=c, customer_name=customers[c][0],
                          reseller_ids=tuple(sorted(r))) for s, (n, c, r) in subscriptions.items()]
        return out


def matches(entry: NameEntry, query: str) -> bool:
    """Case-insensitive: the query's words each appear in the name, the id, or the customer's name."""
    hay = " ".join(x for x in (entry.name, entry.id, entry.customer_name) if x).casefold()
    return all(word in hay for word in query.casefold().split())
