"""A tenant's pricing configuration: margin rules and internal identifiers / PO numbers, in Table Storage.

Margin rules live in `MarginRules` (PK tenant, RK rule id); identifiers in `Identifiers` (PK tenant, RK
"{kind}:{id}", or "{kind}:{id}@{reseller id}" for one a reseller owns). Rules and identifiers a reseller writes
carry its id (`ownerResellerId`) and apply only to its own lines (`shared.core.ownership`); the partner's own
(no owner) apply to every line they name. Creating a rule that overlaps another of the same level, target and
product that could apply to the same lines is refused (409).
The CSV bulk import is validated as a whole before anything is written: one bad row and nothing changes, and
every bad row is reported.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import date
from typing import Annotated, Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode
from pydantic import AfterValidator, StringConstraints, ValidationError

from shared.core.boundaries import check_file_text
from shared.core.margins import MarginRule, MarginRuleIn, Mappings, overlaps
from shared.core.models import GUID_PATTERN, MPN_ID_PATTERN, ApiModel
from shared.core.problems import Problem, bad_request, conflict, not_found
from shared.adapters.storage import Storage

IdentifierKind = Literal["reseller", "customer", "subscription"]
# Written into every file's cells: letters, digits and a few separators, never a leading = + - @ (a formula to a
# spreadsheet) nor a control character; a clear 400 naming the field otherwise (shared/core/boundaries.py).
FileText = Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(check_file_text)]
InternalId = FileText
MAX_IMPORT_ROWS = 50_000
LOCK_PREFIX = "lock:"  # RowKey of a (level, target)'s lock row in MarginRules; rule ids are GUIDs
LOCK_ATTEMPTS = 20
_ID_PATTERNS = {"reseller": MPN_ID_PATTERN, "customer": GUID_PATTERN, "subscription": GUID_PATTERN}


class ResellerIdentifierIn(ApiModel):
    internal_id: InternalId
    name: Annotated[str, StringConstraints(max_length=200)] | None = None


class CustomerIdentifierIn(ApiModel):
    internal_id: InternalId


class SubscriptionIdentifierIn(ApiModel):
    internal_id: InternalId | None = None
    po_number: FileText | None = None


class Identifier(ApiModel):
    kind: IdentifierKind
    id: str
    internal_id: str | None = None
    name: str | None = None
    po_number: str | None = None
    owner_reseller_id: str | None = None  # the reseller that wrote it (its own lines only); None: the partner's

    @property
    def row_key(self) -> str:
        return row_key(self.kind, self.id, self.owner_reseller_id)


def row_key(kind: str, id_: str, owner: str | None = None) -> str:
    return f"{kind}:{id_}" + (f"@{owner}" if owner else "")


class ImportResult(ApiModel):
    imported: int
    resellers: int = 0
    customers: int = 0
    subscriptions: int = 0


class RowError(ApiModel):
    line: int
    field: str | None = None
    message: str


def check_target_id(kind: str, value: str, field: str) -> str:
    if not re.fullmatch(_ID_PATTERNS[kind], value):
        shape = "an MPN id (at most 10 digits)" if kind == "reseller" else "a GUID"
        raise bad_request(f"A {kind} id must be {shape}.", field)
    return value.lower()


class MarginRuleRepository:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("MarginRules")

    def list(self, tenant_id: str, level: str | None = None, target_id: str | None = None) -> list[MarginRule]:
        clauses, params = ["PartitionKey eq @pk"], {"pk": tenant_id}
        if level:
            clauses.append("level eq @level")
            params["level"] = level
        if target_id:
            clauses.append("target_id eq @target")
            params["target"] = target_id.lower()
        rows = self.table.query_entities(" and ".join(clauses), parameters=params)
        rules = [_rule(e) for e in rows if not e["RowKey"].startswith(LOCK_PREFIX)]
        return sorted(rules, key=lambda r: (r.level.value, r.target_id, r.effective_from, r.id))

    def create(self, tenant_id: str, body: MarginRuleIn) -> MarginRule:
        """Insert a rule unless it overlaps another; the check and the insert are one guarded step.

        Each (level, target) has a lock row in the same partition. The rule is inserted in one transaction with
        an ETag-guarded write of that row, so of two requests that both read "no overlap", only the first commits;
        the second reads again, now sees the first rule, and is refused (409)."""
        rule = MarginRule(id=str(uuid.uuid4()), **body.model_dump())
        rule = rule.model_copy(update={"target_id": rule.target_id.lower()})
        if rule.level.value == "reseller":  # an id file requests take (a longer one failed the poller later)
            check_target_id("reseller", rule.target_id, "targetId")
        entity = {"PartitionKey": tenant_id, "RowKey": rule.id,
                  **rule.model_dump(mode="json", exclude={"id"}, exclude_none=True)}
        for _ in range(LOCK_ATTEMPTS):
            guard = self._lock_guard(tenant_id, rule)
            for other in self.list(tenant_id, rule.level.value, rule.target_id):
                if overlaps(rule, other):
                    raise conflict(f"This rule overlaps rule {other.id} for the same {rule.level.value}, target "
                                   "and product; end that rule first (effectiveTo) or choose other dates.")
            try:
                self.table.submit_transaction([guard, ("create", entity)])
                return rule
            except TableTransactionError:
                continue  # another rule for this target was written meanwhile: check again
        raise Problem(503, "Busy", "Margin rules for this target keep changing; try again.")

    def _lock_guard(self, tenant_id: str, rule: MarginRule) -> tuple:
        """The transaction step that claims the (level, target)'s lock row as it was just read: any other write
        for the same target between this read and the commit makes the whole transaction fail."""
        lock_key = f"{LOCK_PREFIX}{rule.level.value}:{rule.target_id}"
        try:
            lock = self.table.get_entity(tenant_id, lock_key)
        except ResourceNotFoundError:
            return ("create", {"PartitionKey": tenant_id, "RowKey": lock_key, "rule": rule.id})
        return ("update", {"PartitionKey": tenant_id, "RowKey": lock_key, "rule": rule.id},
                {"mode": UpdateMode.REPLACE, "etag": lock.metadata["etag"],
                 "match_condition": MatchConditions.IfNotModified})

    def get(self, tenant_id: str, rule_id: str) -> MarginRule | None:
        if rule_id.startswith(LOCK_PREFIX):
            return None
        try:
            return _rule(self.table.get_entity(tenant_id, rule_id))
        except ResourceNotFoundError:
            return None

    def get_tagged(self, tenant_id: str, rule_id: str) -> tuple[MarginRule, str] | None:
        """A rule and its ETag (for `If-Match`)."""
        if rule_id.startswith(LOCK_PREFIX):
            return None
        try:
            entity = self.table.get_entity(tenant_id, rule_id)
        except ResourceNotFoundError:
            return None
        return _rule(entity), entity.metadata["etag"]

    def etags(self, tenant_id: str) -> dict[str, str]:
        """Every rule's ETag by id: the page sends one back with `PATCH` (If-Match)."""
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id}, select=["RowKey"])
        return {e["RowKey"]: e.metadata["etag"] for e in rows if not e["RowKey"].startswith(LOCK_PREFIX)}

    def end_date(self, tenant_id: str, rule_id: str, effective_to: date | None, etag: str) -> tuple[MarginRule, str]:
        """Set (or clear) a rule's end in one conditional write: only if the rule is still the version the caller
        read (`etag`, else 412), still valid, and not then overlapping another rule (409). Guarded by the target's
        lock row like `create`, so a rule created meanwhile cannot slip into the range this one leaves or takes."""
        changed_by_others = Problem(412, "Precondition failed", "The rule changed since you read it; read it again.")
        for _ in range(LOCK_ATTEMPTS):
            loaded = self.get_tagged(tenant_id, rule_id)
            if loaded is None:
                raise not_found(f"Margin rule {rule_id}")
            rule, current = loaded
            if etag != "*" and etag != current:
                raise changed_by_others
            try:
                changed = MarginRule.model_validate({**rule.model_dump(), "effective_to": effective_to})
            except ValidationError as exc:
                raise bad_request(str(exc.errors(include_url=False)[0]["msg"]).removeprefix("Value error, "),
                                  "effectiveTo")
            guard = self._lock_guard(tenant_id, rule)
            for other in self.list(tenant_id, rule.level.value, rule.target_id):
                if other.id != rule.id and overlaps(changed, other):
                    raise conflict(f"With this end the rule would overlap rule {other.id} for the same "
                                   f"{rule.level.value}, target and product.")
            entity = {"PartitionKey": tenant_id, "RowKey": rule.id,
                      **changed.model_dump(mode="json", exclude={"id"}, exclude_none=True)}
            write = ("update", entity, {"mode": UpdateMode.REPLACE, "etag": current,
                                        "match_condition": MatchConditions.IfNotModified})
            try:
                results = self.table.submit_transaction([guard, write])
            except TableTransactionError:
                continue  # the rule or its target changed meanwhile: read both again (412 if it was the rule)
            return changed, results[1].get("etag") or self.get_tagged(tenant_id, rule_id)[1]  # type: ignore[index]
        raise Problem(503, "Busy", "Margin rules for this target keep changing; try again.")

    def delete(self, tenant_id: str, rule_id: str) -> None:
        if rule_id.startswith(LOCK_PREFIX):
            raise not_found(f"Margin rule {rule_id}")
        try:
            self.table.get_entity(tenant_id, rule_id)
        except ResourceNotFoundError:
            raise not_found(f"Margin rule {rule_id}")
        self.table.delete_entity(tenant_id, rule_id)


