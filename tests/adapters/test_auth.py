"""Token validation against real issuers on loopback: the local issuer, and an Entra-shaped per-tenant issuer.

Nothing is mocked: keys are fetched over HTTP, tokens are signed with real keys (or hand-made for the attacks
PyJWT itself refuses to produce), and PyJWT does the verification.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm

from devtools.tokens import LOCAL_AUDIENCE, JsonHandler, LocalIssuer, Minter, new_key
from shared.adapters.auth import (
    PARTNER_ADMIN_APP_ROLE,
    AuthConfig,
    Caller,
    IssuerUnavailable,
    TokenValidator,
    Unauthenticated,
    acting_as,
    current_caller,
)

TENANT = "0e6e8694-0000-4000-8000-000000000001"
OTHER_TENANT = "0e6e8694-0000-4000-8000-000000000002"
USER = "11111111-2222-4333-8444-555555555555"


class Clock:
    """The validator's cache clock (token times are real): tests step past the refresh interval."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as iss:
        yield iss


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def validator(issuer: LocalIssuer, clock: Clock) -> TokenValidator:
    config = AuthConfig(audiences=(LOCAL_AUDIENCE, "00000000-aaaa-4bbb-8ccc-000000000000"),
                        allowed_tenants=frozenset({TENANT}), local_issuer=issuer.issuer, refresh_interval=60)
    return TokenValidator(config, clock=clock)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64(signature)}"


