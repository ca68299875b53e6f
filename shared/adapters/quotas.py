"""Per-principal quotas on file requests, counted in Table Storage.

Table `RequestQuotas`: PartitionKey = tenant id, RowKey = `{object id}|{hour window, YYYYMMDDHH UTC}`, property
`count`. Taking a slot reads the window's row and writes it back one higher under its ETag (If-Match), or creates
it; a concurrent writer makes the write fail and the slot is taken again from a fresh read, so two instances can
never both take the last slot. A full window answers 429 with `Retry-After` (the seconds left in the hour).
Creating a window's row removes the principal's previous one, so the table holds about one row per principal.

The HTTP routes charge only resellers' and customers' requests: the timer's own work never passes through them,
and partner roles (bulk regeneration included) are not counted.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.storage import Storage
from shared.core.problems import Problem

log = logging.getLogger(__name__)

TABLE = "RequestQuotas"
WINDOW = timedelta(hours=1)
ATTEMPTS = 20  # ETag races lost in a row before giving up (answered 429, "try again in a second")


def window_of(now: datetime) -> datetime:
    """The start of the UTC hour `now` falls in."""
    return now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _key(object_id: str, window: datetime) -> str:
    return f"{object_id.lower()}|{window:%Y%m%d%H}"


def too_many(limit: int, retry_after: int) -> Problem:
    return Problem(429, "Too many requests",
                   f"At most {limit} file requests an hour are accepted from one principal; try again in "
                   f"{retry_after} seconds.", headers={"Retry-After": str(retry_after)})


class RequestQuotas:
    """`take` one file request for a principal in a tenant, or raise a 429 Problem."""

    def __init__(self, storage: Storage, per_hour: int) -> None:
        self.table = storage.table(TABLE)
        self.per_hour = per_hour

    def take(self, tenant_id: str, object_id: str, now: datetime | None = None) -> int:
        """Count one request in the current hour; returns how many that makes. 0 disables the quota."""
        if self.per_hour <= 0:
            return 0
        now = now or datetime.now(timezone.utc)
        window = window_of(now)
        retry_after = max(1, math.ceil((window + WINDOW - now).total_seconds()))
        pk, rk = tenant_id.lower(), _key(object_id, window)
        for _ in range(ATTEMPTS):
            try:
                entity = self.table.get_entity(pk, rk)
            except ResourceNotFoundError:
                try:
                    self.table.create_entity({"PartitionKey": pk, "RowKey": rk, "count": 1})
                except ResourceExistsError:
                    continue  # another request created it first: count on top of it
                self._forget(pk, object_id, window - WINDOW)
                return 1
            count = int(entity.get("count", 0))
            if count >= self.per_hour:
                raise too_many(self.per_hour, retry_after)
            entity["count"] = count + 1
            try:
                self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=entity.metadata["etag"],
                                         match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceNotFoundError):
                continue  # another request counted meanwhile: read again
            return count + 1
        log.warning("quota counter of %s stayed contended", object_id, extra={"tenant": pk})
        raise too_many(self.per_hour, 1)

    def _forget(self, pk: str, object_id: str, window: datetime) -> None:
        """Best effort: the previous window's row is done with."""
        try:
            self.table.delete_entity(pk, _key(object_id, window))
        except Exception:  # noqa: BLE001 (a missing or busy row is fine: it is only bookkeeping)
            pass
