"""The HTTPS listener: a threading HTTP/1.1 server whose connections do their TLS handshake in their own thread,
so one slow client cannot stall the accept loop."""

from __future__ import annotations

import socket
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from .app import App
from .messages import FileBody, Reply, Request

_CHUNK = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300  # idle keep-alive connections go away eventually
    server: SimServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=method,
            path=unquote(url.path),
            query={k.lower(): v for k, v in parse_qsl(url.query, keep_blank_values=True)},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        app = self.server.app
        with app.gauge.track(request):  # until the answer's last byte: a streamed blob is in flight until then
            self._send(app.handle(request))

    def _send(self, reply: Reply) -> None:
        body = reply.body
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(body.length if isinstance(body, FileBody) else len(body)))
        self.end_headers()
        if not isinstance(body, FileBody):
            self.wfile.write(body)
            return
        with open(body.path, "rb") as source:
            source.seek(body.start)
            remaining = body.length
            while remaining:
                chunk = source.read(min(_CHUNK, remaining))
                self.wfile.write(chunk)
                remaining -= len(chunk)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: `sim.requests` is the log."""


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self._context = context
        self.app: App | None = None  # set once the origin (which needs the bound port) is known

    @property
    def port(self) -> int:
        return self.server_address[1]

    def finish_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            tls = self._context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that gave up during the handshake
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, ConnectionError):
            pass  # the client went away mid-response (e.g. a truncated download it abandoned)
        finally:
            tls.close()
