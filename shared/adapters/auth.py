"""Bearer token validation: Microsoft Entra ID access tokens issued for this app's API.

The app checks tokens itself (not App Service Authentication) so that the same code runs under the local host,
in tests and in Azure, and so a machine client (an ERP) is treated exactly like a person:

- the signature, against the keys the issuer publishes (`{issuer}/.well-known/openid-configuration` →
  `jwks_uri`), cached for `jwks_ttl` seconds; a token whose `kid` is not in the cache makes one refetch
  (Entra rolls its keys over), at most once per `refresh_interval` so garbage tokens cannot hammer the issuer;
- the algorithm: asymmetric only, and the one the key's own `kty` allows (RSA → RS*/PS*, EC → ES*). `none` and
  HMAC are refused before any key is looked at, so a public key can never be used as an HMAC secret;
- the issuer: `https://login.microsoftonline.com/{tid}/v2.0` or `https://sts.windows.net/{tid}/` for a tenant
  in `allowed_tenants`, or exactly `local_issuer` (development, `devtools/tokens.py`);
- the audience (the app's client id or its `api://…` URI), expiry and not-before with `leeway` seconds of skew.

Every refusal is an `Unauthenticated` problem (401) carrying the `WWW-Authenticate` value of RFC 6750. Tokens are
never logged, and error descriptions are fixed strings (nothing from the token goes into a header).
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from shared.core.access import PARTNER_ADMIN_APP_ROLE, PARTNER_READER_APP_ROLE, Caller
from shared.core.problems import Problem

log = logging.getLogger(__name__)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
MAX_TOKEN_CHARS = 16 * 1024  # Entra tokens are a few KB; anything far larger is not one of ours
MAX_DOCUMENT_BYTES = 1024 * 1024  # OpenID configuration / JWKS

# (issuer template, its OpenID configuration) for Entra ID; `{tid}` is the token's tenant. The v1 issuer
# (sts.windows.net) publishes its configuration under the authority host without "/v2.0".
ENTRA_ISSUERS: tuple[tuple[str, str], ...] = (
    ("https://login.microsoftonline.com/{tid}/v2.0",
     "https://login.microsoftonline.com/{tid}/v2.0/.well-known/openid-configuration"),
    ("https://sts.windows.net/{tid}/",
     "https://login.microsoftonline.com/{tid}/.well-known/openid-configuration"),
)

# Which signature algorithms a key of each type may verify. HMAC ("oct") and "none" are never accepted.
ALGORITHMS_BY_KTY: dict[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512"}),
}
_EC_CURVE_BY_ALG = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
ACCEPTED_ALGORITHMS = frozenset().union(*ALGORITHMS_BY_KTY.values())
MIN_RSA_BITS = 2048
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

# App roles (Entra app registration → App roles) that grant partner-wide access in the caller's own tenant.


@dataclass(frozen=True)
class AuthConfig:
    """What a deployment accepts; the lead maps app settings (AUTH_*) onto this.

    `audiences`: the API's client id and/or `api://…` URI. `allowed_tenants`: the partner tenants served (people
    from resellers and customers sign in as B2B guests of the partner tenant, so their tokens come from it).
    `local_issuer`: development only, trusted for any tenant id. `leeway`: clock skew allowed on exp/nbf/iat.
    """

    audiences: tuple[str, ...]
    allowed_tenants: frozenset[str]
    local_issuer: str | None = None
    jwks_ttl: float = 3600.0
    leeway: float = 120.0
    refresh_interval: float = 60.0  # least time between two fetches of one key set (unknown-kid refetches)
    http_timeout: float = 10.0
    issuers: tuple[tuple[str, str], ...] = ENTRA_ISSUERS  # sovereign clouds replace the hosts

    def __post_init__(self) -> None:
        object.__setattr__(self, "audiences", tuple(a.strip() for a in self.audiences if a.strip()))
        object.__setattr__(self, "allowed_tenants", frozenset(t.strip().lower() for t in self.allowed_tenants
                                                              if t.strip()))
        if self.local_issuer is not None:
            object.__setattr__(self, "local_issuer", self.local_issuer.rstrip("/"))
            host = urlsplit(self.local_issuer).hostname
            if host not in LOOPBACK_HOSTS:  # it is trusted for every tenant: never something reachable remotely
                raise ValueError("local_issuer must be on a loopback address (development only)")
        if not self.audiences:
            raise ValueError("AuthConfig needs at least one audience (the API's client id or api:// URI)")


class Unauthenticated(Problem):
    """401 with the RFC 6750 challenge. `error` is None when the request carried no bearer token at all (RFC 6750
    §3.1: then the challenge names no error)."""

    def __init__(self, description: str, error: str | None = "invalid_token") -> None:
        challenge = "Bearer" if error is None else f'Bearer error="{error}", error_description="{description}"'
        super().__init__(401, "Unauthenticated", description, headers={"WWW-Authenticate": challenge})
        self.error = error
        self.description = description
        self.www_authenticate = challenge


class IssuerUnavailable(Problem):
    """The issuer's keys could not be fetched and none are cached: our problem, not the caller's (503)."""

    def __init__(self) -> None:
        super().__init__(503, "Service unavailable", "The sign-in keys could not be fetched; try again shortly.",
                         headers={"Retry-After": "30"})


@dataclass
class _KeySet:
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # kid -> the JWK (public members only)
    fetched_at: float = float("-inf")  # last successful fetch
    attempted_at: float = float("-inf")  # last attempt, successful or not (rate limit)


JsonFetcher = Callable[[str, float], dict[str, Any]]


def fetch_json(url: str, timeout: float) -> dict[str, Any]:
    """GET a JSON document: HTTPS, or plain HTTP on loopback only (the local issuer). Size-capped."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        raise ValueError(f"refusing to fetch keys over {parts.scheme or 'no scheme'}: {parts.hostname}")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    context = ssl.create_default_context() if parts.scheme == "https" else None
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        body = response.read(MAX_DOCUMENT_BYTES + 1)
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"document too large: {url}")
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object: {url}")
    return data


