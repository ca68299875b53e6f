"""The one place that builds Blob, Queue and Table clients, from settings alone.

Locally `AzureWebJobsStorage` is an Azurite connection string (account-key auth). In Azure it is absent and the
identity-based settings (`AzureWebJobsStorage__blobServiceUri` / `__queueServiceUri` / `__tableServiceUri`,
`__clientId`) point at the account, reached with the managed identity through DefaultAzureCredential.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cached_property
from typing import Any, Callable, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError, ServiceRequestError, ServiceResponseError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy, TextBase64DecodePolicy

from shared.adapters.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

OUTAGE_PATIENCE_SECONDS = 90.0  # how long a settling write waits for storage to come back (an outage, a failover)
OUTAGE_FIRST_WAIT_SECONDS = 1.0
OUTAGE_MAX_WAIT_SECONDS = 10.0

TABLE_NAMES = ("Tenants", "Files", "FileVersions", "Invoices", "MarginRules", "Identifiers", "Principals", "Audit",
               "ResellerReach", "Exports", "Names", "RequestQuotas", "Webhooks", "Deliveries", "Secrets", "Budgets",
               "Alerts", "CallBudget", "Snapshots", "FileParts")


class Storage:
    """Storage clients for one app instance. Thread-safe to share; clients are created once."""

    def __init__(self, settings: Settings, credential: TokenCredential | None = None) -> None:
        self.settings = settings
        self._credential = credential
        self._tables: dict[str, TableClient] = {}
        self._lock = threading.Lock()
        if not settings.storage_connection_string and not settings.blob_service_uri:
            raise RuntimeError(
                "No storage configured: set AzureWebJobsStorage (connection string) or "
                "AzureWebJobsStorage__blobServiceUri/__queueServiceUri/__tableServiceUri (managed identity)."
            )

    @cached_property
    def credential(self) -> Any:
        if self._credential is not None:
            return self._credential
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(managed_identity_client_id=self.settings.storage_client_id)

    @cached_property
    def blob_service(self) -> BlobServiceClient:
        s = self.settings
        if s.storage_connection_string:
            return BlobServiceClient.from_connection_string(s.storage_connection_string)
        return BlobServiceClient(str(s.blob_service_uri), credential=self.credential)

    @cached_property
    def table_service(self) -> TableServiceClient:
        s = self.settings
        if s.storage_connection_string:
            return TableServiceClient.from_connection_string(s.storage_connection_string)
        return TableServiceClient(str(s.table_service_uri), credential=self.credential)

    @property
    def account_key(self) -> str | None:
        """The shared key when there is one (Azurite); None with identity-based access."""
        cred = self.blob_service.credential
        return getattr(cred, "account_key", None)

    @property
    def files(self) -> ContainerClient:
        return self.blob_service.get_container_client(self.settings.files_container)

    def queue(self, name: str | None = None) -> QueueClient:
        """A queue client whose messages are base64, as the Functions queue trigger expects by default."""
        s = self.settings
        name = name or s.generation_queue
        policies = {"message_encode_policy": TextBase64EncodePolicy(),
                    "message_decode_policy": TextBase64DecodePolicy()}
        if s.storage_connection_string:
            return QueueClient.from_connection_string(s.storage_connection_string, name, **policies)
        return QueueClient(str(s.queue_service_uri), name, credential=self.credential, **policies)

    def table(self, name: str) -> TableClient:
        full = f"{self.settings.table_prefix}{name}"
        with self._lock:
            client = self._tables.get(full)
            if client is None:
                client = self.table_service.get_table_client(full)
                self._tables[full] = client
            return client

    def ensure(self) -> None:
        """Create the container, queues and tables if missing. Idempotent; Bicep creates them in Azure."""
        _ignore_exists(self.files.create_container)
        for q in queue_names(self.settings):
            _ignore_exists(self.queue(q).create_queue)
        for t in TABLE_NAMES:
            _ignore_exists(self.table(t).create_table)


def queue_names(settings: Settings) -> tuple[str, ...]:
    """Every queue the app uses, each with its poison queue (the Bicep template declares the same list)."""
    q0, hooks = settings.generation_queue, settings.webhook_queue
    return (q0, f"{q0}-poison", f"{q0}-exports", f"{q0}-exports-poison", hooks, f"{hooks}-poison")


def _ignore_exists(create: Any) -> None:
    try:
        create()
    except ResourceExistsError:
        pass


def through_outage(write: Callable[[], T], what: str, patience: float = OUTAGE_PATIENCE_SECONDS) -> T:
    """Run a write that settles a piece of work (a lease released, a failure recorded), waiting through a storage
    outage: storage that cannot be reached (connection refused, reset, timed out) is tried again with a growing
    pause for up to `patience` seconds. Without it, a worker whose storage went away for a moment would leave its
    lease held until it expires (minutes) and every retry would wait for it. Any answer from storage (a conflict,
    a 404) is passed on at once: only an unreachable service is waited for."""
    deadline = time.monotonic() + patience
    wait = OUTAGE_FIRST_WAIT_SECONDS
    while True:
        try:
            return write()
        except (ServiceRequestError, ServiceResponseError) as exc:
            if time.monotonic() + wait > deadline:
                raise
            log.warning("storage unreachable while %s (%s); trying again in %.0f s", what, type(exc).__name__, wait)
            time.sleep(wait)
            wait = min(wait * 2, OUTAGE_MAX_WAIT_SECONDS)
