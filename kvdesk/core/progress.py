"""Progress reporting and cancellation for long core operations, without any UI knowledge.

The core calls a ``ProgressSink`` once per item or batch and then checks a ``CancelToken``.
The CLI prints a terminal bar; the GUI forwards to a Qt signal, throttled.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from kvdesk.core.errors import Cancelled


@dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` items (``total`` is None when unknown)."""

    stage: str
    done: int
    total: int | None = None
    current: str = ""


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