_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "The token has expired"),
    (jwt.ImmatureSignatureError, "The token is not valid yet"),
    (jwt.InvalidAudienceError, "The token is not for this API"),
    (jwt.InvalidIssuerError, "The token's issuer is not accepted"),
    (jwt.InvalidSignatureError, "The token's signature is not valid"),
    (jwt.MissingRequiredClaimError, "The token lacks a required claim"),
)


class TokenValidator:
    """Validates bearer tokens; one per process (it holds the key cache). Thread-safe."""

    def __init__(self, config: AuthConfig, *, clock: Callable[[], float] = time.monotonic,
                 fetch: JsonFetcher = fetch_json) -> None:
        self.config = config
        self._clock = clock
        self._fetch = fetch
        self._lock = threading.Lock()
        self._jwks_uris: dict[str, tuple[str, float]] = {}  # metadata URL -> (jwks_uri, fetched_at)
        self._key_sets: dict[str, _KeySet] = {}  # jwks_uri -> keys

    # ---- the one public entry point ---------------------------------------------------------------------------
    def validate(self, authorization_header: str | None) -> Caller:
        token = _bearer_token(authorization_header)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise Unauthenticated("The token is malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in ACCEPTED_ALGORITHMS:
            raise Unauthenticated("The token's signing algorithm is not accepted")
        if not isinstance(kid, str) or not kid or len(kid) > 200:
            raise Unauthenticated("The token names no signing key")
        issuer, metadata_url = self._issuer(unverified)
        jwk = self._key(metadata_url, issuer, kid)
        key = _public_key(jwk, alg)
        try:
            claims = jwt.decode(
                token, key=key, algorithms=[alg], audience=list(self.config.audiences), issuer=issuer,
                leeway=self.config.leeway, options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            # The most specific reason PyJWT gives, in words without token content.
            reason = next((text for kind, text in _REFUSALS if isinstance(exc, kind)), "The token is not valid")
            raise Unauthenticated(reason) from None
        return _caller(claims, issuer)

    # ---- issuers ----------------------------------------------------------------------------------------------
    def _issuer(self, claims: dict[str, Any]) -> tuple[str, str]:
        """The token's issuer if we accept it, and where its OpenID configuration lives. Decided from the
        unverified claims; the signature check that follows uses only that issuer's keys."""
        iss, tid = claims.get("iss"), claims.get("tid")
        if not isinstance(iss, str) or not isinstance(tid, str) or not _GUID.fullmatch(tid):
            raise Unauthenticated("The token's issuer is not accepted")
        local = self.config.local_issuer
        if local is not None and iss.rstrip("/") == local:
            return iss, f"{local}/.well-known/openid-configuration"
        if tid.lower() in self.config.allowed_tenants:
            for template, metadata in self.config.issuers:
                if iss == template.format(tid=tid):
                    return iss, metadata.format(tid=tid)
        raise Unauthenticated("The token's issuer is not accepted")

    # ---- keys -------------------------------------------------------------------------------------------------
    def _key(self, metadata_url: str, issuer: str, kid: str) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            jwks_uri = self._jwks_uri(metadata_url, issuer, now)
            key_set = self._key_sets.setdefault(jwks_uri, _KeySet())
            stale = now - key_set.fetched_at >= self.config.jwks_ttl
            unknown = kid not in key_set.keys
            if (stale or unknown) and now - key_set.attempted_at >= self.config.refresh_interval:
                self._refresh(jwks_uri, key_set, now)
            if not key_set.keys and key_set.fetched_at == float("-inf"):
                raise IssuerUnavailable()
            jwk = key_set.keys.get(kid)
        if jwk is None:
            raise Unauthenticated("The token's signing key is unknown")
        return jwk

    def _jwks_uri(self, metadata_url: str, issuer: str, now: float) -> str:
        cached = self._jwks_uris.get(metadata_url)
        if cached is not None and now - cached[1] < self.config.jwks_ttl:
            return cached[0]
        try:
            doc = self._fetch(metadata_url, self.config.http_timeout)
            jwks_uri = doc.get("jwks_uri")
            doc_issuer = str(doc.get("issuer", ""))  # tenant-specific documents name the tenant's issuer
            if not isinstance(jwks_uri, str) or doc_issuer.rstrip("/") != issuer.rstrip("/"):
                raise ValueError("OpenID configuration without jwks_uri or for another issuer")
        except Exception as exc:  # network, JSON, shape: keep serving from what we had
            if cached is not None:
                log.warning("OpenID configuration refresh failed, keeping the cached one: %s", type(exc).__name__)
                return cached[0]
            log.error("OpenID configuration unavailable at %s: %s", metadata_url, type(exc).__name__)
            raise IssuerUnavailable() from None
        self._jwks_uris[metadata_url] = (jwks_uri, now)
        return jwks_uri

    def _refresh(self, jwks_uri: str, key_set: _KeySet, now: float) -> None:
        key_set.attempted_at = now
        try:
            doc = self._fetch(jwks_uri, self.config.http_timeout)
            keys = {}
            for jwk in doc.get("keys", []):
                if not isinstance(jwk, dict) or jwk.get("kty") not in ALGORITHMS_BY_KTY:
                    continue  # "oct" (HMAC) and unknown types are never usable
                if jwk.get("use", "sig") != "sig" or "d" in jwk or not isinstance(jwk.get("kid"), str):
                    continue  # encryption keys, private material, or keys we could not select
                keys[jwk["kid"]] = jwk
        except Exception as exc:
            log.warning("signing keys refresh failed (%s); keeping %d cached keys", type(exc).__name__,
                        len(key_set.keys))
            return
        key_set.keys, key_set.fetched_at = keys, now
        log.info("signing keys fetched: %d keys", len(keys))


def _bearer_token(header: str | None) -> str:
    if not header or not header.strip():
        raise Unauthenticated("No bearer token", error=None)
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated("No bearer token", error=None)
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS or not _TOKEN.fullmatch(token):
        raise Unauthenticated("The token is malformed")
    return token


def _public_key(jwk: dict[str, Any], alg: str) -> Any:
    """The verification key, only if `alg` is one the key's own type (and declared alg, curve) allows."""
    kty = jwk.get("kty", "")
    if alg not in ALGORITHMS_BY_KTY.get(kty, frozenset()) or jwk.get("alg", alg) != alg:
        raise Unauthenticated("The token's signing algorithm does not match its key")
    try:
        if kty == "RSA":
            key = RSAAlgorithm.from_jwk(jwk)
            if key.key_size < MIN_RSA_BITS:
                raise ValueError("RSA key too short")
        else:
            if jwk.get("crv") != _EC_CURVE_BY_ALG[alg]:
                raise ValueError("curve does not match the algorithm")
            key = ECAlgorithm.from_jwk(jwk)
    except (ValueError, jwt.InvalidKeyError):
        raise Unauthenticated("The token's signing key is not usable") from None
    return key


def _caller(claims: dict[str, Any], issuer: str) -> Caller:
    """Users are their `oid`; applications (no `scp`, or `idtyp: app`) their client id (`azp` / `appid`)."""
    is_app = claims.get("idtyp") == "app" or "scp" not in claims
    identity = (claims.get("azp") or claims.get("appid")) if is_app else claims.get("oid")
    tid = claims.get("tid")
    if not isinstance(identity, str) or not _GUID.fullmatch(identity) or not isinstance(tid, str):
        raise Unauthenticated("The token names no caller")
    roles = claims.get("roles") or []
    if not isinstance(roles, list):
        roles = []
    return Caller(object_id=identity.lower(), tenant_id=tid.lower(),
                  app_roles=frozenset(r for r in roles if isinstance(r, str)), is_app=is_app, issuer=issuer)


# ---- the caller of the current request -----------------------------------------------------------------------
# `functions.http_support.api` sets it around each handler, so domain code can ask who is calling without the
# request object. Each invocation runs in its own thread (and context), so callers never leak between requests.
_current: ContextVar[Caller | None] = ContextVar("reconciliation_caller", default=None)


def current_caller() -> Caller:
    caller = _current.get()
    if caller is None:
        raise Unauthenticated("No bearer token", error=None)
    return caller


@contextmanager
def acting_as(caller: Caller) -> Iterator[Caller]:
    token = _current.set(caller)
    try:
        yield caller
    finally:
        _current.reset(token)
