"""Entra ID for one registered app: OpenID discovery and the client-credentials token endpoint, as MSAL needs.

Tokens are opaque to clients but self-checking (an HMAC over audience and expiry), so the server keeps no token
table. A token is valid for one API family: Partner Center (/v1) or Microsoft Graph (/v1.0, /beta).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from urllib.parse import parse_qsl

from .messages import Reply, Request, entra_error, json_reply
from .world import World

TOKEN_LIFETIME = 3600
SCOPES = {"https://api.partnercenter.microsoft.com/.default": "pc", "https://graph.microsoft.com/.default": "graph"}


class Tokens:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def _mac(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).decode().rstrip("=")

    def issue(self, audience: str) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(
            {"aud": audience, "exp": int(time.time()) + TOKEN_LIFETIME, "n": secrets.token_hex(4)}).encode()
        ).decode().rstrip("=")
        return f"{payload}.{self._mac(payload.encode())}"

    def audience(self, authorization: str | None) -> str | None:
        """The family a valid, unexpired bearer token grants, else None."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        payload, _, mac = authorization[7:].strip().partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload.encode()).encode()):
            return None
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return claims["aud"] if claims["exp"] > time.time() else None


class Entra:
    """The authority at {base}/{tenant_id}."""

    def __init__(self, world: World, tokens: Tokens, base_url: str) -> None:
        self.world = world
        self.tokens = tokens
        self.base_url = base_url

    def handle(self, request: Request) -> Reply:
        parts = request.path.strip("/").split("/")
        tenant, rest = parts[0], "/".join(parts[1:])
        if tenant.lower() != self.world.tenant_id:
            return entra_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        if request.method == "GET" and rest == "v2.0/.well-known/openid-configuration":
            return json_reply(200, self._openid_configuration())
        if request.method == "GET" and rest == "discovery/v2.0/keys":
            return json_reply(200, {"keys": []})
        if request.method == "POST" and rest == "oauth2/v2.0/token":
            return self._token(request)
        return entra_error(404, "invalid_request", 900561, "The endpoint only accepts the documented requests.")

    def _openid_configuration(self) -> dict[str, object]:
        root = f"{self.base_url}/{self.world.tenant_id}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }

    def _token(self, request: Request) -> Reply:
        form = dict(parse_qsl(request.body.decode()))
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = request.header("authorization") or ""
        if basic.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        if form.get("grant_type") != "client_credentials":
            return entra_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if client_id != self.world.client_id:
            return entra_error(400, "unauthorized_client", 700016,
                               f"Application with identifier '{client_id}' was not found in the directory.")
        if not secret or not hmac.compare_digest(secret.encode(), self.world.client_secret.encode()):
            return entra_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        audience = SCOPES.get(form.get("scope", "").strip())
        if audience is None:
            return entra_error(400, "invalid_scope", 1002012, f"The provided value for scope {form.get('scope')} "
                               "is not valid. Client credential flows must have a scope value with /.default.")
        return json_reply(200, {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME,
                                "ext_expires_in": TOKEN_LIFETIME, "access_token": self.tokens.issue(audience)},
                          {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})
