"""Logging for the app: one structured line per record, secrets redacted, optionally shipped to Application Insights.

Why here and not in host.json: the Functions host only sees the message text, so the tenant / file / invoice a
generation log is about (passed with `extra={...}`, see shared/app/generation.py) would be lost; a JSON line keeps them
searchable, and OpenTelemetry (when configured) turns the same extras into customDimensions. Redaction sits on the
root handlers, so no code path — ours or an SDK's — can print a SAS signature, a bearer token or a client secret.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from datetime import datetime, timezone
from typing import Any, TextIO

CONTEXT_FIELDS = ("tenant", "file", "invoice")
REDACTED = "REDACTED"
APPINSIGHTS_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}

# (pattern, replacement). Order matters only in that each pattern leaves text the others no longer match.
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # SAS signature in any URL or query string...
    (re.compile(r"(?i)(?<![A-Za-z0-9_])(sig=)[^&\s\"'<>#]+"), rf"\g<1>{REDACTED}"),
    # ...and in a percent-encoded URL (a link passed as a query parameter): sig%3D<value> up to the next %26.
    (re.compile(r"(?i)(?:(?<![A-Za-z0-9_])|(?<=%26)|(?<=%3F))(sig%3D)(?:(?!%26)[^&\s\"'<>#])+"),
     rf"\g<1>{REDACTED}"),
    # Authorization: Bearer <token> (JWTs and opaque tokens alike).
    (re.compile(r"(?i)\b(Bearer\s+)[A-Za-z0-9\-._~+/]+=*"), rf"\g<1>{REDACTED}"),
    # client_secret / access_token / refresh_token as form fields, query parameters or JSON members.
    (re.compile(r"(?i)\b((?:client_secret|access_token|refresh_token)[\"']?\s*(?:=|:|%3D)\s*[\"']?)[^&\s\"',;}]+"),
     rf"\g<1>{REDACTED}"),
    # Storage connection strings.
    (re.compile(r"(?i)\b(AccountKey=)[^;\s\"']+"), rf"\g<1>{REDACTED}"),
)

_HANDLER_MARK = "_recon_structured"
_lock = threading.Lock()
_monitor_configured = False


def redact(text: str) -> str:
    """Replace every secret this module knows how to spot with REDACTED."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record in place so every handler after it (and every later formatter) sees only redacted text.

    Attached to handlers rather than loggers: a logger's filters do not run for records propagated from its
    children, a handler's filters run for everything the handler emits.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):  # several root handlers share one record
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it for logging's own error report
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        record._redacted = True
        return True


class StructuredFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's extras (tenant/file/invoice first)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            if getattr(record, key, None) is not None:
                entry[key] = getattr(record, key)
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _functions_worker_handles_root(root: logging.Logger) -> bool:
    """True inside the Functions Python worker, whose own root handler already forwards logs to the host."""
    return any(type(h).__module__.startswith(("azure_functions_worker", "azure_functions_runtime", "proxy_worker"))
               for h in root.handlers)


def _configure_azure_monitor() -> None:
    """Send logs/traces to Application Insights when a connection string is set and the distro is installed."""
    global _monitor_configured
    if _monitor_configured or not os.environ.get(APPINSIGHTS_SETTING):
        return
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor  # optional dependency, imported lazily
    except ImportError:
        logging.getLogger(__name__).warning(
            "%s is set but azure-monitor-opentelemetry is not installed; logs stay local", APPINSIGHTS_SETTING)
        return
    configure_azure_monitor()  # reads the connection string from the environment
    _monitor_configured = True


def configure_logging(level: int | str | None = None, *, stream: TextIO | None = None,
                      console: bool | None = None) -> logging.Handler | None:
    """Set up structured, redacted logging once per process; calling it again changes nothing but the level.

    `console=None` adds the JSON console handler unless the Functions worker already owns the root logger (then
    the host collects our records and a second console copy would only duplicate them). Returns our handler.
    """
    root = logging.getLogger()
    level = level if level is not None else os.environ.get("LOG_LEVEL", "INFO").upper()
    with _lock:
        root.setLevel(level)
        logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every HTTP request at INFO
        ours = next((h for h in root.handlers if getattr(h, _HANDLER_MARK, False)), None)
        if ours is None and (console if console is not None else not _functions_worker_handles_root(root)):
            ours = logging.StreamHandler(stream or sys.stderr)
            ours.setFormatter(StructuredFormatter())
            setattr(ours, _HANDLER_MARK, True)
            root.addHandler(ours)
        _configure_azure_monitor()  # before filtering: it adds its own root handler, which must redact too
        for handler in root.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
    return ours
