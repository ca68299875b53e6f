"""LocalHost: run a Python v2 function app without Azure Functions Core Tools.

It does what Core Tools + the Functions host do for HTTP, queue and timer triggers, from the same
metadata the worker hands the host (`app.get_functions()` → each function's bindings), so the app runs
unchanged under `func start` too. Used by tests, `python -m devtools.localhost` and other dev commands.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Any

from .httpserver import DEFAULT_MAX_BODY_BYTES, LocalHttpServer, Router
from .indexing import HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER, FunctionInfo, load_functions
from .invoke import Invoker, unsupported_bindings
from .queues import QueueConnections, QueueListener, QueueOutputSink, admin_message
from .settings import HostConfig, apply_settings, read_local_settings, remove_settings
from .timers import Clock, TimerScheduler, timer_request, utc_now

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


class LocalHost:
    """Indexes the app and serves its triggers from background threads until `stop()`.

    `root` is the function app folder (script root): the default place of `local.settings.json` and
    `host.json`, and put on `sys.path` for the import. `poll_interval` is the longest wait between polls
    of an empty queue (host.json `maxPollingInterval` caps it). `clock` returns the current UTC time for
    timer schedules; tests pass a fake one.
    """

    def __init__(
        self,
        module: str = "function_app",
        port: int = 0,
        settings_file: str | Path | None = None,
        host_json: str | Path | dict[str, Any] | None = None,
        poll_interval: float = 0.2,
        *,
        root: str | Path | None = None,
        bind: str = "127.0.0.1",
        clock: Clock | None = None,
        lease_seconds: int = 600,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        enable_queues: bool = True,
        enable_timers: bool = True,
    ) -> None:
        self.module = module
        self.root = Path(root) if root is not None else ROOT
        self.settings_file = Path(settings_file) if settings_file is not None else self.root / "local.settings.json"
        self.host_json = host_json if host_json is not None else self.root / "host.json"
        self.poll_interval = poll_interval
        self.max_body_bytes = max_body_bytes
        self.router = Router([])
        self._port = port
        self._bind = bind
        self._clock = clock or utc_now
        self._lease_seconds = lease_seconds
        self._enable_queues = enable_queues
        self._enable_timers = enable_timers
        self._infos: dict[str, FunctionInfo] = {}
        self._added_settings: dict[str, str] = {}
        self._added_path = False
        self._http: LocalHttpServer | None = None
        self._listeners: list[QueueListener] = []
        self._timers: TimerScheduler | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._connections = QueueConnections()
        self._invoker = Invoker()
        self._started = False

    # public API

    @property
    def url(self) -> str:
        """Base URL of the HTTP server; function routes live under `url + "/" + routePrefix`."""
        if self._http is None:
            raise RuntimeError("LocalHost is not started")
        wildcard = self._bind in ("", "0.0.0.0")
        address = "127.0.0.1" if wildcard else self._bind
        return f"http://{address}:{self._http.port}"

    @property
    def functions(self) -> dict[str, str]:
        """Indexed functions by name, with their trigger type (`httpTrigger`, `queueTrigger`, ...)."""
        return {name: info.trigger_type for name, info in self._infos.items()}

    @property
    def timers(self) -> TimerScheduler | None:
        return self._timers

    def start(self) -> "LocalHost":
        """Load settings, index the app, start HTTP, queue pollers and timers."""
        if self._started:
            raise RuntimeError("LocalHost already started")
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop triggers, let running invocations finish, join every thread, restore the environment."""
        if self._http is not None:
            self._http.close()
        for listener in self._listeners:
            listener.stop_polling()
        if self._timers is not None:
            self._timers.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        for listener in self._listeners:
            listener.close()
        self._connections.close()
        remove_settings(self._added_settings)
        self._added_settings = {}
        if self._added_path:
            sys.path.remove(str(self.root))
            self._added_path = False
        self._listeners, self._timers, self._executor = [], None, None

    def run_function(self, name: str, input: str | None = None) -> Any:  # noqa: A002 - the admin API's name
        """Run a non-HTTP function now and wait for it, like `POST /admin/functions/{name}`.

        Returns the function's return value; its exception propagates (the admin endpoint only logs it).
        """
        info = self._lookup(name)
        if info is None:
            raise KeyError(f"no function named {name!r}")
        if info.trigger_type == HTTP_TRIGGER:
            raise ValueError(f"{name} is an HTTP function: call its route instead")
        return self.invoke(info, self._admin_value(info, input))

    def __enter__(self) -> "LocalHost":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # used by the HTTP server, the pollers and the timers

    def invoke(self, info: FunctionInfo, trigger_value: Any) -> Any:
        """One invocation, logged the way the host logs it."""
        log.info("Executing 'Functions.%s'", info.name)
        started = time.perf_counter()
        try:
            result = self._invoker.invoke(info, trigger_value)
        except BaseException:
            log.info("Executed 'Functions.%s' (Failed, %.0f ms)", info.name, (time.perf_counter() - started) * 1000)
            raise
        log.info("Executed 'Functions.%s' (Succeeded, %.0f ms)", info.name, (time.perf_counter() - started) * 1000)
        return result

    def describe_functions(self) -> list[dict[str, Any]]:
        """`GET /admin/functions`: name, trigger type and the trigger's properties."""
        return [{"name": name, "trigger": info.trigger_type, "bindings": info.bindings}
                for name, info in sorted(self._infos.items())]

    def start_admin_invocation(self, name: str, input: str | None) -> HTTPStatus:  # noqa: A002
        """`POST /admin/functions/{name}`: 202 and run in the background, 404 unknown, 400 HTTP function."""
        info = self._lookup(name)
        if info is None:
            return HTTPStatus.NOT_FOUND
        if info.trigger_type == HTTP_TRIGGER or self._executor is None:
            return HTTPStatus.BAD_REQUEST
        value = self._admin_value(info, input)
        try:
            self._executor.submit(self._run_logged, info, value)
        except RuntimeError:  # stopping
            return HTTPStatus.SERVICE_UNAVAILABLE
        return HTTPStatus.ACCEPTED

    # start-up

    def _start(self) -> None:
        values = read_local_settings(self.settings_file)
        self._added_settings = apply_settings(values)
        if values:
            log.info("loaded %d setting(s) from %s (%d new)",
                     len(values), self.settings_file, len(self._added_settings))
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
            self._added_path = True
        config = HostConfig.load(self.host_json)
        self._infos = {info.name: info for info in self._select(load_functions(self.module), config)}
        self._invoker = Invoker(QueueOutputSink(self._connections, config.queues))
        active = [info for info in self._infos.values() if not _disabled(info.name)]
        self._executor = ThreadPoolExecutor(max_workers=self._worker_count(active, config), thread_name_prefix="fn")
        self.router = Router.from_functions(active, config.route_prefix)
        self._http = LocalHttpServer((self._bind, self._port), self)
        self._http.start()
        if self._enable_queues:
            self._start_queues(active, config)
        if self._enable_timers:
            timer_infos = [i for i in active if i.trigger_type == TIMER_TRIGGER]
            self._timers = TimerScheduler(timer_infos, self.invoke, self._executor, now=self._clock,
                                          max_wait=max(0.05, min(self.poll_interval, 1.0)))
            self._timers.start()
        self._log_summary(active, config)

    @staticmethod
    def _select(infos: list[FunctionInfo], config: HostConfig) -> list[FunctionInfo]:
        """host.json "functions" limits which functions load, as in the real host."""
        if config.functions is None:
            return infos
        wanted = {name.lower() for name in config.functions}
        return [info for info in infos if info.name.lower() in wanted]

    def _worker_count(self, active: list[FunctionInfo], config: HostConfig) -> int:
        """Enough threads for every queue's in-flight limit plus timers and admin runs."""
        if os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "").isdigit():
            return max(1, int(os.environ["PYTHON_THREADPOOL_THREAD_COUNT"]))
        queues = sum(1 for i in active if i.trigger_type == QUEUE_TRIGGER)
        per_queue = config.queues.batch_size + config.queues.threshold
        return max(4, queues * per_queue + len(active) + 2)

    def _start_queues(self, active: list[FunctionInfo], config: HostConfig) -> None:
        assert self._executor is not None
        for info in active:
            if info.trigger_type != QUEUE_TRIGGER:
                continue
            listener = QueueListener(info, self._connections, config.queues, self.invoke, self._executor,
                                     max_poll_interval=self.poll_interval, lease_seconds=self._lease_seconds)
            listener.start()
            self._listeners.append(listener)

    def _log_summary(self, active: list[FunctionInfo], config: HostConfig) -> None:
        lines = []
        for info in sorted(active, key=lambda i: i.name):
            trigger = info.trigger
            if info.trigger_type == HTTP_TRIGGER:
                methods = ",".join(trigger.get("methods") or ["*"])
                prefix = f"/{config.route_prefix}" if config.route_prefix else ""
                lines.append(f"  {info.name}: [{methods}] {self.url}{prefix}/{str(trigger.get('route')).strip('/')}")
            elif info.trigger_type == QUEUE_TRIGGER:
                lines.append(f"  {info.name}: queueTrigger on {trigger.get('queueName')}")
            elif info.trigger_type == TIMER_TRIGGER:
                lines.append(f"  {info.name}: timerTrigger {trigger.get('schedule')}")
            else:
                lines.append(f"  {info.name}: {info.trigger_type} (not triggered locally; use POST /admin/functions)")
            problems = unsupported_bindings(info)
            if problems:
                log.warning("function %s uses bindings this host cannot provide: %s", info.name, ", ".join(problems))
        for name in sorted(set(self._infos) - {i.name for i in active}):
            lines.append(f"  {name}: disabled")
        log.info("Functions:\n%s\nHost listening on %s", "\n".join(lines), self.url)

    # helpers

    def _lookup(self, name: str) -> FunctionInfo | None:
        """Function names are case-insensitive in the host."""
        lowered = name.lower()
        return next((info for n, info in self._infos.items() if n.lower() == lowered), None)

    @staticmethod
    def _admin_value(info: FunctionInfo, input: str | None) -> Any:  # noqa: A002
        if info.trigger_type == TIMER_TRIGGER:
            return timer_request(past_due=False)
        if info.trigger_type == QUEUE_TRIGGER:
            return admin_message(input)
        return input

    def _run_logged(self, info: FunctionInfo, value: Any) -> None:
        try:
            self.invoke(info, value)
        except Exception:
            log.exception("function %s failed (admin invocation)", info.name)


def _disabled(name: str) -> bool:
    """`AzureWebJobs.<name>.Disabled=true` turns a function's trigger off, as in Core Tools."""
    return os.environ.get(f"AzureWebJobs.{name}.Disabled", "").strip().lower() in ("true", "1")
