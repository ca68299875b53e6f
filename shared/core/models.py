"""Pydantic models at the edges: HTTP request bodies, API responses and stored records.

Requests refuse unknown fields (a typo must not be silently ignored). JSON is camelCase.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel

from shared.core.boundaries import (
    SECRET_SETTING_PATTERN,
    SECRET_SETTING_PREFIX,
    check_secret_setting_name,
    full_match,
)
from shared.core.columns import FileType
from shared.core.money import ZERO, Decimal, exact_sum, plain

GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
INVOICE_ID_PATTERN = r"^([A-Za-z0-9]{1,32}|(?i:unbilled-(current|last)))$"
UNBILLED_PREFIX = "UNBILLED-"  # "unbilled-current" / "unbilled-last": usage before its invoice exists
MPN_ID_PATTERN = r"^[0-9]{1,10}$"

Guid = Annotated[str, StringConstraints(pattern=GUID_PATTERN)]


# Money in API responses: exact text (JSON numbers would pass through float in most clients).
Money = Annotated[Decimal, PlainSerializer(plain, return_type=str, when_used="json")]
InvoiceId = Annotated[str, StringConstraints(pattern=INVOICE_ID_PATTERN)]
MpnId = Annotated[str, StringConstraints(pattern=MPN_ID_PATTERN)]


def is_guid(value: str) -> bool:
    return full_match(GUID_PATTERN, value)


# Pydantic checks `pattern=` with Rust's regex, where `$` is the end of the text: "1234567\n" is refused there
# (tests/core/test_boundaries.py checks it); Python-side checks use `full_match`.
SecretSettingName = Annotated[str, AfterValidator(check_secret_setting_name)]


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              str_strip_whitespace=True)


class FileStatus(StrEnum):
    QUEUED = "Queued"
    PROCESSING = "Processing"
    AVAILABLE = "Available"
    FAILED = "Failed"
    NEEDS_REVIEW = "NeedsReview"  # made, with error findings, while VALIDATION_BLOCKS is on; still downloadable
    # Never stored: what a reseller or customer is shown of a file with no approved version (shared/app/approval.py).
    AWAITING_APPROVAL = "AwaitingApproval"


SETTLED_STATUSES = (FileStatus.AVAILABLE, FileStatus.FAILED, FileStatus.NEEDS_REVIEW)
DOWNLOADABLE_STATUSES = (FileStatus.AVAILABLE, FileStatus.NEEDS_REVIEW)


class View(StrEnum):
    PARTNER = "partner"
    RESELLER = "reseller"
    CUSTOMER = "customer"


class FileFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"
    PARQUET = "parquet"


class DataSource(StrEnum):
    GRAPH = "graph"
    V1 = "v1"


class CsvFormat(ApiModel):
    """Regional CSV format: partners in many countries open these files in Excel (the request field, the tenant's
    default and what the CSV writer is given)."""

    delimiter: Literal[",", ";", "\t", "|"] = ","
    decimal_separator: Literal[".", ","] = "."
    date_format: Literal["iso", "us", "eu"] = "iso"

    @model_validator(mode="after")
    def _distinct(self) -> "CsvFormat":
        if self.delimiter == self.decimal_separator:
            raise ValueError("delimiter and decimalSeparator must differ")
        return self


# ---- tenants ---------------------------------------------------------------------------------------------------

class TenantIn(ApiModel):
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    client_id: Guid
    client_secret_setting: SecretSettingName = Field(
        description=f"Name of the app setting that holds the client secret (a Key Vault reference in Azure); it "
                    f"must start with {SECRET_SETTING_PREFIX}.",
        json_schema_extra={"pattern": SECRET_SETTING_PATTERN},
    )
    billing_anniversary_day: int | None = Field(default=None, ge=1, le=31)
    csv_format: CsvFormat | None = None
    auto_approve: bool = Field(default=False, description=(
        "Approve each new file version without error findings as soon as it is made (resellers and customers see "
        "approved versions only)."))


class Tenant(ApiModel):
    tenant_id: str
    display_name: str
    client_id: str
    client_secret_setting: str
    billing_anniversary_day: int | None = None
    csv_format: CsvFormat | None = None
    auto_approve: bool = False
    created_at: datetime
    updated_at: datetime


# ---- reconciliation files -------------------------------------------------------------------------------------

class FileRequest(ApiModel):
    invoice_type: FileType
    invoice_id: InvoiceId
    view: View = View.PARTNER
    reseller_id: MpnId | None = Field(default=None, description=(
        "The reseller's MPN id: with view=reseller, its lines; with view=customer, only its lines of that customer "
        "(a reseller's own customer-view requests are narrowed to it)."))
    customer_id: Guid | None = None
    format: FileFormat = FileFormat.CSV
    csv_format: CsvFormat | None = None  # default: the tenant's, else comma / point / ISO dates
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")] | None = Field(
        default=None, description="Billing currency; required for unbilled-current / unbilled-last.")


class ChargesScope(ApiModel):
    """What the charges API pages through: one file type of an invoice, in one view."""

    invoice_type: FileType
    view: View = View.PARTNER
    reseller_id: MpnId | None = None
    customer_id: Guid | None = None


class Totals(ApiModel):
    """A file's sums (exact; see shared.core.money). `cost` and `microsoftTotal` (Microsoft's own amounts) appear
    in partner views' records only. While a file is made, one per segment, added up once the segment is complete."""

    cost: Money | None = None
    microsoft_total: Money | None = None
    reseller: Money = ZERO
    customer: Money = ZERO

    def plus(self, other: "Totals") -> "Totals":
        def both(a: Decimal | None, b: Decimal | None) -> Decimal | None:
            return None if a is None and b is None else exact_sum((a, b))

        return Totals(cost=both(self.cost, other.cost), microsoft_total=both(self.microsoft_total, other.microsoft_total),
                      reseller=exact_sum((self.reseller, other.reseller)),
                      customer=exact_sum((self.customer, other.customer)))

    def for_view(self, partner: bool) -> "Totals":
        """What a record of this view shows: Microsoft's amounts only to partners."""
        return self if partner else self.model_copy(update={"cost": None, "microsoft_total": None})


