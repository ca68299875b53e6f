"""The app's long-lived collaborators, built once per process from settings.

Trigger adapters call `get_context()`; tests build their own `AppContext` against Azurite and the simulator.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

from shared.configuration import IdentifierRepository, MarginRuleRepository
from shared.repositories import FileRepository, TenantRepository
from shared.sas import DownloadLinks
from shared.settings import Settings, get_settings
from shared.storage import Storage


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
