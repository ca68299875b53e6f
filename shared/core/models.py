"""Pydantic models at the edges: HTTP request bodies, API responses and stored records.

Requests refuse unknown fields (a typo must not be silently ignored). JSON is camelCase.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

from shared.core.columns import FileType

GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
INVOICE_ID_PATTERN = r"^([A-Za-z0-9]{1,32}|(?i:unbilled-(current|last)))$"
UNBILLED_PREFIX = "UNBILLED-"  # "unbilled-current" / "unbilled-last": usage before its invoice exists
MPN_ID_PATTERN = r"^[0-9]{1,10}$"
SETTING_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"

Guid = Annotated[str, StringConstraints(pattern=GUID_PATTERN)]


def plain_decimal(value: Decimal) -> str:
    """Exact decimal text without trailing zeros or exponent: Decimal("12.5000") -> "12.5"."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


# Money in API responses: exact text (JSON numbers would pass through float in most clients).
Money = Annotated[Decimal, PlainSerializer(plain_decimal, return_type=str, when_used="json")]
InvoiceId = Annotated[str, StringConstraints(pattern=INVOICE_ID_PATTERN)]
MpnId = Annotated[str, StringConstraints(pattern=MPN_ID_PATTERN)]


def is_guid(value: str) -> bool:
    return bool(re.match(GUID_PATTERN, value))


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              str_strip_whitespace=True)


class FileStatus(StrEnum):
    QUEUED = "Queued"
    PROCESSING = "Processing"
    AVAILABLE = "Available"
    FAILED = "Failed"
    NEEDS_REVIEW = "NeedsReview"  # made, with error findings, while VALIDATION_BLOCKS is on; still downloadable


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


class CsvOptions(ApiModel):
    """Regional CSV format: partners in many countries open these files in Excel."""

    delimiter: Literal[",", ";", "\t", "|"] = ","
    decimal_separator: Literal[".", ","] = "."
    date_format: Literal["iso", "us", "eu"] = "iso"

    @model_validator(mode="after")
    def _distinct(self) -> "CsvOptions":
        if self.delimiter == self.decimal_separator:
            raise ValueError("delimiter and decimalSeparator must differ")
        return self


# ---- tenants ---------------------------------------------------------------------------------------------------

class TenantIn(ApiModel):
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    client_id: Guid
    client_secret_setting: Annotated[str, StringConstraints(pattern=SETTING_NAME_PATTERN)] = Field(
        description="Name of the app setting that holds the client secret (a Key Vault reference in Azure)."
    )
    billing_anniversary_day: int | None = Field(default=None, ge=1, le=31)
    csv_format: CsvOptions | None = None


class Tenant(ApiModel):
    tenant_id: str
    display_name: str
    client_id: str
    client_secret_setting: str
    billing_anniversary_day: int | None = None
    csv_format: CsvOptions | None = None
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
    csv_format: CsvOptions | None = None  # default: the tenant's, else comma / point / ISO dates
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")] | None = Field(
        default=None, description="Billing currency; required for unbilled-current / unbilled-last.")


class ChargesScope(ApiModel):
    """What the charges API pages through: one file type of an invoice, in one view."""

    invoice_type: FileType
    view: View = View.PARTNER
    reseller_id: MpnId | None = None
    customer_id: Guid | None = None


class Totals(ApiModel):
    """A file's sums. `cost` and `microsoftTotal` (Microsoft's own amounts) appear in partner views only."""

    cost: Money | None = None
    microsoft_total: Money | None = None
    reseller: Money = Decimal(0)
    customer: Money = Decimal(0)


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
    csv_format: CsvOptions | None = None
    currency: str | None = None
    status: FileStatus
    version: int = 1
    reason: str = "requested"
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    row_count: int | None = None
    progress_rows: int | None = None
    totals: Totals | None = None
    invoice_total: Money | None = None
    invoice_difference: Money | None = None  # invoiceTotal - microsoftTotal, where one file makes up the invoice
    unmapped: Unmapped | None = None
    undated_lines: int | None = None
    source: DataSource | None = None
    data_version: str | None = None
    snapshot_id: str | None = None  # the invoice snapshot (blob prefix) this version's lines were read from
    attempts: int = 0
    error: str | None = None
    transient: bool | None = None  # for a Failed file: whether a later attempt may succeed (the poller retries)
    file_name: str | None = None
    blob_name: str | None = None
    lease_until: datetime | None = None  # internal: a running generation's lease
    billing_period_start: date | None = None  # the invoice's billing period (month-over-month validation)
    # Validation findings of a partner-view file: {error, warning, info, byRule: {rule: {severity: n}}, kept}.
    findings: JsonObject | None = None

    def public(self) -> dict:
        """The API view: internal bookkeeping (blob path, lease) stays inside."""
        data = self.model_dump(mode="json", by_alias=True, exclude={"blob_name", "lease_until"})
        if self.findings is not None:
            data["findings"] = self.findings
        return data


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


class BulkRegenerateIn(ApiModel):
    """`POST …/reconciliation-files:regenerate`: every Available or Failed file matching all given fields."""

    invoice_id: InvoiceId | None = None
    invoice_type: FileType | None = None
    view: View | None = None
