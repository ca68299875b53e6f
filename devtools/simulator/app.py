"""One origin for every API: routes each request to Entra, Partner Center, Graph or the blob host, checks the
bearer token's audience, injects faults, echoes tracing headers and records the request."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass

from .auth import Entra, Tokens
from .exports import Exports
from .faults import Faults
from .gauge import Gauge
from .messages import Reply, Request, failure, graph_error, json_reply, pc_error
from .pc import PartnerCenter

log = logging.getLogger(__name__)
_LOGGED_HEADERS = ("ms-requestid", "ms-correlationid", "ms-continuationtoken", "client-request-id", "x-ms-range",
                   "range")


@dataclass(frozen=True)
class LoggedRequest:
    """What a test needs to see that a client retried, paged or reused its request id."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # selected request headers, names lower-cased
    status: int
    received: float = 0.0  # time.time() when the request arrived (to count requests in a window)


class App:
    def __init__(self, entra: Entra, pc: PartnerCenter, exports: Exports, tokens: Tokens, faults: Faults,
                 requests: list[LoggedRequest], gauge: Gauge | None = None) -> None:
        self._entra = entra
        self._pc = pc
        self._exports = exports
        self._tokens = tokens
        self._faults = faults
        self._requests = requests
        self.gauge = gauge or Gauge()

    def handle(self, request: Request) -> Reply:
        received = time.time()
        if request.family == "control":
            return self._control(request)
        delay = self._faults.take_delay(request.path)
        if delay:
            time.sleep(delay)
        rule = self._faults.take_failure(request.path)
        try:
            reply = failure(request, rule.status, rule.retry_after) if rule else self._route(request)
        except Exception:  # a bug must show as a 500 in the client's log, not a dropped connection
            log.exception("simulator failed on %s %s", request.method, request.path)
            reply = failure(request, 500, 0)
        self._decorate(request, reply)
        self._requests.append(LoggedRequest(request.method, request.path, dict(request.query),
                                            {h: request.headers[h] for h in _LOGGED_HEADERS if h in request.headers},
                                            reply.status, received))
        return reply

    def _route(self, request: Request) -> Reply:
        family = request.family
        if family == "blob":
            return self._exports.serve_blob(request)
        if family == "entra":
            return self._entra.handle(request)
        audience = self._tokens.audience(request.header("authorization"))
        if family == "pc":
            if audience != "pc":
                return pc_error(401, 400, "Access denied: a Partner Center token is required.")
            return self._pc.handle(request)
        if audience != "graph":
            message = "Access token is empty." if not request.header("authorization") else \
                "Access token validation failure. Invalid audience."
            reply = graph_error(401, message, request)
            reply.headers["WWW-Authenticate"] = 'Bearer realm="", error="invalid_token"'
            return reply
        return self._exports.handle(request)

    @staticmethod
    def _decorate(request: Request, reply: Reply) -> None:
        if request.family == "pc":
            for name in ("MS-RequestId", "MS-CorrelationId"):
                reply.headers[name] = request.header(name) or str(uuid.uuid4())
            reply.headers["MS-CV"] = f"sim.{uuid.uuid4().hex[:16]}.0"
        elif request.family == "graph":
            reply.headers["request-id"] = str(uuid.uuid4())
            reply.headers["client-request-id"] = request.header("client-request-id") or reply.headers["request-id"]

    def _control(self, request: Request) -> Reply:
        """POST /_sim/faults {"action": {kwargs} | [args] | value | null, ...}; POST /_sim/reset."""
        if request.method != "POST":
            return json_reply(405, {"error": "POST only"})
        if request.path == "/_sim/reset":
            self._faults.reset()
            self._requests.clear()
            return json_reply(200, {})
        if request.path != "/_sim/faults":
            return json_reply(404, {"error": "unknown control path"})
        try:
            actions = json.loads(request.body or b"{}")
            results = {}
            for name, args in actions.items():
                if name not in Faults.HTTP_ACTIONS:
                    raise ValueError(f"unknown fault '{name}'")
                call = getattr(self._faults, name)
                if isinstance(args, dict):
                    results[name] = call(**args)
                elif isinstance(args, list):
                    results[name] = call(*args)
                else:
                    results[name] = call() if args in (None, True) else call(args)
        except (ValueError, TypeError, KeyError, AttributeError) as problem:
            return json_reply(400, {"error": str(problem)})
        return json_reply(200, results)
