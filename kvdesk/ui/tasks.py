"""Background work for the GUI: one writer thread for every write, a reader pool for searches.

The core runs synchronously with a progress sink and a cancel token; this module only schedules
it on Qt thread pools and turns outcomes into signals. The :class:`Task` object (a QObject) is
created and owned on the GUI thread, so its signals reach ``@Slot`` receivers through queued
connections; the worker never touches a widget.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal, Slot

from kvdesk.core.errors import Cancelled, KvdeskError
from kvdesk.core.progress import CancelToken, Progress, RateEstimator

log = logging.getLogger("kvdesk.ui.tasks")

PROGRESS_INTERVAL_S = 0.1

TaskFn = Callable[["Callable[[Progress], None]", CancelToken], Any]
Clock = Callable[[], float]


def eta_text(seconds: float | None) -> str:
    """Time left as the status bar says it ('' while unknown)."""
    if seconds is None:
        return ""
    if seconds < 60:
        return "less than a minute left"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} min left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes:02d} min left"


class Task(QObject):
    """One unit of background work and its outcome.

    Signals:
        progressed(Progress): throttled to one every ~100 ms (and the last one).
        succeeded(object): the function's return value.
        failed(str): a message for the user (a KvdeskError's text, or a short crash note).
        cancelled(): the cancel token was honoured.
        paused(): the work stopped at its next check because :meth:`pause` asked it to
            (instead of ``cancelled``); work that commits as it goes resumes as a new task.
        finished(): always last, after exactly one of the four above.

    Every progress report also feeds :attr:`estimator`, the measured and smoothed rate behind
    :meth:`eta_s`, the seconds left.
    """

    progressed = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    paused = Signal()
    finished = Signal()

    def __init__(
        self,
        name: str,
        fn: TaskFn,
        parent: QObject | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(parent)
        self.name = name
        self.fn = fn
        self.token = CancelToken()
        self.done = False
        self.pause_requested = False
        self.clock = clock
        self.estimator = RateEstimator(clock)
        self._lock = threading.Lock()  # the estimator is fed on the worker, read on the GUI
        self._last_emit = 0.0

    def cancel(self) -> None:
        self.token.cancel()

    def pause(self) -> None:
        """Stop at the next cancellation check (between batches) and end with ``paused``."""
        self.pause_requested = True
        self.token.cancel()

    def eta_s(self) -> float | None:
        """Seconds left at the measured rate (None until one interval has been measured)."""
        with self._lock:
            return self.estimator.remaining_s

    @property
    def rate(self) -> float | None:
        """The smoothed rate (per second, in the progress reports' work unit), None until
        measured."""
        with self._lock:
            return self.estimator.rate

    def report(self, progress: Progress) -> None:
        """The progress sink handed to the core (called on the worker thread)."""
        with self._lock:
            self.estimator.report(progress)
        now = self.clock()
        last = progress.total is not None and progress.done >= progress.total
        if last or now - self._last_emit >= PROGRESS_INTERVAL_S:
            self._last_emit = now
            self.progressed.emit(progress)

    def execute(self) -> None:
        """Run on a worker thread; emits exactly one outcome, then ``finished``."""
        try:
            if self.token.cancelled:
                raise Cancelled("cancelled before it started")
            result = self.fn(self.report, self.token)
        except Cancelled:
            if self.pause_requested:
                self.paused.emit()
            else:
                self.cancelled.emit()
        except KvdeskError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # a bug: log it, tell the user, keep the app alive
            log.exception("task %s crashed", self.name)
            self.failed.emit(f"{self.name} failed unexpectedly: {exc}")
        else:
            self.succeeded.emit(result)
        finally:
            self.finished.emit()


class _Runnable(QRunnable):
    def __init__(self, task: Task) -> None:
        super().__init__()
        self.task = task
        self.setAutoDelete(False)  # the runner owns it until the task's finished arrives

    def run(self) -> None:
        self.task.execute()


class TaskRunner(QObject):
    """Schedules tasks: ``write`` ones one at a time, ``read`` ones on a small pool.

    Keeps every Task and runnable referenced until its ``finished`` reaches the GUI thread,
    so nothing is destroyed on a worker thread. :meth:`shutdown` cancels and waits for all.
    """

    #: A task has finished and is marked done (emitted on the GUI thread, after ``done``).
    taskDone = Signal(object)

    def __init__(self, parent: QObject | None = None, readers: int = 2) -> None:
        super().__init__(parent)
        self._writer = QThreadPool(self)
        self._writer.setMaxThreadCount(1)
        self._reader = QThreadPool(self)
        self._reader.setMaxThreadCount(readers)
        self._live: dict[Task, _Runnable] = {}
        self.clock: Clock = time.monotonic  # what tasks measure their rate with (tests: fake)

    def write(self, name: str, fn: TaskFn) -> Task:
        return self._start(self._writer, name, fn)

    def read(self, name: str, fn: TaskFn) -> Task:
        return self._start(self._reader, name, fn)

    def _start(self, pool: QThreadPool, name: str, fn: TaskFn) -> Task:
        task = Task(name, fn, self, clock=self.clock)
        runnable = _Runnable(task)
        self._live[task] = runnable
        task.finished.connect(self._on_task_finished)
        # Start once control is back in the event loop: the caller connects its slots first,
        # so even a task that finishes in a millisecond cannot emit into the void.
        QTimer.singleShot(0, self, lambda: self._launch(pool, task))
        return task

    def _launch(self, pool: QThreadPool, task: Task) -> None:
        runnable = self._live.get(task)
        if runnable is not None and not task.done:
            pool.start(runnable)

    @Slot()
    def _on_task_finished(self) -> None:
        task = self.sender()
        if isinstance(task, Task):
            task.done = True
            self._live.pop(task, None)
            self.taskDone.emit(task)
            task.deleteLater()

    @property
    def busy(self) -> bool:
        return bool(self._live)

    def active(self) -> list[Task]:
        return [t for t in self._live if not t.done]

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until both pools are idle (used by tests, screenshot mode and shutdown)."""
        ok_w = self._writer.waitForDone(timeout_ms)
        ok_r = self._reader.waitForDone(timeout_ms)
        return bool(ok_w and ok_r)

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        for task in list(self._live):
            task.cancel()
            task.done = True  # a start still queued in the event loop will not launch it
        self._reader.clear()
        self._writer.clear()
        return self.wait(timeout_ms)
