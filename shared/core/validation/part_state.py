"""One export blob's validation state as JSON, and how the fan-in lines the parts' states up (pure, no I/O).

An ingest fanned out per export blob (shared/app/ingest_fanout.py) validates each blob on its own, with line numbers
from 0; the fan-in (shared/app/ingest_fanin.py) hands the states to one Validator in part order, each moved by the
lines of the parts before it, so findings, their order, the cap and the counts are those of one pass. Decimals travel
as their exact `str` (exponent kept: `Decimal(str(d))` is `d`), never as JSON numbers; ordered things (findings,
counts, credits) as lists, because the order of first appearance is part of the result. No pickle: the state is
read back by another instance.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from typing import Any

from shared.core.money import Decimal
from shared.core.validation.line_checks import State
from shared.core.validation.report import Finding

__all__ = ["encode_state", "decode_state", "moved", "rate_conflicts"]


def _enc(value: Any) -> Any:
    """A value a finding, a rate key or a credit holds, as JSON that reads back to the same Python value."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, Decimal):
        return {"d": str(value)}
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, date):
        return {"day": value.isoformat()}
    if isinstance(value, (list, tuple)):
        return {"seq": [_enc(v) for v in value]}
    raise TypeError(f"cannot store a {type(value).__name__} in a part's validation state")


def _dec(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if "d" in value:
        return Decimal(value["d"])
    if "dt" in value:
        return datetime.fromisoformat(value["dt"])
    if "day" in value:
        return date.fromisoformat(value["day"])
    return [_dec(v) for v in value["seq"]]


def encode_state(state: State, batches: list[int]) -> dict[str, Any]:
    """A part's committed state (and the sizes of the batches the validator saw, to check the part again)."""
    return {
        "findings": [{**f.to_dict(), "key": [[k, _enc(v)] for k, v in f.key.items()]} for f in state.findings],
        "where": [list(w) for w in state.where],
        "counts": [[rule, severity, n] for (rule, severity), n in state.counts.items()],
        "rates": [[_enc(list(k)), _enc(v)] for k, v in state.rates.items()],
        "subscriptions": [[k, str(c), str(q)] for k, (c, q) in state.subscriptions.items()],
        "credits": [[_enc(list(k)), [_enc(v) for v in acc]] for k, acc in state.credits.items()],
        "total": str(state.total), "rows": state.rows, "batches": list(batches),
    }


def decode_state(data: dict[str, Any]) -> State:
    findings = [Finding(f["rule"], f["severity"], {k: _dec(v) for k, v in f["key"]}, f["expected"], f["actual"],
                        f["message"]) for f in data["findings"]]
    counts: Counter = Counter()
    for rule, severity, n in data["counts"]:
        counts[(rule, severity)] = n
    return State(findings=findings, where=[(int(a), int(b)) for a, b in data["where"]], counts=counts,
                 rates={tuple(_dec(k)): _dec(v) for k, v in data["rates"]},
                 subscriptions={k: [Decimal(c), Decimal(q)] for k, c, q in data["subscriptions"]},
                 credits={tuple(_dec(k)): [_dec(v) for v in acc] for k, acc in data["credits"]},
                 total=Decimal(data["total"]), rows=int(data["rows"]))


def moved(state: State, offset: int) -> State:
    """The state with its findings' places moved by `offset` lines (the rows of the parts before it)."""
    state.where = [(line + offset, rank) for line, rank in state.where]
    return state


def rate_conflicts(state: State, before: dict[tuple, Decimal]) -> bool:
    """Whether a part took another exchange rate as its reference for a key than the parts before it had: then its
    EXCHANGE_RATE findings (judged against its own first rate) are not one pass's, and it must be checked again
    with the earlier rates (the fan-in reads its Parquet part back)."""
    return any(k in before and before[k] != v for k, v in state.rates.items())
