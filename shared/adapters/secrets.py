"""Where generated secrets (webhook signing secrets) live: never in Table or Blob Storage in clear.

- `KeyVaultSecrets` (Azure, `WEBHOOK_KEY_VAULT_URL` set): each secret is a Key Vault secret, read and written
  with the app's managed identity over Key Vault's REST API (7.4). The storage tables hold only its name.
- `LocalEncryptedSecrets` (development and tests, `WEBHOOK_SECRETS_KEY` set): AES-256-GCM ciphertext in the
  `Secrets` table, under a key that lives only in an app setting (base64 of 32 bytes). Whoever reads the table
  without the setting reads nothing.
- Neither configured: registering a webhook is refused (fail closed); nothing falls back to clear text.

The Key Vault path has not been run against Azure here (no vault in this environment); its requests follow the
documented REST API and are exercised against a local stand-in in the tests.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
import time
from typing import Protocol

import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.adapters.settings import Settings
from shared.adapters.storage import Storage

KEY_VAULT_API = "7.4"
KEY_VAULT_SCOPE = "https://vault.azure.net/.default"
CACHE_SECONDS = 300.0
PARTITION = "secrets"


class SecretsNotConfigured(RuntimeError):
    """Neither WEBHOOK_KEY_VAULT_URL nor WEBHOOK_SECRETS_KEY is set: no place to keep a secret safely."""


class SecretStore(Protocol):
    def put(self, name: str, value: str) -> None: ...

    def get(self, name: str) -> str | None: ...

    def delete(self, name: str) -> None: ...


class _Cached:
    """Secrets are read on every webhook delivery: keep them a few minutes in memory (per process)."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> str | None:
        with self._lock:
            hit = self._items.get(name)
            return hit[1] if hit and hit[0] > time.monotonic() else None

    def set(self, name: str, value: str) -> None:
        with self._lock:
            self._items[name] = (time.monotonic() + CACHE_SECONDS, value)

    def drop(self, name: str) -> None:
        with self._lock:
            self._items.pop(name, None)


class LocalEncryptedSecrets:
    def __init__(self, storage: Storage, key_text: str) -> None:
        try:
            key = base64.b64decode(key_text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SecretsNotConfigured("WEBHOOK_SECRETS_KEY must be base64 of 32 random bytes") from exc
        if len(key) != 32:
            raise SecretsNotConfigured("WEBHOOK_SECRETS_KEY must be base64 of 32 random bytes")
        self._aead = AESGCM(key)
        self.table = storage.table("Secrets")
        self._cache = _Cached()

    def put(self, name: str, value: str) -> None:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), name.encode())  # bound to its name
        self.table.upsert_entity({"PartitionKey": PARTITION, "RowKey": name, "alg": "A256GCM",
                                  "nonce": base64.b64encode(nonce).decode(),
                                  "ciphertext": base64.b64encode(sealed).decode()}, mode=UpdateMode.REPLACE)
        self._cache.set(name, value)

    def get(self, name: str) -> str | None:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        try:
            entity = self.table.get_entity(PARTITION, name)
        except ResourceNotFoundError:
            return None
        value = self._aead.decrypt(base64.b64decode(entity["nonce"]), base64.b64decode(entity["ciphertext"]),
                                   name.encode()).decode()
        self._cache.set(name, value)
        return value

    def delete(self, name: str) -> None:
        self._cache.drop(name)
        self.table.delete_entity(PARTITION, name)


class KeyVaultSecrets:
    def __init__(self, vault_url: str, credential, session: requests.Session | None = None) -> None:
        self.vault_url = vault_url.rstrip("/")
        self.credential = credential
        self.session = session or requests.Session()
        self._cache = _Cached()

    def _headers(self) -> dict[str, str]:
        token = self.credential.get_token(KEY_VAULT_SCOPE).token
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def _url(self, name: str) -> str:
        return f"{self.vault_url}/secrets/{name}?api-version={KEY_VAULT_API}"

    def put(self, name: str, value: str) -> None:
        resp = self.session.put(self._url(name), json={"value": value, "contentType": "webhook-signing-secret"},
                                headers=self._headers(), timeout=30)
        resp.raise_for_status()
        self._cache.set(name, value)

    def get(self, name: str) -> str | None:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        resp = self.session.get(self._url(name), headers=self._headers(), timeout=30)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        value = resp.json()["value"]
        self._cache.set(name, value)
        return value

    def delete(self, name: str) -> None:
        self._cache.drop(name)
        resp = self.session.delete(self._url(name), headers=self._headers(), timeout=30)
        if resp.status_code not in (200, 404):
            resp.raise_for_status()


def secret_store(settings: Settings, storage: Storage) -> SecretStore:
    if settings.key_vault_url:
        return KeyVaultSecrets(settings.key_vault_url, storage.credential)
    if settings.webhook_secrets_key:
        return LocalEncryptedSecrets(storage, settings.webhook_secrets_key)
    raise SecretsNotConfigured("No secret store: set WEBHOOK_KEY_VAULT_URL (Azure) or WEBHOOK_SECRETS_KEY "
                               "(development).")
