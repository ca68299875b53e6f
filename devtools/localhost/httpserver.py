"""The HTTP side of the local host: function routes under the route prefix, and the admin endpoints.

Requests become `azure.functions.HttpRequest` objects built as the worker builds them (headers and query
values joined with commas when repeated, route parameters as strings), and the returned
`HttpResponse` is written back with every header it carries. A handler exception is a bare 500: the
details go to the log, never to the client.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.functions import _abc as func_abc

from .indexing import HTTP_TRIGGER, FunctionInfo
from .routing import RouteTemplate

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
ADMIN_PREFIX = "/admin/"


@dataclass(frozen=True)
class Route:
    info: FunctionInfo
    template: RouteTemplate
    methods: frozenset[str] | None  # None: every method


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    params: dict[str, str]


@dataclass(frozen=True)
class MethodNotAllowed:
    allowed: frozenset[str]


class Router:
    """HTTP trigger routes, tried most specific first."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: (r.template.precedence, r.template.template.lower()))

    @classmethod
    def from_functions(cls, infos: list[FunctionInfo], route_prefix: str) -> "Router":
        routes = []
        for info in infos:
            if info.trigger_type != HTTP_TRIGGER:
                continue
            route = str(info.trigger.get("route") or info.name).strip("/")
            template = f"{route_prefix}/{route}" if route_prefix else route
            methods = info.trigger.get("methods")
            allowed = frozenset(str(m).upper() for m in methods) if methods else None
            routes.append(Route(info, RouteTemplate(template.strip("/")), allowed))
        return cls(routes)

    def resolve(self, method: str, path: str) -> RouteMatch | MethodNotAllowed | None:
        """The best route for the method, 405 if only other methods match the path, None for 404."""
        allowed: set[str] = set()
        for route in self.routes:
            params = route.template.match(path)
            if params is None:
                continue
            if route.methods is None or method.upper() in route.methods:
                return RouteMatch(route, params)
            allowed |= route.methods
        return MethodNotAllowed(frozenset(allowed)) if allowed else None


class Backend(Protocol):
    """What the HTTP server needs from the host."""

    router: Router
    max_body_bytes: int

    def invoke(self, info: FunctionInfo, trigger_value: Any) -> Any: ...

    def describe_functions(self) -> list[dict[str, Any]]: ...

    def start_admin_invocation(self, name: str, input: str | None) -> HTTPStatus: ...


class BodyTooLarge(Exception):
    pass


