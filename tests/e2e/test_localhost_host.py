"""devtools.localhost: the Core Tools stand-in runs a v2 app's HTTP, queue and timer triggers.

A small sample app (one FunctionApp, two Blueprints) is written to a temporary folder and served against
Azurite; time-dependent behaviour uses an injected clock instead of waiting.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devtools.azurite import Azurite  # noqa: E402
from devtools.localhost import LocalHost, next_occurrence  # noqa: E402
from devtools.localhost.indexing import IndexingError, load_functions  # noqa: E402
from devtools.localhost.queues import MessageDecodingError, decode, encode  # noqa: E402
from devtools.localhost.routing import RouteTemplate  # noqa: E402
from devtools.localhost.settings import (  # noqa: E402
    HostConfig,
    SettingsError,
    apply_settings,
    remove_settings,
    resolve,
)
from devtools.localhost.timers import TimerScheduler  # noqa: E402

UTC = timezone.utc
MAX_DEQUEUE = 4

SAMPLE_APP = '''
import json
import os
import pathlib
import threading
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
api = func.Blueprint()
work = func.Blueprint()
RECORDS = pathlib.Path(os.environ["LH_RECORDS"])
_lock = threading.Lock()


def record(kind, **data):
    with _lock, (RECORDS / f"{kind}.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(data) + "\\n")


@api.route(route="tenants/{tenant}/items/{item_id:int}", methods=["GET", "PUT"])
def item(req: func.HttpRequest) -> func.HttpResponse:
    payload = {
        "tenant": req.route_params["tenant"], "item_id": req.route_params["item_id"], "method": req.method,
        "q": req.params.get("q"), "x_test": req.headers.get("x-test"), "body": req.get_body().decode(),
        "url": req.url,
    }
    resp = func.HttpResponse(json.dumps(payload), mimetype="application/json", headers={"X-Item": "yes"})
    resp.headers.add("Set-Cookie", "a=1")
    resp.headers.add("Set-Cookie", "b=2")
    return resp


@api.route(route="tenants/{tenant}/reconciliation-files/{file_id}", methods=["GET"])
def get_file(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"file {req.route_params['file_id']}")


@api.route(route="tenants/{tenant}/{resource}", methods=["POST"])
def generic(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"generic {req.route_params['resource']}")


@api.route(route="tenants/{tenant}/reconciliation-files:regenerate", methods=["POST"])
def regenerate(req: func.HttpRequest) -> func.HttpResponse:
    tenant = req.route_params["tenant"]
    return func.HttpResponse(status_code=202, headers={"Location": f"/api/tenants/{tenant}/operations/1"})


@api.route(route="files/{*path}", methods=["GET"])
def files(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("path=" + req.route_params.get("path", ""))


@api.route(route="hello/{name?}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello " + req.route_params.get("name", "world"))


@api.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret-detail-in-traceback")


@api.route(route="enqueue", methods=["POST"])
@api.queue_output(arg_name="out", queue_name="%LH_QUEUE%", connection="AzureWebJobsStorage")
def enqueue(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set(req.get_body().decode())
    return func.HttpResponse(status_code=202)


@work.queue_trigger(arg_name="msg", queue_name="%LH_QUEUE%", connection="AzureWebJobsStorage")
def worker(msg: func.QueueMessage) -> None:
    data = json.loads(msg.get_body())
    record("work", id=data["id"], dequeue_count=msg.dequeue_count, data=data)
    time.sleep(data.get("sleep", 0))
    if msg.dequeue_count <= data.get("fail_times", 0):
        raise RuntimeError("asked to fail")


@work.queue_trigger(arg_name="msg", queue_name="lh-flaky", connection="AzureWebJobsStorage")
def flaky(msg: func.QueueMessage) -> None:
    raise RuntimeError("always fails")


@work.queue_trigger(arg_name="msg", queue_name="lh-flaky-poison", connection="AzureWebJobsStorage")
def flaky_gave_up(msg: func.QueueMessage) -> None:
    record("gave_up", body=msg.get_body().decode(), dequeue_count=msg.dequeue_count)


@work.timer_trigger(arg_name="timer", schedule="%LH_SCHEDULE%", run_on_startup=False, use_monitor=False)
def ticker(timer: func.TimerRequest) -> None:
    record("tick", past_due=timer.past_due, next=timer.schedule_status.get("Next"))


app.register_functions(api)
app.register_functions(work)
'''

SETTING_KEYS = ("AzureWebJobsStorage", "LH_RECORDS", "LH_QUEUE", "LH_SCHEDULE")


class FakeClock:
    """A UTC clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def read_records(folder: Path, kind: str) -> list[dict[str, Any]]:
    path = folder / f"{kind}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# fixtures


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    """Our own Azurite (module-scoped, shadowing the session one) so queue names and timing stay ours."""
    with Azurite() as az:
        yield az
    if az.process is not None and az.process.stderr is not None:
        az.process.stderr.close()  # the helper leaves its stderr pipe open (a ResourceWarning under -W error)


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory, azurite: Azurite) -> Path:
    folder = tmp_path_factory.mktemp("localhost_app")
    (folder / "records").mkdir()
    (folder / "lh_sample_app.py").write_text(SAMPLE_APP, encoding="utf-8")
    settings = {
        "IsEncrypted": False,
        "Values": {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "AzureWebJobsStorage": azurite.connection_string,
            "LH_RECORDS": str(folder / "records"),
            "LH_QUEUE": "lh-work",
            "LH_SCHEDULE": "0 */5 * * * *",
        },
    }
    (folder / "local.settings.json").write_text(json.dumps(settings), encoding="utf-8")
    host_json = {
        "version": "2.0",
        "extensions": {
            "http": {"routePrefix": "api"},
            "queues": {"maxDequeueCount": MAX_DEQUEUE, "visibilityTimeout": "00:00:00", "batchSize": 4},
        },
    }
    (folder / "host.json").write_text(json.dumps(host_json), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(datetime(2030, 1, 1, 11, 58, tzinfo=UTC))


@pytest.fixture(scope="module")
def host(app_dir: Path, clock: FakeClock) -> Iterator[LocalHost]:
    saved = {k: os.environ.pop(k) for k in SETTING_KEYS if k in os.environ}
    sys.modules.pop("lh_sample_app", None)
    threads_before = set(threading.enumerate())
    local = LocalHost(module="lh_sample_app", port=0, root=app_dir, poll_interval=0.2, clock=clock, lease_seconds=2)
    local.start()
    try:
        yield local
    finally:
        local.stop()
        sys.modules.pop("lh_sample_app", None)
        assert not any(k in os.environ for k in SETTING_KEYS), "settings from local.settings.json were not removed"
        os.environ.update(saved)
        stray = {t.name for t in threading.enumerate() if t.is_alive()} - {t.name for t in threads_before}
        assert not stray, f"threads left running: {stray}"


@pytest.fixture(scope="module")
def api(host: LocalHost) -> str:
    return host.url + "/api"


@pytest.fixture(scope="module")
def work_queue(azurite: Azurite, host: LocalHost) -> QueueClient:
    """The trigger queue, as a producer sees it (the host is running and polls it)."""
    client = QueueClient.from_connection_string(
        azurite.connection_string, "lh-work", message_encode_policy=TextBase64EncodePolicy()
    )
    try:
        client.create_queue()
    except ResourceExistsError:
        pass
    return client


def work_records(app_dir: Path, message_id: str) -> list[dict[str, Any]]:
    return [r for r in read_records(app_dir / "records", "work") if r["id"] == message_id]


# indexing and settings


def test_indexes_every_function_with_its_trigger(host: LocalHost) -> None:
    assert host.functions == {
        "item": "httpTrigger", "get_file": "httpTrigger", "generic": "httpTrigger", "regenerate": "httpTrigger",
        "files": "httpTrigger", "hello": "httpTrigger", "boom": "httpTrigger", "enqueue": "httpTrigger",
        "worker": "queueTrigger", "flaky": "queueTrigger", "flaky_gave_up": "queueTrigger", "ticker": "timerTrigger",
    }


def test_admin_lists_functions(host: LocalHost) -> None:
    listed = requests.get(host.url + "/admin/functions", timeout=5).json()
    by_name = {f["name"]: f for f in listed}
    assert by_name["worker"]["trigger"] == "queueTrigger"
    worker_trigger = next(b for b in by_name["worker"]["bindings"] if b["type"] == "queueTrigger")
    assert worker_trigger["queueName"] == "lh-work"  # %LH_QUEUE% resolved from local.settings.json


def _write_module(folder: Path, source: str) -> str:
    name = f"lh_mod_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return name


def test_indexing_requires_exactly_one_function_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    none = _write_module(tmp_path, "import azure.functions as func\nbp = func.Blueprint()\n")
    two = _write_module(tmp_path, "import azure.functions as func\na = func.FunctionApp()\nb = func.FunctionApp()\n")
    with pytest.raises(IndexingError, match="Could not find top level function app"):
        load_functions(none)
    with pytest.raises(IndexingError, match="More than one"):
        load_functions(two)


def test_indexing_survives_an_app_indexed_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _write_module(tmp_path, """
        import azure.functions as func
        app = func.FunctionApp()

        @app.route(route="x")
        def x(req):
            return "x"
    """)
    module = __import__(name)
    module.app.get_functions()  # e.g. an indexing test ran first in this process
    assert [f.name for f in load_functions(name)] == ["x"]
    module.app.functions_bindings = None  # and one that runs after us must still be able to index
    load_functions(name)
    assert [f.get_function_name() for f in module.app.get_functions()] == ["x"]


def test_settings_never_override_the_environment() -> None:
    env = {"KEEP": "from-env"}
    added = apply_settings({"KEEP": "from-file", "NEW": "value"}, env)
    assert env == {"KEEP": "from-env", "NEW": "value"} and added == {"NEW": "value"}
    assert resolve("%NEW%-poison", env) == "value-poison"
    with pytest.raises(SettingsError, match="MISSING"):
        resolve("%MISSING%", env)
    remove_settings(added, env)
    assert env == {"KEEP": "from-env"}


def test_host_json_defaults_and_overrides() -> None:
    default = HostConfig.load(None)
    assert (default.route_prefix, default.queues.batch_size, default.queues.max_dequeue_count) == ("api", 16, 5)
    assert default.queues.message_encoding == "base64" and default.queues.visibility_timeout == timedelta(0)
    queues = {"messageEncoding": "none", "visibilityTimeout": "00:00:30"}
    custom = HostConfig.from_dict({"extensions": {"http": {"routePrefix": ""}, "queues": queues}})
    assert custom.route_prefix == "" and custom.queues.message_encoding == "none"
    assert custom.queues.visibility_timeout == timedelta(seconds=30)


# HTTP


def test_route_params_query_headers_and_body_round_trip(api: str) -> None:
    resp = requests.put(f"{api}/tenants/contoso/items/42?q=a%20b", data="payload ✓".encode(),
                        headers={"X-Test": "yes"}, timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["X-Item"] == "yes"
    assert resp.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    body = resp.json()
    assert body == {"tenant": "contoso", "item_id": "42", "method": "PUT", "q": "a b", "x_test": "yes",
                    "body": "payload ✓", "url": body["url"]}
    assert body["url"].endswith("/api/tenants/contoso/items/42?q=a%20b")


def test_unknown_path_is_404_and_wrong_method_is_405(api: str) -> None:
    assert requests.get(f"{api}/nowhere", timeout=5).status_code == 404
    assert requests.get(f"{api}/tenants/contoso/items/not-a-number", timeout=5).status_code == 404  # {item_id:int}
    resp = requests.delete(f"{api}/tenants/contoso/items/42", timeout=5)
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET, PUT"


def test_literal_segments_beat_parameters(api: str) -> None:
    resp = requests.post(f"{api}/tenants/contoso/reconciliation-files:regenerate", timeout=5, allow_redirects=False)
    assert resp.status_code == 202
    assert resp.headers["Location"] == "/api/tenants/contoso/operations/1"
    assert requests.post(f"{api}/tenants/contoso/other", timeout=5).text == "generic other"
    assert requests.get(f"{api}/tenants/contoso/reconciliation-files/f-1", timeout=5).text == "file f-1"
    assert requests.get(f"{api}/tenants/contoso/reconciliation-files:regenerate", timeout=5).status_code == 405


def test_optional_and_catch_all_parameters(api: str) -> None:
    assert requests.get(f"{api}/hello", timeout=5).text == "hello world"
    assert requests.get(f"{api}/hello/ann", timeout=5).text == "hello ann"
    assert requests.get(f"{api}/files/a/b%20c/d.csv", timeout=5).text == "path=a/b c/d.csv"


def test_handler_exception_is_500_without_details(api: str, caplog: pytest.LogCaptureFixture) -> None:
    resp = requests.get(f"{api}/boom", timeout=5)
    assert resp.status_code == 500
    assert resp.content == b""
    assert "secret-detail-in-traceback" in caplog.text  # logged, not sent


def test_oversized_body_is_413_without_reading_it(host: LocalHost) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", int(host.url.rsplit(":", 1)[1]), timeout=5)
    conn.putrequest("POST", "/api/enqueue")
    conn.putheader("Content-Length", str(host.max_body_bytes + 1))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()


# queues


def test_base64_message_runs_the_function_and_is_deleted(app_dir: Path, work_queue: QueueClient) -> None:
    work_queue.send_message(json.dumps({"id": "plain", "text": "héllo ✓"}))
    (rec,) = wait_for(lambda: work_records(app_dir, "plain"))
    assert rec["dequeue_count"] == 1 and rec["data"]["text"] == "héllo ✓"
    wait_for(lambda: work_queue.get_queue_properties().approximate_message_count == 0)


def test_failed_message_is_redelivered_with_increasing_dequeue_count(app_dir: Path, work_queue: QueueClient) -> None:
    work_queue.send_message(json.dumps({"id": "retry", "fail_times": 2}))
    records = wait_for(lambda: len(work_records(app_dir, "retry")) == 3 and work_records(app_dir, "retry"))
    assert [r["dequeue_count"] for r in records] == [1, 2, 3]
    wait_for(lambda: work_queue.get_queue_properties().approximate_message_count == 0)
    time.sleep(0.3)  # succeeded on try 3: no further delivery
    assert len(work_records(app_dir, "retry")) == 3


def test_message_goes_to_poison_queue_after_max_dequeue_count(
    app_dir: Path, work_queue: QueueClient, azurite: Azurite
) -> None:
    work_queue.send_message(json.dumps({"id": "poison", "fail_times": 99}))
    poison = QueueClient.from_connection_string(azurite.connection_string, "lh-work-poison")
    peeked = wait_for(lambda: _poison_exists(poison) and poison.peek_messages(max_messages=32))
    original = base64.b64decode(peeked[0].content)
    assert json.loads(original)["id"] == "poison"  # the original (still base64) text was copied
    assert [r["dequeue_count"] for r in work_records(app_dir, "poison")] == list(range(1, MAX_DEQUEUE + 1))
    assert work_queue.get_queue_properties().approximate_message_count == 0


def _poison_exists(client: QueueClient) -> bool:
    try:
        client.get_queue_properties()
    except Exception:
        return False
    return True


def test_functions_on_poison_queues_get_the_poisoned_messages(app_dir: Path, azurite: Azurite) -> None:
    flaky = QueueClient.from_connection_string(azurite.connection_string, "lh-flaky",
                                               message_encode_policy=TextBase64EncodePolicy())
    try:
        flaky.create_queue()
    except ResourceExistsError:
        pass
    flaky.send_message("doomed")
    (rec,) = wait_for(lambda: read_records(app_dir / "records", "gave_up"))
    assert rec == {"body": "doomed", "dequeue_count": 1}


def test_message_encoding_helpers() -> None:
    assert encode("ü".encode(), "base64") == base64.b64encode("ü".encode()).decode()
    assert decode(encode(b"\x00\xff", "base64"), "base64") == b"\x00\xff"
    assert encode(b"plain", "none") == "plain" and decode("plain", "none") == b"plain"
    with pytest.raises(MessageDecodingError):
        decode("not base64!", "base64")


def test_http_queue_output_binding_feeds_the_queue_trigger(api: str, app_dir: Path) -> None:
    resp = requests.post(f"{api}/enqueue", data=json.dumps({"id": "from-http"}), timeout=5)
    assert resp.status_code == 202
    (rec,) = wait_for(lambda: work_records(app_dir, "from-http"))
    assert rec["dequeue_count"] == 1


def test_lease_is_renewed_while_a_slow_function_runs(app_dir: Path, work_queue: QueueClient) -> None:
    # The host leases messages for 2 s here; the function runs 3 s, so without renewal it would be redelivered.
    work_queue.send_message(json.dumps({"id": "slow", "sleep": 3}))
    wait_for(lambda: work_records(app_dir, "slow"))
    wait_for(lambda: work_queue.get_queue_properties().approximate_message_count == 0, timeout=15)
    assert [r["dequeue_count"] for r in work_records(app_dir, "slow")] == [1]


def test_admin_runs_a_queue_function_with_the_input_as_body(host: LocalHost, app_dir: Path) -> None:
    host.run_function("worker", json.dumps({"id": "admin-queue"}))
    (rec,) = work_records(app_dir, "admin-queue")
    assert rec["dequeue_count"] == 1


# timers


def test_admin_endpoint_runs_a_timer(host: LocalHost, app_dir: Path) -> None:
    before = len(read_records(app_dir / "records", "tick"))
    resp = requests.post(host.url + "/admin/functions/ticker", json={"input": ""}, timeout=5)
    assert resp.status_code == 202
    ticks = wait_for(lambda: read_records(app_dir / "records", "tick")[before:])
    assert ticks == [{"past_due": False, "next": None}]
    assert requests.post(host.url + "/admin/functions/nope", json={}, timeout=5).status_code == 404


def test_run_function_is_synchronous_and_rejects_unknown_names(host: LocalHost, app_dir: Path) -> None:
    before = len(read_records(app_dir / "records", "tick"))
    host.run_function("ticker")
    assert len(read_records(app_dir / "records", "tick")) == before + 1
    with pytest.raises(KeyError):
        host.run_function("nope")


def test_timer_fires_on_schedule_and_flags_past_due(host: LocalHost, app_dir: Path, clock: FakeClock) -> None:
    def scheduled() -> list[dict[str, Any]]:
        return [t for t in read_records(app_dir / "records", "tick") if t["next"]]

    assert scheduled() == []
    clock.set(datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC))
    wait_for(lambda: len(scheduled()) == 1)
    assert scheduled()[0] == {"past_due": False, "next": "2030-01-01T12:05:00+00:00"}
    clock.set(datetime(2030, 1, 1, 12, 31, 0, tzinfo=UTC))  # 12:05 ... 12:30 were missed
    wait_for(lambda: len(scheduled()) == 2)
    time.sleep(0.3)
    assert scheduled()[1:] == [{"past_due": True, "next": "2030-01-01T12:35:00+00:00"}]  # one call, not six


class _InlineExecutor:
    """Runs submitted work at once, so scheduler tests need no threads."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args))
        return future


def test_timer_scheduler_run_on_startup_and_interval_schedule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _write_module(tmp_path, """
        import azure.functions as func
        app = func.FunctionApp()

        @app.timer_trigger(arg_name="t", schedule="00:10:00", run_on_startup=True)
        def every_ten(t):
            pass
    """)
    infos = load_functions(name)
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    calls: list[bool] = []
    executor: Any = _InlineExecutor()
    scheduler = TimerScheduler(infos, lambda info, req: calls.append(req.past_due), executor, now=clock)
    scheduler.start(background=False)  # driven by hand with tick()
    assert calls == [False]  # runOnStartup
    assert scheduler.tick() == []
    clock.set(datetime(2030, 1, 1, 0, 10, tzinfo=UTC))
    assert len(scheduler.tick()) == 1 and calls == [False, False]
    clock.set(datetime(2030, 1, 1, 1, 0, tzinfo=UTC))
    scheduler.tick()
    assert calls == [False, False, True]
    scheduler.stop()


# NCRONTAB


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("0 0 */6 * * *", "2024-03-10T07:15:00", "2024-03-10T12:00:00"),
        ("0 0 */6 * * *", "2024-03-10T18:00:00", "2024-03-11T00:00:00"),  # strictly after
        ("0 30 9 * * 1-5", "2024-03-08T10:00:00", "2024-03-11T09:30:00"),  # Friday after 9:30 -> Monday
        ("0 30 9 * * 1-5", "2024-03-11T09:29:59", "2024-03-11T09:30:00"),
        ("*/15 * * * * *", "2024-01-01T00:00:00.500000", "2024-01-01T00:00:15"),
        ("0 0 0 13 * 5", "2024-01-01T00:00:00", "2024-09-13T00:00:00"),  # Friday the 13th: day AND weekday
        ("0 0 12 * * SUN", "2024-01-01T00:00:00", "2024-01-07T12:00:00"),
        ("*/5 * * * *", "2024-01-01T00:01:00", "2024-01-01T00:05:00"),  # five fields: second 0
        ("00:05:00", "2024-01-01T00:01:00", "2024-01-01T00:06:00"),  # TimeSpan
    ],
)
def test_ncrontab_next_occurrence_in_utc(schedule: str, after: str, expected: str) -> None:
    start = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert next_occurrence(schedule, start) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_ncrontab_converts_other_timezones_to_utc_and_rejects_bad_input() -> None:
    paris_winter = timezone(timedelta(hours=1))
    assert next_occurrence("0 0 */6 * * *", datetime(2024, 1, 1, 7, 0, tzinfo=paris_winter)) == datetime(
        2024, 1, 1, 12, 0, tzinfo=UTC
    )
    for bad in ("0 0 * *", "61 * * * * *", "0 0 0 1 1 * 2030"):
        with pytest.raises(SettingsError):
            next_occurrence(bad, datetime(2024, 1, 1, tzinfo=UTC))


# routing


def test_route_templates() -> None:
    guid = str(uuid.uuid4())
    assert RouteTemplate("api/x/{id:guid}").match(f"api/x/{guid}") == {"id": guid}
    assert RouteTemplate("api/x/{id:guid}").match("api/x/123") is None
    complex_segment = RouteTemplate("api/files/{name}.{ext}")
    assert complex_segment.match("api/files/report.v2.csv") == {"name": "report.v2", "ext": "csv"}
    assert RouteTemplate("api/Items/{n:int:min(1)}").match("API/items/0") is None
    assert RouteTemplate("api/Items/{n:int:min(1)}").match("API/items/7") == {"n": "7"}
    assert RouteTemplate("api/p/{page=1}").match("api/p") == {"page": "1"}
    assert RouteTemplate("api/c/{code:regex(^[a-z]{{2}}$)}").match("api/c/ab") == {"code": "ab"}
    assert RouteTemplate("api/c/{code:regex(^[a-z]{{2}}$)}").match("api/c/abc") is None
    literal = RouteTemplate("api/t/{t}/reconciliation-files:regenerate")
    param = RouteTemplate("api/t/{t}/{action}")
    assert literal.match("api/t/x/reconciliation-files:regenerate") == {"t": "x"}
    assert literal.precedence < param.precedence
    constrained, plain, catch_all = (RouteTemplate(t) for t in ("api/a/{x:int}", "api/a/{x}", "api/a/{*x}"))
    assert constrained.precedence < plain.precedence < catch_all.precedence


# shutdown


def test_stop_joins_every_thread_even_with_idle_keep_alive_connections(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _write_module(tmp_path, """
        import azure.functions as func
        app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

        @app.route(route="ping")
        def ping(req):
            return func.HttpResponse("pong")
    """)
    before = set(threading.enumerate())
    local = LocalHost(module=name, root=tmp_path, enable_queues=False).start()
    session = requests.Session()
    assert session.get(local.url + "/api/ping", timeout=5).text == "pong"  # leaves a keep-alive connection open
    started = time.monotonic()
    local.stop()
    session.close()
    assert time.monotonic() - started < 2
    assert {t for t in threading.enumerate() if t.is_alive()} - before == set()
