"""App settings and host.json, read the way the Functions host and Core Tools read them.

Core Tools copies `local.settings.json` "Values" into the worker's environment, but never overrides a
variable that is already set; binding properties such as `queueName="%GENERATION_QUEUE%"` are then
resolved from that environment. host.json supplies the few host options the local host honours.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_EXPRESSION = re.compile(r"%([^%]+)%")
_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)$")


class SettingsError(ValueError):
    """A setting or host.json option the host cannot use (the real host would refuse to start)."""


def read_local_settings(path: Path) -> dict[str, str]:
    """The "Values" of a local.settings.json file, as strings (an absent file has none)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path} is not valid JSON: {exc}") from exc
    if data.get("IsEncrypted"):
        raise SettingsError(f"{path} is encrypted; run `func settings decrypt` or write plain values")
    values = data.get("Values") or {}
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: \"Values\" must be an object")
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


def apply_settings(values: Mapping[str, str], environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Copy settings into the environment without overriding what is set (Core Tools' rule).

    Returns the settings actually added, so the caller can take them back out on shutdown.
    """
    env = os.environ if environ is None else environ
    added: dict[str, str] = {}
    for key, value in values.items():
        if key in env:
            log.debug("setting %s already in the environment; local.settings.json value ignored", key)
            continue
        env[key] = value
        added[key] = value
    return added


def remove_settings(added: Mapping[str, str], environ: MutableMapping[str, str] | None = None) -> None:
    """Undo `apply_settings`, leaving alone any value someone changed since."""
    env = os.environ if environ is None else environ
    for key, value in added.items():
        if env.get(key) == value:
            del env[key]


def resolve(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every `%NAME%` with the app setting NAME, as the host does for binding properties."""
    env = os.environ if environ is None else environ

    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise SettingsError(f"binding expression '%{name}%' does not resolve: app setting {name} is not set")
        return env[name]

    return _EXPRESSION.sub(setting, value)


def parse_timespan(text: str | int | float) -> timedelta:
    """A .NET TimeSpan string (`hh:mm:ss`, `d.hh:mm:ss`, fractional seconds) as a timedelta."""
    if isinstance(text, (int, float)):
        return timedelta(seconds=text)
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise SettingsError(f"not a TimeSpan (expected hh:mm:ss): {text!r}")
    return timedelta(
        days=int(match["days"] or 0), hours=int(match["h"]), minutes=int(match["m"]), seconds=float(match["s"])
    )


def is_timespan(text: str) -> bool:
    return bool(_TIMESPAN.match(text.strip()))


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the Storage extension's defaults."""

    batch_size: int = 16
    new_batch_threshold: int | None = None  # None: batch_size // 2, the single-core default
    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    max_polling_interval: timedelta = timedelta(minutes=1)
    message_encoding: str = "base64"

    @property
    def threshold(self) -> int:
        return self.batch_size // 2 if self.new_batch_threshold is None else self.new_batch_threshold


@dataclass(frozen=True)
class HostConfig:
    """The host.json options the local host honours; everything else is ignored."""

    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)
    functions: tuple[str, ...] | None = None  # host.json "functions": load only these

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any] | None) -> "HostConfig":
        """Read host.json from a path or an already-parsed mapping; None or an absent file gives defaults."""
        if source is None:
            return cls()
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        path = Path(source)
        if not path.is_file():
            log.info("no host.json at %s; using defaults", path)
            return cls()
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8-sig")))
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{path} is not valid JSON: {exc}") from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HostConfig":
        extensions = data.get("extensions") or {}
        http = extensions.get("http") or {}
        prefix = http.get("routePrefix", "api")
        functions = data.get("functions")
        return cls(
            route_prefix=str(prefix if prefix is not None else "").strip("/"),
            queues=_queue_options(extensions.get("queues") or {}),
            functions=tuple(functions) if functions is not None else None,
        )


def _queue_options(q: Mapping[str, Any]) -> QueueOptions:
    defaults = QueueOptions()
    encoding = str(q.get("messageEncoding", defaults.message_encoding)).lower()
    if encoding not in ("base64", "none"):
        raise SettingsError(f"host.json extensions.queues.messageEncoding must be base64 or none, not {encoding!r}")
    batch = int(q.get("batchSize", defaults.batch_size))
    if not 1 <= batch <= 32:
        raise SettingsError("host.json extensions.queues.batchSize must be between 1 and 32")
    threshold = q.get("newBatchThreshold")
    return QueueOptions(
        batch_size=batch,
        new_batch_threshold=int(threshold) if threshold is not None else None,
        max_dequeue_count=int(q.get("maxDequeueCount", defaults.max_dequeue_count)),
        visibility_timeout=parse_timespan(q.get("visibilityTimeout", "00:00:00")),
        max_polling_interval=parse_timespan(q.get("maxPollingInterval", "00:01:00")),
        message_encoding=encoding,
    )
