"""The identity-based download path (user-delegation SAS) against Azurite over HTTPS with OAuth.

In Azure shared keys are disabled, so links must be user-delegation SAS signed with a key fetched through Entra ID.
Azurite only issues delegation keys over OAuth, and only serves OAuth over HTTPS; in `--oauth basic` mode it checks
the token's `iss`/`aud`/`nbf`/`exp`/`iat` but not its signature (reference §3.5), so a fake credential returning an
unsigned JWT stands in for the managed identity. Nothing here mocks the storage service itself.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
import trustme
from azure.core.credentials import AccessToken

from devtools.azurite import Azurite
from shared.adapters.sas import DELEGATION_KEY_LIFETIME, DELEGATION_KEY_MARGIN, DownloadLinks
from shared.adapters.settings import Settings
from shared.adapters.storage import Storage

TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"  # any GUID; Azurite only checks the issuer prefix
OBJECT_ID = "11111111-2222-3333-4444-555555555555"


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class FakeCredential:
    """A TokenCredential that hands out unsigned JWTs Azurite's basic OAuth mode accepts; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.scopes: list[tuple[str, ...]] = []
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with self._lock:
            self.calls += 1
            self.scopes.append(scopes)
        now = int(time.time())
        claims = {
            "iss": f"https://sts.windows.net/{TENANT_ID}/",
            "aud": "https://storage.azure.com",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "oid": OBJECT_ID,
            "tid": TENANT_ID,
        }
        header = {"alg": "RS256", "typ": "JWT", "kid": "fake"}
        token = f"{_b64url(header)}.{_b64url(claims)}.{base64.urlsafe_b64encode(b'unsigned').rstrip(b'=').decode()}"
        return AccessToken(token, now + 3600)


@dataclass
class IdentityStack:
    azurite: Azurite
    ca_path: str
    credential: FakeCredential
    storage: Storage


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityStack]:
    """Azurite with HTTPS (a throwaway CA) and OAuth, and a Storage built from identity-based settings only."""
    tmp: Path = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_path, cert_path, key_path = str(tmp / "ca.pem"), str(tmp / "cert.pem"), str(tmp / "key.pem")
    ca.cert_pem.write_to_path(ca_path)
    cert.cert_chain_pems[0].write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    with pytest.MonkeyPatch.context() as mp, Azurite(https_cert=cert_path, https_key=key_path, oauth=True) as az:
        # requests (under azure-core's transport) reads this when verify is left at True.
        mp.setenv("REQUESTS_CA_BUNDLE", ca_path)
        mp.setenv("SSL_CERT_FILE", ca_path)
        mp.delenv("AzureWebJobsStorage", raising=False)
        settings = Settings(  # type: ignore[call-arg]
            AzureWebJobsStorage=None,  # explicit: init values win over anything in the environment
            AzureWebJobsStorage__blobServiceUri=az.endpoint("blob"),
            AzureWebJobsStorage__queueServiceUri=az.endpoint("queue"),
            AzureWebJobsStorage__tableServiceUri=az.endpoint("table"),
            FILES_CONTAINER=f"files-{uuid.uuid4().hex[:8]}",
            GENERATION_QUEUE=f"gen-{uuid.uuid4().hex[:8]}",
            TABLE_PREFIX=f"t{uuid.uuid4().hex[:8]}",
        )
        assert settings.uses_identity
        credential = FakeCredential()
        storage = Storage(settings, credential=credential)
        storage.ensure()  # container, both queues and all tables, each over OAuth
        yield IdentityStack(az, ca_path, credential, storage)


def _upload(storage: Storage, name: str, data: bytes) -> None:
    storage.files.get_blob_client(name).upload_blob(data, overwrite=True)


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_ensure_created_everything_over_oauth(identity: IdentityStack) -> None:
    s = identity.storage
    assert s.account_key is None
    assert s.files.exists()
    assert s.queue().get_queue_properties() is not None
    assert s.queue(f"{s.settings.generation_queue}-poison").get_queue_properties() is not None
    assert s.table("Files").query_entities("PartitionKey eq 'none'") is not None
    assert list(s.table("Files").query_entities("PartitionKey eq 'none'")) == []
    assert identity.credential.calls >= 1
    assert all(scopes == ("https://storage.azure.com/.default",) for scopes in identity.credential.scopes)


