"""A local token issuer for development and tests: Entra-shaped access tokens without Entra.

`LocalIssuer().start()` makes an RSA key, serves an OpenID configuration and a JWKS on loopback over plain HTTP
(the validator accepts plain HTTP for loopback addresses only) and mints tokens shaped like Entra v2 access tokens
(`iss`, `aud`, `tid`, `oid`/`azp`, `scp` or `idtyp: app`, `roles`). Point the app at it with
`AUTH_LOCAL_ISSUER=<issuer>` and `AUTH_AUDIENCES=api://reconciliation-local` (the default audience here).

From a shell, with the app running locally:

    python -m devtools.tokens serve                      # prints the settings; Ctrl-C to stop
    python -m devtools.tokens mint --role partnerAdmin --tenant <tenant id> [--object-id <guid>] [--app]

`serve` writes `.run/local-issuer.json` (issuer URL, audience, key id and the *private key*, mode 0600) so that
`mint` in another shell can sign for the running issuer; `.run/` is git-ignored and the key dies with the issuer
(a new one is made at every start). `mint` prints only the token on stdout, for `$(…)`:

    curl -H "Authorization: Bearer $(python -m devtools.tokens mint --role partnerAdmin --tenant $T)" …
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from collections.abc import Iterable

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ROOT = Path(__file__).resolve().parent.parent
STATE_FILE = ROOT / ".run" / "local-issuer.json"
LOCAL_AUDIENCE = "api://reconciliation-local"
DEFAULT_PORT = 7073  # `serve`: fixed, so local.settings.json can name the issuer; LocalIssuer() picks a free one
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
APP_ROLES = {"partnerAdmin": "Reconciliation.PartnerAdmin", "partnerReader": "Reconciliation.PartnerReader"}


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Minter:
    """Signs Entra-shaped access tokens with one key; used by the issuer and by the `mint` command."""

    def __init__(self, issuer: str, key: rsa.RSAPrivateKey, kid: str, audience: str = LOCAL_AUDIENCE) -> None:
        self.issuer, self.key, self.kid, self.audience = issuer, key, kid, audience

    def claims(self, object_id: str, tenant_id: str, roles: Iterable[str] = (), *, audience: str | None = None,
               lifetime: float = 3600, app: bool = False, not_before: float | None = None,
               scopes: str = "access_as_user") -> dict[str, Any]:
        now = int(time.time())
        nbf = int(not_before if not_before is not None else now)
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": audience or self.audience, "tid": tenant_id, "ver": "2.0",
            "iat": min(now, nbf), "nbf": nbf, "exp": int(nbf + lifetime),
        }
        if app:  # app-only (client credentials): the client id is the identity, no scp, idtyp=app
            claims.update({"azp": object_id, "oid": str(uuid.uuid4()), "sub": object_id, "idtyp": "app"})
        else:
            claims.update({"oid": object_id, "sub": object_id, "azp": str(uuid.uuid4()), "scp": scopes})
        if roles:
            claims["roles"] = list(roles)
        return claims

    def sign(self, claims: dict[str, Any], *, kid: str | None = None,
             key: rsa.RSAPrivateKey | None = None, algorithm: str = "RS256") -> str:
        headers = {"kid": kid or self.kid, "typ": "JWT"}
        return jwt.encode(claims, key or self.key, algorithm=algorithm, headers=headers)

    def mint(self, object_id: str, tenant_id: str, roles: Iterable[str] = (), *, audience: str | None = None,
             lifetime: float = 3600, app: bool = False, not_before: float | None = None,
             kid: str | None = None) -> str:
        """A signed token. `roles` are app role values, e.g. "Reconciliation.PartnerAdmin"."""
        claims = self.claims(object_id, tenant_id, roles, audience=audience, lifetime=lifetime, app=app,
                             not_before=not_before)
        return self.sign(claims, kid=kid)


class LocalIssuer:
    """An OpenID issuer on 127.0.0.1: `/.well-known/openid-configuration` and `/keys`. Thread-safe.

    `rotate()` makes a new signing key (the old one stays published unless `keep_old=False`), as Entra does;
    `jwks_requests` counts key fetches so tests can see the validator's caching.
    """

    def __init__(self, port: int = 0, audience: str = LOCAL_AUDIENCE, state_file: Path | None = None) -> None:
        self.audience = audience
        self.state_file = state_file
        self._port = port
        self._lock = threading.Lock()
        self._keys: dict[str, rsa.RSAPrivateKey] = {}
        self._current = ""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.jwks_requests = 0
        self.issuer = ""

    # ---- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> "LocalIssuer":
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler(self))
        self._server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.rotate(keep_old=False)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-issuer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.state_file is not None and self.state_file.exists():
            self.state_file.unlink()

    def __enter__(self) -> "LocalIssuer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- keys and tokens --------------------------------------------------------------------------------------
    def rotate(self, keep_old: bool = True) -> str:
        """A new current signing key; returns its kid."""
        kid = uuid.uuid4().hex
        with self._lock:
            if not keep_old:
                self._keys.clear()
            self._keys[kid] = new_key()
            self._current = kid
        self._write_state()
        return kid

    def retire(self, kid: str) -> None:
        """Stop publishing a key (tokens it signed then fail: unknown key)."""
        with self._lock:
            self._keys.pop(kid, None)

    @property
    def kid(self) -> str:
        return self._current

    @property
    def minter(self) -> Minter:
        with self._lock:
            return Minter(self.issuer, self._keys[self._current], self._current, self.audience)

    def mint(self, object_id: str, tenant_id: str, roles: Iterable[str] = (), *, audience: str | None = None,
             lifetime: float = 3600, app: bool = False, not_before: float | None = None,
             kid: str | None = None) -> str:
        return self.minter.mint(object_id, tenant_id, roles, audience=audience, lifetime=lifetime, app=app,
                                not_before=not_before, kid=kid)

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            keys = []
            for kid, key in self._keys.items():
                jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
                keys.append({**jwk, "kid": kid, "use": "sig"})  # no "alg": like Entra, the kty decides
        return {"keys": keys}

    def openid_configuration(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/keys",
                "id_token_signing_alg_values_supported": ["RS256"], "response_types_supported": ["code"],
                "subject_types_supported": ["pairwise"]}

    def _write_state(self) -> None:
        """For `mint` in another shell: issuer, audience and the current private key, readable by us only."""
        if self.state_file is None:
            return
        with self._lock:
            pem = self._keys[self._current].private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()).decode()
            state = {"issuer": self.issuer, "audience": self.audience, "kid": self._current, "privateKeyPem": pem}
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet HTTP handler answering JSON: what an OpenID issuer serves (also the tests' Entra-shaped one)."""

    def _json(self, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and `serve` stay readable
        pass


def _handler(issuer: LocalIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                self._json(issuer.openid_configuration())
            elif self.path == "/keys":
                issuer.jwks_requests += 1
                self._json(issuer.jwks())
            else:
                self.send_error(404)

    return Handler


# ---- command line ----------------------------------------------------------------------------------------------

def minter_from_state(state_file: Path = STATE_FILE) -> Minter:
    """The running issuer's minter, from the state file `serve` wrote; fails clearly if it is not running."""
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        raise SystemExit(f"No local issuer running ({state_file} missing): start `python -m devtools.tokens "
                         "serve` (or `make serve`) first.") from None
    try:
        with urllib.request.urlopen(f"{state['issuer']}/keys", timeout=3) as resp:
            published = {k["kid"] for k in json.load(resp)["keys"]}
    except OSError:
        raise SystemExit(f"The local issuer at {state['issuer']} does not answer; start it again.") from None
    if state["kid"] not in published:
        raise SystemExit("The local issuer no longer publishes the key in the state file; restart it.")
    key = serialization.load_pem_private_key(state["privateKeyPem"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return Minter(state["issuer"], key, state["kid"], state["audience"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.tokens", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a local issuer until Ctrl-C")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--audience", default=LOCAL_AUDIENCE)
    mint = sub.add_parser("mint", help="print a token signed by the running local issuer")
    mint.add_argument("--tenant", required=True, help="tenant id (tid) of the caller")
    mint.add_argument("--role", choices=[*APP_ROLES, "none"], default="none",
                      help="app role in the token; reseller/customer access comes from stored principals")
    mint.add_argument("--object-id", default=None, help="oid (users) or client id (--app); random if omitted")
    mint.add_argument("--app", action="store_true", help="an app-only token (a machine client such as an ERP)")
    mint.add_argument("--audience", default=None)
    mint.add_argument("--lifetime", type=int, default=3600, help="seconds")
    args = parser.parse_args(argv)

    if args.command == "serve":
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))  # clean up on kill
        with LocalIssuer(port=args.port, audience=args.audience, state_file=STATE_FILE) as issuer:
            print(f"Local issuer: {issuer.issuer}\n  AUTH_LOCAL_ISSUER={issuer.issuer}\n"
                  f"  AUTH_AUDIENCES={issuer.audience}\nState (private key): {STATE_FILE}\nCtrl-C to stop.",
                  flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0

    for name, value in (("--tenant", args.tenant), ("--object-id", args.object_id)):
        if value is not None and not GUID.fullmatch(value):
            parser.error(f"{name} must be a GUID")
    minter = minter_from_state()
    object_id = (args.object_id or str(uuid.uuid4())).lower()
    roles = [APP_ROLES[args.role]] if args.role in APP_ROLES else []
    token = minter.mint(object_id, args.tenant.lower(), roles, audience=args.audience, lifetime=args.lifetime,
                        app=args.app)
    print(f"{'client id' if args.app else 'object id'}: {object_id}", file=sys.stderr)
    print(token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
