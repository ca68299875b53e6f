"""The secret stores. Key Vault cannot run here: `KeyVaultSecrets` is exercised against a small local stand-in of
Key Vault's secrets REST API (7.4: PUT/GET/DELETE /secrets/{name}, bearer token for https://vault.azure.net),
which checks the requests it gets; it has not been run against Azure. The local store is real (Azurite)."""

from __future__ import annotations

import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.adapters.secrets import (KEY_VAULT_SCOPE, KeyVaultSecrets, LocalEncryptedSecrets, SecretsNotConfigured,
                                     secret_store)
from shared.adapters.settings import Settings
from shared.adapters.storage import Storage


class VaultStandIn:
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        vault = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: dict | None = None) -> None:
                data = json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _name(self) -> str | None:
                parts = urlsplit(self.path)
                vault.requests.append((self.command, self.path))
                if self.headers.get("Authorization") != "Bearer t0k3n" or \
                        parse_qs(parts.query).get("api-version") != ["7.4"]:
                    self._answer(401, {"error": {"code": "Unauthorized"}})
                    return None
                return parts.path.removeprefix("/secrets/").strip("/")

            def do_PUT(self) -> None:  # noqa: N802
                name = self._name()
                if name is None:
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                vault.secrets[name] = body["value"]
                self._answer(200, {"id": f"https://vault/secrets/{name}/1", "value": body["value"]})

            def do_GET(self) -> None:  # noqa: N802
                name = self._name()
                if name is None:
                    return
                if name not in vault.secrets:
                    self._answer(404, {"error": {"code": "SecretNotFound"}})
                else:
                    self._answer(200, {"value": vault.secrets[name]})

            def do_DELETE(self) -> None:  # noqa: N802
                name = self._name()
                if name is None:
                    return
                self._answer(200 if vault.secrets.pop(name, None) is not None else 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"


class Credential:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, scope: str):
        self.scopes.append(scope)
        return SimpleNamespace(token="t0k3n")


def test_key_vault_secrets_through_the_rest_api() -> None:
    vault, cred = VaultStandIn(), Credential()
    try:
        store = KeyVaultSecrets(vault.url, cred)
        store.put("whsec-abc", "whsec_c2VjcmV0")
        assert vault.secrets == {"whsec-abc": "whsec_c2VjcmV0"}
        assert KeyVaultSecrets(vault.url, cred).get("whsec-abc") == "whsec_c2VjcmV0"  # read from the vault
        assert KeyVaultSecrets(vault.url, cred).get("missing") is None
        store.delete("whsec-abc")
        assert vault.secrets == {} and store.get("whsec-abc") is None
        assert set(cred.scopes) == {KEY_VAULT_SCOPE}
        assert {m for m, _ in vault.requests} == {"PUT", "GET", "DELETE"}
    finally:
        vault.server.shutdown()


def test_local_store_is_bound_to_its_key_and_names(app_env) -> None:
    settings = Settings()  # type: ignore[call-arg]
    storage = Storage(settings)
    storage.ensure()
    key = base64.b64encode(os.urandom(32)).decode()
    store = LocalEncryptedSecrets(storage, key)
    store.put("a", "whsec_AAAA")
    store.put("b", "whsec_BBBB")
    assert LocalEncryptedSecrets(storage, key).get("a") == "whsec_AAAA"
    table = storage.table("Secrets")
    a, b = table.get_entity("secrets", "a"), table.get_entity("secrets", "b")
    table.upsert_entity({**dict(a), "RowKey": "b"})  # a's ciphertext under b's name: refused, not b's secret
    with pytest.raises(Exception):
        LocalEncryptedSecrets(storage, key).get("b")
    assert b["ciphertext"] != "whsec_BBBB"
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(SecretsNotConfigured):
            LocalEncryptedSecrets(storage, bad)


def test_no_secret_store_configured_fails_closed(app_env) -> None:
    settings = Settings()  # type: ignore[call-arg]
    with pytest.raises(SecretsNotConfigured):
        secret_store(settings, Storage(settings))