def _rule(entity: dict[str, Any]) -> MarginRule:
    data = {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")}
    return MarginRule(id=entity["RowKey"], **data)


class IdentifierRepository:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table("Identifiers")

    def put(self, tenant_id: str, identifier: Identifier) -> Identifier:
        entity = {"PartitionKey": tenant_id, "RowKey": identifier.row_key,
                  **identifier.model_dump(mode="json", exclude_none=True)}
        self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        return identifier

    def get(self, tenant_id: str, kind: str, id_: str, owner: str | None = None) -> Identifier:
        found = self.find(tenant_id, kind, id_, owner)
        if found is None:
            raise not_found(f"The {kind} {id_}")
        return found

    def find(self, tenant_id: str, kind: str, id_: str, owner: str | None = None) -> Identifier | None:
        try:
            return _identifier(self.table.get_entity(tenant_id, row_key(kind, id_, owner)))
        except ResourceNotFoundError:
            return None

    def list(self, tenant_id: str) -> list[Identifier]:
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id})
        return [_identifier(e) for e in rows]

    def mappings(self, tenant_id: str) -> Mappings:
        """The partner's identifiers, and each owning reseller's own (`Mappings.owned`)."""
        mappings = Mappings()
        for ident in self.list(tenant_id):
            if ident.owner_reseller_id:
                _add(mappings.owned.setdefault(ident.owner_reseller_id, Mappings()), ident)
            else:
                _add(mappings, ident)
        return mappings

    def put_many(self, tenant_id: str, identifiers: list[Identifier]) -> None:
        """Upsert in transactions of 100 (Table Storage's limit); idempotent, so a retried import completes."""
        ops = [("upsert", {"PartitionKey": tenant_id, "RowKey": i.row_key,
                           **i.model_dump(mode="json", exclude_none=True)}, {"mode": UpdateMode.REPLACE})
               for i in identifiers]
        for start in range(0, len(ops), 100):
            self.table.submit_transaction(ops[start:start + 100])


