"""Principals: the repository on Azurite, the request model, and the policy as one table of expectations."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceExistsError
from pydantic import ValidationError

from shared.core.access import PARTNER_ADMIN_APP_ROLE, PARTNER_READER_APP_ROLE, Caller
from shared.app.context import AppContext
from shared.core.models import ChargesScope, FileRequest
from shared.adapters.principal_store import AccessControl, PrincipalRepository
from shared.core.access import (
    READ_ACTIONS,
    Action,
    Principal,
    PrincipalIn,
    Reach,
    Role,
    Scope,
    authorize,
)
from shared.core.problems import Problem
from shared.adapters.repositories import Conflict, utcnow

TENANT = "aaaaaaaa-0000-4000-8000-000000000001"
OTHER_TENANT = "bbbbbbbb-0000-4000-8000-000000000002"
OID = "11111111-0000-4000-8000-00000000000a"
R1, R2 = "1234567", "7654321"  # reseller MPN ids: the principal's own, another reseller's
C1 = "c1c1c1c1-0000-4000-8000-000000000001"  # a customer of R1
C2 = "c2c2c2c2-0000-4000-8000-000000000002"  # a customer principal's own id
C3 = "c3c3c3c3-0000-4000-8000-000000000003"  # somebody else's customer
S1 = "51515151-0000-4000-8000-000000000001"  # a subscription of C1
S2 = "52525252-0000-4000-8000-000000000002"  # somebody else's subscription
CS = "c5c5c5c5-0000-4000-8000-000000000005"  # a customer of R1 that R2 serves too
SS = "5c5c5c5c-0000-4000-8000-00000000005c"  # a subscription of R1 that another party shows up on too


@pytest.fixture
def repo(ctx: AppContext) -> PrincipalRepository:
    repository = PrincipalRepository(ctx.storage)
    try:  # the lead adds "Principals" to TABLE_NAMES; until then the test makes its table
        repository.table.create_table()
    except ResourceExistsError:
        pass
    return repository


# ---- repository -------------------------------------------------------------------------------------------------

def test_round_trip(repo: PrincipalRepository) -> None:
    body = PrincipalIn.model_validate({"role": "reseller", "resellerIds": [R2, R1, R1]})
    saved, created = repo.put(TENANT, OID.upper(), body)
    assert created and saved.object_id == OID and saved.reseller_ids == [R1, R2] and saved.etag

    got = repo.get(TENANT, OID)
    assert got is not None and got.role == Role.RESELLER and got.reseller_ids == [R1, R2]
    assert got.customer_ids == [] and got.etag == saved.etag
    assert got.public() == {"tenantId": TENANT, "objectId": OID, "role": "reseller", "resellerIds": [R1, R2],
                            "customerIds": [], "createdAt": got.public()["createdAt"],
                            "updatedAt": got.public()["updatedAt"]}

    replaced, created = repo.put(TENANT, OID, PrincipalIn(role=Role.CUSTOMER, customer_ids=[C2.upper()]))
    assert not created and replaced.customer_ids == [C2] and replaced.reseller_ids == []
    assert replaced.created_at == got.created_at and replaced.updated_at >= got.updated_at

    repo.put(TENANT, "22222222-0000-4000-8000-00000000000b", PrincipalIn(role=Role.PARTNER_READER))
    repo.put(OTHER_TENANT, OID, PrincipalIn(role=Role.PARTNER_ADMIN))
    assert [p.role for p in repo.list(TENANT)] == [Role.CUSTOMER, Role.PARTNER_READER]
    assert [p.role for p in repo.list(OTHER_TENANT)] == [Role.PARTNER_ADMIN]
    assert repo.get(TENANT, "33333333-0000-4000-8000-00000000000c") is None

    assert repo.delete(TENANT, OID) is True
    assert repo.delete(TENANT, OID) is False
    assert repo.get(TENANT, OID) is None
    assert repo.get(OTHER_TENANT, OID) is not None  # the other tenant's grant is its own


def test_writes_are_etag_guarded(repo: PrincipalRepository) -> None:
    first, _ = repo.put(TENANT, OID, PrincipalIn(role=Role.PARTNER_READER))
    second, _ = repo.put(TENANT, OID, PrincipalIn(role=Role.PARTNER_ADMIN), if_match=first.etag)
    with pytest.raises(Conflict):  # an admin who read the first version cannot overwrite the second
        repo.put(TENANT, OID, PrincipalIn(role=Role.PARTNER_READER), if_match=first.etag)
    with pytest.raises(Conflict):
        repo.delete(TENANT, OID, if_match=first.etag)
    assert repo.get(TENANT, OID).role == Role.PARTNER_ADMIN  # type: ignore[union-attr]
    assert repo.delete(TENANT, OID, if_match=second.etag)
    with pytest.raises(Conflict):  # the version the client saw is gone
        repo.put(TENANT, OID, PrincipalIn(role=Role.PARTNER_READER), if_match=second.etag)


def test_access_control_reads_the_principal_of_the_tenant_asked_about(repo: PrincipalRepository) -> None:
    repo.put(TENANT, OID, PrincipalIn(role=Role.RESELLER, reseller_ids=[R1]))
    calls: list[tuple[str, frozenset[str]]] = []

    def resolver(tenant_id: str, reseller_ids: frozenset[str]) -> Reach:
        calls.append((tenant_id, reseller_ids))
        return Reach(frozenset({C1}), frozenset({S1}))

    control = AccessControl(repo, resolver)
    caller = Caller(object_id=OID, tenant_id=OTHER_TENANT)  # a B2B guest or app from another tenant
    access = control.for_tenant(caller, TENANT)
    assert access.allows(Action.CHARGES_READ, Scope(view="reseller", reseller_id=R1))
    assert calls == []  # reseller views need no reach
    assert access.allows(Action.FILES_READ, Scope(view="customer", reseller_id=R1, customer_id=C1,
                                                  invoice_type="onetime"))
    assert not access.allows(Action.FILES_READ, Scope(view="customer", customer_id=C1, invoice_type="onetime"))
    assert access.allows(Action.RULES_WRITE, Scope.rule("subscription", S1, R1, new=True))
    assert calls == [(TENANT, frozenset({R1}))]  # resolved once per request
    files = [FileRequest.model_validate({"invoiceType": "onetime", "invoiceId": "G1", "view": v, **ids})
             for v, ids in [("partner", {}), ("reseller", {"resellerId": R1}), ("reseller", {"resellerId": R2}),
                            ("customer", {"customerId": C1}), ("customer", {"customerId": C1, "resellerId": R1}),
                            ("customer", {"customerId": C1, "resellerId": R2}), ("customer", {"customerId": C3})]]
    visible = access.filter(Action.FILES_READ, files, Scope.lines)
    assert [(f.view.value, f.reseller_id, f.customer_id) for f in visible] == [("reseller", R1, None),
                                                                              ("customer", R1, C1)]
    assert access.reseller_for(Scope(view="customer", customer_id=C3)) == R1  # its only reseller id
    assert access.reseller_for(Scope(view="customer", customer_id=C1, reseller_id=R2)) is None  # named already
    assert access.reseller_for(Scope(view="reseller", reseller_id=R1)) is None

    elsewhere = control.for_tenant(caller, OTHER_TENANT)
    for attempt in (elsewhere.require_standing, lambda: elsewhere.filter(Action.FILES_READ, files, Scope.lines),
                    lambda: elsewhere.require(Action.CHARGES_READ, Scope(view="reseller", reseller_id=R1))):
        with pytest.raises(Problem) as caught:
            attempt()
        assert caught.value.status == 404 and caught.value.detail == f"Tenant {OTHER_TENANT} was not found."
    access.require_standing()
    with pytest.raises(Problem) as caught:
        access.require(Action.INVOICES_READ)
    assert caught.value.status == 403
    assert calls == [(TENANT, frozenset({R1}))]


def test_a_reseller_with_several_mpn_ids_is_narrowed_to_the_one_serving_the_customer(repo) -> None:
    repo.put(TENANT, OID, PrincipalIn(role=Role.RESELLER, reseller_ids=[R1, R2]))
    serves = {R1: {C1, CS}, R2: {C3, CS}}

    def resolver(tenant_id: str, reseller_ids: frozenset[str]) -> Reach:
        return Reach(frozenset(c for r in reseller_ids for c in serves[r]))

    access = AccessControl(repo, resolver).for_tenant(GUEST, TENANT)
    assert access.reseller_for(Scope(view="customer", customer_id=C1)) == R1
    assert access.reseller_for(Scope(view="customer", customer_id=C3)) == R2
    assert access.reseller_for(Scope(view="customer", customer_id=C2)) is None  # none serves it: refused later
    with pytest.raises(Problem) as caught:  # both serve it: the caller says whose lines it wants
        access.reseller_for(Scope(view="customer", customer_id=CS))
    assert caught.value.status == 400 and "resellerId" in str(caught.value.to_dict())


# ---- the request model ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {"role": "partnerAdmin"},
    {"role": "partnerReader", "resellerIds": [], "customerIds": []},
    {"role": "reseller", "resellerIds": [R1]},
    {"role": "reseller", "resellerIds": [R1, R2, " 42 "]},
    {"role": "customer", "customerIds": [C1.upper()]},
])
def test_principal_in_accepts(body: dict) -> None:
    model = PrincipalIn.model_validate(body)
    assert all(c == c.lower() for c in model.customer_ids or [])


@pytest.mark.parametrize("body, field", [
    ({}, "role"),
    ({"role": "owner"}, "role"),
    ({"role": "reseller"}, "resellerIds"),
    ({"role": "reseller", "resellerIds": []}, "resellerIds"),
    ({"role": "reseller", "resellerIds": ["0"]}, "0 is not a reseller"),
    ({"role": "reseller", "resellerIds": ["12ab"]}, "resellerIds"),
    ({"role": "reseller", "resellerIds": [R1], "customerIds": [C1]}, "customerIds"),
    ({"role": "customer"}, "customerIds"),
    ({"role": "customer", "customerIds": ["not-a-guid"]}, "customerIds"),
    ({"role": "customer", "customerIds": [C1], "resellerIds": [R1]}, "resellerIds"),
    ({"role": "partnerAdmin", "resellerIds": [R1]}, "whole tenant"),
    ({"role": "partnerReader", "customerIds": [C1]}, "whole tenant"),
    ({"role": "partnerAdmin", "displayNme": "typo"}, "displayNme"),
    ({"role": "reseller", "resellerIds": [str(n) for n in range(1, 502)]}, "resellerIds"),
])
def test_principal_in_refuses(body: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PrincipalIn.model_validate(body)
    assert field in str(caught.value)


# ---- the policy -------------------------------------------------------------------------------------------------

def lines(view: str, invoice_type: str = "onetime", reseller: str | None = None,
          customer: str | None = None) -> Scope:
    return Scope(view=view, invoice_type=invoice_type, reseller_id=reseller, customer_id=customer)


SCOPES: dict[str, Scope] = {
    "tenant": Scope(),
    "partner view": lines("partner"),
    "reseller view, own": lines("reseller", reseller=R1),
    "reseller view, own, usage": lines("reseller", "usage", reseller=R1),
    "reseller view, other": lines("reseller", reseller=R2),
    "customer view, reseller's customer": lines("customer", reseller=R1, customer=C1),
    "customer view, reseller's customer, license": lines("customer", "license", reseller=R1, customer=C1),
    "customer view, reseller's customer, usage": lines("customer", "usage", reseller=R1, customer=C1),
    "customer view, reseller's customer, not narrowed": lines("customer", customer=C1),
    "customer view, reseller's customer, narrowed to another": lines("customer", reseller=R2, customer=C1),
    "customer view, shared customer": lines("customer", reseller=R1, customer=CS),
    "customer view, shared customer, not narrowed": lines("customer", customer=CS),
    "customer view, own": lines("customer", customer=C2),
    "customer view, own, narrowed to a reseller": lines("customer", reseller=R2, customer=C2),
    "customer view, own, license": lines("customer", "license", customer=C2),
    "customer view, own, usage": lines("customer", "usage", customer=C2),
    "customer view, other": lines("customer", customer=C3),
    "rules, every level": Scope(),
    "rules, reseller level, own": Scope.rule("reseller", R1),
    "rules, customer level, reseller's customer": Scope.rule("customer", C1),
    "rules, customer level, customer's own": Scope.rule("customer", C2),
    "rules, customer level, other": Scope.rule("customer", C3),
    "rules, customer level, shared customer": Scope.rule("customer", CS),
    "rules, subscription level, reseller's": Scope.rule("subscription", S1),
    "rules, subscription level, other": Scope.rule("subscription", S2),
    # configuration a reseller owns (applies to its own lines only); `new`: creating it
    "rules, customer level, reseller's customer, own, new": Scope.rule("customer", C1, R1, new=True),
    "rules, customer level, reseller's customer, another reseller's": Scope.rule("customer", C1, R2),
    "rules, customer level, reseller's customer, owned by direct": Scope.rule("customer", C1, "0"),
    "rules, customer level, shared customer, own, new": Scope.rule("customer", CS, R1, new=True),
    "rules, customer level, shared customer, own, existing": Scope.rule("customer", CS, R1),
    "rules, customer level, other, own, new": Scope.rule("customer", C3, R1, new=True),
    "rules, subscription level, reseller's, own, new": Scope.rule("subscription", S1, R1, new=True),
    "rules, subscription level, shared, own, new": Scope.rule("subscription", SS, R1, new=True),
    "rules, subscription level, shared, own, existing": Scope.rule("subscription", SS, R1),
    "rules, subscription level, shared, partner's": Scope.rule("subscription", SS),
    "rules, reseller level, own, owned": Scope.rule("reseller", R1, R1, new=True),
    "identifiers, reseller, own": Scope.identifier("reseller", R1),
    "identifiers, customer, reseller's customer": Scope.identifier("customer", C1),
    "identifiers, customer, other": Scope.identifier("customer", C3),
    "identifiers, customer, shared customer": Scope.identifier("customer", CS),
    "identifiers, subscription, reseller's": Scope.identifier("subscription", S1),
    "identifiers, subscription, other": Scope.identifier("subscription", S2),
    "identifiers, customer, reseller's customer, own, new": Scope.identifier("customer", C1, R1, new=True),
    "identifiers, customer, shared customer, own, new": Scope.identifier("customer", CS, R1, new=True),
    "identifiers, customer, shared customer, own, existing": Scope.identifier("customer", CS, R1),
    "identifiers, subscription, reseller's, own, new": Scope.identifier("subscription", S1, R1, new=True),
    "identifiers, subscription, reseller's, another reseller's": Scope.identifier("subscription", S1, R2),
}

LINE_ACTIONS = (Action.FILES_REQUEST, Action.FILES_READ, Action.FILES_REGENERATE, Action.CHARGES_READ)

# What a reseller principal (resellerIds [R1]; customers {C1, CS}, subscriptions {S1, SS} from line data; CS and SS
# are served by another party too) may do. Customer views only narrowed to its own lines. It reads the partner's
# configuration of its unshared customers and subscriptions; it writes only its own (owner R1), anywhere in its
# reach, but creates none for a shared customer or subscription.
RESELLER_ALLOWED: set[tuple[Action, str]] = {
    *{(a, s) for a in LINE_ACTIONS for s in ("reseller view, own", "reseller view, own, usage")},
    *{(a, s) for a in (Action.FILES_REQUEST, Action.FILES_READ, Action.FILES_REGENERATE)
      for s in ("customer view, reseller's customer", "customer view, reseller's customer, license",
                "customer view, shared customer")},
    *{(Action.RULES_READ, s) for s in ("rules, customer level, reseller's customer",
                                       "rules, subscription level, reseller's")},
    *{(Action.IDENTIFIERS_READ, s) for s in ("identifiers, customer, reseller's customer",
                                             "identifiers, subscription, reseller's")},
    *{(a, s) for a in (Action.RULES_READ, Action.RULES_WRITE)
      for s in ("rules, customer level, reseller's customer, own, new",
                "rules, customer level, shared customer, own, existing",
                "rules, subscription level, reseller's, own, new", "rules, subscription level, shared, own, existing")},
    *{(Action.RULES_READ, s) for s in ("rules, customer level, shared customer, own, new",
                                       "rules, subscription level, shared, own, new")},
    *{(a, s) for a in (Action.IDENTIFIERS_READ, Action.IDENTIFIERS_WRITE)
      for s in ("identifiers, customer, reseller's customer, own, new",
                "identifiers, customer, shared customer, own, existing",
                "identifiers, subscription, reseller's, own, new")},
    (Action.IDENTIFIERS_READ, "identifiers, customer, shared customer, own, new"),
}
# What a customer principal (customerIds [C2]) may do: its own onetime/license lines, as files or charges.
CUSTOMER_ALLOWED: set[tuple[Action, str]] = {
    (a, s) for a in (Action.FILES_REQUEST, Action.FILES_READ, Action.CHARGES_READ)
    for s in ("customer view, own", "customer view, own, license", "customer view, own, narrowed to a reseller")
}


def stored(role: Role, tenant: str = TENANT) -> Principal:
    now = utcnow()
    return Principal(tenant_id=tenant, object_id=OID, role=role, created_at=now, updated_at=now,
                     reseller_ids=[R1] if role == Role.RESELLER else [],
                     customer_ids=[C2] if role == Role.CUSTOMER else [])


HOME = Caller(object_id=OID, tenant_id=TENANT)
GUEST = Caller(object_id=OID, tenant_id=OTHER_TENANT)  # stored principals work whatever the caller's tid

# who -> (stored principal, caller, the tenant asked about)
WHO: dict[str, tuple[Principal | None, Caller, str]] = {
    "partnerAdmin": (stored(Role.PARTNER_ADMIN), HOME, TENANT),
    "partnerReader": (stored(Role.PARTNER_READER), HOME, TENANT),
    "reseller": (stored(Role.RESELLER), GUEST, TENANT),
    "customer": (stored(Role.CUSTOMER), GUEST, TENANT),
    "app role PartnerAdmin": (None, Caller(OID, TENANT, frozenset({PARTNER_ADMIN_APP_ROLE}), is_app=True), TENANT),
    "app role PartnerReader": (None, Caller(OID, TENANT, frozenset({PARTNER_READER_APP_ROLE})), TENANT),
    "unknown in tenant": (None, HOME, TENANT),
    "admin of A, asking B": (stored(Role.PARTNER_ADMIN, TENANT), HOME, OTHER_TENANT),
    "reseller of A, asking B": (stored(Role.RESELLER, TENANT), GUEST, OTHER_TENANT),
    "app role PartnerAdmin of A, asking B": (None, Caller(OID, TENANT, frozenset({PARTNER_ADMIN_APP_ROLE})),
                                             OTHER_TENANT),
    "other role names give nothing": (None, Caller(OID, TENANT, frozenset({"partnerAdmin", "Admin"})), TENANT),
    "principal of another object": (stored(Role.PARTNER_ADMIN).model_copy(
        update={"object_id": "99999999-0000-4000-8000-000000000000"}), HOME, TENANT),
}


def expected(who: str, action: Action, scope: str) -> int:
    if who in ("partnerAdmin", "app role PartnerAdmin"):
        return 200
    if who in ("partnerReader", "app role PartnerReader"):
        return 200 if action in READ_ACTIONS else 403
    if who == "reseller":
        return 200 if (action, scope) in RESELLER_ALLOWED else 403
    if who == "customer":
        return 200 if (action, scope) in CUSTOMER_ALLOWED else 403
    return 404  # no standing in the tenant asked about: indistinguishable from a tenant that does not exist


CASES = [(who, action, scope) for who in WHO for action in Action for scope in SCOPES]


@pytest.mark.parametrize("who, action, scope", CASES, ids=[f"{w} | {a.value} | {s}" for w, a, s in CASES])
def test_policy(who: str, action: Action, scope: str) -> None:
    principal, caller, tenant = WHO[who]
    decision = authorize(principal, caller, tenant, action, SCOPES[scope],
                         customers_of_reseller={C1, CS}, subscriptions_of_reseller={S1, SS},
                         shared_customers_of_reseller={CS}, shared_subscriptions_of_reseller={SS})
    assert decision.status == expected(who, action, scope), decision.reason
    problem = decision.problem()
    if decision.status == 404:
        assert problem is not None and problem.detail == f"Tenant {tenant} was not found."
    elif decision.status == 403:
        assert problem is not None and problem.status == 403
    else:
        assert problem is None and decision.allowed


def test_roles_add_up() -> None:
    """A reseller principal whose token also carries PartnerReader in its own tenant reads everything."""
    caller = Caller(OID, TENANT, frozenset({PARTNER_READER_APP_ROLE}))
    assert authorize(stored(Role.RESELLER), caller, TENANT, Action.INVOICES_READ).allowed
    assert authorize(stored(Role.RESELLER), caller, TENANT, Action.RULES_WRITE,
                     Scope.rule("customer", C3)).status == 403


def test_a_reseller_without_known_customers_gets_only_reseller_views() -> None:
    principal = stored(Role.RESELLER)
    assert authorize(principal, GUEST, TENANT, Action.FILES_READ, lines("reseller", reseller=R1)).allowed
    assert authorize(principal, GUEST, TENANT, Action.FILES_READ,
                     lines("customer", reseller=R1, customer=C1)).status == 403


def test_scopes_from_models_and_case() -> None:
    charges = ChargesScope.model_validate({"invoiceType": "license", "view": "customer", "customerId": C2.upper()})
    assert Scope.lines(charges) == Scope(view="customer", customer_id=C2, invoice_type="license")
    principal = stored(Role.CUSTOMER)
    assert authorize(principal, GUEST, TENANT.upper(), "charges.read", Scope.lines(charges)).allowed
    with pytest.raises(ValueError):
        authorize(principal, GUEST, TENANT, "files.delete")
