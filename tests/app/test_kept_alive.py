"""shared/app/heartbeat.py `kept_alive`: a fan-out part's renewals of its run's lease while it computes."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest

from shared.app.heartbeat import kept_alive


def test_renews_at_its_pace_while_the_body_runs_and_never_after() -> None:
    calls: list[str] = []
    with kept_alive(lambda: calls.append(threading.current_thread().name), timedelta(seconds=0.05), "part 3"):
        time.sleep(0.4)
    during = len(calls)
    time.sleep(0.2)
    assert 4 <= during <= 9 and len(calls) == during  # about every 50 ms; stopped with the body
    assert all(name.startswith("lease-part 3") for name in calls)  # from its own thread, not the caller's


def test_a_failed_renewal_is_logged_and_tried_again(caplog) -> None:
    calls = [0]

    def flaky() -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise ConnectionError("Azurite is restarting")

    with caplog.at_level(logging.WARNING), kept_alive(flaky, timedelta(seconds=0.05), "part 0"):
        time.sleep(0.3)
    assert calls[0] >= 3
    assert any("could not renew the lease of part 0" in r.getMessage() for r in caplog.records)


def test_the_bodys_exception_passes_through_and_the_thread_stops() -> None:
    calls = [0]
    with pytest.raises(ValueError):
        with kept_alive(lambda: calls.__setitem__(0, calls[0] + 1), timedelta(seconds=0.05), "part 1"):
            raise ValueError("the part failed")
    time.sleep(0.15)
    assert calls[0] == 0 and not [t for t in threading.enumerate() if t.name.startswith("lease-part 1")]
