"""Stored principals (table `Principals`, PartitionKey = tenant id, RowKey = object id) and the per-request access
control built on them. The policy itself is pure and lives in `shared.core.access`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.repositories import Conflict
from shared.adapters.storage import Storage
from shared.core.access import Access, Caller, Principal, PrincipalIn, ReachResolver, no_reach

TABLE = "Principals"


# ---- repository ------------------------------------------------------------------------------------------------

def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _to_entity(p: Principal) -> dict[str, Any]:
    return {"PartitionKey": p.tenant_id, "RowKey": p.object_id, "role": p.role.value,
            "reseller_ids_json": json.dumps(p.reseller_ids), "customer_ids_json": json.dumps(p.customer_ids),
            "created_at": p.created_at, "updated_at": p.updated_at}


def _from_entity(entity: Any) -> Principal:
    return Principal(tenant_id=entity["PartitionKey"], object_id=entity["RowKey"], role=entity["role"],
                     reseller_ids=json.loads(entity.get("reseller_ids_json") or "[]"),
                     customer_ids=json.loads(entity.get("customer_ids_json") or "[]"),
                     created_at=entity["created_at"], updated_at=entity["updated_at"],
                     etag=entity.metadata.get("etag") if hasattr(entity, "metadata") else None)


class PrincipalRepository:
    """Principals per tenant. Writes are ETag-guarded: two admins editing one principal cannot both win.

    Keys are lower-cased GUIDs, validated by the caller (route) before they get here.
    """

    def __init__(self, storage: Storage) -> None:
        self.table = storage.table(TABLE)

    def get(self, tenant_id: str, object_id: str) -> Principal | None:
        try:
            return _from_entity(self.table.get_entity(tenant_id.lower(), object_id.lower()))
        except ResourceNotFoundError:
            return None

    def put(self, tenant_id: str, object_id: str, body: PrincipalIn, *,
            if_match: str | None = None) -> tuple[Principal, bool]:
        """Create or replace; returns (principal, created). With `if_match`, only over that version (else
        Conflict); without, over whatever was just read (a concurrent change still makes a Conflict)."""
        tenant_id, object_id = tenant_id.lower(), object_id.lower()
        current = self.get(tenant_id, object_id)
        now = _utcnow()
        principal = Principal(tenant_id=tenant_id, object_id=object_id, role=body.role,
                              reseller_ids=body.reseller_ids or [], customer_ids=body.customer_ids or [],
                              created_at=current.created_at if current else now, updated_at=now)
        try:
            if current is None:
                if if_match is not None:
                    raise Conflict(object_id)  # the version the client saw is gone
                meta = self.table.create_entity(_to_entity(principal))
            else:
                meta = self.table.update_entity(_to_entity(principal), mode=UpdateMode.REPLACE,
                                                etag=if_match or current.etag,
                                                match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as exc:
            raise Conflict(object_id) from exc
        return principal.model_copy(update={"etag": meta.get("etag")}), current is None

    def delete(self, tenant_id: str, object_id: str, *, if_match: str | None = None) -> bool:
        """Returns whether there was one. ETag-guarded like `put`."""
        current = self.get(tenant_id, object_id)
        if current is None:
            return False
        try:
            self.table.delete_entity(current.tenant_id, current.object_id, etag=if_match or current.etag,
                                     match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError as exc:
            raise Conflict(object_id) from exc
        except ResourceNotFoundError:
            return False
        return True

    def list(self, tenant_id: str) -> list[Principal]:
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id.lower()})
        return sorted((_from_entity(e) for e in rows), key=lambda p: p.object_id)



class AccessControl:
    """Built once per process (beside the repositories); `for_tenant` per request."""

    def __init__(self, principals: PrincipalRepository, resolver: ReachResolver = no_reach) -> None:
        self.principals = principals
        self.resolver = resolver

    def for_tenant(self, caller: Caller, tenant_id: str) -> Access:
        return Access(caller, tenant_id.lower(), self.principals.get(tenant_id, caller.object_id), self.resolver)
