"""Index a v2 app the way the Python worker does, and keep the metadata the host would receive.

The worker imports the script module, requires exactly one top-level `FunctionRegister` (a `FunctionApp`,
not a Blueprint), and sends the host each function's `get_function_json()`. `get_functions()` is called
once: a second call raises "does not have a unique function name" (reference §2.4).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

from azure.functions.decorators.function_app import Function, FunctionRegister

from .settings import resolve

log = logging.getLogger(__name__)

HTTP_TRIGGER = "httpTrigger"
QUEUE_TRIGGER = "queueTrigger"
TIMER_TRIGGER = "timerTrigger"
# Binding properties that are names, not values, so `%...%` in them is left alone.
_UNRESOLVED = {"name", "type", "direction", "connection"}


class IndexingError(RuntimeError):
    """The app would not index under the real worker either."""


@dataclass
class FunctionInfo:
    """One indexed function: its callable and its bindings with `%SETTING%` expressions resolved."""

    name: str
    function: Function
    bindings: list[dict[str, Any]]
    trigger: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        triggers = [b for b in self.bindings if str(b.get("type", "")).endswith("Trigger")]
        if len(triggers) != 1:
            raise IndexingError(f"function {self.name} must have exactly one trigger, has {len(triggers)}")
        self.trigger = triggers[0]

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def user_function(self) -> Callable[..., Any]:
        return self.function.get_user_function()

    @property
    def directory(self) -> str:
        """Where the function's code lives (the `context.function_directory` it sees)."""
        code = getattr(self.user_function, "__code__", None)
        return os.path.dirname(os.path.abspath(code.co_filename)) if code is not None else os.getcwd()


def find_app(module: ModuleType) -> FunctionRegister:
    """The module's single top-level FunctionApp, with the worker's error messages when there isn't one."""
    apps = [value for value in vars(module).values() if isinstance(value, FunctionRegister)]
    unique = list({id(app): app for app in apps}.values())
    if not unique:
        raise IndexingError(f"Could not find top level function app instances in {module.__name__}.")
    if len(unique) > 1:
        raise IndexingError(
            f"More than one {type(unique[0]).__name__} or other top level function app instances are defined "
            f"in {module.__name__}."
        )
    return unique[0]


def load_functions(module_name: str) -> list[FunctionInfo]:
    """Import the app module and index it; binding expressions are resolved from the current environment."""
    module = importlib.import_module(module_name)
    app = find_app(module)
    functions = _get_functions_once(app)
    infos = [_info(fn) for fn in functions]
    log.info("indexed %d function(s) from %s", len(infos), module_name)
    return infos


def _get_functions_once(app: FunctionRegister) -> list[Function]:
    """`app.get_functions()`, without tripping over (or leaving behind) its duplicate-name cache.

    Another indexer in this process (a test doing what the worker does) may call it before or after us;
    each call fails if the cache of names from an earlier call is still there. So clear it for our one
    call, then put back what was there.
    """
    previous = getattr(app, "functions_bindings", None)
    app.functions_bindings = None
    try:
        return app.get_functions()
    finally:
        app.functions_bindings = previous


def _info(function: Function) -> FunctionInfo:
    name = function.get_function_name() or function.get_user_function().__name__
    raw = json.loads(function.get_function_json())["bindings"]
    return FunctionInfo(name=name, function=function, bindings=[resolve_binding(b) for b in raw])


def resolve_binding(binding: dict[str, Any]) -> dict[str, Any]:
    """A copy of a binding with `%NAME%` app-setting expressions replaced in its string values."""
    return {
        key: resolve(value) if isinstance(value, str) and key not in _UNRESOLVED else value
        for key, value in binding.items()
    }
