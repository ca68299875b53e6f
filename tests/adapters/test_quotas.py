"""Per-principal quotas on file requests, counted in real Table Storage (Azurite): exact under concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from shared.adapters.quotas import RequestQuotas, window_of
from shared.core.problems import Problem

TENANT = "aaaaaaaa-0000-4000-8000-0000000000a1"
OID = "0f000000-0000-4000-8000-0000000000f1"
OTHER = "0f000000-0000-4000-8000-0000000000f2"
NOW = datetime(2026, 12, 7, 9, 59, 30, tzinfo=timezone.utc)


def test_the_hour_fills_up_then_says_when_to_come_back(ctx) -> None:
    quotas = RequestQuotas(ctx.storage, per_hour=3)
    assert [quotas.take(TENANT, OID, NOW) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(Problem) as refused:
        quotas.take(TENANT, OID, NOW)
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "30"}  # 10:00:00 - 09:59:30
    assert quotas.take(TENANT, OTHER, NOW) == 1  # per principal
    assert quotas.take(TENANT.upper(), OTHER.upper(), NOW) == 2  # ids in any case are the same principal
    assert quotas.take(TENANT, OID, NOW + timedelta(seconds=31)) == 1  # a new hour
    keys = {e["RowKey"] for e in quotas.table.list_entities()}
    assert f"{OID}|2026120709" not in keys and f"{OID}|2026120710" in keys  # the old window is gone


def test_concurrent_requests_never_take_more_than_the_quota(ctx) -> None:
    """Eight threads race for twelve slots, forty times: exactly twelve succeed (ETag-guarded counter)."""
    quotas = RequestQuotas(ctx.storage, per_hour=12)

    def one(_: int) -> int:
        try:
            quotas.take(TENANT, OID, NOW)
            return 1
        except Problem as problem:
            assert problem.status == 429
            return 0

    with ThreadPoolExecutor(max_workers=8) as pool:
        taken = sum(pool.map(one, range(40)))
    assert taken == 12
    assert quotas.table.get_entity(TENANT, f"{OID}|{window_of(NOW):%Y%m%d%H}")["count"] == 12


def test_zero_means_no_quota(ctx) -> None:
    quotas = RequestQuotas(ctx.storage, per_hour=0)
    assert all(quotas.take(TENANT, OID, NOW) == 0 for _ in range(5))
    assert list(quotas.table.list_entities()) == []
