"""The app's long-lived collaborators, built once per process from settings.

Trigger adapters call `get_context()`; tests build their own `AppContext` against Azurite and the simulator.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

from shared.adapters.audit import AuditLog
from shared.adapters.export_store import ExportRepository
from shared.adapters.file_parts import FileParts
from shared.adapters.names_index import NamesIndex
from shared.adapters.auth import TokenValidator
from shared.adapters.pricing import IdentifierRepository, MarginRuleRepository
from shared.adapters.principal_store import AccessControl, PrincipalRepository
from shared.adapters.quotas import RequestQuotas
from shared.adapters.reach_index import ReachIndex
from shared.adapters.repositories import FileRepository, TenantRepository
from shared.adapters.sas import DownloadLinks
from shared.adapters.settings import Settings, get_settings
from shared.adapters.secrets import SecretStore, secret_store
from shared.adapters.snapshot_store import SnapshotStore
from shared.adapters.storage import Storage
from shared.adapters.webhook_store import DeliveryRepository, WebhookRepository


@dataclass
class AppContext:
    settings: Settings
    storage: Storage

    @cached_property
    def tenants(self) -> TenantRepository:
        return TenantRepository(self.storage)

    @cached_property
    def files(self) -> FileRepository:
        return FileRepository(self.storage)

    @cached_property
    def rules(self) -> MarginRuleRepository:
        return MarginRuleRepository(self.storage)

    @cached_property
    def identifiers(self) -> IdentifierRepository:
        return IdentifierRepository(self.storage)

    @cached_property
    def links(self) -> DownloadLinks:
        return DownloadLinks(self.storage)

    @cached_property
    def tokens(self) -> TokenValidator:
        """Built on first use (HTTP only): a deployment without AUTH_AUDIENCES fails every request closed."""
        return TokenValidator(self.settings.auth_config())

    @cached_property
    def principals(self) -> PrincipalRepository:
        return PrincipalRepository(self.storage)

    @cached_property
    def reach(self) -> ReachIndex:
        return ReachIndex(self.storage)

    @cached_property
    def access(self) -> AccessControl:
        return AccessControl(self.principals, self.reach)

    @cached_property
    def quotas(self) -> RequestQuotas:
        return RequestQuotas(self.storage, self.settings.file_requests_per_hour)

    @cached_property
    def audit(self) -> AuditLog:
        return AuditLog(self.storage)

    @cached_property
    def names(self) -> NamesIndex:
        return NamesIndex(self.storage)

    @cached_property
    def exports(self) -> ExportRepository:
        return ExportRepository(self.storage)

    @cached_property
    def webhooks(self) -> WebhookRepository:
        return WebhookRepository(self.storage)

    @cached_property
    def deliveries(self) -> DeliveryRepository:
        return DeliveryRepository(self.storage)

    @cached_property
    def secrets(self) -> SecretStore:
        """Built on first use: SecretsNotConfigured when neither Key Vault nor a local key is set."""
        return secret_store(self.settings, self.storage)

    @cached_property
    def snapshots(self) -> SnapshotStore:
        return SnapshotStore(self.storage)

    @cached_property
    def file_parts(self) -> FileParts:
        return FileParts(self.storage)


_context: AppContext | None = None
_lock = threading.Lock()


def get_context() -> AppContext:
    global _context
    with _lock:
        if _context is None:
            settings = get_settings()
            storage = Storage(settings)
            storage.ensure()
            _context = AppContext(settings, storage)
        return _context


def reset_context() -> None:
    global _context
    with _lock:
        _context = None
