"""Billing exports of a file version: what is asked for, and the record of one export.

An export is derived from one stored version of a reconciliation file (its view, its prices), by a queue job:
the request answers at once (202, Queued), the job reads the version's blob and writes the export beside it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.core.models import ApiModel, Money

EXPORT_ID_NAMESPACE = uuid.UUID("0d6a7a43-4a1e-4f0c-9a57-2f8e6c1b5e13")


class ExportKind(StrEnum):
    BILLING = "billing"  # one line per customer, subscription, product and charge period
    FOCUS = "focus"  # FinOps Open Cost and Usage Specification 1.2 (daily rated usage)


class ExportFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"
    JSON = "json"
    PARQUET = "parquet"


FORMATS = {ExportKind.BILLING: (ExportFormat.CSV, ExportFormat.XLSX, ExportFormat.JSON),
           ExportKind.FOCUS: (ExportFormat.CSV, ExportFormat.PARQUET)}


class ExportStatus(StrEnum):
    QUEUED = "Queued"
    PROCESSING = "Processing"
    AVAILABLE = "Available"
    FAILED = "Failed"


class ExportIn(ApiModel):
    """`POST …/reconciliation-files/{fileId}/exports`."""

    kind: ExportKind
    format: ExportFormat = ExportFormat.CSV
    version: int | None = Field(default=None, ge=1, description="The file version; its current one when absent.")


class ExportRecord(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    id: str
    tenant_id: str
    file_id: str
    version: int
    kind: ExportKind
    format: ExportFormat
    status: ExportStatus
    created_at: datetime
    completed_at: datetime | None = None
    rows: int | None = None  # lines of the export
    source_lines: int | None = None  # lines of the file version it was made from
    amount: Money | None = None  # Σ the view's price to bill (Amount / BilledCost): the file's own total
    currency: str | None = None
    attempts: int = 0
    error: str | None = None
    file_name: str | None = None
    blob_name: str | None = None

    def public(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude={"blob_name"})


def export_id_for(tenant_id: str, file_id: str, version: int, kind: ExportKind, fmt: ExportFormat) -> str:
    """The same request names the same export: a repeated request returns it instead of making another."""
    key = "|".join([tenant_id.lower(), file_id.lower(), str(version), kind.value, fmt.value])
    return str(uuid.uuid5(EXPORT_ID_NAMESPACE, key))
