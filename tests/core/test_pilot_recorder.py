"""The pilot recorder without Qt: what the app's events become, with a scripted clock."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.pilot.recorder import IDLE_SECONDS, LogWriter, PilotRecorder, PilotRun
from kvdesk.core.pilot.records import Outcome
from kvdesk.core.search.retrieval import SearchResult

START = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class FakeWriter:
    """Records every write the recorder asks for, with the run it was for."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._runs: dict[int, int] = {}  # id(run) -> a small number, in order of appearance

    def _run(self, run: PilotRun) -> int:
        return self._runs.setdefault(id(run), len(self._runs) + 1)

    def record_search(self, run: PilotRun, query: str, result: SearchResult) -> str:
        self.calls.append(("search", self._run(run), query))
        return "task"

    def record_open(
        self, run: PilotRun, value_id: int, rank: int | None, opened_at: dt.datetime, seconds: float
    ) -> str:
        self.calls.append(("open", self._run(run), value_id, rank, opened_at, seconds))
        return "task"

    def record_mark(self, run: PilotRun, outcome: Outcome, value_id: int | None) -> str:
        self.calls.append(("mark", self._run(run), outcome, value_id))
        return "task"


def shown(query: str) -> SearchResult:
    return SearchResult(query, "lexical", "none", True, {}, (), 1.0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def writer() -> FakeWriter:
    return FakeWriter()


@pytest.fixture
def rec(writer: FakeWriter, clock: Clock) -> PilotRecorder[str]:
    return PilotRecorder(writer, enabled=True, clock=clock)


def test_off_records_nothing(writer: FakeWriter, clock: Clock) -> None:
    rec: PilotRecorder[str] = PilotRecorder(writer, clock=clock)
    assert rec.shown("vpn", shown("vpn")) is False
    assert rec.commit() is None
    rec.view(1, 1, user=True)
    assert rec.viewing is None
    assert rec.found(1) is None and rec.not_found() is None
    assert not rec.has_session and writer.calls == []


def test_typing_records_only_the_committed_query(
    rec: PilotRecorder[str], writer: FakeWriter
) -> None:
    for typed in ("v", "vp", "vpn", "vpn setup"):
        assert rec.shown(typed, shown(typed)) is True  # waits for a commit (the app's timer)
    assert rec.pending and rec.has_session and writer.calls == []
    assert rec.commit() == "task"  # the timer fired
    assert writer.calls == [("search", 1, "vpn setup")]
    assert rec.commit() is None  # nothing pending any more
    rec.shown("printer", shown("printer"))
    rec.drop_pending()  # the box was cleared
    assert rec.commit() is None and len(writer.calls) == 1


def test_enter_commits_now_or_when_the_results_come(
    rec: PilotRecorder[str], writer: FakeWriter
) -> None:
    rec.shown("vpn", shown("vpn"))
    assert rec.is_pending("vpn") and not rec.is_pending("vpn setup")
    rec.commit()  # Enter on the results on screen
    rec.commit_when_shown("vpn setup")  # Enter before the search finished
    assert rec.shown("vpn setup", shown("vpn setup")) is False  # committed at once
    rec.commit_when_shown("x")
    assert rec.shown("other", shown("other")) is True  # Enter was on another query
    assert rec.shown("x", shown("x")) is True  # …and it is forgotten after one result
    assert [c[2] for c in writer.calls] == ["vpn", "vpn setup"]


def test_views_are_timed_and_only_chosen_ones_recorded(
    rec: PilotRecorder[str], writer: FakeWriter, clock: Clock
) -> None:
    rec.shown("vpn", shown("vpn"))
    rec.view(10, 1, user=False)  # the app shows the first hit: no commit, not recorded
    assert rec.pending and rec.viewing == 10
    clock.tick(5)
    rec.view(11, 2, user=True)  # the user opens hit 2: commits the query
    assert not rec.pending
    clock.tick(7.25)
    rec.view(12, 3, user=False)
    clock.tick(1)
    rec.chosen(12)  # …then activates it: opened on purpose after all
    clock.tick(2)
    rec.shown("vpn linux", shown("vpn linux"))  # a new search ends the view
    opened = START + dt.timedelta(seconds=5)
    assert writer.calls == [
        ("search", 1, "vpn"),
        ("open", 1, 11, 2, opened, 7.25),
        ("open", 1, 12, 3, opened + dt.timedelta(seconds=7.25), 3.0),
    ]


def test_found_counts_the_document_read_and_starts_a_new_run(
    rec: PilotRecorder[str], writer: FakeWriter, clock: Clock
) -> None:
    assert rec.found(5) is None  # nothing searched yet
    rec.shown("holiday", shown("holiday"))
    rec.view(5, 1, user=False)
    clock.tick(4)
    assert rec.found(5) == "task"  # commits the pending query, records the auto view, marks
    assert writer.calls == [
        ("search", 1, "holiday"),
        ("open", 1, 5, 1, START, 4.0),
        ("mark", 1, Outcome.FOUND, 5),
    ]
    assert not rec.has_session
    rec.shown("parking", shown("parking"))
    rec.view(6, 1, user=False)
    assert rec.not_found() == "task"  # the automatic view is not recorded
    assert writer.calls[3:] == [("search", 2, "parking"), ("mark", 2, Outcome.NOTFOUND, None)]


def test_a_stale_run_starts_a_new_session(
    rec: PilotRecorder[str], writer: FakeWriter, clock: Clock
) -> None:
    assert rec.idle_s == IDLE_SECONDS
    for query in ("holiday", "holiday calendar"):
        rec.shown(query, shown(query))
        rec.commit()
        clock.tick(60)
    clock.tick(IDLE_SECONDS)  # lunch
    rec.shown("parking", shown("parking"))
    rec.commit()
    clock.tick(IDLE_SECONDS - 1)  # opening a result counts as activity…
    rec.view(3, 1, user=True)
    clock.tick(IDLE_SECONDS - 1)
    rec.shown("parking permit", shown("parking permit"))
    rec.commit()  # …so this is still the same run
    runs = [c[1] for c in writer.calls if c[0] == "search"]
    assert runs == [1, 1, 2, 2]


def test_switching_off_or_closing_forgets_what_was_pending(
    rec: PilotRecorder[str], writer: FakeWriter
) -> None:
    rec.shown("vpn", shown("vpn"))
    rec.commit()
    first = rec.run
    assert rec.set_enabled(True) is False and rec.run is first
    rec.shown("vpn setup", shown("vpn setup"))
    assert rec.set_enabled(False) is True and not rec.pending and rec.run is not first
    assert rec.set_enabled(True) is True and not rec.has_session
    rec.shown("printer", shown("printer"))
    rec.close()
    assert rec.commit() is None and rec.found(None) is None
    assert writer.calls == [("search", 1, "vpn")]


# -- with the real log ----------------------------------------------------------------------


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    records = tmp_path / "docs.jsonl"
    records.write_text(
        "\n".join(
            json.dumps({"_id": f"d{i}", "title": f"Doc {i}", "text": text})
            for i, text in enumerate(["vpn setup guide", "printer on floor three"], start=1)
        ),
        encoding="utf-8",
    )
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    base.import_records(records)
    yield base
    base.close()


def test_log_writer_records_a_found_session(kb: KnowledgeBase, clock: Clock) -> None:
    kb.pilot.configure(enabled=True, user="ann", team="ops")
    log = kb.pilot.with_clock(clock)
    rec = PilotRecorder(LogWriter(log), enabled=kb.pilot.enabled, clock=clock)
    for query in ("vpn", "vpn setup"):
        rec.shown(query, kb.search(query, mode="lexical"))
        clock.tick(3)
    rec.commit()  # only the settled query
    doc = kb.values.resolve("d1")
    rec.view(doc, 1, user=True)
    clock.tick(12.5)
    session = rec.found(doc)
    assert session is not None and not isinstance(session, int)
    assert session.outcome is Outcome.FOUND and session.found_value_id == doc
    assert (session.user, session.team) == ("ann", "ops")
    assert [q.query for q in session.queries] == ["vpn setup"]
    assert [(o.value_id, o.rank, o.seconds) for o in session.opens] == [(doc, 1, 12.5)]
    assert session.opens[0].opened_at == "2025-03-03T09:00:06.000+00:00"
    assert kb.pilot.count() == 1 and kb.pilot.last_query(session.id) == "vpn setup"
