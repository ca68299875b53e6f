"""A real HTTP receiver for webhook tests: verifies every request's Standard Webhooks signature with the
`standardwebhooks` library, and answers as scripted (500, a timeout, or 200), per path and event type."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Receiver:
    def __init__(self, slow_seconds: float = 2.0) -> None:
        self.secrets: dict[str, str] = {}  # path -> secret
        self.plan: dict[tuple[str, str], list[str]] = defaultdict(list)  # (path, event type) -> answers to give
        self.attempts: list[dict] = []  # every request: path, webhook-id, event id, type, answer, verified
        self.processed: dict[str, dict[str, dict]] = defaultdict(dict)  # path -> event id -> event (deduplicated)
        self.slow_seconds = slow_seconds
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.handle(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "Receiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{path}"

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        path = handler.path.strip("/")
        headers = {k: v for k, v in handler.headers.items()}
        try:
            event = Webhook(self.secrets[path]).verify(body, headers)
            verified = True
        except (WebhookVerificationError, KeyError):
            event, verified = {}, False
        with self._lock:
            planned = self.plan[(path, event.get("type", ""))]
            answer = planned.pop(0) if planned and verified else ("ok" if verified else "401")
            self.attempts.append({"path": path, "webhookId": headers.get("webhook-id"), "eventId": event.get("id"),
                                  "type": event.get("type"), "answer": answer, "verified": verified,
                                  "contentType": headers.get("Content-Type")})
        if answer == "timeout":
            time.sleep(self.slow_seconds)  # the sender gave up meanwhile; the receiver still processes it
        if answer in ("ok", "timeout"):
            with self._lock:  # deduplicated by webhook-id, as Standard Webhooks asks receivers to do
                self.processed[path].setdefault(headers["webhook-id"], event)
        status = {"ok": 200, "timeout": 200, "500": 500, "401": 401}[answer]
        try:
            handler.send_response(status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        except OSError:
            pass

    def events(self, path: str) -> list[dict]:
        with self._lock:
            return list(self.processed[path].values())

    def by_type(self, path: str, kind: str) -> list[dict]:
        return [e for e in self.events(path) if e["type"] == kind]


def dump(receiver: Receiver) -> str:
    return json.dumps(receiver.attempts, indent=1)
