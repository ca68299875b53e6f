"""Whose line is this: the one definition the margin engine, the reach index, the views and the access policy share.

A line belongs to the reseller in its reseller column (`ResellerMpnId`; `Tier2MpnId` in daily rated usage), or to
the partner itself when that column marks a direct customer (empty, null, `0` or `-1`). Direct lines are a party
of their own (`DIRECT`): a customer served by a reseller *and* directly is served by two parties.

Configuration (a margin rule, an internal id) written by a reseller carries that reseller's id as its owner and
applies only to lines whose owner is that reseller; the partner's own configuration (owner None) applies to every
line it names. `applies` is that rule; `line_owner` decides the owner of one value, and `owners` applies the very
same function to a column (once per distinct value, so it stays vectorised on a million lines).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

DIRECT = "0"  # the owner of direct lines: the partner serves the customer itself
DIRECT_RESELLER_IDS = frozenset({"", "0", "-1"})  # how Microsoft marks a direct line in the reseller column


def line_owner(value: Any) -> str:
    """The owner of a line from its reseller column's value: the reseller's id as text (trimmed), or `DIRECT`."""
    if value is None:
        return DIRECT
    text = str(value).strip().lower()
    return DIRECT if text in DIRECT_RESELLER_IDS else text


def applies(owner: str | None, line_owner_id: str) -> bool:
    """Whether configuration owned by `owner` (None: the partner's) may change a line owned by `line_owner_id`."""
    return owner is None or (owner != DIRECT and owner == line_owner_id)


def owners(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """`line_owner` of every value of a column (any type), as a string array without nulls."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    encoded = pc.dictionary_encode(column, null_encoding="encode")
    distinct = pa.array([line_owner(v) for v in encoded.dictionary.to_pylist()], pa.string())
    if not len(distinct):
        return pa.array([DIRECT] * len(column), pa.string())
    return distinct.take(encoded.indices)


def owned_by(column: pa.Array | pa.ChunkedArray, owner_ids: frozenset[str] | set[str]) -> pa.Array:
    """A boolean mask: lines whose owner is one of `owner_ids` (never a direct line)."""
    wanted = pa.array(sorted({line_owner(o) for o in owner_ids} - {DIRECT}), pa.string())
    return pc.is_in(owners(column), value_set=wanted)
