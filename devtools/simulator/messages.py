"""Requests, replies, and the error bodies of each service family (Partner Center, Graph, Blob, Entra)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

from .dates import utc_now, utc_text
from .wire import dumps

Family = Literal["pc", "graph", "blob", "entra", "control"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]  # names lower-cased: Partner Center treats them case-insensitively
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        return self.query.get(name.lower())

    @property
    def family(self) -> Family:
        first = self.path.split("/", 2)[1]
        if first == "v1":
            return "pc"
        if first in ("v1.0", "beta"):
            return "graph"
        if first == "blobs":
            return "blob"
        if first == "_sim":
            return "control"
        return "entra"


@dataclass(frozen=True)
class FileBody:
    """A byte range of a file on disk, streamed rather than read into memory."""

    path: Path
    start: int
    length: int


@dataclass
class Reply:
    status: int
    body: bytes | FileBody = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, value: object, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, dumps(value).encode(), {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def pc_error(status: int, code: int, description: str) -> Reply:
    """Partner Center's error body (reference §2.1)."""
    return json_reply(status, {"code": code, "description": description, "data": [], "source": "PartnerFD"})


_GRAPH_CODES = {400: "BadRequest", 401: "InvalidAuthenticationToken", 404: "ResourceNotFound",
                405: "MethodNotAllowed", 429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway",
                503: "ServiceUnavailable"}


def graph_error(status: int, message: str, request: Request) -> Reply:
    """Microsoft Graph's error body (reference §3.4)."""
    inner = {"date": utc_text(utc_now()), "request-id": str(uuid.uuid4()),
             "client-request-id": request.header("client-request-id") or str(uuid.uuid4())}
    return json_reply(status, {"error": {"code": _GRAPH_CODES.get(status, "UnknownError"), "message": message,
                                         "innerError": inner}})


def blob_error(status: int, code: str, message: str, detail: str = "") -> Reply:
    """Azure Storage's XML error body."""
    text = f"{message}\nRequestId:{uuid.uuid4()}\nTime:{utc_now().isoformat()}"
    extra = f"<AuthenticationErrorDetail>{escape(detail)}</AuthenticationErrorDetail>" if detail else ""
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{escape(text)}</Message>' \
           f"{extra}</Error>"
    return Reply(status, body.encode(), {"Content-Type": "application/xml", "x-ms-error-code": code})


def entra_error(status: int, error: str, code: int, description: str) -> Reply:
    """Entra ID's OAuth error body."""
    trace = str(uuid.uuid4())
    return json_reply(status, {"error": error, "error_description": f"AADSTS{code}: {description} Trace ID: {trace}",
                               "error_codes": [code], "timestamp": utc_now().strftime("%Y-%m-%d %H:%M:%SZ"),
                               "trace_id": trace, "correlation_id": str(uuid.uuid4())})


_REASONS = {429: "Rate limit is exceeded.", 500: "Internal server error.", 502: "Bad gateway.",
            503: "The service is temporarily unavailable."}


def failure(request: Request, status: int, retry_after: int) -> Reply:
    """An injected 429/5xx in the body style of the route's service."""
    headers = {"Retry-After": str(retry_after)} if status in (429, 503) else {}
    family = request.family
    if family == "pc" and status == 429:
        reply = json_reply(429, {"statusCode": 429,
                                 "message": f"Rate limit is exceeded. Try again in {retry_after} seconds."})
    elif family == "pc":
        reply = pc_error(status, status, _REASONS.get(status, "Server error."))
    elif family == "graph":
        reply = graph_error(status, _REASONS.get(status, "Server error."), request)
    elif family == "blob":
        reply = blob_error(status, "ServerBusy" if status in (429, 503) else "InternalError",
                           _REASONS.get(status, "Server error."))
    else:
        reply = entra_error(status, "temporarily_unavailable", 50196 if status == 429 else 90033,
                            _REASONS.get(status, "Server error."))
    reply.headers.update(headers)
    return reply