class LocalHttpServer(ThreadingHTTPServer):
    """A threaded server whose `close` also ends idle keep-alive connections, so no thread is left behind."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        self.backend = backend
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__(address, FunctionRequestHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="http")
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, let running requests finish, close idle connections, join every thread."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        with self._connections_lock:
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RD)  # idle readers see EOF; responses in progress still go out
                except OSError:
                    pass
        self.server_close()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)


class FunctionRequestHandler(BaseHTTPRequestHandler):
    """One connection; each request goes to the admin API or to the matching function."""

    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds an idle keep-alive connection may stay open
    server: LocalHttpServer

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log.info("%s - %s", self.address_string(), format % args)

    def handle_expect_100(self) -> bool:
        """Refuse an oversized body before the client sends it."""
        if self._declared_length() > self.server.backend.max_body_bytes:
            self._send_too_large()
            return False
        return super().handle_expect_100()

    # request

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except BodyTooLarge:
            self._send_too_large()
            return
        except ValueError:
            self.close_connection = True
            self._send_simple(HTTPStatus.BAD_REQUEST, "bad request body framing")
            return
        path = urlsplit(self.path).path
        if path.lower().startswith(ADMIN_PREFIX) or path.lower() == ADMIN_PREFIX.rstrip("/"):
            self._admin(path, body)
        else:
            self._function(path, body)

    def _declared_length(self) -> int:
        try:
            return int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return 0

    def _read_body(self) -> bytes:
        limit = self.server.backend.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            raise BodyTooLarge
        return self.rfile.read(length) if length else b""

    def _read_chunked(self, limit: int) -> bytes:
        chunks, total = [], 0
        while True:
            size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > limit:
                raise BodyTooLarge
            chunks.append(self.rfile.read(size))
            self.rfile.readline(16)

    def _function(self, path: str, body: bytes) -> None:
        outcome = self.server.backend.router.resolve(self.command, path)
        if outcome is None:
            self._send_simple(HTTPStatus.NOT_FOUND, "")
            return
        if isinstance(outcome, MethodNotAllowed):
            self._send_simple(HTTPStatus.METHOD_NOT_ALLOWED, "", [("Allow", ", ".join(sorted(outcome.allowed)))])
            return
        request = self._function_request(body, outcome.params)
        try:
            result = self.server.backend.invoke(outcome.route.info, request)
        except Exception:
            log.exception("function %s failed", outcome.route.info.name)
            self._send_simple(HTTPStatus.INTERNAL_SERVER_ERROR, "")
            return
        self._send_result(outcome.route.info, result)

    def _function_request(self, body: bytes, route_params: dict[str, str]) -> func.HttpRequest:
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.port}"
        query: dict[str, list[str]] = {}
        for key, value in parse_qsl(urlsplit(self.path).query, keep_blank_values=True):
            query.setdefault(key, []).append(value)
        headers = {name: ", ".join(self.headers.get_all(name) or []) for name in set(self.headers.keys())}
        return func.HttpRequest(
            method=self.command,
            url=f"http://{host}{self.path}",
            headers=headers,
            params={k: ",".join(v) for k, v in query.items()},
            route_params=route_params,
            body=body,
        )

    # admin

    def _admin(self, path: str, body: bytes) -> None:
        parts = [p for p in path.split("/") if p]
        backend = self.server.backend
        if parts[1:2] == ["functions"] and len(parts) == 2 and self.command == "GET":
            self._send_json(HTTPStatus.OK, backend.describe_functions())
        elif parts[1:2] == ["functions"] and len(parts) == 3 and self.command == "POST":
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                self._send_simple(HTTPStatus.BAD_REQUEST, "body must be JSON: {\"input\": \"...\"}")
                return
            value = payload.get("input") if isinstance(payload, dict) else None
            status = backend.start_admin_invocation(parts[2], None if value is None else _as_text(value))
            self._send_simple(status, "")
        elif parts[1:] == ["host", "status"] and self.command == "GET":
            self._send_json(HTTPStatus.OK, {"state": "Running"})
        else:
            self._send_simple(HTTPStatus.NOT_FOUND, "")

    # response

    def _send_result(self, info: FunctionInfo, result: Any) -> None:
        if isinstance(result, func_abc.HttpResponse):
            headers = [(k, v) for k, v in result.headers.items()
                       if k.lower() not in ("content-length", "transfer-encoding", "connection")]
            if not any(k.lower() == "content-type" for k, _ in headers):
                mimetype = result.mimetype
                content_type = f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype
                headers.append(("Content-Type", content_type))
            self._send(result.status_code, result.get_body(), headers)
        elif result is None:
            self._send(HTTPStatus.NO_CONTENT, b"", [])
        elif isinstance(result, (str, bytes)):
            data = result.encode("utf-8") if isinstance(result, str) else result
            self._send(HTTPStatus.OK, data, [("Content-Type", "text/plain; charset=utf-8")])
        else:
            log.error("function %s returned %s, not an HttpResponse", info.name, type(result).__name__)
            self._send_simple(HTTPStatus.INTERNAL_SERVER_ERROR, "")

    def _send_json(self, status: HTTPStatus, payload: Any) -> None:
        self._send(status, json.dumps(payload, indent=2).encode("utf-8"), [("Content-Type", "application/json")])

    def _send_simple(self, status: HTTPStatus, text: str, headers: list[tuple[str, str]] | None = None) -> None:
        extra = [("Content-Type", "text/plain; charset=utf-8")] if text else []
        self._send(status, text.encode("utf-8"), [*(headers or []), *extra])

    def _send_too_large(self) -> None:
        self.close_connection = True  # the unread body makes the connection unusable
        self._send_simple(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large",
                          [("Connection", "close")])

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(int(status))
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)


def _as_text(value: Any) -> str:
    """Admin input: strings as they are, anything else as JSON (Core Tools passes the raw input string)."""
    return value if isinstance(value, str) else json.dumps(value)
