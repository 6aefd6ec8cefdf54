"""Progress reporting and cancellation for long core operations, without any UI knowledge.

The core calls a ``ProgressSink`` once per item or batch and then checks a ``CancelToken``.
The CLI prints a terminal bar; the GUI forwards to a Qt signal, throttled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kvdesk.core.errors import Cancelled


@dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` items (``total`` is None when unknown).

    ``work_done`` of ``work_total`` is the same progress in a unit that tracks the cost when
    items differ in size (dense keys: characters of text); a time-left estimate uses it when
    given (:class:`RateEstimator`).
    """

    stage: str
    done: int
    total: int | None = None
    current: str = ""
    work_done: int | None = None
    work_total: int | None = None


class ProgressSink(Protocol):
    def __call__(self, progress: Progress, /) -> None: ...


def no_progress(progress: Progress, /) -> None:
    """A sink that ignores reports."""


class CancelToken:
    """A thread-safe flag a UI sets and a worker polls between items."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


class RateEstimator:
    """Time left for a long operation, from its measured rate (units per second), smoothed.

    Feed it every progress report (:meth:`update`); it samples the rate at most once per
    ``min_interval_s`` and smooths the samples exponentially (``smoothing`` is the weight of
    the newest), so one slow batch on a busy machine moves the estimate without making it jump.
    :meth:`pause` leaves time spent paused out of the rate; :meth:`seed`
    starts from a rate measured earlier (a resumed build). Not thread-safe: one feeder.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        smoothing: float = 0.3,
        min_interval_s: float = 1.0,
    ) -> None:
        if not 0.0 < smoothing <= 1.0:
            raise ValueError("smoothing must be in (0, 1]")
        self.clock = clock
        self.smoothing = smoothing
        self.min_interval_s = min_interval_s
        self.rate: float | None = None
        self.done = 0
        self.total: int | None = None
        self._mark: tuple[float, int] | None = None  # (time, done) of the last sample

    def seed(self, rate: float | None) -> None:
        """Start from a rate measured before (items per second); None or ≤ 0 is ignored."""
        if rate is not None and rate > 0:
            self.rate = rate

    def report(self, progress: Progress) -> None:
        """:meth:`update` from a progress report, in its work unit when it has one."""
        if progress.work_done is not None and progress.work_total is not None:
            self.update(progress.work_done, progress.work_total)
        else:
            self.update(progress.done, progress.total)

    def update(self, done: int, total: int | None) -> None:
        """Record that ``done`` of ``total`` units are finished now."""
        now = self.clock()
        if self._mark is None or done < self._mark[1]:
            self._mark = (now, done)  # the first report, or a restart: a new baseline
        else:
            then, done_then = self._mark
            elapsed = now - then
            if elapsed >= self.min_interval_s and done > done_then:
                sample = (done - done_then) / elapsed
                a = self.smoothing
                self.rate = sample if self.rate is None else a * sample + (1 - a) * self.rate
                self._mark = (now, done)
        self.done, self.total = done, total

    def pause(self) -> None:
        """Stop measuring until the next report, which starts a new baseline: time spent
        paused (or loading a model before the work resumes) never counts against the rate."""
        self._mark = None

    @property
    def remaining_s(self) -> float | None:
        """Seconds left at the smoothed rate; None while the rate or the total is unknown."""
        if self.rate is None or self.total is None:
            return None
        return max(self.total - self.done, 0) / self.rate