def _add(mappings: Mappings, ident: Identifier) -> None:
    if ident.kind == "reseller" and ident.internal_id:
        mappings.resellers[ident.id] = ident.internal_id
    elif ident.kind == "customer" and ident.internal_id:
        mappings.customers[ident.id] = ident.internal_id
    elif ident.kind == "subscription":
        if ident.internal_id:
            mappings.subscriptions[ident.id] = ident.internal_id
        if ident.po_number:
            mappings.po_numbers[ident.id] = ident.po_number


def _identifier(entity: dict[str, Any]) -> Identifier:
    return Identifier.model_validate({k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")})


# ---- CSV bulk import ---------------------------------------------------------------------------------------------

IMPORT_COLUMNS = ("kind", "id", "internalId", "name", "poNumber")
_IMPORT_MODELS: dict[str, type[ApiModel]] = {
    "reseller": ResellerIdentifierIn, "customer": CustomerIdentifierIn, "subscription": SubscriptionIdentifierIn,
}


def parse_import(text: str) -> list[Identifier]:
    """Validate a whole CSV (`kind,id,internalId,name,poNumber`); raise a 400 listing every bad row."""
    try:
        return _parse_import(text)
    except csv.Error as exc:  # e.g. a cell over the csv module's 131,072-character limit: a 400, never a 500
        raise bad_request(f"The CSV could not be read ({exc}).", "body") from None


def _parse_import(text: str) -> list[Identifier]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in ("kind", "id") if c not in header]
    unknown = [c for c in header if c not in IMPORT_COLUMNS]
    if missing or unknown:
        detail = "The CSV header must be kind,id,internalId,name,poNumber"
        raise bad_request(f"{detail} (missing: {missing or 'none'}; unknown: {unknown or 'none'}).", "header")
    errors: list[RowError] = []
    out: list[Identifier] = []
    seen: dict[tuple[str, str], int] = {}
    for n, row in enumerate(reader, start=2):
        if n - 1 > MAX_IMPORT_ROWS:
            raise bad_request(f"At most {MAX_IMPORT_ROWS} rows can be imported at once.", "body")
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        kind = row.get("kind", "").lower()
        if kind not in _IMPORT_MODELS:
            errors.append(RowError(line=n, field="kind", message="kind must be reseller, customer or subscription"))
            continue
        id_ = row.get("id", "")
        if not re.fullmatch(_ID_PATTERNS[kind], id_):
            errors.append(RowError(line=n, field="id", message=f"not a valid {kind} id"))
            continue
        key = (kind, id_.lower())
        if key in seen:
            errors.append(RowError(line=n, field="id", message=f"duplicate of line {seen[key]}"))
            continue
        seen[key] = n
        fields = {"internalId": row.get("internalId") or None}
        if kind == "reseller":
            fields["name"] = row.get("name") or None
        if kind == "subscription":
            fields["poNumber"] = row.get("poNumber") or None
        elif row.get("poNumber"):
            errors.append(RowError(line=n, field="poNumber", message="only subscriptions have a PO number"))
            continue
        try:
            body = _IMPORT_MODELS[kind].model_validate({k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                errors.append(RowError(line=n, field=".".join(map(str, err["loc"])) or None, message=err["msg"]))
            continue
        out.append(Identifier(kind=kind, id=id_.lower(), **body.model_dump()))
    if errors:
        raise Problem(400, "Invalid import", f"{len(errors)} row(s) are invalid; nothing was imported.",
                      errors=[e.model_dump(by_alias=True) for e in errors])
    return out


def import_identifiers(repo: IdentifierRepository, tenant_id: str, text: str) -> ImportResult:
    identifiers = parse_import(text)
    repo.put_many(tenant_id, identifiers)
    counts = {k: sum(1 for i in identifiers if i.kind == k) for k in ("reseller", "customer", "subscription")}
    return ImportResult(imported=len(identifiers), resellers=counts["reseller"], customers=counts["customer"],
                        subscriptions=counts["subscription"])

