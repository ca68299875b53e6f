"""The one HTTP call that delivers a webhook (shared/adapters/webhook_store.send), against a real local receiver:
the endpoint's name is resolved once, checked, and the connection goes to the checked address — a name that
answers a public address to the check and a private one afterwards (DNS rebinding) never reaches the private one."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from shared.adapters import webhook_store
from shared.adapters.webhook_store import send

NAME = "hooks.partner.example"


class _Receiver(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append({"host": self.headers.get("Host", ""), "id": self.headers.get("webhook-id", "")})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Receiver", (_Receiver,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def _resolver(monkeypatch: pytest.MonkeyPatch, answers: list[str]) -> list[str]:
    """NAME resolves to answers[0] the first time, answers[1] the next time, …; other names as usual."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != NAME:
            return real(host, port, *args, **kwargs)
        address = answers[min(len(asked), len(answers) - 1)]
        asked.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_the_connection_goes_to_the_checked_address_and_speaks_to_the_name(receiver, monkeypatch) -> None:
    port, seen = receiver
    # the check sees 127.0.0.1 (allowed by this test's rule); a second lookup would answer elsewhere
    asked = _resolver(monkeypatch, ["127.0.0.1", "127.0.0.2"])
    outcome = send(f"http://{NAME}:{port}/hook", "whsec_" + "A" * 32, "msg_1", "{}", 5, allow_private=False,
                   allowed=lambda a: a == "127.0.0.1")
    assert outcome.ok, outcome
    assert asked == ["127.0.0.1"]  # resolved once
    assert seen == [{"host": f"{NAME}:{port}", "id": "msg_1"}]


def test_dns_rebinding_never_reaches_the_private_address(receiver, monkeypatch) -> None:
    port, seen = receiver
    # public to the check, loopback (where the receiver listens) to any later lookup
    _resolver(monkeypatch, ["192.0.2.10", "127.0.0.1"])
    outcome = send(f"http://{NAME}:{port}/hook", "whsec_" + "A" * 32, "msg_2", "{}", 0.5, allow_private=False,
                   allowed=lambda a: a == "192.0.2.10")  # TEST-NET-1 stands in for a public address
    assert not outcome.ok
    assert seen == []  # the loopback receiver was never called


def test_a_name_with_any_private_address_is_refused(receiver, monkeypatch) -> None:
    port, seen = receiver
    _resolver(monkeypatch, ["127.0.0.1"])
    outcome = send(f"http://{NAME}:{port}/hook", "whsec_" + "A" * 32, "msg_3", "{}", 5, allow_private=False)
    assert not outcome.ok and "non-public" in (outcome.error or "")
    assert seen == []


def test_development_may_call_a_local_receiver(receiver) -> None:
    port, seen = receiver
    outcome = send(f"http://127.0.0.1:{port}/hook", "whsec_" + "A" * 32, "msg_4", "{}", 5, allow_private=True)
    assert outcome.ok and seen == [{"host": f"127.0.0.1:{port}", "id": "msg_4"}]


def test_no_redirect_is_followed(monkeypatch, receiver) -> None:
    port, _ = receiver

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{port}/elsewhere")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        outcome = send(f"http://127.0.0.1:{server.server_address[1]}/", "whsec_" + "A" * 32, "msg_5", "{}", 5,
                       allow_private=True)
    finally:
        server.shutdown()
        server.server_close()
    assert outcome.status_code == 307 and not outcome.ok
    assert webhook_store.Outcome(307, None, 0).ok is False


@pytest.mark.parametrize("cert_for, delivered", [(NAME, True), ("someone-else.example", False)])
def test_https_to_the_checked_address_verifies_the_names_certificate(monkeypatch, tmp_path, cert_for,
                                                                     delivered) -> None:
    """TLS to the pinned address still checks the certificate against the URL's name (SNI and hostname check):
    a certificate for another name is refused."""
    import ssl

    import trustme

    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(cert_for).configure_cert(context)
    seen: list[dict[str, str]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Receiver", (_Receiver,), {"seen": seen}))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _resolver(monkeypatch, ["127.0.0.1"])
    try:
        outcome = send(f"https://{NAME}:{server.server_address[1]}/hook", "whsec_" + "A" * 32, "msg_6", "{}", 5,
                       allow_private=False, allowed=lambda a: a == "127.0.0.1")
    finally:
        server.shutdown()
        server.server_close()
    assert outcome.ok is delivered, outcome
    assert len(seen) == (1 if delivered else 0)
    if not delivered:
        assert "certificate" in (outcome.error or "").lower() or "ssl" in (outcome.error or "").lower()
