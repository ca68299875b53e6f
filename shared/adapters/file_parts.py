"""The parts of a fanned-out file (shared/app/fanout.py) or ingest (shared/app/ingest_fanout.py) in Table Storage:
one row per part, and one counter row.

One partition per attempt at a file version (`{tenant}|{file}|vNNNN|aNN`) or at a snapshot
(`snap|{tenant}|{invoice}|{type}|aNN`), so every write below can be one entity group transaction:
- a part's row counts how often its computation started (`starts`: a crash or a duplicate shows as 2) and, once
  its blocks are staged, holds what the fan-in needs: how many blocks it staged, its rows, its exact totals (text),
  its CSV columns;
- the counter row holds how many parts there are and how many are done, with their rows;
- completing a part is ONE transaction: the part row marked done and the counter advanced, both ETag-guarded. So a
  part is counted exactly once, whatever crashes or duplicates: a part already done is never counted again, and the
  completion that brings the count to the total is the one that finds the file complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from shared.adapters.repositories import utcnow
from shared.adapters.storage import Storage

TABLE = "FileParts"
COUNTER = "counter"
ATTEMPTS = 50  # conflicting writers (other parts finishing at the same moment) retry this often at most


@dataclass(frozen=True)
class RunKey:
    """One attempt at one version of one file: the fan-out's unit of bookkeeping."""

    tenant_id: str
    file_id: str
    version: int
    attempt: int

    @property
    def partition(self) -> str:
        return f"{self.tenant_id.lower()}|{self.file_id}|v{self.version:04d}|a{self.attempt:02d}"


@dataclass(frozen=True)
class IngestRunKey:
    """One attempt at ingesting one invoice's lines of one type (the snapshot record's `attempts`)."""

    tenant_id: str
    invoice_id: str
    invoice_type: str
    attempt: int

    @property
    def partition(self) -> str:
        return f"snap|{self.tenant_id.lower()}|{self.invoice_id.upper()}|{self.invoice_type}|a{self.attempt:02d}"


class Run(Protocol):
    """What the bookkeeping needs of a run: its partition."""

    @property
    def partition(self) -> str: ...


@dataclass(frozen=True)
class PartDone:
    """What a finished part left for the fan-in."""

    part: int
    blocks: int
    rows: int
    tally: dict[str, Any]
    columns: list[str]
    starts: int


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    rows: int


def _row(part: int) -> str:
    return f"p{part:05d}"


