"""Timer triggers: fire on the NCRONTAB/TimeSpan schedule in UTC, as the host's timer listener does.

One invocation of a timer function runs at a time; while it runs, due occurrences wait. When the host
fell behind (the clock passed the occurrence after the one due: a long run, a sleeping laptop, a test
moving the clock) missed occurrences are not replayed one by one: a single late call gets `past_due`.
The clock is injectable so tests can move time instead of waiting.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from azure.functions.timer import TimerRequest

from .indexing import FunctionInfo
from .ncrontab import CronSchedule, IntervalSchedule, parse_schedule

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Invoke = Callable[[FunctionInfo, Any], Any]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def timer_request(past_due: bool, last: datetime | None = None, next_due: datetime | None = None,
                  now: datetime | None = None) -> TimerRequest:
    """The TimerRequest the worker builds from the host's `{Schedule, ScheduleStatus, IsPastDue}`."""
    status = {}
    if next_due is not None:
        status = {
            "Last": last.isoformat() if last else None,
            "Next": next_due.isoformat(),
            "LastUpdated": (now or utc_now()).isoformat(),
        }
    return TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True})


@dataclass
class TimerJob:
    """Scheduling state of one timer function."""

    info: FunctionInfo
    schedule: CronSchedule | IntervalSchedule
    run_on_startup: bool = False
    next_due: datetime | None = None
    last: datetime | None = None
    running: bool = False

    @classmethod
    def from_info(cls, info: FunctionInfo) -> "TimerJob":
        trigger = info.trigger
        return cls(info=info, schedule=parse_schedule(str(trigger["schedule"])),
                   run_on_startup=bool(trigger.get("runOnStartup", False)))


class TimerScheduler:
    """Runs every timer job on its schedule in the shared worker pool."""

    def __init__(self, infos: list[FunctionInfo], invoke: Invoke, executor: Executor,
                 now: Clock = utc_now, max_wait: float = 1.0) -> None:
        self.jobs = {info.name: TimerJob.from_info(info) for info in infos}
        self._invoke = invoke
        self._executor = executor
        self._now = now
        self._max_wait = max_wait
        self._lock = threading.RLock()  # reentrant: a synchronous executor runs _run inside tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="timers", daemon=True)

    def start(self, background: bool = True) -> None:
        """Compute first occurrences, fire runOnStartup jobs, then follow the schedules in a thread.

        With `background=False` nothing runs by itself: the caller drives the schedule with `tick()`.
        """
        now = self._now()
        with self._lock:
            for job in self.jobs.values():
                job.next_due = job.schedule.next_after(now)
                log.info("timer %s (%s): next run %s", job.info.name, job.schedule, job.next_due.isoformat())
                if job.run_on_startup:
                    self._fire(job, past_due=False, now=now)
        if self.jobs and background:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def tick(self) -> list[Future[Any]]:
        """Fire every job that is due now; returns the submitted invocations."""
        now = self._now()
        fired: list[Future[Any]] = []
        with self._lock:
            for job in self.jobs.values():
                if job.running or job.next_due is None or job.next_due > now:
                    continue
                past_due = job.schedule.next_after(job.next_due) <= now
                job.last, job.next_due = job.next_due, job.schedule.next_after(now)
                future = self._fire(job, past_due=past_due, now=now)
                if future is not None:
                    fired.append(future)
        return fired

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self._seconds_to_next())

    def _seconds_to_next(self) -> float:
        now = self._now()
        with self._lock:
            dues = [job.next_due for job in self.jobs.values() if job.next_due is not None and not job.running]
        if not dues:
            return self._max_wait
        return min(self._max_wait, max(0.01, (min(dues) - now).total_seconds()))

    def _fire(self, job: TimerJob, past_due: bool, now: datetime) -> Future[Any] | None:
        request = timer_request(past_due, job.last, job.next_due, now)
        if past_due:
            log.info("timer %s is past due", job.info.name)
        job.running = True
        try:
            return self._executor.submit(self._run, job, request)
        except RuntimeError:  # the pool is shutting down
            job.running = False
            return None

    def _run(self, job: TimerJob, request: TimerRequest) -> None:
        try:
            self._invoke(job.info, request)
        except Exception:
            log.exception("timer function %s failed", job.info.name)
        finally:
            with self._lock:
                job.running = False
