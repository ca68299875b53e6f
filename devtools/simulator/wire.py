"""JSON as Microsoft serves it, written by hand so that numbers go out as exact decimal text, never via float.

Partner Center v1 items use lowerCamel keys of the column names (with Microsoft's renames) and, for about a third
of the rows, numeric strings instead of JSON numbers (reference §2.5); Graph export blobs use the column names.
A few rows carry a field no client knows yet.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from decimal import Decimal
from operator import itemgetter

from shared.core.columns import FileType, layout_for

from .det import number
from .rows import Dataset, Row

_encode_str = json.encoder.encode_basestring  # the C implementation; keeps non-ASCII as UTF-8


class Raw(str):
    """JSON text that `dumps` embeds as is (a pre-encoded row)."""


def dumps(value: object) -> str:
    """JSON for response bodies; Decimals become their exact text."""
    if isinstance(value, Raw):
        return value
    if isinstance(value, str):
        return _encode_str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value) if isinstance(value, int) else format(value, "f")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_encode_str(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Iterable):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    raise TypeError(f"cannot serialise {type(value).__name__}")


def lower_camel(column: str) -> str:
    """PCToBCExchangeRate -> pcToBCExchangeRate, MpnId -> mpnId, Tier2MpnId -> tier2MpnId."""
    run = len(column) - len(column.lstrip(string.ascii_uppercase))
    if run == len(column):
        return column.lower()
    if run > 1:
        run -= 1  # the last capital starts the next word
    return column[:run].lower() + column[run:]

# Where v1 JSON is not simply lowerCamel of the column (the reverse of the project's `v1_aliases`, reference §5).
V1_RENAMES: dict[FileType, dict[str, str]] = {
    FileType.ONETIME: {"Total": "totalForCustomer"},
    FileType.DAILY: {"Tier2MpnId": "resellerMpnId", "Unit": "unitOfMeasure",
                     "PartnerEarnedCreditPercentage": "rateOfPartnerEarnedCredit", "CreditPercentage": "rateOfCredit",
                     "ResourceURI": "resourceUri"},
    FileType.LICENSE: {"ResellerMpnId": "tier2MpnId"},
    FileType.USAGE: {"ResellerMpnId": "tier2MpnId"},
}
# Legacy v1 items carry these as JSON integers (reference §5.3, §5.4).
_V1_INTEGERS: dict[FileType, frozenset[str]] = {
    FileType.LICENSE: frozenset({"MpnId", "ResellerMpnId"}),
    FileType.USAGE: frozenset({"MpnId", "ResellerMpnId", "DetailLineItemId"}),
}
_JSON_COLUMNS = frozenset({"ProductQualifiers"})  # an array, not a string
# (invoiceLineItemType, billingProvider, objectType) of each file's v1 items (reference §2.4).
V1_KINDS: dict[FileType, tuple[str, str, str]] = {
    FileType.ONETIME: ("billing_line_items", "one_time", "OneTimeInvoiceLineItem"),
    FileType.DAILY: ("usage_line_items", "marketplace", "DailyRatedUsageLineItem"),
    FileType.LICENSE: ("billing_line_items", "office", "LicenseBasedLineItem"),
    FileType.USAGE: ("billing_line_items", "azure", "UsageBasedLineItem"),
}
# Graph's `basic` attribute set of daily rated usage (reference §5.2); the billed reconciliation split is unknown.
BASIC_DAILY_COLUMNS = frozenset({
    "AdditionalInfo", "BenefitOrderID", "BenefitType", "BillingCurrency", "BillingPreTaxTotal", "ChargeEndDate",
    "ChargeStartDate", "ChargeType", "CreditPercentage", "CreditType", "CustomerId", "CustomerName",
    "EffectiveUnitPrice", "EntitlementId", "InvoiceNumber", "PartnerId", "PartnerName", "PCToBCExchangeRate",
    "PricingCurrency", "PricingPreTaxTotal", "ProductId", "PublisherName", "Quantity", "ResourceURI", "SkuId",
    "SkuName", "SubscriptionId", "UnitPrice", "UnitType", "UsageDate",
})


class RowEncoder:
    """Serialises canonical rows of one layout to one JSON object each (the hot loop of a million-row export)."""

    def __init__(self, columns: Iterable[str], keys: Mapping[str, str], numbers: frozenset[str], future_key: str,
                 trailer: Mapping[str, object] | None = None) -> None:
        columns = tuple(columns)
        self._values = itemgetter(*columns)
        self._prefixes = [_encode_str(keys.get(c, c)) + ":" for c in columns]
        self._raw = [k for k, c in enumerate(columns) if c in _JSON_COLUMNS]  # always raw JSON
        self._raw_and_numbers = self._raw + [k for k, c in enumerate(columns) if c in numbers and k not in self._raw]
        self._future = f"{_encode_str(future_key)}:\"x\""
        self._trailer = "".join(f",{_encode_str(k)}:{dumps(v)}" for k, v in (trailer or {}).items()) + "}"

    def encode(self, row: Row, numbers_as_strings: bool, future_field: bool) -> str:
        values = self._values(row)
        try:
            out = list(map(_encode_str, values))
        except TypeError:  # the row omits a field
            out = [None if v is None else _encode_str(v) for v in values]
        for k in self._raw if numbers_as_strings else self._raw_and_numbers:
            out[k] = values[k]
        parts = [prefix + value for prefix, value in zip(self._prefixes, out) if value is not None]
        if future_field:
            parts.append(self._future)
        return "{" + ",".join(parts) + self._trailer


def v1_encoder(file_type: FileType) -> RowEncoder:
    layout = layout_for(file_type)
    renames = V1_RENAMES[file_type]
    keys = {c: renames.get(c) or lower_camel(c) for c in layout.columns}
    line_type, provider, object_type = V1_KINDS[file_type]
    return RowEncoder(layout.columns, keys, layout.decimal_columns | _V1_INTEGERS.get(file_type, frozenset()),
                      "futureField", {"invoiceLineItemType": line_type, "billingProvider": provider,
                                      "attributes": {"objectType": object_type}})


def blob_encoder(file_type: FileType, fragment: str) -> RowEncoder:
    layout = layout_for(file_type)
    columns = layout.columns
    if fragment == "basic" and file_type == FileType.DAILY:
        columns = tuple(c for c in columns if c in BASIC_DAILY_COLUMNS)
    return RowEncoder(columns, {}, layout.decimal_columns, "FutureField")


class RowStyle:
    """Per-row wire quirks, decided by cheap arithmetic on the row index, so every page and blob agrees."""

    def __init__(self, seed: int, ds: Dataset, strings_percent: int) -> None:
        self._salt = number(seed, "style", ds.key, ds.file_type)
        self._percent = strings_percent

    def _mix(self, i: int) -> int:
        return ((i + 1) * 0x9E3779B97F4A7C15 ^ self._salt) & 0xFFFFFFFFFFFFFFFF

    def numbers_as_strings(self, i: int) -> bool:
        return (self._mix(i) >> 17) % 100 < self._percent

    def future_field(self, i: int) -> bool:
        return (self._mix(i) >> 41) % 50 == 0


V1_STRINGS_PERCENT = 33  # "about a third of rows" serialise numbers as numeric strings on v1