class FileParts:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table(TABLE)

    def open_run(self, key: Run, total: int) -> None:
        """The counter of a run (idempotent: a second fan-out of the same attempt finds it there)."""
        try:
            self.table.create_entity({"PartitionKey": key.partition, "RowKey": COUNTER, "total": total, "done": 0,
                                      "rows": 0})
        except ResourceExistsError:
            pass

    def progress(self, key: Run) -> Progress | None:
        entity = self._get(key, COUNTER)
        return _progress(entity) if entity is not None else None

    def is_done(self, key: Run, part: int) -> bool:
        entity = self._get(key, _row(part))
        return bool(entity is not None and entity.get("done"))

    def begin(self, key: Run, part: int) -> int:
        """Count one more computation of the part; returns how many there have been (1 the first time)."""
        for _ in range(ATTEMPTS):
            entity = self._get(key, _row(part))
            try:
                if entity is None:
                    self.table.create_entity({"PartitionKey": key.partition, "RowKey": _row(part), "starts": 1,
                                              "done": False})
                    return 1
                starts = int(entity.get("starts", 0)) + 1
                self.table.update_entity({"PartitionKey": key.partition, "RowKey": _row(part), "starts": starts},
                                         mode=UpdateMode.MERGE, etag=entity.metadata["etag"],
                                         match_condition=MatchConditions.IfNotModified)
                return starts
            except (ResourceExistsError, ResourceModifiedError):
                continue
        raise RuntimeError(f"could not count a start of part {part} of {key.partition}")

    def complete(self, key: Run, part: int, blocks: int, rows: int, tally: dict[str, Any],
                 columns: list[str]) -> Progress | None:
        """Mark the part done and advance the counter, in one transaction. None if the part was done already (a
        duplicate message, or a redelivery after the crash of a worker that had completed it)."""
        for _ in range(ATTEMPTS):
            counter, mine = self._get(key, COUNTER), self._get(key, _row(part))
            if counter is None:
                raise RuntimeError(f"fan-out {key.partition} has no counter")
            if mine is not None and mine.get("done"):
                return None
            now = _progress(counter)
            after = Progress(now.done + 1, now.total, now.rows + rows)
            row = {"PartitionKey": key.partition, "RowKey": _row(part), "done": True, "blocks": blocks, "rows": rows,
                   "starts": int((mine or {}).get("starts", 1)), "tally_json": json.dumps(tally),
                   "columns_json": json.dumps(columns)}
            guarded = {"mode": UpdateMode.REPLACE, "match_condition": MatchConditions.IfNotModified}
            ops: list[Any] = [("update", {"PartitionKey": key.partition, "RowKey": COUNTER, "total": after.total,
                                          "done": after.done, "rows": after.rows},
                               {**guarded, "etag": counter.metadata["etag"]})]
            ops.append(("create", row) if mine is None else ("update", row, {**guarded, "etag": mine.metadata["etag"]}))
            try:
                self.table.submit_transaction(ops)
                return after
            except TableTransactionError:  # another part moved the counter (or this one's row) meanwhile
                continue
        raise RuntimeError(f"could not complete part {part} of {key.partition}")

    def claim_commit(self, key: Run, seconds: float) -> str | float:
        """"claimed": this caller commits the blob now (for `seconds` at most); "committed": it was committed
        already; a number: another caller is committing, look again in that many seconds. So the block list is
        committed once (a committer that dies after the commit but before saying so is repeated after its claim
        ends: the same list, the same bytes)."""
        for _ in range(ATTEMPTS):
            counter = self._get(key, COUNTER)
            if counter is None:
                raise RuntimeError(f"fan-out {key.partition} has no counter")
            if counter.get("committed"):
                return "committed"
            now, until = utcnow(), counter.get("commit_until")
            if until is not None and until > now:
                return (until - now).total_seconds()
            try:
                self.table.update_entity({"PartitionKey": key.partition, "RowKey": COUNTER,
                                          "commit_until": now + timedelta(seconds=seconds)},
                                         mode=UpdateMode.MERGE, etag=counter.metadata["etag"],
                                         match_condition=MatchConditions.IfNotModified)
                return "claimed"
            except ResourceModifiedError:
                continue
        raise RuntimeError(f"could not claim the commit of {key.partition}")

    def renew_commit(self, key: Run, seconds: float) -> None:
        """The claim extended by its holder while it works (`seconds` from now): a holder that died is repeated
        once this lapses, however long a live one takes."""
        self.table.update_entity({"PartitionKey": key.partition, "RowKey": COUNTER,
                                  "commit_until": utcnow() + timedelta(seconds=seconds)}, mode=UpdateMode.MERGE)

    def mark_committed(self, key: Run) -> None:
        self.table.update_entity({"PartitionKey": key.partition, "RowKey": COUNTER, "committed": True},
                                 mode=UpdateMode.MERGE)

    def finished(self, key: Run) -> list[PartDone]:
        """Every done part, in part order."""
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": key.partition})
        out = [PartDone(int(e["RowKey"][1:]), int(e["blocks"]), int(e["rows"]), json.loads(e["tally_json"]),
                        json.loads(e["columns_json"]), int(e.get("starts", 1)))
               for e in rows if e["RowKey"] != COUNTER and e.get("done")]
        return sorted(out, key=lambda p: p.part)

    def starts(self, key: Run) -> dict[int, int]:
        """How often each part's computation started (1 each when nothing crashed)."""
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": key.partition})
        return {int(e["RowKey"][1:]): int(e.get("starts", 0)) for e in rows if e["RowKey"] != COUNTER}

    def delete_runs(self, tenant_id: str, file_id: str, version: int) -> int:
        """Every attempt's rows of a version (retention, once the version is deleted)."""
        low = f"{tenant_id.lower()}|{file_id}|v{version:04d}|"
        rows = list(self.table.query_entities("PartitionKey ge @lo and PartitionKey lt @hi",
                                              parameters={"lo": low, "hi": low + "~"}, select=["PartitionKey",
                                                                                             "RowKey"]))
        for e in rows:
            try:
                self.table.delete_entity(e["PartitionKey"], e["RowKey"])
            except ResourceNotFoundError:
                pass
        return len(rows)

    def delete_ingest_runs(self, tenant_id: str, busy: set[tuple[str, str]]) -> int:
        """Every ingest run's rows of a tenant, but those of an invoice and type whose ingest is under way (`busy`:
        (invoice id, type) pairs): retention, once a fanned-out ingest is settled its rows serve nothing."""
        low = f"snap|{tenant_id.lower()}|"
        rows = list(self.table.query_entities("PartitionKey ge @lo and PartitionKey lt @hi",
                                              parameters={"lo": low, "hi": low + "~"},
                                              select=["PartitionKey", "RowKey"]))
        deleted = 0
        for e in rows:
            _, _, invoice, invoice_type, _ = e["PartitionKey"].split("|")
            if (invoice, invoice_type) in busy:
                continue
            try:
                self.table.delete_entity(e["PartitionKey"], e["RowKey"])
                deleted += 1
            except ResourceNotFoundError:
                pass
        return deleted

    def _get(self, key: Run, row: str) -> Any:
        try:
            return self.table.get_entity(key.partition, row)
        except ResourceNotFoundError:
            return None


def _progress(entity: Any) -> Progress:
    return Progress(int(entity.get("done", 0)), int(entity["total"]), int(entity.get("rows", 0)))
