"""A tenant's pricing configuration as the API edits it: margin rules and internal identifiers (with PO numbers).
The edge loads the tenant (and a rule before deleting it) once, checks the caller's access on it, and hands it
here."""

from __future__ import annotations

from datetime import date

from shared.adapters.pricing import Identifier, ImportResult, import_identifiers as import_rows
from shared.app.context import AppContext
from shared.core.margins import MarginRule, MarginRuleIn
from shared.core.models import ApiModel, Tenant
from shared.core.problems import not_found


def create_rule(ctx: AppContext, tenant: Tenant, body: MarginRuleIn) -> MarginRule:
    """409 when it overlaps a rule of the same level, target and product."""
    return ctx.rules.create(tenant.tenant_id, body)


def list_rules(ctx: AppContext, tenant: Tenant, level: str | None, target_id: str | None) -> list[MarginRule]:
    return ctx.rules.list(tenant.tenant_id, level, target_id)


def rule_etags(ctx: AppContext, tenant: Tenant) -> dict[str, str]:
    """Each rule's ETag by id: what a client sends in If-Match to end-date it."""
    return ctx.rules.etags(tenant.tenant_id)


def end_date_rule(ctx: AppContext, tenant: Tenant, rule: MarginRule, effective_to: date | None,
                  if_match: str) -> tuple[MarginRule, str]:
    """End-date (or reopen) a rule in one conditional write: 412 when it changed since `if_match`, 409 when the
    new range overlaps another rule. Returns the rule and its new ETag."""
    return ctx.rules.end_date(tenant.tenant_id, rule.id, effective_to, if_match)


def get_rule(ctx: AppContext, tenant: Tenant, rule_id: str) -> MarginRule:
    rule = ctx.rules.get(tenant.tenant_id, rule_id)
    if rule is None:
        raise not_found(f"Margin rule {rule_id}")
    return rule


def delete_rule(ctx: AppContext, tenant: Tenant, rule: MarginRule) -> None:
    ctx.rules.delete(tenant.tenant_id, rule.id)


def put_identifier(ctx: AppContext, tenant: Tenant, kind: str, id_: str, body: ApiModel,
                   owner: str | None = None) -> Identifier:
    """`body`: the kind's `…IdentifierIn` (internal id, name, PO number); `owner`: the reseller whose lines it
    names (None: the partner's, on every line)."""
    return ctx.identifiers.put(tenant.tenant_id, Identifier(kind=kind, id=id_, owner_reseller_id=owner,
                                                            **body.model_dump()))


def find_identifier(ctx: AppContext, tenant: Tenant, kind: str, id_: str, owner: str | None) -> Identifier | None:
    """`owner`'s identifier of that id (None: the partner's), or None."""
    return ctx.identifiers.find(tenant.tenant_id, kind, id_, owner)


def list_identifiers(ctx: AppContext, tenant: Tenant) -> list[Identifier]:
    return ctx.identifiers.list(tenant.tenant_id)


def import_identifiers(ctx: AppContext, tenant: Tenant, text: str) -> ImportResult:
    """One CSV (kind,id,internalId,name,poNumber), validated as a whole: all or nothing."""
    return import_rows(ctx.identifiers, tenant.tenant_id, text)
