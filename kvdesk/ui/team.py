"""The app on a team desk: a background sync every few seconds, and the status bar's team label.

A desk (see :mod:`kvdesk.core.team.desk`) answers every read from its local replica; what the
team changes arrives only when the desk syncs. :class:`TeamSync` runs ``kb.sync_team()`` as a
writer task (the vault's writer lock is the writer thread's), one at a time, never while an
import runs (an import catches up with the team itself). A running meaning-key build would
hold the writer thread for minutes, so every :data:`DENSE_YIELD_S` it pauses for a sync and
resumes right after it (:meth:`Session.yield_dense`). Offline, the next try comes at the same
interval: a refused connection costs nothing, and the label says so until the server is back.
A failed try that was slow (a connect timeout, another process holding the vault) waits twice
as long as it took before the next, so it never keeps the writer thread busy most of the time.

On a vault that is not a desk nothing here runs, and the label stays hidden.
"""

from __future__ import annotations

import datetime as dt
import logging
import textwrap
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QLabel, QWidget

from kvdesk.core.errors import KvdeskError
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.team.desk import OFFLINE_SINCE, SERVER, SYNCED_AT, TeamOfflineError

if TYPE_CHECKING:
    from kvdesk.ui.session import Session
    from kvdesk.ui.tasks import Task

log = logging.getLogger("kvdesk.ui.team")

SYNC_INTERVAL_S = 3.0  # between the end of one sync and the start of the next
SLOW_FAILURE_WAIT_S = 60.0  # the most a slow failed try (a connect timeout) delays the next
DENSE_YIELD_S = 10.0  # while meaning keys are built, a sync pauses the build at most this often
LABEL_TICK_MS = 1000  # "synced 12 s ago" counts up by itself


@dataclass(frozen=True)
class TeamState:
    """Where the desk stands after a sync attempt (what the label and its tooltip show).

    ``online`` is None until the first attempt of this session answered; ``synced_at`` and
    ``offline_since`` are ISO-8601 UTC ('' when unknown); ``error`` is a failure that is not
    the server being away (another process holding the vault, say): the next try follows.
    """

    online: bool | None
    server: str = ""
    user: str = ""
    role: str = ""
    pending: int = 0
    last_seq: int = 0
    synced_at: str = ""
    offline_since: str = ""
    reason: str = ""
    error: str = ""
    pulled: int = 0
    pushed: int = 0
    value_ids: frozenset[int] = field(default=frozenset(), repr=False)


def local_state(kb: KnowledgeBase, *, online: bool | None, reason: str = "") -> TeamState:
    """The desk as its own settings know it (no server contact: cheap, and safe offline)."""
    desk = kb.team
    if desk is None:
        return TeamState(online=None)
    settings = desk.settings
    return TeamState(
        online=online,
        server=settings.get(SERVER),
        pending=desk.pending(),
        last_seq=desk.last_seq,
        synced_at=settings.get(SYNCED_AT),
        offline_since=settings.get(OFFLINE_SINCE),
        reason=reason,
        user=desk.known_user(),
        role=desk.known_role(),
    )


def sync_once(kb: KnowledgeBase) -> TeamState:
    """One sync, for the writer thread: push pilot sessions, pull and key the team's changes.

    Offline is an answer, not a failure (the state says since when); any other error raises.
    """
    desk = kb.team
    if desk is None:
        raise KvdeskError(f"{kb.path} is not a desk of a team")
    try:
        report = kb.sync_team()  # asks the server for the role again (an admin may change it)
    except TeamOfflineError as exc:
        return local_state(kb, online=False, reason=str(exc))
    return replace(
        local_state(kb, online=True),
        pulled=report.pulled,
        pushed=report.pushed,
        value_ids=frozenset(report.value_ids),
    )


# -- what the label says ---------------------------------------------------------------------------


