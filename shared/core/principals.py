"""Who is calling and who may be given a role: the caller proven by a token, roles, and stored principals.

A principal is an Entra identity (a user's `oid`, or an application's client id) given one role in one partner
tenant: table `Principals`, PartitionKey = tenant id, RowKey = object id (`shared.adapters.principal_store`).
What each role may do is the policy in `shared.core.access`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

from shared.core.models import GUID_PATTERN, MPN_ID_PATTERN, ApiModel

MAX_IDS = 500  # ids per principal: a JSON list of 500 GUIDs stays well inside one entity property (32K chars)
PARTNER_ADMIN_APP_ROLE = "Reconciliation.PartnerAdmin"
PARTNER_READER_APP_ROLE = "Reconciliation.PartnerReader"


@dataclass(frozen=True)
class Caller:
    """Who is calling, as proven by a valid token. `object_id` is the user's `oid`, or for an application (a
    machine client) its client id (`azp` in v2 tokens, `appid` in v1), which is what a partner admin knows."""

    object_id: str
    tenant_id: str
    app_roles: frozenset[str] = frozenset()
    is_app: bool = False
    issuer: str = ""


class Role(StrEnum):
    PARTNER_ADMIN = "partnerAdmin"
    PARTNER_READER = "partnerReader"
    RESELLER = "reseller"
    CUSTOMER = "customer"


APP_ROLE_GRANTS: dict[str, Role] = {PARTNER_ADMIN_APP_ROLE: Role.PARTNER_ADMIN,
                                    PARTNER_READER_APP_ROLE: Role.PARTNER_READER}

ResellerId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=MPN_ID_PATTERN)]
CustomerId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=GUID_PATTERN)]


class PrincipalIn(ApiModel):
    """`PUT …/principals/{objectId}`: one role, with the ids it is scoped to (scoped roles only)."""

    role: Role
    reseller_ids: list[ResellerId] | None = Field(default=None, max_length=MAX_IDS)
    customer_ids: list[CustomerId] | None = Field(default=None, max_length=MAX_IDS)

    @field_validator("reseller_ids")
    @classmethod
    def _resellers(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if any(int(v) == 0 for v in value):
            raise ValueError("0 is not a reseller (it marks direct customers in Microsoft's data)")
        return sorted(set(value), key=lambda v: (len(v), v))

    @field_validator("customer_ids")
    @classmethod
    def _customers(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted({v.lower() for v in value})

    @model_validator(mode="after")
    def _scope_fits_role(self) -> "PrincipalIn":
        resellers, customers = self.reseller_ids or [], self.customer_ids or []
        if self.role == Role.RESELLER:
            if not resellers:
                raise ValueError("a reseller principal needs at least one resellerIds entry")
            if customers:
                raise ValueError("a reseller principal takes no customerIds (its customers come from its lines)")
        elif self.role == Role.CUSTOMER:
            if not customers:
                raise ValueError("a customer principal needs at least one customerIds entry")
            if resellers:
                raise ValueError("a customer principal takes no resellerIds")
        elif resellers or customers:
            raise ValueError(f"a {self.role.value} principal covers the whole tenant: no resellerIds or customerIds")
        return self


class Principal(ApiModel):
    """A stored principal. `etag` is the entity's, for `If-Match` (not part of the JSON)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    tenant_id: str
    object_id: str
    role: Role
    reseller_ids: list[str] = []
    customer_ids: list[str] = []
    created_at: datetime
    updated_at: datetime
    etag: str | None = Field(default=None, exclude=True)

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def effective_roles(principal: Principal | None, caller: Caller, tenant_id: str) -> frozenset[Role]:
    """The caller's roles in `tenant_id`: from app roles in its own tenant, and from its stored principal."""
    tenant_id = tenant_id.lower()
    roles: set[Role] = set()
    if caller.tenant_id.lower() == tenant_id:
        roles.update(APP_ROLE_GRANTS[r] for r in caller.app_roles if r in APP_ROLE_GRANTS)
    if (principal is not None and principal.tenant_id.lower() == tenant_id
            and principal.object_id.lower() == caller.object_id.lower()):
        roles.add(principal.role)
    return frozenset(roles)
