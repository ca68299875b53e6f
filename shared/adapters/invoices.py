"""Microsoft's invoices for a tenant, and which reconciliation file types each one has data for."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.core.columns import FileType
from shared.core.money import Decimal
from shared.core.models import ApiModel, Tenant
from shared.adapters.partner_center.client import PartnerCenterClient
from shared.adapters.partner_center.transport import Credentials, Transport
from shared.adapters.settings import Settings

# Partner Center billing provider -> the file types whose data it carries.
PROVIDER_FILE_TYPES: dict[str, tuple[FileType, ...]] = {
    "one_time": (FileType.ONETIME, FileType.DAILY),
    "onetime": (FileType.ONETIME, FileType.DAILY),
    "marketplace": (FileType.DAILY,),
    "office": (FileType.LICENSE,),
    "azure": (FileType.USAGE,),
}


class Amendment(ApiModel):
    id: str
    document_type: str | None = None
    amends_of: str | None = None


class InvoiceSummary(ApiModel):
    id: str
    invoice_date: datetime | None = None
    billing_period_start: datetime | None = None
    billing_period_end: datetime | None = None
    total_charges: Decimal | None = None
    currency: str | None = None
    document_type: str | None = None
    invoice_type: str | None = None
    file_types: list[FileType]
    amendments: list[Amendment] = []


def client_for(tenant: Tenant, settings: Settings, correlation_id: str | None = None) -> PartnerCenterClient:
    """A Partner Center client signed in as the tenant's app (its secret comes from the named app setting)."""
    creds = Credentials(tenant.tenant_id, tenant.client_id, tenant.client_secret_setting)
    transport = Transport(creds, settings) if correlation_id is None else \
        Transport(creds, settings, correlation_id=correlation_id)
    return PartnerCenterClient(transport)


def file_types_of(invoice: dict[str, Any]) -> list[FileType]:
    types: list[FileType] = []
    for detail in invoice.get("invoiceDetails") or []:
        for file_type in PROVIDER_FILE_TYPES.get(str(detail.get("billingProvider", "")).lower(), ()):
            if file_type not in types:
                types.append(file_type)
    return types


def summarize(invoice: dict[str, Any]) -> InvoiceSummary:
    return InvoiceSummary(
        id=str(invoice["id"]),
        invoice_date=invoice.get("invoiceDate"),
        billing_period_start=invoice.get("billingPeriodStartDate"),
        billing_period_end=invoice.get("billingPeriodEndDate"),
        total_charges=invoice.get("totalCharges"),
        currency=invoice.get("currencyCode"),
        document_type=invoice.get("documentType"),
        invoice_type=invoice.get("invoiceType"),
        file_types=file_types_of(invoice),
        amendments=[Amendment(id=str(a.get("id")), document_type=a.get("documentType"),
                              amends_of=a.get("amendsOf")) for a in invoice.get("amendments") or []],
    )


def list_invoices(client: PartnerCenterClient) -> list[InvoiceSummary]:
    summaries = [summarize(i) for i in client.list_invoices()]
    return sorted(summaries, key=lambda s: (s.invoice_date is None, s.invoice_date), reverse=True)