def _parse(iso: str) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(iso)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def local_time(iso: str, now: dt.datetime) -> str:
    """HH:MM in local time (with the date when not today); '' for an unreadable stamp."""
    when = _parse(iso)
    if when is None:
        return ""
    local = when.astimezone()
    if local.date() == now.astimezone().date():
        return local.strftime("%H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


def label_text(state: TeamState, now: dt.datetime) -> str:
    """The status bar's words for ``state`` at ``now`` (an aware datetime)."""
    if state.online is False:
        since = local_time(state.offline_since, now) or now.astimezone().strftime("%H:%M")
        return f"Team: offline since {since}"
    if state.error:
        return "Team: sync failed, retrying"
    if state.online is None and state.offline_since:
        # Offline when this desk was last used; the first sync of this session will tell.
        since = local_time(state.offline_since, now)
        return f"Team: offline since {since}" if since else "Team: connecting…"
    synced = _parse(state.synced_at) if state.synced_at else None
    if synced is None:
        return "Team: connecting…"
    return f"Team: synced {ago((now - synced).total_seconds())}"


def tooltip_text(state: TeamState, now: dt.datetime) -> str:
    who = state.user or "(not known yet)"
    if state.role:
        who += f" ({state.role})"
    elif state.online and not state.role:
        who += " (no role on this team)"
    lines = [
        f"Team vault: {state.server or '(unknown)'}",
        f"Signed in as: {who}",
        f"Pilot sessions waiting to be delivered: {state.pending}",
        f"Team changes applied: up to #{state.last_seq}",
    ]
    if state.synced_at:
        lines.append(f"Last synced: {local_time(state.synced_at, now)}")
    if state.online is False:
        lines.append(textwrap.fill(state.reason or "The team server cannot be reached.", 90))
        lines.append("Sync tries again every few seconds.")
    elif state.error:
        lines.append(textwrap.fill(f"Last try: {state.error}", 90))
    return "\n".join(lines)


class TeamStatusLabel(QLabel):
    """The status bar's team line; re-reads the clock every second so "N s ago" counts up."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state: TeamState | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(LABEL_TICK_MS)
        self._timer.timeout.connect(self.update_text)

    def set_state(self, state: TeamState | None) -> None:
        """Show ``state`` (None: not a desk — hidden, and the clock stops)."""
        self.state = state
        if state is None:
            self._timer.stop()
            self.setVisible(False)
            self.clear()
            self.setToolTip("")
            return
        self.update_text()
        self.setVisible(True)
        self._timer.start()

    @Slot()
    def update_text(self) -> None:
        if self.state is None:
            return
        now = dt.datetime.now(dt.UTC)
        self.setText(label_text(self.state, now))
        self.setToolTip(tooltip_text(self.state, now))


class TeamSync(QObject):
    """Keeps a desk in step with its team: a writer task every :data:`SYNC_INTERVAL_S`.

    The next sync is scheduled when the previous one has finished, so they never overlap and
    never pile up behind a busy writer. Lives on the GUI thread; only :func:`sync_once` runs on
    the worker.

    Signals:
        stateChanged(TeamState): after every attempt (user and role kept from the last answer).
        pulled(TeamState): the team's changes arrived (``value_ids`` says which documents).
        failed(str): an attempt failed for a reason other than the server being away.
    """

    stateChanged = Signal(object)
    pulled = Signal(object)
    failed = Signal(str)

    def __init__(self, session: Session, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.interval_s = SYNC_INTERVAL_S  # read now, so a test can shorten the module's
        self.dense_yield_s = DENSE_YIELD_S
        self.task: Task | None = None
        self.stopped = False
        self.attempts = 0
        self._last_end = -float("inf")  # monotonic time the last sync ended
        self._started = 0.0
        self._reached = False  # the sync in flight reached the server
        self._last_error = ""
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.tick)
        # The end of a sync comes from the runner: a task's own queued finished can be dropped
        # once the runner has deleted the task (its outcome, emitted before, always arrives).
        session.runner.taskDone.connect(self._on_task_done)
        try:  # cheap settings rows, on the GUI thread like the session's other small reads
            self.state = local_state(session.kb, online=None)
        except KvdeskError:
            self.state = TeamState(online=None)

    def start(self) -> None:
        """The first sync at once (it queues behind the task that opens the vault)."""
        self.stopped = False
        self.tick()

    def stop(self) -> None:
        """No further sync; an attempt in flight ends on the runner, and is ignored."""
        self.stopped = True
        self._timer.stop()

    @property
    def busy(self) -> bool:
        return self.task is not None

    def _arm(self, seconds: float) -> None:
        if not self.stopped:
            self._timer.start(max(0, int(seconds * 1000)))

    @Slot()
    def tick(self) -> Task | None:
        """Start a sync now unless one is in flight, an import runs, or the writer is busy
        building meaning keys and the last sync is recent; else try again later."""
        if self.stopped or self.session.closed or self.task is not None:
            return None
        if self.session.importing:
            self._arm(self.interval_s)
            return None
        building = self.session.dense_running
        if building:
            wait = self.dense_yield_s - (time.monotonic() - self._last_end)
            if wait > 0:
                self._arm(min(wait, self.interval_s))
                return None
        task = self.session.sync_team()
        self.task = task
        self.attempts += 1
        self._started, self._reached = time.monotonic(), False
        task.succeeded.connect(self._on_synced)
        task.failed.connect(self._on_failed)
        if building:
            self.session.yield_dense()  # queued first, the sync runs before the build resumes
        return task

    # Only one sync is ever in flight, so the slots below need not ask which task spoke.

    @Slot(object)
    def _on_synced(self, state: object) -> None:
        if self.stopped or not isinstance(state, TeamState):
            return
        self._last_error = ""
        self._reached = bool(state.online)
        previous = self.state
        if not state.user and previous.user:  # offline: the last known login and role
            state = replace(state, user=previous.user, role=previous.role)
        self.state = state
        self.stateChanged.emit(state)
        if state.value_ids or state.pulled:
            self.pulled.emit(state)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if self.stopped:
            return
        if message != self._last_error:  # once per distinct problem, not every few seconds
            log.warning("team sync failed: %s", message)
        self._last_error = message
        self.state = replace(self.state, error=message)
        self.stateChanged.emit(self.state)
        self.failed.emit(message)

    @Slot(object)
    def _on_task_done(self, task: object) -> None:
        if task is not self.task:
            return
        self.task = None
        self._last_end = time.monotonic()
        wait = self.interval_s
        if not self._reached:  # offline or failed: a slow try is not repeated at once
            wait = max(wait, min(2 * (self._last_end - self._started), SLOW_FAILURE_WAIT_S))
        self._arm(wait)
