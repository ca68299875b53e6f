"""The margin-rule store against Azurite: overlap refused even when requests race; reseller ids are MPN ids."""

from __future__ import annotations

import threading

import pytest

from shared.app.context import AppContext
from shared.core.margins import MarginRuleIn
from shared.core.problems import Problem

TENANT = "0e6e8694-0000-4000-8000-00000000c0de"


def test_ten_racing_overlapping_rules_leave_exactly_one(ctx: AppContext) -> None:
    """Issue 15, defect 6: the overlap check and the insert are one guarded step (10 threads at once)."""
    barrier, created, refused, errors = threading.Barrier(10), [], [], []

    def create(i: int) -> None:
        body = MarginRuleIn(level="reseller", target_id="1234567", percent=str(i + 1),
                            effective_from=f"2026-0{1 + i % 9}-01")
        barrier.wait()
        try:
            created.append(ctx.rules.create(TENANT, body))
        except Problem as exc:
            refused.append(exc.status)
        except Exception as exc:  # noqa: BLE001  (reported by the assert below)
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(created) == 1 and refused == [409] * 9
    assert [r.id for r in ctx.rules.list(TENANT)] == [created[0].id]
    # a rule for another target, or after the first ends, is still accepted
    ctx.rules.create(TENANT, MarginRuleIn(level="reseller", target_id="7654321", percent="5",
                                          effective_from="2026-01-01"))
    assert len(ctx.rules.list(TENANT)) == 2 and len(ctx.rules.list(TENANT, "reseller", "1234567")) == 1
    ctx.rules.delete(TENANT, created[0].id)
    again = ctx.rules.create(TENANT, MarginRuleIn(level="reseller", target_id="1234567", percent="7",
                                                  effective_from="2026-01-01"))
    assert ctx.rules.get(TENANT, again.id) == again


@pytest.mark.parametrize("target", ["12345678901", "0" * 100, "1" * 11])
def test_a_reseller_rule_needs_an_mpn_id_file_requests_accept(ctx: AppContext, target: str) -> None:
    """Issue 15, defect 4: a reseller id no file request could name is refused where the rule is written."""
    with pytest.raises(Problem) as refused:
        ctx.rules.create(TENANT, MarginRuleIn(level="reseller", target_id=target, percent="10",
                                              effective_from="2026-01-01"))
    assert refused.value.status == 400 and refused.value.errors[0]["field"] == "targetId"
    assert ctx.rules.list(TENANT) == []
    ctx.rules.create(TENANT, MarginRuleIn(level="reseller", target_id="1234567890", percent="10",
                                          effective_from="2026-01-01"))
