"""One budget of calls to Microsoft per partner tenant, shared by every instance of the app, in Table Storage.

Microsoft throttles per partner tenant, not per instance: fifty instances each allowed four calls would make two
hundred. So a call first takes the process's own semaphore (free), then one of `PC_TENANT_CONCURRENCY` lease rows
of the tenant (`<prefix>CallBudget`, PartitionKey = tenant id, RowKey `slot-00`, `slot-01`, ...):

- **Claim** = one conditional write (MERGE with If-Match on the row's ETag) that sets `Holder` and `ExpiresAt`.
  The process remembers the rows it last saw, so a warm claim costs that one write; a 412 (somebody else changed
  the row) re-reads the partition (one query) and tries again.
- **Expiry.** A slot whose `ExpiresAt` has passed is free, so a crashed holder frees its slot after at most
  `PC_LEASE_SECONDS`; a live holder renews its leases every third of that while its call runs (a long download).
- **Cool-down.** Any instance that gets a 429 with Retry-After writes `CoolDownUntil` onto *every* slot row of
  the tenant. That changes every row's ETag, so no claim based on an older read can succeed: every instance sees
  the cool-down before its next call and waits it out.
- **Release** = one conditional write clearing `Holder` (re-read once if a cool-down changed the row meanwhile).
- **Waiting** for a slot is bounded (`PC_SLOT_WAIT_SECONDS`, then a transient error) and backs off exponentially
  with full jitter; a cool-down is slept through in one go. A waiter reserves the busy slot that frees soonest
  (`Waiter`, for two seconds, renewed while it waits): nobody else claims it once free, so an instance that
  releases and claims again at once cannot starve the others.

Times are the instances' own clocks (UTC seconds since the epoch): Azure keeps them NTP-synchronised; a skew of a
second shortens or lengthens a crashed holder's lease by as much.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from azure.core import MatchConditions
from azure.core.exceptions import (AzureError, ResourceExistsError, ResourceModifiedError,
                                   ResourceNotFoundError)
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.settings import Settings
from shared.adapters.storage import Storage

log = logging.getLogger(__name__)

TABLE = "CallBudget"  # (not the consumption "Budgets" of shared/adapters/budgets.py)
BACKOFF_FIRST_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0
RESERVATION_SECONDS = 2.0  # a waiter's claim on the next free slot; renewed while it waits, so a gone waiter
# blocks a free slot for at most this long
RESERVED_CAP_SECONDS = 0.25  # a caller with a reservation looks often: its slot stays idle until it comes


class SlotUnavailable(Exception):
    """No slot of the tenant's budget became free within the wait allowed."""


@dataclass
class _Row:
    key: str
    etag: str
    holder: str = ""
    expires_at: float = 0.0
    cool_down_until: float = 0.0
    waiter: str = ""
    waiter_until: float = 0.0

    def free(self, now: float) -> bool:
        return not self.holder or self.expires_at <= now

    def reserved_for_another(self, me: str, now: float) -> bool:
        return bool(self.waiter) and self.waiter != me and self.waiter_until > now

    @classmethod
    def of(cls, e: dict) -> "_Row":
        return cls(e["RowKey"], e.metadata["etag"], e.get("Holder") or "", float(e.get("ExpiresAt") or 0.0),  # type: ignore[attr-defined]
                   float(e.get("CoolDownUntil") or 0.0), e.get("Waiter") or "", float(e.get("WaiterUntil") or 0.0))


@dataclass
class Slot:
    """A claimed lease; give it back with `Budget.release`."""

    tenant: str
    key: str
    holder: str
    etag: str
    renewed: float  # monotonic time of the claim or last renewal
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: bool = False