class Unmapped(ApiModel):
    """Lines whose customer or subscription has no internal id yet (the partner may want to map them first)."""

    customer_lines: int = 0
    first_customer_id: str | None = None
    subscription_lines: int = 0
    first_subscription_id: str | None = None


def _json_text_in(value: object) -> object:
    if isinstance(value, str):
        import json

        return json.loads(value)
    return value


def _json_text_out(value: dict) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# Stored in Table Storage as JSON text (an entity holds no nested objects); `FileRecord.public` shows the object.
JsonObject = Annotated[dict, BeforeValidator(_json_text_in), PlainSerializer(_json_text_out, return_type=str,
                                                                              when_used="json")]


class FileRecord(ApiModel):
    """The status of one reconciliation file (its current version)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    id: str
    tenant_id: str
    invoice_type: FileType
    invoice_id: str
    view: View = View.PARTNER
    reseller_id: str | None = None
    customer_id: str | None = None
    format: FileFormat = FileFormat.CSV
    csv_format: CsvFormat | None = None
    currency: str | None = None
    status: FileStatus
    version: int = 1
    reason: str = "requested"
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    row_count: int | None = None
    progress_rows: int | None = None
    parts_total: int | None = None  # a file made part by part on several instances (fan-out): its parts
    parts_done: int | None = None  # … and how many of them are staged
    totals: Totals | None = None
    invoice_total: Money | None = None
    invoice_difference: Money | None = None  # invoiceTotal - microsoftTotal, where one file makes up the invoice
    unmapped: Unmapped | None = None
    undated_lines: int | None = None
    no_cost_lines: int | None = Field(default=None, description=(
        "Lines whose cost column (Subtotal, PretaxCharges or BillingPreTaxTotal) is empty: they are not in the "
        "totals and have no margin; each is an error finding (MISSING_COST) in the partner view."))
    source: DataSource | None = None
    data_version: str | None = None
    snapshot_id: str | None = None  # the invoice snapshot (blob prefix) this version's lines were read from
    attempts: int = 0
    error: str | None = None
    transient: bool | None = None  # for a Failed file: whether a later attempt may succeed (the poller retries)
    file_name: str | None = None
    blob_name: str | None = None
    lease_until: datetime | None = None  # internal: a running generation's lease
    enqueued_at: datetime | None = None  # internal: when this version's message was last sent (stranded check)
    billing_period_start: date | None = None  # the invoice's billing period (month-over-month validation)
    # Validation findings of a partner-view file: {error, warning, info, byRule: {rule: {severity: n}}, kept}.
    findings: JsonObject | None = None
    # The version resellers and customers see (a partner admin approved it, or auto-approval did); a newer version
    # waits for approval while this one stays what they see.
    approved_version: int | None = None
    approved_by: str | None = None
    approved_at: datetime | None = None

    def public(self, viewer: "View | str" = "partner") -> dict:
        """The API view for a caller who may see `viewer`'s figures (`Access.viewer`): internal bookkeeping (blob
        path, lease) stays inside; a reseller sees no Microsoft amount (cost, Microsoft's total, the invoice's
        total and difference, validation findings); a customer only its own price; neither sees Microsoft's or
        Entra's raw words in a failure (`plain_error`)."""
        viewer = View(viewer)
        data = self.model_dump(mode="json", by_alias=True, exclude={"blob_name", "lease_until", "enqueued_at"})
        if self.findings is not None:
            data["findings"] = self.findings
        if viewer == View.PARTNER:
            return data
        for key in ("invoiceTotal", "invoiceDifference", "findings"):
            data.pop(key, None)
        keep = ("reseller", "customer") if viewer == View.RESELLER else ("customer",)
        if data.get("totals") is not None:
            data["totals"] = {k: v for k, v in data["totals"].items() if k in keep}
        if viewer == View.CUSTOMER:
            data.pop("unmapped", None)  # the partner's and reseller's bookkeeping of their own ids
        data["error"] = plain_error(self.error, self.transient) if self.error else None
        data["reason"] = plain_reason(self.reason)
        return data


