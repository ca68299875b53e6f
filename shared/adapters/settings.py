"""App settings, read from the process environment as the Functions host provides them.

Locally the development host copies `local.settings.json` "Values" into the environment for keys that are
not already set, exactly as Core Tools does, so this module only ever looks at the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PUBLIC_PARTNER_CENTER = "https://api.partnercenter.microsoft.com"
PUBLIC_GRAPH = "https://graph.microsoft.com"
PUBLIC_AUTHORITY = "https://login.microsoftonline.com"

if TYPE_CHECKING:
    from shared.adapters.auth import AuthConfig

# Set by App Service / Functions in Azure, never locally: AUTH_DISABLED is refused when any is present.
AZURE_MARKERS = ("WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME")


def refuse_auth_disabled_in_azure(environ: Mapping[str, str] | None = None) -> None:
    """AUTH_DISABLED is for development only: the app refuses to start with it when it runs in Azure."""
    environ = os.environ if environ is None else environ
    disabled = str(environ.get("AUTH_DISABLED", "")).strip().lower() in ("1", "true", "yes", "on")
    if disabled and any(environ.get(m) for m in AZURE_MARKERS):
        raise RuntimeError("AUTH_DISABLED is set while running in Azure: refusing to start. Remove the setting.")


class Settings(BaseSettings):
    """Every app setting the code reads. The Bicep template sets each of these (a test checks it)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True, populate_by_name=True)

    # Storage: either a connection string (Azurite, local) or identity-based service URIs (Azure).
    storage_connection_string: str | None = Field(default=None, alias="AzureWebJobsStorage")
    blob_service_uri: str | None = Field(default=None, alias="AzureWebJobsStorage__blobServiceUri")
    queue_service_uri: str | None = Field(default=None, alias="AzureWebJobsStorage__queueServiceUri")
    table_service_uri: str | None = Field(default=None, alias="AzureWebJobsStorage__tableServiceUri")
    storage_client_id: str | None = Field(default=None, alias="AzureWebJobsStorage__clientId")

    files_container: str = Field(default="reconciliation-files", alias="FILES_CONTAINER")
    generation_queue: str = Field(default="reconciliation-requests", alias="GENERATION_QUEUE")
    table_prefix: str = Field(default="recon", alias="TABLE_PREFIX")
    download_link_minutes: int = Field(default=15, ge=1, le=24 * 60, alias="DOWNLOAD_LINK_MINUTES")
    max_dequeue_count: int = Field(default=5, ge=1, alias="MAX_DEQUEUE_COUNT")

    # Microsoft endpoints; sovereign clouds and test servers override them.
    partner_center_api_url: str = Field(default=PUBLIC_PARTNER_CENTER, alias="PARTNER_CENTER_API_URL")
    graph_api_url: str = Field(default=PUBLIC_GRAPH, alias="GRAPH_API_URL")
    entra_authority_host: str = Field(default=PUBLIC_AUTHORITY, alias="ENTRA_AUTHORITY_HOST")

    # Which API generation serves a billing period (Microsoft's retirement timeline, reference §3.5).
    onetime_graph_from: date = Field(default=date(2024, 2, 1), alias="ONETIME_GRAPH_FROM")
    daily_usage_graph_from: date = Field(default=date(2022, 9, 1), alias="DAILY_USAGE_GRAPH_FROM")

    # Throttling and faults when calling Microsoft.
    pc_max_concurrency: int = Field(default=4, ge=1, le=64, alias="PC_MAX_CONCURRENCY")
    # The budget shared by every instance (shared/adapters/partner_center/budget.py): calls at once per partner
    # tenant across all instances (0: only the per-instance limit), a lease's lifetime (renewed while a call runs;
    # a crashed holder's slot frees after it) and how long a call may wait for a slot before a transient failure.
    pc_tenant_concurrency: int = Field(default=8, ge=0, le=64, alias="PC_TENANT_CONCURRENCY")
    pc_lease_seconds: float = Field(default=60.0, ge=0.5, le=3600, alias="PC_LEASE_SECONDS")
    pc_slot_wait_seconds: float = Field(default=300.0, gt=0, alias="PC_SLOT_WAIT_SECONDS")
    pc_max_retries: int = Field(default=8, ge=0, le=50, alias="PC_MAX_RETRIES")
    pc_retry_budget_seconds: float = Field(default=300.0, gt=0, alias="PC_RETRY_BUDGET_SECONDS")
    pc_backoff_base_seconds: float = Field(default=1.0, gt=0, alias="PC_BACKOFF_BASE_SECONDS")
    pc_backoff_cap_seconds: float = Field(default=60.0, gt=0, alias="PC_BACKOFF_CAP_SECONDS")
    pc_timeout_seconds: float = Field(default=60.0, gt=0, alias="PC_TIMEOUT_SECONDS")
    export_poll_seconds: float = Field(default=5.0, gt=0, alias="EXPORT_POLL_SECONDS")
    export_max_wait_seconds: float = Field(default=1800.0, gt=0, alias="EXPORT_MAX_WAIT_SECONDS")

    # Secret used to sign continuation tokens handed out by the charges API (a Key Vault reference in Azure).
    token_signing_key: str | None = Field(default=None, alias="TOKEN_SIGNING_KEY")

    # Files are staged in blocks of this size; memory per generation is about one block plus one Arrow batch.
    block_size_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, alias="BLOCK_SIZE_BYTES")
    # A CSV file of a snapshot with at least this many parts is made part by part, one queue message per part, on as
    # many instances as the queue scales to (shared/app/fanout.py); 0 makes every file on one instance.
    fanout_min_parts: int = Field(default=2, ge=0, alias="FANOUT_MIN_PARTS")
    # Parts one worker process computes at once (shared/app/part_slots.py): 1 keeps a worker under 300 MB.
    fanout_parts_at_once: int = Field(default=1, ge=1, le=16, alias="FANOUT_PARTS_AT_ONCE")

    # Sign-in (shared/adapters/auth.py): the API's audiences (client id and/or api:// URI) and the partner tenants whose
    # Entra tokens are accepted, both comma-separated. AUTH_LOCAL_ISSUER and AUTH_DISABLED are development only.
    auth_audiences: str = Field(default="", alias="AUTH_AUDIENCES")
    auth_allowed_tenants: str = Field(default="", alias="AUTH_ALLOWED_TENANTS")
    auth_local_issuer: str | None = Field(default=None, alias="AUTH_LOCAL_ISSUER")
    auth_jwks_ttl_seconds: float = Field(default=3600.0, gt=0, le=86400, alias="AUTH_JWKS_TTL_SECONDS")
    auth_leeway_seconds: float = Field(default=120.0, ge=0, le=600, alias="AUTH_LEEWAY_SECONDS")
    auth_disabled: bool = Field(default=False, alias="AUTH_DISABLED")

    # The web front end's sign-in (public values, served to the browser by `GET /api/web/config`): the SPA app
    # registration's client id, the authority (https://login.microsoftonline.com/<partner tenant id>) and the API
    # scope it asks for (api://<API client id>/access_as_user). Empty: the page says sign-in is not configured.
    web_client_id: str = Field(default="", alias="WEB_CLIENT_ID")
    web_authority: str = Field(default="", alias="WEB_AUTHORITY")
    web_api_scope: str = Field(default="", alias="WEB_API_SCOPE")

    @model_validator(mode="after")
    def _auth_disabled_only_locally(self) -> "Settings":
        if self.auth_disabled:
            refuse_auth_disabled_in_azure({"AUTH_DISABLED": "true", **{m: os.environ.get(m, "") for m in AZURE_MARKERS}})
        return self

    def auth_config(self) -> "AuthConfig":
        """The token validator's configuration; ValueError when no audience is configured (fail closed)."""
        from shared.adapters.auth import AuthConfig

        split = lambda text: tuple(p.strip() for p in (text or "").split(",") if p.strip())  # noqa: E731
        return AuthConfig(audiences=split(self.auth_audiences),
                          allowed_tenants=frozenset(split(self.auth_allowed_tenants)),
                          local_issuer=self.auth_local_issuer or None, jwks_ttl=self.auth_jwks_ttl_seconds,
                          leeway=self.auth_leeway_seconds)

    @property
    def uses_identity(self) -> bool:
        return not self.storage_connection_string and bool(self.blob_service_uri)

    # Monthly automation (shared/app/automation.py, shared/app/retention.py). Schedules are read by the timer bindings.
    invoice_poll_schedule: str = Field(default="0 0 */6 * * *", alias="INVOICE_POLL_SCHEDULE")
    retention_schedule: str = Field(default="0 30 3 * * *", alias="RETENTION_SCHEDULE")
    revision_window_days: int = Field(default=15, ge=0, le=366, alias="REVISION_WINDOW_DAYS")
    follow_revisions: bool = Field(default=True, alias="FOLLOW_REVISIONS")
    retention_days: int = Field(default=400, ge=1, alias="RETENTION_DAYS")
    transient_retry_cap: int = Field(default=5, ge=0, le=100, alias="TRANSIENT_RETRY_CAP")

    # Charge validation (shared/core/validation.py): whether error findings hold a file as NeedsReview instead of
    # Available, the per-subscription change that is worth a month-over-month warning, and how many findings a
    # file keeps (beyond that they are counted only).
    validation_blocks: bool = Field(default=False, alias="VALIDATION_BLOCKS")
    validation_change_threshold_percent: float = Field(default=50.0, gt=0, alias="VALIDATION_CHANGE_THRESHOLD_PERCENT")
    validation_max_findings: int = Field(default=10_000, ge=0, le=1_000_000, alias="VALIDATION_MAX_FINDINGS")

    # File requests (POST …/reconciliation-files, …/regenerate) accepted per hour from one reseller or customer
    # principal (shared/adapters/quotas.py); partner roles and the timer are not counted. 0: no quota.
    file_requests_per_hour: int = Field(default=60, ge=0, le=100_000, alias="FILE_REQUESTS_PER_HOUR")
    # Webhooks (shared/app/events.py, shared/app/webhooks.py): the delivery queue; a delivery's timeout; the retry
    # plan (base × factor^n seconds, capped, until the waits add up to the window, about a day: then the endpoint is
    # disabled). Signing secrets live in Key Vault (WEBHOOK_KEY_VAULT_URL, Azure) or, in development,
    # AES-GCM-encrypted in the Secrets table under WEBHOOK_SECRETS_KEY (base64 of 32 bytes). Plain-http loopback
    # endpoints are allowed only outside Azure.
    webhook_queue: str = Field(default="webhook-deliveries", alias="WEBHOOK_QUEUE")
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60, alias="WEBHOOK_TIMEOUT_SECONDS")
    webhook_retry_base_seconds: float = Field(default=10.0, gt=0, alias="WEBHOOK_RETRY_BASE_SECONDS")
    webhook_retry_factor: float = Field(default=3.0, ge=1, le=10, alias="WEBHOOK_RETRY_FACTOR")
    webhook_retry_cap_seconds: float = Field(default=6 * 3600.0, gt=0, le=7 * 86400, alias="WEBHOOK_RETRY_CAP_SECONDS")
    webhook_retry_window_seconds: float = Field(default=86400.0, gt=0, le=7 * 86400,
                                                alias="WEBHOOK_RETRY_WINDOW_SECONDS")
    key_vault_url: str | None = Field(default=None, alias="WEBHOOK_KEY_VAULT_URL")
    webhook_secrets_key: str | None = Field(default=None, alias="WEBHOOK_SECRETS_KEY")

    @property
    def in_azure(self) -> bool:
        return any(os.environ.get(m) for m in AZURE_MARKERS)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]


def reset_settings() -> None:
    """Forget the cached settings (tests and the development host change the environment)."""
    get_settings.cache_clear()


def ca_bundle() -> str | bool:
    """The TLS roots outgoing HTTPS trusts: REQUESTS_CA_BUNDLE / SSL_CERT_FILE when set (corporate proxies, the
    simulator's test CA), else True (requests' default, certifi's roots)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or True
