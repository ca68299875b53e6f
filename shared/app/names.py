"""The margins page's use cases: find resellers, customers and subscriptions by name, and preview a rule.

Names come from Microsoft's lines (the names index, written with every partner-view file) and from the partner's
own identifiers (a reseller's name, internal ids). The preview runs the margin engine over the latest invoice's
partner-view file, as the file would be made again today without and with the rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.adapters.file_readers import READABLE_FORMATS, read_version
from shared.app.context import AppContext
from shared.core.columns import layout_for
from shared.core.margins import MarginRule, overlaps
from shared.core.models import DOWNLOADABLE_STATUSES, UNBILLED_PREFIX, FileRecord, View
from shared.core.names import NameEntry, matches
from shared.core.preview import PREVIEW_RULE_ID, RulePreview, RulePreviewIn, totals
from shared.core.problems import Problem, conflict

MAX_RESULTS = 100
KINDS = ("reseller", "customer", "subscription")


def search_names(ctx: AppContext, tenant_id: str, query: str, kind: str | None, top: int,
                 visible: Callable[[NameEntry], bool], ids: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Entries whose name, id or customer's name holds every word of `query` (all when empty), or whose id is one
    of `ids` (the page naming the targets of the rules it lists), that the caller may see (`visible`), resellers,
    then customers, then subscriptions, each by name."""
    identifiers = {(i.kind, i.id): i for i in ctx.identifiers.list(tenant_id)}
    found = []
    for entry in ctx.names.list(tenant_id):
        if kind and entry.kind != kind:
            continue
        ident = identifiers.get((entry.kind, entry.id))
        if entry.kind == "reseller" and ident is not None and ident.name:
            entry = NameEntry(entry.kind, entry.id, ident.name)
        if ids and entry.id not in ids:
            continue
        if query and not matches(entry, query):
            continue
        if not visible(entry):
            continue
        found.append((entry, ident))
    found.sort(key=lambda p: (KINDS.index(p[0].kind), (p[0].name or "~").casefold(), p[0].id))
    return [_item(e, i) for e, i in found[:top]]


def _item(entry: NameEntry, ident: Any) -> dict[str, Any]:
    item = {"kind": entry.kind, "id": entry.id, "name": entry.name, "customerId": entry.customer_id,
            "customerName": entry.customer_name, "resellerIds": list(entry.reseller_ids),
            "internalId": getattr(ident, "internal_id", None)}
    return {k: v for k, v in item.items() if v not in (None, [])}


def latest_partner_file(ctx: AppContext, tenant_id: str, body: RulePreviewIn) -> FileRecord:
    """The latest invoice's partner-view file of the type, readable exactly (CSV or Parquet)."""
    candidates = [r for r in ctx.files.list(tenant_id, invoice_type=body.invoice_type.value, view=View.PARTNER.value)
                  if r.status in DOWNLOADABLE_STATUSES and r.blob_name and r.format in READABLE_FORMATS
                  and not r.invoice_id.startswith(UNBILLED_PREFIX)]
    if not candidates:
        raise conflict(f"There is no {body.invoice_type.value} partner-view file (CSV or Parquet) to preview the rule "
                       "on yet: generate the latest invoice's file first.")
    return max(candidates, key=lambda r: (r.billing_period_start or r.created_at.date(), r.invoice_id,
                                          r.completed_at or r.created_at))


def preview_rule(ctx: AppContext, tenant_id: str, body: RulePreviewIn,
                 reseller_ids: frozenset[str] | None = None) -> dict[str, Any]:
    """Today's price, the new price and the difference per affected customer of the latest invoice."""
    rules = ctx.rules.list(tenant_id)
    candidate = MarginRule(id=PREVIEW_RULE_ID, **body.model_dump(exclude={"invoice_type"}))
    candidate = candidate.model_copy(update={"target_id": candidate.target_id.lower()})
    clash = next((r for r in rules if overlaps(candidate, r)), None)
    if clash is not None:  # the same refusal the save would give
        raise conflict(f"This rule overlaps rule {clash.id} for the same {candidate.level.value}, target and product; "
                       "end that rule first (effectiveTo) or choose other dates.")
    record = latest_partner_file(ctx, tenant_id, body)
    layout = layout_for(record.invoice_type)
    preview = RulePreview(layout, rules, candidate, reseller_ids)
    try:
        for batch in read_version(ctx.storage.files.get_blob_client(record.blob_name), layout, record.format,
                                  record.csv_format):
            preview.add(batch)
    except ValueError as exc:
        raise Problem(409, "Cannot preview", str(exc))
    except ResourceNotFoundError:  # the version's blob was removed (retention) while its record stayed
        raise Problem(409, "Cannot preview", f"The {record.invoice_id} file's blob is gone; regenerate the file.")
    customers = preview.customers()
    return {"invoiceId": record.invoice_id, "invoiceType": record.invoice_type.value, "fileId": record.id,
            "version": record.version, "lines": preview.lines, "customers": customers, "totals": totals(customers)}
