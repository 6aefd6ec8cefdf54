"""Pilot recording in an interactive app: which searches and views become pilot log entries.

A search typed as you go shows results at every pause, but the user has not asked anything
yet: a shown search is *pending* and is recorded only once the user commits to it: Enter on
it, opening one of its results, a verdict (Found it / Not found), or leaving its results on
screen for :data:`COMMIT_SECONDS` (the app's timer calls :meth:`PilotRecorder.commit`). A newer
search replaces the pending one, so typing "vpn setup" records one query, not v, vp, vpn…

A *run* is the pilot session being recorded: its first committed query starts the session, a
verdict ends it, and a run idle longer than ``idle_s`` is stale: the next committed query
starts a new run instead of growing the old one forever. A document on screen is timed from
when it is shown to when the next one (or the next query, or a verdict) replaces it; only a
document the user chose is recorded (not the first hit the app shows by itself), except that
Found it counts the document being read.

The recorder holds the state and decides; a :class:`PilotWriter` does the writes (the GUI
queues them on its writer thread; :class:`LogWriter` writes at once). No Qt here: the app
drives it with plain calls, and the clock is injectable so tests script time exactly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from kvdesk.core.errors import KvdeskError
from kvdesk.core.pilot.log import PilotLog
from kvdesk.core.pilot.records import Clock, Outcome, PilotSession, utc_now
from kvdesk.core.search.retrieval import SearchResult

COMMIT_SECONDS = 2.0  # results left on screen this long commit their query
IDLE_SECONDS = 30 * 60.0  # a run idle this long is stale: the next query starts a new one

T_co = TypeVar("T_co", covariant=True)
T = TypeVar("T")


class PilotRun:
    """The pilot session being recorded: its id is set by the writer at the first query.

    In the GUI only writer-thread tasks touch ``session_id`` (one at a time, in order), so a run
    handed to queued writes needs no lock; the recorder only counts the queries it committed.
    """

    def __init__(self) -> None:
        self.session_id: int | None = None
        self.queries = 0


class PilotWriter(Protocol[T_co]):
    """Where the recorder's decisions go; each call returns the writer's handle (a task…)."""

    def record_search(self, run: PilotRun, query: str, result: SearchResult) -> T_co: ...

    def record_open(
        self,
        run: PilotRun,
        value_id: int,
        rank: int | None,
        opened_at: dt.datetime,
        seconds: float,
    ) -> T_co: ...

    def record_mark(self, run: PilotRun, outcome: Outcome, value_id: int | None) -> T_co: ...


class LogWriter:
    """A :class:`PilotWriter` that writes through a :class:`PilotLog` at once (call it on the
    thread that may write). Each call returns the pilot session id, or the marked session."""

    def __init__(self, log: PilotLog) -> None:
        self.log = log

    def record_search(self, run: PilotRun, query: str, result: SearchResult) -> int:
        if run.session_id is None:
            run.session_id = self.log.start_session()
        self.log.record_search(run.session_id, query, result)
        return run.session_id

    def record_open(
        self,
        run: PilotRun,
        value_id: int,
        rank: int | None,
        opened_at: dt.datetime,
        seconds: float,
    ) -> int:
        if run.session_id is None:
            raise KvdeskError("no pilot session to record the document in")
        self.log.with_clock(lambda: opened_at).record_open(
            run.session_id, value_id, rank, round(seconds, 3)
        )
        return run.session_id

    def record_mark(self, run: PilotRun, outcome: Outcome, value_id: int | None) -> PilotSession:
        if run.session_id is None:
            raise KvdeskError("no pilot session to mark")
        return self.log.mark(run.session_id, outcome, value_id)


@dataclass
class _Pending:
    query: str
    result: SearchResult


@dataclass
class _View:
    """A document on screen from a search, timed until the next one."""

    value_id: int
    rank: int | None
    user: bool  # chosen by the user (not the first hit shown automatically)
    opened_at: dt.datetime


class PilotRecorder(Generic[T]):
    """The recording state of one open vault: the run, the pending search, the timed view.

    Every method is a plain call from the app's event handlers; those that write return the
    writer's handle, or None when nothing was written.
    """

    def __init__(
        self,
        writer: PilotWriter[T],
        *,
        enabled: bool = False,
        clock: Clock | None = None,
        idle_s: float = IDLE_SECONDS,
    ) -> None:
        self.writer = writer
        self.clock: Clock = clock or utc_now
        self.idle_s = idle_s
        self.run = PilotRun()
        self._enabled = enabled
        self._closed = False
        self._pending: _Pending | None = None  # shown, not yet committed
        self._commit_on = ""  # the query Enter was pressed on, before its results came
        self._last_activity: dt.datetime | None = None
        self._view: _View | None = None

    # -- state ----------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._enabled

    def set_enabled(self, on: bool) -> bool:
        """Recording on or off; a change starts a new run and forgets what was pending.
        Returns whether anything changed."""
        if on == self._enabled:
            return False
        self._enabled = on
        self.run = PilotRun()  # a new session at the next query
        self._view = None
        self._pending = None
        return True

    def close(self) -> None:
        """The vault is closing: nothing more is recorded."""
        self._closed = True
        self._pending = None
        self._view = None

    @property
    def pending(self) -> bool:
        """A search is on screen that is not recorded yet."""
        return self._pending is not None

    @property
    def has_session(self) -> bool:
        """There is something a verdict would apply to (Found it / Not found enabled)."""
        return self._enabled and (self.run.queries > 0 or self._pending is not None)

    @property
    def viewing(self) -> int | None:
        """The value id of the document being timed, if any."""
        return None if self._view is None else self._view.value_id

    # -- searches -------------------------------------------------------------------------------

    def is_pending(self, query: str) -> bool:
        """Whether ``query``'s results are the ones on screen, not recorded yet."""
        return self._pending is not None and self._pending.query == query

    def commit_when_shown(self, query: str) -> None:
        """Enter on a query whose results are not shown yet: commit them when they are."""
        self._commit_on = query

    def drop_pending(self) -> None:
        """A cleared search box abandons the query that was not committed."""
        self._pending = None

    def shown(self, query: str, result: SearchResult) -> bool:
        """A search's results are on screen. Returns True when they wait for a commit (the
        app starts its :data:`COMMIT_SECONDS` timer), False when already committed or off."""
        if not self._enabled:
            return False
        self.end_view()  # a new query ends the view of the previous document
        self._pending = _Pending(query, result)
        commit_now = bool(self._commit_on) and self._commit_on == query
        self._commit_on = ""
        if commit_now:
            self.commit()
        return not commit_now

    def commit(self) -> T | None:
        """Record the pending search (the user committed to it)."""
        pending, self._pending = self._pending, None
        if pending is None or not self._enabled or self._closed:
            return None
        now = self.clock()
        last = self._last_activity
        if self.run.queries and last is not None and (now - last).total_seconds() > self.idle_s:
            self.run = PilotRun()  # stale: a new run, not one growing forever
        self._last_activity = now
        self.run.queries += 1
        return self.writer.record_search(self.run, pending.query, pending.result)

    def _touch(self) -> None:
        if self._last_activity is not None:
            self._last_activity = self.clock()

    # -- documents ------------------------------------------------------------------------------

    def view(self, value_id: int, rank: int | None, *, user: bool) -> None:
        """A document is on screen (``rank`` as shown; ``user``: the user chose it rather than
        the app showing the first hit). The previous one's view is recorded."""
        if not self._enabled:
            self._view = None
            return
        if user:
            self.commit()  # opening a result commits the query it came from
            self._touch()
        if self._view is not None and self._view.value_id == value_id:
            self._view.user = self._view.user or user
            return
        self.end_view()
        self._view = _View(value_id, rank, user, self.clock())

    def chosen(self, value_id: int) -> None:
        """The user opened this document on purpose (it is the one on screen)."""
        if self._view is not None and self._view.value_id == value_id:
            self._view.user = True

    def end_view(self, *, record_auto: bool = False) -> T | None:
        """Record the timed view (only a document the user chose, unless ``record_auto``)."""
        view, self._view = self._view, None
        if view is None or not (view.user or record_auto):
            return None
        if not self._enabled or self._closed or not self.run.queries:
            return None
        seconds = max(0.0, (self.clock() - view.opened_at).total_seconds())
        return self.writer.record_open(self.run, view.value_id, view.rank, view.opened_at, seconds)

    # -- verdicts -------------------------------------------------------------------------------

    def found(self, value_id: int | None) -> T | None:
        """Found it: ``value_id`` (the document being read) ends the run as found."""
        return self._verdict(Outcome.FOUND, value_id)

    def not_found(self) -> T | None:
        return self._verdict(Outcome.NOTFOUND, None)

    def _verdict(self, outcome: Outcome, value_id: int | None) -> T | None:
        self.commit()
        if not self._enabled or self._closed or not self.run.queries:
            return None
        self.end_view(record_auto=outcome is Outcome.FOUND)  # the document read counts as opened
        run, self.run = self.run, PilotRun()  # the next query starts a new session
        return self.writer.record_mark(run, outcome, value_id)