def plain_error(error: str | None, transient: bool | None) -> str | None:
    """A failure as a reseller or customer is told it: a plain sentence, never Microsoft's or Entra's own text
    (which may name the partner's tenant, app or internals). Partners see the detail."""
    if not error:
        return None
    if transient:
        return "The file could not be made this time; it will be tried again. Ask your partner if it persists."
    return "The file could not be made. Your partner can see the reason."


def plain_reason(reason: str) -> str:
    """Why a version was made, without the detail a reason may quote (an eTag, a failure's text)."""
    return re.split(r" \(|: ", reason, maxsplit=1)[0]


class FindingsPage(ApiModel):
    items: list[dict]
    continuation_token: str | None = None


class FileList(ApiModel):
    items: list[FileRecord]


# ---- monthly automation ---------------------------------------------------------------------------------------




class AutomationIn(ApiModel):
    """What the poller makes for a tenant. `fileTypes` None: every type each invoice has."""

    enabled: bool = False
    file_types: list[FileType] | None = None
    reseller_views: bool = False  # also a reseller view per type for every reseller with a margin rule
    start_from: date | None = Field(default=None, description="Only invoices whose billing period starts on or "
                                                               "after this day (no back-filling of old years).")


class AutomationSettings(AutomationIn):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    tenant_id: str
    updated_at: datetime | None = None


class Claim(ApiModel):
    """A regeneration the poller decided on: done once the file's version has moved past `from_version`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    from_version: int
    reason: str


class InvoiceState(ApiModel):
    """An invoice the poller has seen (Invoices table, PK tenant, RK invoice id) and what it did about it.

    The poller's work is derived from this state on every run, so a crash, a past-due run or two runs at once
    neither lose nor duplicate files.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    tenant_id: str
    invoice_id: str
    document_type: str | None = None
    invoice_date: datetime | None = None
    billing_period_start: date | None = None
    billing_period_end: date | None = None
    file_types: list[FileType] = []
    discovered_at: datetime
    requested: dict[str, str] = {}  # selection key ("onetime:partner::csv") -> file id
    revisions: dict[str, str] = {}  # file id -> manifest eTag that triggered its regeneration
    retries: dict[str, int] = {}  # file id -> automatic retries after transient failures
    pending: dict[str, Claim] = {}  # file id -> regeneration decided, maybe not yet done
    announced: bool | None = None  # invoice.detected published (None: recorded before events existed)


class BulkRegenerateIn(ApiModel):
    """`POST …/reconciliation-files:regenerate`: every Available or Failed file matching all given fields."""

    invoice_id: InvoiceId | None = None
    invoice_type: FileType | None = None
    view: View | None = None
