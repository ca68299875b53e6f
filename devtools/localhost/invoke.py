"""Call a user function the way the Python worker does: trigger value by argument name, optional
`context`, `func.Out` output bindings, `$return`, and `async def` handlers."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import uuid
from typing import Any, Callable, Generic, TypeVar

import azure.functions as func
from azure.functions import _abc as func_abc

from .indexing import FunctionInfo

log = logging.getLogger(__name__)

T = TypeVar("T")
# Sends the values set on one output binding; given the binding dict and the values.
OutputSink = Callable[[dict[str, Any], list[Any]], None]


class UnsupportedBindingError(RuntimeError):
    """The function uses a binding the local host does not implement."""


class OutValue(func.Out, Generic[T]):
    """The value holder the worker passes for `func.Out[...]` parameters."""

    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, val: T) -> None:
        self._value = val

    def get(self) -> T | None:  # type: ignore[override]
        return self._value


class _TraceContext(func_abc.TraceContext):
    trace_parent = ""
    trace_state = ""
    attributes: dict[str, str] = {}


class _RetryContext(func_abc.RetryContext):
    retry_count = 0
    max_retry_count = 0
    exception = None


class InvocationContext(func.Context):
    """The `context` argument: enough for logging and for ASGI/WSGI adapters."""

    def __init__(self, info: FunctionInfo) -> None:
        self._id = str(uuid.uuid4())
        self._name = info.name
        self._directory = info.directory
        self._local = threading.local()
        self._local.invocation_id = self._id

    @property
    def invocation_id(self) -> str:
        return self._id

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]
        return self._local

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return self._directory

    @property
    def trace_context(self) -> func_abc.TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> func_abc.RetryContext:
        return _RetryContext()


def supported_outputs() -> set[str]:
    """Output binding types the local host can write."""
    return {"http", "queue"}


def unsupported_bindings(info: FunctionInfo) -> list[str]:
    """Bindings other than the trigger that this host cannot provide, for a warning at start-up."""
    return [
        f"{b.get('type')} ({b.get('name')})"
        for b in info.bindings
        if b is not info.trigger and not (b.get("direction") == "OUT" and b.get("type") in supported_outputs())
    ]


class Invoker:
    """Runs one function invocation and delivers its output bindings."""

    def __init__(self, output_sink: OutputSink | None = None) -> None:
        self._output_sink = output_sink

    def invoke(self, info: FunctionInfo, trigger_value: Any) -> Any:
        """Call the function; returns its return value (used for the HTTP `$return` binding)."""
        problems = unsupported_bindings(info)
        if problems:
            raise UnsupportedBindingError(
                f"function {info.name}: bindings not supported locally: {', '.join(problems)}")
        kwargs, outs = self._arguments(info, trigger_value)
        result = info.user_function(**kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        self._deliver(info, outs, result)
        return result

    def _arguments(self, info: FunctionInfo, trigger_value: Any) -> tuple[dict[str, Any], dict[str, OutValue[Any]]]:
        kwargs: dict[str, Any] = {info.trigger["name"]: trigger_value}
        outs: dict[str, OutValue[Any]] = {}
        for binding in info.bindings:
            name = binding.get("name")
            if binding is info.trigger or name == "$return":
                continue
            outs[name] = kwargs[name] = OutValue()
        if "context" in inspect.signature(info.user_function).parameters and "context" not in kwargs:
            kwargs["context"] = InvocationContext(info)
        return kwargs, outs

    def _deliver(self, info: FunctionInfo, outs: dict[str, OutValue[Any]], result: Any) -> None:
        for binding in info.bindings:
            if binding.get("direction") != "OUT" or binding.get("type") == "http":
                continue
            value = result if binding.get("name") == "$return" else outs[binding["name"]].get()
            if value is None:
                continue
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            if self._output_sink is None:
                raise UnsupportedBindingError(f"function {info.name}: no sink for {binding.get('type')} output")
            self._output_sink(binding, values)


async def _await(awaitable: Any) -> Any:
    return await awaitable