def test_identity_link_is_a_user_delegation_sas_that_downloads(identity: IdentityStack) -> None:
    _upload(identity.storage, "t1/report.csv", b"a,b\n1,2\n")
    url, expiry = DownloadLinks(identity.storage).url_for("t1/report.csv", "Invoice G1 report.csv")
    q = _query(url)
    assert {"skoid", "sktid", "skt", "ske", "sks", "skv"} <= q.keys()  # signed with a user delegation key
    assert q["skoid"] == OBJECT_ID and q["sktid"] == TENANT_ID
    assert q["sp"] == "r" and q["sr"] == "b"
    assert q["spr"] == "https"  # the endpoint is HTTPS, so the link refuses plain HTTP
    assert expiry > datetime.now(timezone.utc)

    resp = requests.get(url, verify=identity.ca_path, timeout=10)
    # A 403 here with the right key means the SAS was signed for the wrong account name: for path-style endpoints
    # (Azurite, https://host:port/<account>) ContainerClient.get_blob_client() reports account_name
    # "<account>/<container>"; sas.py must take the name from the BlobServiceClient instead.
    assert resp.status_code == 200, resp.text
    assert resp.content == b"a,b\n1,2\n"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="Invoice G1 report.csv"')


def _assert_opens(url: str, identity: IdentityStack, body: bytes) -> None:
    resp = requests.get(url, verify=identity.ca_path, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.content == body


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    q = {**_query(url), **changes}
    return urlunsplit(parts._replace(query=urlencode(q)))


def test_tampered_signature_is_refused(identity: IdentityStack) -> None:
    _upload(identity.storage, "t1/tamper.csv", b"x")
    url, _ = DownloadLinks(identity.storage).url_for("t1/tamper.csv", "t.csv")
    _assert_opens(url, identity, b"x")  # so the 403s below are about the change, not a link that never worked
    sig = base64.b64decode(_query(url)["sig"])
    forged = base64.b64encode(bytes([sig[0] ^ 0xFF]) + sig[1:]).decode()
    assert requests.get(_with_query(url, sig=forged), verify=identity.ca_path, timeout=10).status_code == 403
    # widening the permission without re-signing fails too
    assert requests.get(_with_query(url, sp="rw"), verify=identity.ca_path, timeout=10).status_code == 403


def test_link_is_read_only(identity: IdentityStack) -> None:
    _upload(identity.storage, "t1/ro.csv", b"original")
    url, _ = DownloadLinks(identity.storage).url_for("t1/ro.csv", "ro.csv")
    _assert_opens(url, identity, b"original")
    resp = requests.put(url, data=b"overwritten", headers={"x-ms-blob-type": "BlockBlob"},
                        verify=identity.ca_path, timeout=10)
    assert resp.status_code == 403, resp.text
    assert requests.delete(url, verify=identity.ca_path, timeout=10).status_code == 403
    assert identity.storage.files.get_blob_client("t1/ro.csv").download_blob().readall() == b"original"


def test_link_opens_exactly_one_blob(identity: IdentityStack) -> None:
    _upload(identity.storage, "t1/mine.csv", b"mine")
    _upload(identity.storage, "t2/theirs.csv", b"theirs")
    url, _ = DownloadLinks(identity.storage).url_for("t1/mine.csv", "mine.csv")
    _assert_opens(url, identity, b"mine")
    other = url.replace("/t1/mine.csv?", "/t2/theirs.csv?")
    assert other != url
    assert requests.get(other, verify=identity.ca_path, timeout=10).status_code == 403


def test_delegation_key_is_cached_and_renewed_near_expiry(identity: IdentityStack,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Count calls at the SDK method DownloadLinks uses: robust against the SDK's own token caching."""
    blob_service = identity.storage.blob_service
    real = blob_service.get_user_delegation_key
    fetched: list[tuple[datetime, datetime]] = []

    def counting(start: datetime, expiry: datetime, **kw: Any) -> Any:
        fetched.append((start, expiry))
        return real(start, expiry, **kw)

    monkeypatch.setattr(blob_service, "get_user_delegation_key", counting)
    _upload(identity.storage, "t1/cache-a.csv", b"A")
    _upload(identity.storage, "t1/cache-b.csv", b"B")
    links = DownloadLinks(identity.storage)
    now = datetime.now(timezone.utc)
    url_a, _ = links.url_for("t1/cache-a.csv", "a.csv", now=now)
    url_b, _ = links.url_for("t1/cache-b.csv", "b.csv", now=now + timedelta(minutes=1))
    assert len(fetched) == 1
    assert _query(url_a)["skt"] == _query(url_b)["skt"]  # same key signs both
    _assert_opens(url_a, identity, b"A")
    _assert_opens(url_b, identity, b"B")

    # Less than the margin left on the cached key: the next link fetches a fresh one.
    later = now + DELEGATION_KEY_LIFETIME - DELEGATION_KEY_MARGIN + timedelta(minutes=1)
    url_c, _ = links.url_for("t1/cache-a.csv", "a.csv", now=later)
    assert len(fetched) == 2
    assert fetched[1][1] == later + DELEGATION_KEY_LIFETIME
    assert _query(url_c)["skoid"] == OBJECT_ID
    # ...and that key is reused again afterwards
    links.url_for("t1/cache-b.csv", "b.csv", now=later + timedelta(minutes=1))
    assert len(fetched) == 2


def test_account_key_path_on_plain_azurite_is_not_user_delegation(ctx: Any) -> None:
    """Same code, connection-string settings: a service SAS signed with the account key (switch by settings alone)."""
    assert ctx.storage.account_key
    ctx.storage.files.get_blob_client("t1/plain.csv").upload_blob(b"plain", overwrite=True)
    url, _ = DownloadLinks(ctx.storage).url_for("t1/plain.csv", "plain.csv")
    q = _query(url)
    assert "sig" in q and not ({"skoid", "sktid", "skt", "ske"} & q.keys())
    assert "spr" not in q  # plain-HTTP Azurite; the link must not demand HTTPS there
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200 and resp.content == b"plain"


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_link_never_outlives_its_delegation_key(identity: IdentityStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14 #13: DOWNLOAD_LINK_MINUTES allows a day while a key lived 6 h (renewed with 30 min left). Every
    link's signed expiry (`se`) is at or before its key's (`ske`), whatever the link's length or the cached key's
    age, and the link opens."""
    blob_service = identity.storage.blob_service
    real = blob_service.get_user_delegation_key
    fetched: list[datetime] = []

    def counting(start: datetime, expiry: datetime, **kw: Any) -> Any:
        fetched.append(expiry)
        return real(start, expiry, **kw)

    monkeypatch.setattr(blob_service, "get_user_delegation_key", counting)
    _upload(identity.storage, "t1/long.csv", b"L")
    links = DownloadLinks(identity.storage)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    issued = [
        links.url_for("t1/long.csv", "l.csv", minutes=15, now=now),  # a 6-hour key is fetched and cached
        links.url_for("t1/long.csv", "l.csv", minutes=24 * 60, now=now + timedelta(minutes=1)),  # the maximum
        # later, a cached key with little left, then a link longer than what is left of it
        links.url_for("t1/long.csv", "l.csv", minutes=15, now=now + timedelta(hours=20)),
        links.url_for("t1/long.csv", "l.csv", minutes=120, now=now + timedelta(hours=23, minutes=50)),
    ]
    for url, expiry in issued:
        q = _query(url)
        assert _instant(q["se"]) <= _instant(q["ske"]), (q["se"], q["ske"])
        assert _instant(q["se"]) == expiry.replace(microsecond=0)
    long_url, long_expiry = issued[1]
    assert long_expiry == now + timedelta(minutes=1, hours=24)  # the link keeps its full length
    _assert_opens(long_url, identity, b"L")
    assert len(fetched) >= 2  # the 6-hour key could not sign a day-long link