def refused(validator: TokenValidator, header: str | None, words: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        validator.validate(header)
    exc = caught.value
    assert exc.status == 401
    assert exc.headers["WWW-Authenticate"] == exc.www_authenticate
    assert exc.www_authenticate.startswith('Bearer error="invalid_token", error_description="')
    assert words in exc.description, exc.description
    return exc


# ---- accepted ---------------------------------------------------------------------------------------------------

def test_a_good_user_token_gives_the_caller(issuer: LocalIssuer, validator: TokenValidator) -> None:
    caller = validator.validate(bearer(issuer.mint(USER, TENANT, [PARTNER_ADMIN_APP_ROLE])))
    assert caller == Caller(object_id=USER, tenant_id=TENANT, app_roles=frozenset({PARTNER_ADMIN_APP_ROLE}),
                            is_app=False, issuer=issuer.issuer)


def test_an_app_token_is_identified_by_its_client_id(issuer: LocalIssuer, validator: TokenValidator) -> None:
    client_id = str(uuid.uuid4())
    caller = validator.validate(bearer(issuer.mint(client_id, TENANT, app=True)))
    assert caller.is_app and caller.object_id == client_id and caller.app_roles == frozenset()


def test_the_second_audience_and_lower_case_scheme_are_accepted(issuer: LocalIssuer,
                                                                validator: TokenValidator) -> None:
    token = issuer.mint(USER, TENANT, audience="00000000-aaaa-4bbb-8ccc-000000000000")
    assert validator.validate(f"bearer {token}").object_id == USER


def test_ps256_is_accepted_from_an_rsa_key(issuer: LocalIssuer, validator: TokenValidator) -> None:
    minter = issuer.minter
    token = minter.sign(minter.claims(USER, TENANT), algorithm="PS256")
    assert validator.validate(bearer(token)).object_id == USER


def test_small_clock_skew_is_tolerated(issuer: LocalIssuer, validator: TokenValidator) -> None:
    token = issuer.mint(USER, TENANT, not_before=time.time() + 30)  # nbf/iat 30 s ahead of us
    assert validator.validate(bearer(token)).tenant_id == TENANT


def test_keys_are_cached(issuer: LocalIssuer, validator: TokenValidator, clock: Clock) -> None:
    before = issuer.jwks_requests
    for _ in range(5):
        validator.validate(bearer(issuer.mint(USER, TENANT)))
    assert issuer.jwks_requests == before + 1
    clock.now += 3601  # past jwks_ttl: one refetch
    validator.validate(bearer(issuer.mint(USER, TENANT)))
    assert issuer.jwks_requests == before + 2


# ---- refused ----------------------------------------------------------------------------------------------------

def test_no_token_is_a_challenge_without_an_error(validator: TokenValidator) -> None:
    for header in (None, "", "   ", "Basic dXNlcjpwYXNz"):
        with pytest.raises(Unauthenticated) as caught:
            validator.validate(header)
        assert caught.value.status == 401 and caught.value.www_authenticate == "Bearer"


def test_malformed(validator: TokenValidator) -> None:
    refused(validator, "Bearer not-a-jwt", "malformed")
    refused(validator, "Bearer a.b.c", "malformed")
    refused(validator, "Bearer " + "a" * 20000 + ".b.c", "malformed")


def test_expired(issuer: LocalIssuer, validator: TokenValidator) -> None:
    token = issuer.mint(USER, TENANT, not_before=time.time() - 7200, lifetime=3600)
    refused(validator, bearer(token), "expired")


def test_not_yet_valid(issuer: LocalIssuer, validator: TokenValidator) -> None:
    token = issuer.mint(USER, TENANT, not_before=time.time() + 3600)
    refused(validator, bearer(token), "not valid yet")


def test_wrong_audience(issuer: LocalIssuer, validator: TokenValidator) -> None:
    refused(validator, bearer(issuer.mint(USER, TENANT, audience="api://someone-else")), "not for this API")


def test_wrong_issuer(validator: TokenValidator) -> None:
    with LocalIssuer() as stranger:  # a well-formed issuer nobody configured
        refused(validator, bearer(stranger.mint(USER, TENANT)), "issuer")


def test_bad_signature(issuer: LocalIssuer, validator: TokenValidator) -> None:
    minter = issuer.minter
    forged = minter.sign(minter.claims(USER, TENANT, [PARTNER_ADMIN_APP_ROLE]), key=new_key())  # issuer's kid
    refused(validator, bearer(forged), "signature")
    good = issuer.mint(USER, TENANT)
    head, body, sig = good.split(".")
    tampered_claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    tampered_claims["roles"] = [PARTNER_ADMIN_APP_ROLE]
    refused(validator, bearer(f"{head}.{b64(json.dumps(tampered_claims).encode())}.{sig}"), "signature")


def test_alg_none(issuer: LocalIssuer, validator: TokenValidator) -> None:
    claims = issuer.minter.claims(USER, TENANT, [PARTNER_ADMIN_APP_ROLE])
    for alg in ("none", "None", "NONE"):
        refused(validator, bearer(handmade({"alg": alg, "kid": issuer.kid, "typ": "JWT"}, claims)), "algorithm")


def test_hmac_signed_with_the_public_key(issuer: LocalIssuer, validator: TokenValidator) -> None:
    """The classic confusion: HS256 keyed with the issuer's own public key (as JWK JSON and as PEM)."""
    claims = issuer.minter.claims(USER, TENANT, [PARTNER_ADMIN_APP_ROLE])
    public = issuer.minter.key.public_key()
    secrets = [public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
               RSAAlgorithm.to_jwk(public).encode()]
    for alg, digest in (("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512)):
        for secret in secrets:
            token = handmade({"alg": alg, "kid": issuer.kid, "typ": "JWT"}, claims,
                             lambda data, s=secret, d=digest: hmac.new(s, data, d).digest())
            refused(validator, bearer(token), "algorithm")


def test_an_algorithm_the_key_type_does_not_allow(issuer: LocalIssuer, validator: TokenValidator) -> None:
    claims = issuer.minter.claims(USER, TENANT)
    refused(validator, bearer(handmade({"alg": "ES256", "kid": issuer.kid}, claims, lambda d: b"\x00" * 64)),
            "does not match its key")


def test_missing_claims(issuer: LocalIssuer, validator: TokenValidator) -> None:
    minter = issuer.minter
    no_exp = minter.claims(USER, TENANT)
    del no_exp["exp"]
    refused(validator, bearer(minter.sign(no_exp)), "required claim")
    no_oid = minter.claims(USER, TENANT)
    del no_oid["oid"]
    refused(validator, bearer(minter.sign(no_oid)), "names no caller")
    no_tid = minter.claims(USER, TENANT)
    del no_tid["tid"]
    refused(validator, bearer(minter.sign(no_tid)), "issuer")


def test_unknown_kid_refetches_once_then_refuses_and_rotation_is_picked_up(
        issuer: LocalIssuer, validator: TokenValidator, clock: Clock) -> None:
    validator.validate(bearer(issuer.mint(USER, TENANT)))  # keys cached
    fetched = issuer.jwks_requests

    clock.now += 61  # past the refresh interval: an unknown kid makes exactly one refetch
    refused(validator, bearer(issuer.mint(USER, TENANT, kid="not-a-published-kid")), "signing key is unknown")
    assert issuer.jwks_requests == fetched + 1
    for _ in range(3):  # within the interval: garbage kids do not reach the issuer again
        refused(validator, bearer(issuer.mint(USER, TENANT, kid=uuid.uuid4().hex)), "signing key is unknown")
    assert issuer.jwks_requests == fetched + 1

    old_kid, old_minter = issuer.kid, issuer.minter
    issuer.rotate()  # Entra rolls over: a new key is published beside the old one
    clock.now += 61
    rotated = issuer.mint(USER, TENANT)
    assert validator.validate(bearer(rotated)).object_id == USER
    assert issuer.jwks_requests == fetched + 2
    assert validator.validate(bearer(old_minter.mint(USER, TENANT))).object_id == USER  # old key still published

    issuer.retire(old_kid)
    clock.now += 3601
    refused(validator, bearer(old_minter.mint(USER, TENANT)), "signing key is unknown")


def test_issuer_unreachable_before_any_keys_is_503(clock: Clock) -> None:
    gone = LocalIssuer().start()
    url = gone.issuer
    token = gone.mint(USER, TENANT)
    gone.stop()
    validator = TokenValidator(AuthConfig(audiences=(LOCAL_AUDIENCE,), allowed_tenants=frozenset(),
                                          local_issuer=url, http_timeout=2), clock=clock)
    with pytest.raises(IssuerUnavailable) as caught:
        validator.validate(bearer(token))
    assert caught.value.status == 503


# ---- Entra-shaped issuers: one per tenant, v2 and v1 forms --------------------------------------------------------

class TenantIssuers:
    """Serves `/{tid}/v2.0/.well-known/openid-configuration` (issuer `{base}/{tid}/v2.0`), the v1 document at
    `/{tid}/.well-known/openid-configuration` (issuer `{base}/sts/{tid}/`) and one JWKS, as Entra does."""

    def __init__(self) -> None:
        self.key, self.kid = new_key(), uuid.uuid4().hex
        outer = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if self.path == "/keys":
                    jwk = RSAAlgorithm.to_jwk(outer.key.public_key(), as_dict=True)
                    return self._json({"keys": [{**jwk, "kid": outer.kid, "use": "sig"},
                                                {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]})
                if parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                    return self._json({"issuer": f"{outer.base}/{parts[0]}/v2.0", "jwks_uri": f"{outer.base}/keys"})
                if parts[1:] == [".well-known", "openid-configuration"]:
                    return self._json({"issuer": f"{outer.base}/sts/{parts[0]}/", "jwks_uri": f"{outer.base}/keys"})
                self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def issuers(self) -> tuple[tuple[str, str], ...]:
        return ((self.base + "/{tid}/v2.0", self.base + "/{tid}/v2.0/.well-known/openid-configuration"),
                (self.base + "/sts/{tid}/", self.base + "/{tid}/.well-known/openid-configuration"))

    def mint(self, tid: str, *, v1: bool = False, kid: str | None = None) -> str:
        iss = f"{self.base}/sts/{tid}/" if v1 else f"{self.base}/{tid}/v2.0"
        minter = Minter(iss, self.key, self.kid, LOCAL_AUDIENCE)
        claims = minter.claims(USER, tid)
        if v1:  # v1 app tokens name the client in `appid`
            claims = {**claims, "ver": "1.0"}
        return minter.sign(claims, kid=kid)


@pytest.fixture(scope="module")
def tenants() -> Iterator[TenantIssuers]:
    t = TenantIssuers()
    yield t
    t.server.shutdown()
    t.server.server_close()


def test_allowed_tenants_v1_and_v2_issuers(tenants: TenantIssuers, clock: Clock) -> None:
    validator = TokenValidator(AuthConfig(audiences=(LOCAL_AUDIENCE,), allowed_tenants=frozenset({TENANT}),
                                          issuers=tenants.issuers()), clock=clock)
    assert validator.validate(bearer(tenants.mint(TENANT))).tenant_id == TENANT
    assert validator.validate(bearer(tenants.mint(TENANT, v1=True))).tenant_id == TENANT
    refused(validator, bearer(tenants.mint(OTHER_TENANT)), "issuer")  # a real issuer, but not a tenant we serve
    refused(validator, bearer(tenants.mint(TENANT, kid="hmac")), "signing key is unknown")  # oct keys are dropped


def test_local_issuer_is_not_trusted_unless_configured(issuer: LocalIssuer, clock: Clock) -> None:
    validator = TokenValidator(AuthConfig(audiences=(LOCAL_AUDIENCE,), allowed_tenants=frozenset({TENANT})),
                               clock=clock)
    refused(validator, bearer(issuer.mint(USER, TENANT)), "issuer")


def test_config_needs_an_audience_and_a_loopback_local_issuer() -> None:
    with pytest.raises(ValueError):
        AuthConfig(audiences=(" ",), allowed_tenants=frozenset())
    with pytest.raises(ValueError):
        AuthConfig(audiences=("api://x",), allowed_tenants=frozenset(), local_issuer="https://issuer.example.com")
    assert AuthConfig(audiences=("api://x",), allowed_tenants=frozenset({TENANT.upper() + " "}),
                      local_issuer="http://localhost:7073/").allowed_tenants == frozenset({TENANT})


# ---- into HTTP ------------------------------------------------------------------------------------------------

def test_unauthenticated_becomes_a_401_problem_with_the_challenge(issuer: LocalIssuer,
                                                                 validator: TokenValidator) -> None:
    from functions.http_support import problem_response

    exc = refused(validator, bearer(issuer.mint(USER, TENANT, audience="api://x")), "not for this API")
    resp = problem_response(exc, "/api/tenants")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == exc.www_authenticate
    body = json.loads(resp.get_body())
    assert body["status"] == 401 and body["title"] == "Unauthenticated"
    assert "eyJ" not in resp.get_body().decode()  # never the token


def test_current_caller_is_scoped_to_the_request() -> None:
    with pytest.raises(Unauthenticated):
        current_caller()
    caller = Caller(object_id=USER, tenant_id=TENANT)
    with acting_as(caller):
        assert current_caller() is caller
    with pytest.raises(Unauthenticated):
        current_caller()
