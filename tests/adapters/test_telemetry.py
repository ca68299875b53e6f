"""Structured, redacted logging: what an operator sees must carry the tenant/file/invoice and never a secret."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from shared.adapters import telemetry
from shared.adapters.telemetry import RedactingFilter, StructuredFormatter, configure_logging, redact

SAS_URL = ("https://acct.blob.core.windows.net/files/t1/a.csv?st=2026-01-01T00%3A00%3A00Z&se=2026-01-01T00%3A15%3A00Z"
           "&sp=r&spr=https&sv=2026-10-06&sr=b&skoid=abc&sig=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA%3D%3D")
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiIxMjMifQ.c2lnbmF0dXJlLXBhcnQtLS0"
SECRET = "Qx8~s3cr3t.Value_WithStuff"


@pytest.fixture
def clean_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """Put the root logger (handlers, filters, level) and the module's one-time state back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for h in handlers:  # start from a root without our handler (importing function_app installs one)
        if getattr(h, telemetry._HANDLER_MARK, False):
            root.removeHandler(h)
    filters = {h: list(h.filters) for h in handlers}
    azure_level = logging.getLogger("azure").level
    monkeypatch.setattr(telemetry, "_monitor_configured", False)
    monkeypatch.delenv(telemetry.APPINSIGHTS_SETTING, raising=False)
    yield root
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    for h, fs in filters.items():
        h.filters[:] = fs
    root.setLevel(level)
    logging.getLogger("azure").setLevel(azure_level)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_extras_appear_in_the_structured_line(clean_root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging(stream=out, console=True)
    logging.getLogger("shared.app.generation").info(
        "generated v%d", 3, extra={"tenant": "t-1", "file": "f-9", "invoice": "G000123", "rows": 42})
    (line,) = _lines(out)
    assert line["message"] == "generated v3"
    assert line["level"] == "INFO" and line["logger"] == "shared.app.generation"
    assert (line["tenant"], line["file"], line["invoice"]) == ("t-1", "f-9", "G000123")
    assert line["rows"] == 42
    assert list(line)[4:7] == ["tenant", "file", "invoice"]  # context first, for people reading raw lines


def test_lines_without_extras_and_exceptions_still_parse(clean_root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging(stream=out, console=True)
    log = logging.getLogger("x")
    log.warning("plain")
    try:
        raise RuntimeError(f"upload to {SAS_URL} failed")
    except RuntimeError:
        log.exception("boom", extra={"tenant": "t-2"})
    plain, boom = _lines(out)
    assert "tenant" not in plain
    assert boom["tenant"] == "t-2" and "RuntimeError" in boom["exception"]
    assert "sig=REDACTED" in boom["exception"] and "Zm9vYmFy" not in boom["exception"]  # tracebacks too


def test_secrets_are_redacted_in_the_message_and_args(clean_root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging(stream=out, console=True)
    logging.getLogger("shared.adapters.partner_center").error(
        "GET %s with headers %s, token request body client_secret=%s&grant_type=client_credentials",
        SAS_URL, {"Authorization": f"Bearer {JWT}"}, SECRET)
    text = out.getvalue()
    (line,) = _lines(out)
    for secret in ("Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA", JWT, "eyJ", SECRET):
        assert secret not in text
    assert "sig=REDACTED" in line["message"]
    assert "Bearer REDACTED" in line["message"]
    assert "client_secret=REDACTED&grant_type=client_credentials" in line["message"]
    assert "sp=r&spr=https" in line["message"]  # the rest of the URL stays useful


def test_redaction_reaches_other_root_handlers_such_as_caplog(clean_root: logging.Logger,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    configure_logging(stream=io.StringIO(), console=True)
    caplog.set_level(logging.INFO)
    logging.getLogger("y").info("link %s", SAS_URL, extra={"tenant": "t-3", "note": f"Bearer {JWT}"})
    (record,) = [r for r in caplog.records if r.name == "y"]
    assert "sig=REDACTED" in record.getMessage() and "Zm9vYmFy" not in caplog.text
    assert record.tenant == "t-3" and record.note == "Bearer REDACTED"  # string extras are redacted as well


@pytest.mark.parametrize("raw, expected", [
    ("?sv=1&sig=abc%2B/def%3D&se=2", "?sv=1&sig=REDACTED&se=2"),
    ("SIG=abc", "SIG=REDACTED"),
    ("https%3A%2F%2Fa%2Fb%3Fsv%3D1%26sig%3Dabc%252B%26se%3D2", "https%3A%2F%2Fa%2Fb%3Fsv%3D1%26sig%3DREDACTED%26se%3D2"),
    ("?next=https%3A%2F%2Fa%2Fb%3Fsig%3Dabc", "?next=https%3A%2F%2Fa%2Fb%3Fsig%3DREDACTED"),
    ("authorization: bearer abc.def-ghi_jkl", "authorization: bearer REDACTED"),
    ('{"client_secret": "s3cr3t", "client_id": "id"}', '{"client_secret": "REDACTED", "client_id": "id"}'),
    ("client_secret=s3cr3t", "client_secret=REDACTED"),
    ('{"access_token":"eyJx.y.z","expires_in":3599}', '{"access_token":"REDACTED","expires_in":3599}'),
    ("AccountName=a;AccountKey=Zm9v+YmFy==;EndpointSuffix=x", "AccountName=a;AccountKey=REDACTED;EndpointSuffix=x"),
    ("design=1&signature_version=2 consignee=x", "design=1&signature_version=2 consignee=x"),  # not a SAS sig
])
def test_redact_patterns(raw: str, expected: str) -> None:
    assert redact(raw) == expected


def test_configure_logging_twice_adds_no_second_handler_or_filter(clean_root: logging.Logger) -> None:
    out = io.StringIO()
    first = configure_logging(stream=out, console=True)
    count = len(clean_root.handlers)
    second = configure_logging(stream=out, console=True)
    assert second is first
    assert len(clean_root.handlers) == count
    assert sum(getattr(h, telemetry._HANDLER_MARK, False) for h in clean_root.handlers) == 1
    for h in clean_root.handlers:
        assert sum(isinstance(f, RedactingFilter) for f in h.filters) == 1
    logging.getLogger("z").warning("once")
    assert len(_lines(out)) == 1


def test_inside_the_functions_worker_no_console_copy_is_added(clean_root: logging.Logger) -> None:
    class WorkerHandler(logging.Handler):  # stands in for the worker's handler that forwards records to the host
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    WorkerHandler.__module__ = "azure_functions_worker.dispatcher"
    worker = WorkerHandler()
    clean_root.addHandler(worker)
    assert configure_logging() is None
    assert not any(getattr(h, telemetry._HANDLER_MARK, False) for h in clean_root.handlers)
    logging.getLogger("w").info("url %s", SAS_URL)
    assert "sig=REDACTED" in worker.records[-1].getMessage()


def test_app_insights_without_the_package_warns_and_carries_on(clean_root: logging.Logger,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(telemetry.APPINSIGHTS_SETTING, "InstrumentationKey=00000000-0000-0000-0000-000000000000")
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry", None)  # import fails even if installed
    out = io.StringIO()
    configure_logging(stream=out, console=True)
    assert any("azure-monitor-opentelemetry is not installed" in line["message"] for line in _lines(out))
    assert telemetry._monitor_configured is False


def test_app_insights_is_configured_once_when_available(clean_root: logging.Logger,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    calls: list[dict] = []
    fake = types.ModuleType("azure.monitor.opentelemetry")
    fake.configure_azure_monitor = lambda **kw: calls.append(kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry", fake)
    monkeypatch.setenv(telemetry.APPINSIGHTS_SETTING, "InstrumentationKey=00000000-0000-0000-0000-000000000000")
    configure_logging(stream=io.StringIO(), console=True)
    configure_logging(stream=io.StringIO(), console=True)
    assert calls == [{}]


def test_formatter_alone_is_plain_json() -> None:
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "hi %s", ("there",), None)
    record.tenant = "t"
    assert RedactingFilter().filter(record)
    assert json.loads(StructuredFormatter().format(record))["tenant"] == "t"
