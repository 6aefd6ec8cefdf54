"""The GUI's handle on one open knowledge base: every call to the core goes through here.

Writes (import, tags, dense keys, the lexical writer) run on the runner's single writer thread;
searches run on the reader pool. Results come back as signals on the GUI thread. Searches carry
a sequence number, and a result older than the newest search is dropped (stale results never
overwrite newer ones).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from kvdesk.core.errors import KvdeskError
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.pilot.log import PilotSettings
from kvdesk.core.pilot.recorder import LogWriter, PilotRecorder, PilotRun
from kvdesk.core.pilot.records import Outcome
from kvdesk.core.progress import CancelToken, Progress
from kvdesk.core.search.retrieval import SearchResult
from kvdesk.core.vault.importer import ImportReport
from kvdesk.ui.tasks import Task, TaskRunner
from kvdesk.ui.team import sync_once

Sink = Callable[[Progress], None]


@dataclass(frozen=True)
class SearchOutcome:
    """A finished search plus what the list needs that a Hit lacks (the source's date)."""

    seq: int
    query: str
    result: SearchResult
    dates: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyState:
    """Which key spaces are ready, for the status bar."""

    values: int
    dense_keyed: int
    dense_total: int
    dense_model: str | None
    provider: str | None

    @property
    def dense_ready(self) -> bool:
        return self.dense_model is not None and self.dense_keyed >= self.dense_total


class Session(QObject):
    """An open vault and the background work on it.

    Signals:
        searched(SearchOutcome): the newest search finished (older ones are dropped).
        searchFailed(str): the newest search failed (message for the user).
        keysChanged(KeyState): key spaces changed (after opening, imports, dense builds).
        tagsChanged(int, tuple): a value's accepted tags after an edit.
        message(str): a short status line for the user.
        error(str): something failed that the user must see.
        pilotRecorded(str, int): a pilot write finished: what ('search', 'open') and the
            pilot session id.
        pilotMarked(object): a pilot session got its verdict (the PilotSession).
        pilotSettingsChanged(object): the pilot settings were saved (PilotSettings).
        densePaused(bool): the meaning-key build was paused (True) or resumed/started (False).
        denseYielded(): the meaning-key build stopped to let a team sync run first (see
            :meth:`yield_dense`); the window starts it again, and it goes on where it was.
    """

    searched = Signal(object)
    searchFailed = Signal(str)
    keysChanged = Signal(object)
    tagsChanged = Signal(int, object)
    message = Signal(str)
    error = Signal(str)
    pilotRecorded = Signal(str, int)
    pilotMarked = Signal(object)
    pilotSettingsChanged = Signal(object)
    densePaused = Signal(bool)
    denseYielded = Signal()

    def __init__(self, kb: KnowledgeBase, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.kb = kb
        self.runner = TaskRunner(self)
        self.runner.taskDone.connect(self._on_task_done)
        self._search_seq = 0
        self._search_token: CancelToken | None = None
        self._search_tasks: dict[Task, int] = {}
        self.provider: str | None = None
        self.key_state: KeyState | None = None
        self.closed = False
        self.dense_task: Task | None = None
        self.dense_paused = False
        self._dense_rate: float | None = None  # carried over a pause, so the ETA shows at once
        self._dense_yielding: set[Task] = set()  # paused for a team sync, not by the user
        self._imports: set[Task] = set()
        try:  # one settings row, read on the GUI thread like the other cheap reads below
            pilot_on = kb.pilot.enabled
        except KvdeskError:
            pilot_on = False
        # What the user's searches and views become in the pilot log (decided on the GUI
        # thread); its writes run as tasks on the writer thread, in order.
        self.pilot: PilotRecorder[Task] = PilotRecorder(_PilotTasks(self), enabled=pilot_on)

    @property
    def pilot_on(self) -> bool:
        return self.pilot.enabled

    @property
    def path(self) -> Path:
        return self.kb.path

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Task:
        """Take the lexical writer and catch up (writer thread), then load the query model."""

        def open_keys(report: Sink, cancel: CancelToken) -> KeyState:
            self.kb.catch_up_keys()
            return self._key_state(load_model=True)

        task = self.runner.write("open vault", open_keys)
        task.succeeded.connect(self._on_key_state)
        task.failed.connect(self._on_error)
        return task

    def close(self) -> None:
        """Cancel and wait for all work, then close the vault (GUI thread)."""
        if self.closed:
            return
        self.closed = True
        self.pilot.close()
        self.runner.shutdown()
        self.kb.close()

    def _key_state(self, load_model: bool = False) -> KeyState:
        status = self.kb.dense_status()
        provider = self.provider
        key_set = status.key_set
        if load_model and key_set is not None and provider is None:
            provider = self.kb.key_sets.provider()
        return KeyState(
            values=self.kb.values.count(),
            dense_keyed=status.keyed_values,
            dense_total=status.total_values,
            dense_model=key_set.name if key_set is not None else None,
            provider=provider,
        )

    @Slot(object)
    def _on_key_state(self, state: object) -> None:
        if isinstance(state, KeyState):
            if state.provider:
                self.provider = state.provider
            self.key_state = state
            self.keysChanged.emit(state)

    @Slot(str)
    def _on_error(self, message: str) -> None:
        self.error.emit(message)

    def refresh_keys(self) -> Task:
        task = self.runner.read("key status", lambda report, cancel: self._key_state())
        task.succeeded.connect(self._on_key_state)
        return task

    # -- search ---------------------------------------------------------------------------------

    def search(self, query: str, *, k: int = 20, mode: str = "hybrid") -> Task:
        """Start a search; a newer call makes this one stale (cancelled if not yet started)."""
        if self._search_token is not None:
            self._search_token.cancel()
        self._search_seq += 1
        seq = self._search_seq

        def run(report: Sink, cancel: CancelToken) -> SearchOutcome:
            result = self.kb.search(query, k=k, mode=mode)
            cancel.raise_if_cancelled()
            dates: dict[int, str] = {}
            for hit in result.hits:
                record = self.kb.values.get(hit.value_id)
                dates[hit.value_id] = _date_of(record.source_mtime, record.updated_at)
            return SearchOutcome(seq, query, result, dates)

        task = self.runner.read(f"search {query!r}", run)
        self._search_token = task.token
        self._search_tasks[task] = seq
        task.succeeded.connect(self._on_search_done)
        task.failed.connect(self._on_search_failed)
        return task

    @property
    def latest_search(self) -> int:
        return self._search_seq

    @Slot(object)
    def _on_search_done(self, outcome: object) -> None:
        if isinstance(outcome, SearchOutcome) and outcome.seq == self._search_seq:
            if outcome.result.provider not in ("none", "") and self.provider is None:
                self.provider = outcome.result.provider
            self.searched.emit(outcome)

    @Slot(str)
    def _on_search_failed(self, message: str) -> None:
        task = self.sender()
        if isinstance(task, Task) and self._search_tasks.get(task) == self._search_seq:
            self.searchFailed.emit(message)

    @Slot(object)
    def _on_task_done(self, task: object) -> None:
        """Forget a finished search or import. From the runner, not the task's own finished
        signal: a queued call from a task can be dropped once the runner has deleted it."""
        if isinstance(task, Task):
            self._search_tasks.pop(task, None)
            self._imports.discard(task)

    # -- writes ---------------------------------------------------------------------------------

    def import_paths(self, paths: Sequence[str | os.PathLike[str]]) -> Task:
        items = [str(p) for p in paths]

        def run(report: Sink, cancel: CancelToken) -> ImportReport:
            return self.kb.import_paths(items, progress=report, cancel=cancel)

        return self._import_task("import", run)

    def import_records(self, records_file: str | os.PathLike[str]) -> Task:
        def run(report: Sink, cancel: CancelToken) -> ImportReport:
            return self.kb.import_records(records_file, progress=report, cancel=cancel)

        return self._import_task("import records", run)

    def _import_task(self, name: str, run: Callable[[Sink, CancelToken], Any]) -> Task:
        task = self.runner.write(name, run)
        self._imports.add(task)
        return task

    @property
    def importing(self) -> bool:
        """An import is queued or running (a team sync waits: the import catches up itself)."""
        return bool(self._imports)

    def sync_team(self) -> Task:
        """One team sync on the writer thread; succeeds with a TeamState (offline included)."""
        kb = self.kb
        return self.runner.write("team sync", lambda report, cancel: sync_once(kb))

    def build_dense(self) -> Task:
        """Compute missing dense keys, newest documents first (resumable, cancellable, and
        pausable: :meth:`pause_dense`); the key state follows."""

        def run(report: Sink, cancel: CancelToken) -> KeyState:
            self.kb.build_dense_keys(progress=report, cancel=cancel)
            return self._key_state(load_model=True)

        was_paused = self.dense_paused
        self.dense_paused = False
        task = self.runner.write("dense keys", run)
        task.estimator.seed(self._dense_rate)
        self.dense_task = task
        task.succeeded.connect(self._on_key_state)
        task.cancelled.connect(self._refresh_after_cancel)
        # Bound to this task, not read from sender(): the runner deletes a finished task later,
        # and a slot must never depend on a sender that may already be gone.
        task.paused.connect(functools.partial(self._on_dense_paused, task))
        task.finished.connect(functools.partial(self._on_dense_finished, task))
        if was_paused:
            self.densePaused.emit(False)
        return task

    @property
    def dense_running(self) -> bool:
        """A meaning-key build is queued or running (and holds the writer thread)."""
        task = self.dense_task
        return task is not None and not task.done

    def pause_dense(self) -> bool:
        """Pause the meaning-key build after its current batch (each batch is committed, so
        nothing is lost; the writer thread is free meanwhile). False when none is running."""
        task = self.dense_task
        if task is not None and task in self._dense_yielding:
            self._dense_yielding.discard(task)  # stopping for a sync anyway: stay paused now
            return True
        if task is None or task.done or task.pause_requested:
            return False
        task.pause()
        return True

    def yield_dense(self) -> bool:
        """Let a write queued behind the meaning-key build (a team sync) run first: the build
        stops after its current batch, and :attr:`denseYielded` asks for it to start again
        (the writer runs tasks in order, so after that write). Not a pause the user sees."""
        task = self.dense_task
        if task is None or task.done or task.pause_requested:
            return False
        self._dense_yielding.add(task)
        task.pause()
        return True

    def resume_dense(self) -> Task:
        """Continue a paused build with the keys still missing (newest first)."""
        return self.build_dense()

    def _on_dense_paused(self, task: Task) -> None:
        if task in self._dense_yielding:
            self._dense_yielding.discard(task)
            if task is self.dense_task and not self.closed:
                self.dense_task = None
                if task.rate is not None:
                    self._dense_rate = task.rate
                self.denseYielded.emit()
            return
        if task is self.dense_task:
            self.dense_paused = True
            self.message.emit("Meaning keys paused — what was built so far is kept")
            self.densePaused.emit(True)
            self.refresh_keys()

    def _on_dense_finished(self, task: Task) -> None:
        self._dense_yielding.discard(task)  # it ended before it could stop for the sync
        if task is self.dense_task:
            self.dense_task = None
        with contextlib.suppress(RuntimeError):  # the Qt object may be gone already
            if task.rate is not None:
                self._dense_rate = task.rate

    @Slot()
    def _refresh_after_cancel(self) -> None:
        self.refresh_keys()

    def set_tag(self, value_id: int, tag: str) -> Task:
        return self._tag_task(value_id, lambda: self.kb.set_tag(value_id, tag, "accepted", "gui"))

    def remove_tag(self, value_id: int, tag: str) -> Task:
        return self._tag_task(value_id, lambda: self.kb.remove_tag(value_id, tag))

    def _tag_task(self, value_id: int, change: Callable[[], Any]) -> Task:
        def run(report: Sink, cancel: CancelToken) -> tuple[int, tuple[str, ...]]:
            change()
            return value_id, self.kb.tags.of(value_id)

        task = self.runner.write("tags", run)
        task.succeeded.connect(self._on_tags_done)
        task.failed.connect(self._on_error)
        return task

    @Slot(object)
    def _on_tags_done(self, result: object) -> None:
        if isinstance(result, tuple):
            value_id, tags = result
            self.tagsChanged.emit(int(value_id), tuple(tags))

    # -- pilot log (issue 6): every write on the writer thread, in order -------------------------

    def pilot_settings(self) -> PilotSettings:
        return self.kb.pilot.settings()

    def configure_pilot(
        self, *, enabled: bool | None = None, user: str | None = None, team: str | None = None
    ) -> Task:
        """Save pilot settings; ``pilot_on`` follows at once, so the next search obeys it."""
        if enabled is not None:
            self.pilot.set_enabled(enabled)  # a change: a new session at the next query
        pilot = self.kb.pilot
        task = self.runner.write(
            "pilot settings",
            lambda report, cancel: pilot.configure(enabled=enabled, user=user, team=team),
        )
        task.succeeded.connect(self.pilotSettingsChanged)
        task.failed.connect(self._on_error)
        return task

    def _pilot_task(self, name: str, write: Callable[[Sink, CancelToken], Any]) -> Task:
        task = self.runner.write(name, write)
        task.succeeded.connect(self._on_pilot_recorded)
        task.failed.connect(self._on_error)
        return task

    @Slot(object)
    def _on_pilot_recorded(self, result: object) -> None:
        if isinstance(result, tuple):
            what, session_id = result
            self.pilotRecorded.emit(str(what), int(session_id))

    # -- reads on the GUI thread (single SQLite rows: cheap, no tantivy) -------------------------

    @property
    def searching(self) -> bool:
        """A search is queued or running."""
        return bool(self._search_tasks)

    def all_tags(self) -> list[str]:
        return self.kb.all_tags()

    def count(self) -> int:
        return self.kb.values.count()


class _PilotTasks:
    """The recorder's writer in the GUI: each write a task on the session's writer thread."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def _writer(self) -> LogWriter:
        return LogWriter(self._session.kb.pilot)

    def record_search(self, run: PilotRun, query: str, result: SearchResult) -> Task:
        writer = self._writer()
        return self._session._pilot_task(
            "pilot search",
            lambda report, cancel: ("search", writer.record_search(run, query, result)),
        )

    def record_open(
        self, run: PilotRun, value_id: int, rank: int | None, opened_at: dt.datetime, seconds: float
    ) -> Task:
        writer = self._writer()
        return self._session._pilot_task(
            "pilot open",
            lambda report, cancel: (
                "open",
                writer.record_open(run, value_id, rank, opened_at, seconds),
            ),
        )

    def record_mark(self, run: PilotRun, outcome: Outcome, value_id: int | None) -> Task:
        session, writer = self._session, self._writer()
        task = session.runner.write(
            "pilot mark", lambda report, cancel: writer.record_mark(run, outcome, value_id)
        )
        task.succeeded.connect(session.pilotMarked)
        task.failed.connect(session._on_error)
        return task


def _date_of(mtime: float | None, updated_at: str) -> str:
    """The document's own date (file mtime) when known, else when it was stored: YYYY-MM-DD."""
    if mtime is not None:
        import datetime as dt

        return dt.datetime.fromtimestamp(mtime, dt.UTC).date().isoformat()
    return updated_at[:10]
