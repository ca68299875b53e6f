"""What each role may do in a partner tenant: the authorization policy. Pure: every input is given.

Roles (principals and callers are in `shared.core.principals`):

- `partnerAdmin`: everything in the tenant.
- `partnerReader`: reads everything in the tenant (and may request files, which derives data but changes no
  configuration); changes nothing.
- `reseller` (`resellerIds`: MPN ids): reseller views of its own lines; customer views of its own customers,
  narrowed to its own lines (`resellerId`); customer- and subscription-level margin rules and identifiers of its
  own customers and subscriptions. What a reseller writes is *its own* (owner: its reseller id) and applies only
  to its own lines (`shared.core.ownership`). It may not create configuration for a customer or subscription that
  another party serves too (another reseller, or the partner directly): "shared". It reads the partner's
  configuration of its own unshared customers and subscriptions, and its own configuration anywhere in its reach.
  Never reseller-level rules (they reveal the partner's cost), the partner view, invoices, or charges in any view
  but its own reseller view.
- `customer` (`customerIds`): customer views (onetime, license) of its own lines, as files or charges. Nothing else.

Tokens carrying the app role `Reconciliation.PartnerAdmin` / `Reconciliation.PartnerReader` grant those partner
roles in the caller's own tenant (`tid` == the tenant asked about) without a stored principal, which is how the
first administrator registers a tenant.

Which customers and subscriptions are "its own" for a reseller is not stored here: it comes from Microsoft's lines
(`shared.core.reach`, with `shared.core.ownership` deciding whose each line is) and is resolved by the caller
(`ReachResolver`), only when a reseller principal asks for something that needs it.

`authorize` answers allow / 403 / 404. A caller with no standing in the tenant gets 404 for every action, with
the same words as a tenant that does not exist, so tenants cannot be probed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from functools import cached_property
from typing import Any

from shared.core.columns import CUSTOMER_VIEW_TYPES
from shared.core.models import View
from shared.core.ownership import DIRECT
from shared.core.principals import (  # noqa: F401  (re-exported: callers import the principal models from here)
    APP_ROLE_GRANTS,
    MAX_IDS,
    PARTNER_ADMIN_APP_ROLE,
    PARTNER_READER_APP_ROLE,
    Caller,
    CustomerId,
    Principal,
    PrincipalIn,
    ResellerId,
    Role,
    effective_roles,
)
from shared.core.problems import Problem, bad_request, not_found


# ---- the policy ------------------------------------------------------------------------------------------------

class Action(StrEnum):
    TENANT_READ = "tenant.read"  # tenant record, automation settings, calendar
    TENANT_WRITE = "tenant.write"  # register/update the tenant, automation settings
    PRINCIPALS_READ = "principals.read"
    PRINCIPALS_MANAGE = "principals.manage"
    RULES_READ = "rules.read"  # scope: level (+ targetId)
    RULES_WRITE = "rules.write"
    IDENTIFIERS_READ = "identifiers.read"  # scope: kind (+ id)
    IDENTIFIERS_WRITE = "identifiers.write"
    FILES_REQUEST = "files.request"  # scope: view, resellerId/customerId, invoiceType
    FILES_READ = "files.read"  # status, download, versions, findings of one file: the file's own scope
    FILES_REGENERATE = "files.regenerate"
    CHARGES_READ = "charges.read"  # scope: view, resellerId/customerId, invoiceType
    INVOICES_READ = "invoices.read"  # Microsoft's invoices and totals: the partner's cost
    AUDIT_READ = "audit.read"
    SELF_READ = "self.read"  # `/me`: the caller's own roles and scopes, answered from its own standing
    FILES_APPROVE = "files.approve"  # approve a file version for resellers and customers: partner admins only
    WEBHOOKS_MANAGE = "webhooks.manage"  # scope: kind "webhook" (+ resellerId for a reseller's own endpoint)


# What a partner reader may do. Not the audit log: who downloaded what is for partner admins.
READ_ACTIONS = frozenset({Action.TENANT_READ, Action.PRINCIPALS_READ, Action.RULES_READ, Action.IDENTIFIERS_READ,
                          Action.FILES_REQUEST, Action.FILES_READ, Action.CHARGES_READ, Action.INVOICES_READ})


# Actions whose answer for a reseller depends on which customers and subscriptions are its own.
REACH_ACTIONS = frozenset({Action.FILES_REQUEST, Action.FILES_READ, Action.FILES_REGENERATE, Action.RULES_READ,
                           Action.RULES_WRITE, Action.IDENTIFIERS_READ, Action.IDENTIFIERS_WRITE})


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, Enum):
        value = value.value
    return str(value).strip().lower()


@dataclass(frozen=True)
class Scope:
    """What an action touches. Unset fields mean "not narrowed": a scoped role never gets an unnarrowed scope
    (e.g. rules.read with no level is a read of every rule: partners only; routes filter lists item by item)."""

    view: str | None = None
    reseller_id: str | None = None
    customer_id: str | None = None
    invoice_type: str | None = None
    level: str | None = None  # margin rule level: reseller | customer | subscription
    kind: str | None = None  # identifier kind: reseller | customer | subscription
    target_id: str | None = None  # rule target / identifier id
    owner: str | None = None  # the reseller that owns the rule / identifier; None: the partner's own
    new: bool = False  # creating configuration (not changing or removing what the owner already has)

    def __post_init__(self) -> None:
        for name in ("view", "reseller_id", "customer_id", "invoice_type", "level", "kind", "target_id", "owner"):
            object.__setattr__(self, name, _text(getattr(self, name)))

    @classmethod
    def lines(cls, source: Any) -> "Scope":
        """From anything with view / reseller_id / customer_id / invoice_type: FileRequest, FileRecord,
        ChargesScope. A missing view is the partner view (the API's default)."""
        return cls(view=_text(getattr(source, "view", None)) or "partner",
                   reseller_id=getattr(source, "reseller_id", None), customer_id=getattr(source, "customer_id", None),
                   invoice_type=getattr(source, "invoice_type", None))

    @classmethod
    def rule(cls, level: Any, target_id: str | None = None, owner: str | None = None, *,
             new: bool = False) -> "Scope":
        return cls(level=level, target_id=target_id, owner=owner, new=new)

    @classmethod
    def identifier(cls, kind: Any, id_: str | None = None, owner: str | None = None, *,
                   new: bool = False) -> "Scope":
        return cls(kind=kind, target_id=id_, owner=owner, new=new)


@dataclass(frozen=True)
class Decision:
    """allow (200), hidden (404: no standing in the tenant) or forbidden (403). `enforce()` raises the problem."""

    status: int
    reason: str
    tenant_id: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200

    def problem(self) -> Problem | None:
        if self.status == 404:
            return not_found(f"Tenant {self.tenant_id}")  # word for word what a missing tenant says
        if self.status == 403:
            return Problem(403, "Forbidden", self.reason)
        return None

    def enforce(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise problem


def authorize(principal: Principal | None, caller: Caller, tenant_id: str, action: Action | str,
              scope: Scope | None = None, *, customers_of_reseller: Set[str] = frozenset(),
              subscriptions_of_reseller: Set[str] = frozenset(),
              shared_customers_of_reseller: Set[str] = frozenset(),
              shared_subscriptions_of_reseller: Set[str] = frozenset()) -> Decision:
    """Whether `caller` may do `action` on `scope` in `tenant_id`. Pure: every input is given.

    `principal` is the caller's stored principal in `tenant_id` (or None); `customers_of_reseller` and
    `subscriptions_of_reseller` are the customer and subscription ids that belong to the principal's resellers
    (only read for reseller principals; empty means "none known": such a reseller sees only reseller views);
    `shared_customers_of_reseller` / `shared_subscriptions_of_reseller` those of its customers and subscriptions
    that another party (another reseller, or the partner directly) serves too.
    """
    action = Action(action)
    scope = scope or Scope()
    roles = effective_roles(principal, caller, tenant_id)
    if not roles:
        return Decision(404, "no standing in this tenant", tenant_id)
    reach = _Reach(
        resellers=frozenset(_text(r) for r in (principal.reseller_ids if principal else []) if r),
        customers=frozenset(_text(c) for c in (principal.customer_ids if principal else []) if c),
        reseller_customers=frozenset(c.lower() for c in customers_of_reseller),
        reseller_subscriptions=frozenset(s.lower() for s in subscriptions_of_reseller),
        shared_customers=frozenset(c.lower() for c in shared_customers_of_reseller),
        shared_subscriptions=frozenset(s.lower() for s in shared_subscriptions_of_reseller),
    )
    for role in sorted(roles):
        if _GRANTS[role](action, scope, reach):
            return Decision(200, f"allowed as {role.value}", tenant_id)
    names = ", ".join(r.value for r in sorted(roles))
    return Decision(403, f"Your role ({names}) does not allow {action.value} for this scope.", tenant_id)


@dataclass(frozen=True)
class _Reach:
    resellers: frozenset[str | None]
    customers: frozenset[str | None]
    reseller_customers: frozenset[str]
    reseller_subscriptions: frozenset[str]
    shared_customers: frozenset[str] = frozenset()
    shared_subscriptions: frozenset[str] = frozenset()


def _admin(action: Action, scope: Scope, reach: _Reach) -> bool:
    return True


def _reader(action: Action, scope: Scope, reach: _Reach) -> bool:
    return action in READ_ACTIONS


def _reseller(action: Action, scope: Scope, reach: _Reach) -> bool:
    if action in (Action.FILES_REQUEST, Action.FILES_READ, Action.FILES_REGENERATE):
        own_reseller = scope.reseller_id in reach.resellers
        own_lines = scope.view == "reseller" and own_reseller
        # a customer view only of its own lines of its customer (narrowed by resellerId), never the whole customer
        own_customer = (scope.view == "customer" and own_reseller and scope.customer_id in reach.reseller_customers
                        and scope.invoice_type in CUSTOMER_VIEW_TYPES)
        return own_lines or own_customer
    if action == Action.CHARGES_READ:  # never Microsoft's cost: only what the reseller itself pays
        return scope.view == "reseller" and scope.reseller_id in reach.resellers
    if action in (Action.RULES_READ, Action.RULES_WRITE):
        return _configures(action == Action.RULES_WRITE, scope.level, scope, reach)
    if action in (Action.IDENTIFIERS_READ, Action.IDENTIFIERS_WRITE):
        return _configures(action == Action.IDENTIFIERS_WRITE, scope.kind, scope, reach)
    if action == Action.WEBHOOKS_MANAGE:  # its own endpoints, which receive only events about its own views
        return scope.kind == "webhook" and scope.reseller_id in reach.resellers
    return False


def _configures(write: bool, level: str | None, scope: Scope, reach: _Reach) -> bool:
    """Customer- and subscription-level configuration of the reseller's own customers and subscriptions; never
    reseller level. Its own configuration (owner: one of its ids) applies to its own lines only, so it may read,
    change and remove it anywhere in its reach; it may not create configuration for a target another party serves
    too ("shared": its internal id or price would sit beside another party's), nor change the partner's (owner
    None), which it reads only for targets nobody else serves."""
    if level == "customer":
        mine, shared = reach.reseller_customers, reach.shared_customers
    elif level == "subscription":
        mine, shared = reach.reseller_subscriptions, reach.shared_subscriptions
    else:
        return False
    if scope.target_id not in mine:
        return False
    if scope.owner is None:
        return not write and scope.target_id not in shared
    if scope.owner == DIRECT or scope.owner not in reach.resellers:
        return False
    return not (write and scope.new and scope.target_id in shared)


def _customer(action: Action, scope: Scope, reach: _Reach) -> bool:
    if action in (Action.FILES_REQUEST, Action.FILES_READ, Action.CHARGES_READ):
        return (scope.view == "customer" and scope.customer_id in reach.customers
                and scope.invoice_type in CUSTOMER_VIEW_TYPES)
    return False


_GRANTS: dict[Role, Callable[[Action, Scope, _Reach], bool]] = {
    Role.PARTNER_ADMIN: _admin, Role.PARTNER_READER: _reader, Role.RESELLER: _reseller, Role.CUSTOMER: _customer,
}


# ---- what routes use -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reach:
    """What a reseller principal's resellers serve (lower-case ids); `shared`: those of its customers that another
    party (another reseller, or the partner directly) serves too; `shared_subscriptions` likewise."""

    customers: frozenset[str] = frozenset()
    subscriptions: frozenset[str] = frozenset()
    shared: frozenset[str] = frozenset()
    shared_subscriptions: frozenset[str] = frozenset()


NO_REACH = Reach()

# (tenant id, reseller ids) -> what those resellers serve (`shared.core.reach.ReachIndex` in the app).
ReachResolver = Callable[[str, frozenset[str]], Reach]


def no_reach(tenant_id: str, reseller_ids: frozenset[str]) -> Reach:
    """Nothing indexed: resellers own no customers (they still get their reseller views)."""
    return NO_REACH


@dataclass
class Access:
    """One caller in one tenant, for one request: the principal is read once, the reach only if needed."""

    caller: Caller
    tenant_id: str
    principal: Principal | None
    resolver: ReachResolver = no_reach
    _reach: Reach | None = field(default=None, repr=False)

    @cached_property
    def roles(self) -> frozenset[Role]:
        return effective_roles(self.principal, self.caller, self.tenant_id)

    @property
    def acts_as_reseller(self) -> bool:
        """A reseller principal without partner roles: the one caller whose answers depend on its reach."""
        return (self.principal is not None and self.principal.role == Role.RESELLER
                and not (self.roles & {Role.PARTNER_ADMIN, Role.PARTNER_READER}))

    @property
    def sees_unapproved(self) -> bool:
        """Partners see every version; resellers and customers only approved ones."""
        return bool(self.roles & {Role.PARTNER_ADMIN, Role.PARTNER_READER})

    @property
    def own_reseller_ids(self) -> list[str]:
        """The MPN ids of a caller acting as a reseller (an endpoint it registers is scoped to them)."""
        return sorted(self.principal.reseller_ids) if self.acts_as_reseller else []  # type: ignore[union-attr]

    def _resolved(self, action: Action) -> Reach:
        if not self.acts_as_reseller or action not in REACH_ACTIONS:
            return NO_REACH
        if self._reach is None:
            self._reach = self.resolver(self.tenant_id, frozenset(self.principal.reseller_ids))  # type: ignore[union-attr]
        return self._reach

    def decide(self, action: Action | str, scope: Scope | None = None) -> Decision:
        action = Action(action)
        reach = self._resolved(action) if self.roles else NO_REACH
        return authorize(self.principal, self.caller, self.tenant_id, action, scope,
                         customers_of_reseller=reach.customers, subscriptions_of_reseller=reach.subscriptions,
                         shared_customers_of_reseller=reach.shared,
                         shared_subscriptions_of_reseller=reach.shared_subscriptions)

    def reseller_for(self, scope: Scope) -> str | None:
        """The reseller id a reseller's customer-view request is narrowed to when it names none: its only
        reseller id, or the only one of its reseller ids that serves the customer. None when there is nothing to
        narrow (not a reseller, not a customer view, already narrowed) or none serves it (the policy refuses);
        400 naming `resellerId` when several of its own serve it (the caller must say whose lines it wants)."""
        if scope.view != "customer" or scope.reseller_id or not self.acts_as_reseller or not scope.customer_id:
            return None
        return self._serving("customer", scope.customer_id, "resellerId", "whose lines you want")

    def owner_for(self, level: Any, target_id: str, requested: str | None = None) -> str | None:
        """Who owns configuration this caller writes for `target_id` at `level` (customer or subscription): for a
        reseller, always one of its reseller ids (`requested`, else its only one, else the only one serving the
        target; 400 naming `ownerResellerId` when several do); for partners, `requested` (None: the partner's own,
        applying to every line)."""
        if not self.acts_as_reseller:
            return requested
        if requested:
            return requested
        return self._serving(_text(level), target_id.lower(), "ownerResellerId", "that owns it")

    def _serving(self, level: str | None, target_id: str, field_name: str, what: str) -> str | None:
        ids = sorted(self.principal.reseller_ids)  # type: ignore[union-attr]
        if len(ids) == 1:
            return ids[0]
        def serves(reach: Reach) -> bool:
            return target_id in (reach.subscriptions if level == "subscription" else reach.customers)
        serving = [r for r in ids if serves(self.resolver(self.tenant_id, frozenset({r})))]
        if len(serving) > 1:
            raise bad_request(f"Several of your resellers serve this {level} ({', '.join(serving)}): name the one "
                              f"{what} in {field_name}.", field_name)
        return serving[0] if serving else None

    @property
    def viewer(self) -> View:
        """The view whose figures this caller may see in records and lists: partner roles see everything, a
        reseller principal its reseller figures (never Microsoft's cost), a customer only its own price."""
        if self.roles & {Role.PARTNER_ADMIN, Role.PARTNER_READER}:
            return View.PARTNER
        return View.RESELLER if Role.RESELLER in self.roles else View.CUSTOMER

    def allows(self, action: Action | str, scope: Scope | None = None) -> bool:
        return self.decide(action, scope).allowed

    def require(self, action: Action | str, scope: Scope | None = None) -> None:
        self.decide(action, scope).enforce()

    def require_standing(self) -> None:
        """404 unless the caller has some role in the tenant: call it before parsing a body or loading a record,
        so outsiders learn nothing (not even a 400) about a tenant."""
        if not self.roles:
            Decision(404, "no standing in this tenant", self.tenant_id).enforce()

    def filter(self, action: Action | str, items: Iterable[Any], scope_of: Callable[[Any], Scope]) -> list[Any]:
        """The items of a list the caller may see; 404 first if it has no standing in the tenant at all."""
        self.require_standing()
        return [item for item in items if self.allows(action, scope_of(item))]