class Budget:
    """The shared per-tenant budget. One per process and table; thread-safe."""

    def __init__(self, table: TableClient, limit: int, lease_seconds: float, wait_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.limit = limit
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.clock = clock
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self._rows: dict[str, dict[str, _Row]] = {}  # tenant -> what this process last saw
        self._lock = threading.Lock()
        self._slots: dict[int, Slot] = {}
        self._renewer: threading.Thread | None = None
        self._table_ready = False

    # --- claiming -------------------------------------------------------------------------------------------------

    def acquire(self, tenant: str) -> Slot:
        """A slot of the tenant's budget, once any cool-down has passed. Raises SlotUnavailable after the wait.

        A caller that finds every slot busy reserves the next one to come free (`Waiter`, one write), so an
        instance that releases and claims again at once cannot starve the others."""
        me = f"{self.instance}:{uuid.uuid4().hex[:12]}"
        deadline = time.monotonic() + self.wait_seconds
        attempt = 0
        fresh = False
        reserved = False
        while True:
            rows = None if fresh else self._cached(tenant)
            if rows is None:
                rows, fresh = self._read(tenant), True
            now = self.clock()
            cool = max((r.cool_down_until for r in rows.values()), default=0.0)
            if cool > now:
                self._sleep(cool - now + random.uniform(0, BACKOFF_FIRST_SECONDS), deadline, tenant)
                fresh = False
                continue
            free = [r for r in rows.values() if r.free(now) and not r.reserved_for_another(me, now)]
            if free:
                mine = [r for r in free if r.waiter == me]
                slot = self._claim(tenant, mine[0] if mine else random.choice(free), now, me)
                if slot is not None:
                    return slot
                fresh = False  # somebody changed the row: read again
                attempt += 1
                if attempt % 3 == 0:  # contention: give the others a moment
                    self._sleep(self._backoff(attempt // 3), deadline, tenant)
                continue
            if not fresh:
                fresh = True  # the cache may be stale: read before waiting
                continue
            if not any(r.waiter == me and r.waiter_until > now for r in rows.values()):
                reserved = self._reserve(tenant, rows, me, now)
            self._sleep(self._backoff(attempt, RESERVED_CAP_SECONDS if reserved else BACKOFF_CAP_SECONDS),
                        deadline, tenant)
            attempt += 1
            fresh = False

    def _reserve(self, tenant: str, rows: dict[str, _Row], me: str, now: float) -> bool:
        """Mark the busy slot that frees soonest (and is not reserved) as the next one for this caller."""
        open_rows = [r for r in rows.values() if not r.reserved_for_another(me, now)]
        if not open_rows:
            return False
        row = min(open_rows, key=lambda r: r.expires_at)
        try:
            self.table.update_entity(
                {"PartitionKey": tenant, "RowKey": row.key, "Waiter": me, "WaiterUntil": now + RESERVATION_SECONDS},
                mode=UpdateMode.MERGE, etag=row.etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def release(self, slot: Slot) -> None:
        """Give the slot back (idempotent). A lost lease (expired and taken) is left alone."""
        self._forget(slot)
        with slot.lock:
            if slot.released:
                return
            slot.released = True
            self._write_lease(slot, holder="", expires_at=0.0)

    def cool_down(self, tenant: str, seconds: float) -> None:
        """Every instance waits until now + `seconds` before its next call to Microsoft for this tenant."""
        until = self.clock() + seconds
        for _ in range(5):
            rows = self._read(tenant)
            stale = False
            for row in rows.values():
                if row.cool_down_until >= until:
                    continue
                try:
                    meta = self.table.update_entity(
                        {"PartitionKey": tenant, "RowKey": row.key, "CoolDownUntil": until},
                        mode=UpdateMode.MERGE, etag=row.etag, match_condition=MatchConditions.IfNotModified)
                except ResourceModifiedError:
                    stale = True
                    continue
                self._remember(tenant, _Row(row.key, meta["etag"], row.holder, row.expires_at, until, row.waiter,
                                            row.waiter_until))
            if not stale:
                break
        log.warning("Microsoft throttled tenant %s: every instance waits %.1fs", tenant, seconds)

    # --- rows -----------------------------------------------------------------------------------------------------

    def _cached(self, tenant: str) -> dict[str, _Row] | None:
        with self._lock:
            rows = self._rows.get(tenant)
            return dict(rows) if rows else None

    def _remember(self, tenant: str, row: _Row) -> None:
        with self._lock:
            self._rows.setdefault(tenant, {})[row.key] = row

    def _read(self, tenant: str) -> dict[str, _Row]:
        """The tenant's slot rows (one query), creating the missing ones (once per tenant, ever)."""
        rows: dict[str, _Row] = {}
        for e in self._query(tenant):
            if e["RowKey"] in self._keys():
                rows[e["RowKey"]] = _Row.of(e)
        for key in self._keys():
            if key not in rows:
                try:
                    meta = self.table.create_entity({"PartitionKey": tenant, "RowKey": key, "Holder": "",
                                                     "ExpiresAt": 0.0, "CoolDownUntil": 0.0})
                    rows[key] = _Row(key, meta["etag"])
                except ResourceExistsError:
                    rows[key] = _Row.of(self.table.get_entity(tenant, key))
        with self._lock:
            self._rows[tenant] = dict(rows)
        return rows

    def _query(self, tenant: str) -> list:
        try:
            return list(self.table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant}))
        except ResourceNotFoundError:
            if self._table_ready:
                raise
            try:
                self.table.create_table()  # Bicep and Storage.ensure create it; a fresh Azurite may not have it
            except ResourceExistsError:
                pass
            self._table_ready = True
            return []

    def _keys(self) -> list[str]:
        return [f"slot-{i:02d}" for i in range(self.limit)]

    def _claim(self, tenant: str, row: _Row, now: float, holder: str) -> Slot | None:
        expires = now + self.lease_seconds
        try:
            meta = self.table.update_entity(
                {"PartitionKey": tenant, "RowKey": row.key, "Holder": holder, "ExpiresAt": expires, "Waiter": "",
                 "WaiterUntil": 0.0},
                mode=UpdateMode.MERGE, etag=row.etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            with self._lock:
                self._rows.pop(tenant, None)
            return None
        self._remember(tenant, _Row(row.key, meta["etag"], holder, expires, row.cool_down_until))
        slot = Slot(tenant, row.key, holder, meta["etag"], time.monotonic())
        self._track(slot)
        return slot

    def _write_lease(self, slot: Slot, *, holder: str, expires_at: float) -> bool:
        """Set the lease fields of the slot's row if it is still ours (re-reading after a cool-down's or a waiter's
        write). Returns False when the lease was lost. The caller holds slot.lock."""
        with self._lock:
            seen = self._rows.get(slot.tenant, {}).get(slot.key) or _Row(slot.key, slot.etag)
        for _ in range(5):
            try:
                meta = self.table.update_entity(
                    {"PartitionKey": slot.tenant, "RowKey": slot.key, "Holder": holder, "ExpiresAt": expires_at},
                    mode=UpdateMode.MERGE, etag=slot.etag, match_condition=MatchConditions.IfNotModified)
            except ResourceModifiedError:
                seen = _Row.of(self.table.get_entity(slot.tenant, slot.key))
                if seen.holder != slot.holder:
                    log.warning("lease %s/%s expired and was taken by another holder", slot.tenant, slot.key)
                    self._remember(slot.tenant, seen)
                    return False
                slot.etag = seen.etag
                continue
            slot.etag = meta["etag"]
            self._remember(slot.tenant, _Row(slot.key, meta["etag"], holder, expires_at, seen.cool_down_until,
                                             seen.waiter, seen.waiter_until))
            return True
        return False

    # --- renewal --------------------------------------------------------------------------------------------------

    def _track(self, slot: Slot) -> None:
        with self._lock:
            self._slots[id(slot)] = slot
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew_loop, name="budget-renewer", daemon=True)
                self._renewer.start()

    def _forget(self, slot: Slot) -> None:
        with self._lock:
            self._slots.pop(id(slot), None)

    def _renew_loop(self) -> None:
        """Renew every lease held longer than a third of its lifetime, so a long call keeps its slot."""
        period = self.lease_seconds / 3
        while True:
            time.sleep(period / 2)
            with self._lock:
                slots = list(self._slots.values())
            for slot in slots:
                if time.monotonic() - slot.renewed < period:
                    continue
                with slot.lock:
                    if slot.released:
                        continue
                    try:
                        if self._write_lease(slot, holder=slot.holder, expires_at=self.clock() + self.lease_seconds):
                            slot.renewed = time.monotonic()
                        else:
                            self._forget(slot)
                    except AzureError:
                        log.warning("could not renew lease %s/%s; retrying", slot.tenant, slot.key, exc_info=True)

    # --- waiting --------------------------------------------------------------------------------------------------

    @staticmethod
    def _backoff(attempt: int, cap: float = BACKOFF_CAP_SECONDS) -> float:
        return random.uniform(0, min(cap, BACKOFF_FIRST_SECONDS * (2 ** attempt)))

    def _sleep(self, seconds: float, deadline: float, tenant: str) -> None:
        if time.monotonic() + seconds > deadline:
            raise SlotUnavailable(
                f"No call to Microsoft could start for tenant {tenant} within {self.wait_seconds:g}s: every slot of "
                "its shared budget stayed busy or it is cooling down after throttling.")
        time.sleep(seconds)


_budgets: dict[tuple[str, str, int, float, float], Budget] = {}
_budgets_lock = threading.Lock()


def budget_for(settings: Settings) -> Budget | None:
    """The process's budget for these settings' storage account, or None when it is off (`PC_TENANT_CONCURRENCY`
    = 0) or no storage is configured (then only the per-process limit applies)."""
    if settings.pc_tenant_concurrency == 0:
        return None
    account = settings.storage_connection_string or settings.table_service_uri
    if not account:
        return None
    key = (account, settings.table_prefix, settings.pc_tenant_concurrency, settings.pc_lease_seconds,
           settings.pc_slot_wait_seconds)
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = Budget(Storage(settings).table(TABLE), settings.pc_tenant_concurrency,
                                            settings.pc_lease_seconds, settings.pc_slot_wait_seconds)
        return budget
