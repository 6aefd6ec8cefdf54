"""The desktop app on a desk of a team vault (a real PostgreSQL server): background sync, the
status bar's team label, offline and back, and a reader's tag change refused with its reason."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6")

from pytestqt.qtbot import QtBot  # noqa: E402

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

import kvdesk.ui.team as team_ui  # noqa: E402
from kvdesk.core.knowledge_base import KnowledgeBase  # noqa: E402
from kvdesk.ui.main_window import MainWindow  # noqa: E402
from kvdesk.ui.review_queue import PENDING  # noqa: E402
from kvdesk.ui.team import TeamState, label_text, tooltip_text  # noqa: E402
from tests.tag_corpus import make_corpus  # noqa: E402
from tests.team.conftest import Team  # noqa: E402

WAIT_MS = 20_000
OpenApp = Callable[..., MainWindow]

MANUALS = [
    ("printer", "Clear a paper jam in the office printer: open tray two and pull gently."),
    ("vpn", "Connect to the VPN from home with the company certificate."),
]


def _records(path: Path, items: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for rid, text in items:
            f.write(json.dumps({"_id": rid, "title": rid.title(), "text": text}) + "\n")
    return path


@pytest.fixture(autouse=True)
def fast_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sync every 0.2 s instead of every few seconds: the tests wait on state, not on time."""
    monkeypatch.setattr(team_ui, "SYNC_INTERVAL_S", 0.2)


def joined(team: Team, name: str, user: str) -> Path:
    """A desk joined as ``user`` and closed again, for the app to open (as a user would)."""
    kb = team.desk(name, user)
    team.desks.remove(kb)
    kb.close()
    return kb.path


@pytest.fixture
def open_app(qtbot: QtBot) -> Iterator[OpenApp]:
    """Opens the app on a vault path; every window is closed (tasks waited for) at the end."""
    windows: list[MainWindow] = []

    def open_(path: Path, **kw: Any) -> MainWindow:
        kw.setdefault("offer_samples", False)
        kw.setdefault("auto_dense", False)
        kw.setdefault("remember_layout", False)
        window = MainWindow(KnowledgeBase.open(path), **kw)
        qtbot.addWidget(window)
        window.resize(1300, 800)
        window.show()
        windows.append(window)
        return window

    yield open_
    for window in windows:
        window.close()  # cancels and waits for every task, then closes the vault
        assert window.session.closed
        assert not window.session.runner._writer.activeThreadCount()
        assert not window.session.runner._reader.activeThreadCount()


def search(qtbot: QtBot, window: MainWindow, query: str) -> None:
    """Search words only (so a result list holds just the documents that match)."""
    window.mode_combo.setCurrentIndex(window.mode_combo.findData("lexical"))
    window.search_edit.setText(query)
    window.search_now()
    qtbot.waitUntil(
        lambda: window.last_outcome is not None and window.last_outcome.query == query,
        timeout=WAIT_MS,
    )


def titles(window: MainWindow) -> list[str]:
    return [h.title for h in window.model.hits()]


def test_a_document_imported_on_another_desk_appears_without_user_action(
    team: Team, tmp_path: Path, qtbot: QtBot, open_app: OpenApp
) -> None:
    admin = team.desk("admin", "ann")
    admin.import_records(_records(tmp_path / "one.jsonl", MANUALS[:1]))
    window = open_app(joined(team, "mine", "ann"), auto_dense=True)
    qtbot.waitUntil(lambda: window.team_label.text().startswith("Team: synced"), timeout=WAIT_MS)
    search(qtbot, window, "vpn certificate")
    assert titles(window) == []
    # Another desk uploads; this one shows it where the user looks, and keys it.
    admin.import_records(_records(tmp_path / "two.jsonl", MANUALS[1:]))
    qtbot.waitUntil(lambda: titles(window) == ["Vpn"], timeout=WAIT_MS)
    assert window.viewer.record is not None and window.viewer.record.title == "Vpn"
    assert window.last_outcome is not None and window.last_outcome.query == "vpn certificate"
    # Dense keys follow, as after an import (the default model, built in the background).
    qtbot.waitUntil(
        lambda: (
            window.session.key_state is not None
            and window.session.key_state.values == 2
            and window.session.key_state.dense_ready
        ),
        timeout=120_000,
    )
    assert not window.session.dense_paused
    # The team tags a document: the viewer's chips and the tag lists follow.
    curator = team.desk("curator", "cal")
    curator.set_tag("vpn", "network")
    qtbot.waitUntil(
        lambda: (
            window.viewer.tag_editor.tags() == ["network"]
            and [h.tags for h in window.model.hits()] == [("network",)]
        ),
        timeout=WAIT_MS,
    )
    tag_box = window.filter_bar.tag
    assert "network" in [tag_box.itemText(i) for i in range(tag_box.count())]
    assert titles(window) == ["Vpn"] and window.viewer.record.title == "Vpn"


def test_a_refresh_keeps_the_document_the_user_chose(
    team: Team, tmp_path: Path, qtbot: QtBot, open_app: OpenApp
) -> None:
    admin = team.desk("admin", "ann")
    items = [("printer", MANUALS[0][1]), ("toner", "Order toner for the office printer early.")]
    admin.import_records(_records(tmp_path / "m.jsonl", items))
    window = open_app(joined(team, "mine", "ann"))
    qtbot.waitUntil(lambda: window.team_label.text().startswith("Team: synced"), timeout=WAIT_MS)
    search(qtbot, window, "office printer")
    assert sorted(titles(window)) == ["Printer", "Toner"]
    window.select_rows([1])  # the user reads the second hit
    chosen = window.model.hits()[1]
    assert window.viewer.record is not None and window.viewer.record.id == chosen.value_id
    other = window.model.hits()[0]
    team.desk("curator", "cal").set_tag(other.value_id, "supplies")
    qtbot.waitUntil(
        lambda: (
            [h.tags for h in window.model.hits() if h.value_id == other.value_id] == [("supplies",)]
        ),
        timeout=WAIT_MS,
    )
    assert window.viewer.record.id == chosen.value_id
    current = window.model.hit(window.results_view.currentIndex().row())
    assert current is not None and current.value_id == chosen.value_id
    assert [hit.value_id for _, hit in window.selected_hits()] == [chosen.value_id]


def test_the_label_says_synced_then_offline_since_then_synced_again(
    team: Team, tmp_path: Path, qtbot: QtBot, open_app: OpenApp
) -> None:
    admin = team.desk("admin", "ann")
    admin.import_records(_records(tmp_path / "m.jsonl", MANUALS))
    window = open_app(joined(team, "mine", "ann"))
    label, desk, sync = window.team_label, window.session.kb.team, window.team_sync
    assert desk is not None and sync is not None
    qtbot.waitUntil(lambda: label.text().startswith("Team: synced"), timeout=WAIT_MS)
    assert re.fullmatch(r"Team: synced \d+ s ago", label.text()), label.text()
    assert label.isVisible()
    qtbot.waitUntil(lambda: "ann (admin)" in label.toolTip(), timeout=WAIT_MS)
    tip = label.toolTip()
    assert f"dbname={team.database}" in tip and "waiting to be delivered: 0" in tip
    assert "password" not in tip

    db = team.database
    team.server.admin(
        f"ALTER DATABASE {db} ALLOW_CONNECTIONS false",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{db}' AND pid <> pg_backend_pid()",
    )
    try:
        qtbot.waitUntil(lambda: "offline since" in label.text(), timeout=WAIT_MS)
        since = desk.settings.get("team.offline_since")
        local = dt.datetime.fromisoformat(since).astimezone().strftime("%H:%M")
        assert label.text() == f"Team: offline since {local}"
        assert "offline" in label.toolTip() and "ann (admin)" in label.toolTip()
        # The desk's copy still answers, and the app keeps trying, quietly (no dialog).
        search(qtbot, window, "paper jam")
        assert titles(window) == ["Printer"]
        tries = sync.attempts
        qtbot.waitUntil(lambda: sync.attempts >= tries + 3, timeout=WAIT_MS)
        assert "offline since" in label.text()
        assert not window.findChildren(QMessageBox)
    finally:
        team.server.admin(f"ALTER DATABASE {db} ALLOW_CONNECTIONS true")
    qtbot.waitUntil(lambda: label.text().startswith("Team: synced"), timeout=WAIT_MS)
    assert desk.settings.get("team.offline_since") == ""


def test_a_reader_accepting_a_tag_is_told_why_not_and_nothing_changes(
    team: Team, tmp_path: Path, qtbot: QtBot, open_app: OpenApp
) -> None:
    admin = team.desk("admin", "ann")
    admin.import_records(make_corpus(tmp_path / "corpus.jsonl", per_topic=6, untagged=2))
    window = open_app(joined(team, "reader", "rex"))
    qtbot.waitUntil(lambda: "rex (reader)" in window.team_label.toolTip(), timeout=WAIT_MS)

    def server_tags() -> int:
        with team.db() as db:
            return int(db.conn.execute("SELECT count(*) FROM value_tag").fetchone()[0])

    before = server_tags()

    # In the viewer: add a tag to the document shown.
    search(qtbot, window, "telescope galaxy")
    qtbot.waitUntil(lambda: window.viewer.record is not None, timeout=WAIT_MS)
    shown = window.viewer.tag_editor.tags()
    window.viewer.tag_editor.edit.setText("urgent")
    qtbot.keyClick(window.viewer.tag_editor.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bool(window.findChildren(QMessageBox)), timeout=WAIT_MS)
    box = window.findChildren(QMessageBox)[0]
    assert box.text() == "your role (reader) cannot change tags"
    box.close()
    assert window.viewer.tag_editor.tags() == shown

    # In the review queue: accept a suggestion.
    queue = window.open_review_queue()
    qtbot.waitUntil(lambda: bool(queue.entries), timeout=60_000)
    qtbot.waitUntil(lambda: queue.current_entry() is not None, timeout=WAIT_MS)
    entry = queue.current_entry()
    assert entry is not None
    queue.accept_current()
    qtbot.waitUntil(
        lambda: queue.summary.text() == "Not saved: your role (reader) cannot change tags",
        timeout=WAIT_MS,
    )
    assert queue.status[entry.key] == PENDING and not queue.undo_stack
    assert server_tags() == before
    assert entry.tag not in window.session.kb.tags.of(entry.value_id)


def test_a_meaning_key_build_stops_for_a_sync_and_goes_on(
    team: Team,
    tmp_path: Path,
    qtbot: QtBot,
    open_app: OpenApp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(team_ui, "DENSE_YIELD_S", 0.0)  # every sync, not every few seconds
    admin = team.desk("admin", "ann")
    admin.import_records(make_corpus(tmp_path / "corpus.jsonl", per_topic=40))
    window = open_app(joined(team, "mine", "ann"), auto_dense=True)
    during: list[int] = []  # syncs that ended while the build was under way
    assert window.team_sync is not None
    window.team_sync.stateChanged.connect(
        lambda state: during.append(1) if window.session.dense_running else None
    )
    yielded: list[int] = []
    window.session.denseYielded.connect(lambda: yielded.append(1))
    qtbot.waitUntil(lambda: window.session.dense_running, timeout=60_000)
    admin.import_records(_records(tmp_path / "m.jsonl", MANUALS))
    qtbot.waitUntil(lambda: len(during) >= 2, timeout=60_000)
    qtbot.waitUntil(
        lambda: (
            window.session.key_state is not None
            and window.session.key_state.values == 162
            and window.session.key_state.dense_ready
        ),
        timeout=120_000,
    )
    assert yielded, "the build never stopped for a sync"
    assert not window.session.dense_paused and window.pause_button.text() != "Resume"
    search(qtbot, window, "vpn certificate")
    assert titles(window) == ["Vpn"]


def test_a_vault_that_is_not_a_desk_shows_no_team_label(
    tmp_path: Path, qtbot: QtBot, open_app: OpenApp
) -> None:
    window = open_app(tmp_path / "solo.kvdb")
    qtbot.waitUntil(lambda: not window.session.runner.busy, timeout=WAIT_MS)
    assert window.team_sync is None
    assert window.team_label.isHidden() and window.team_label.text() == ""
    assert "Team" not in window.statusBar().currentMessage()


def test_switching_from_a_desk_to_a_vault_on_its_own_stops_the_sync(
    team: Team, tmp_path: Path, qtbot: QtBot, open_app: OpenApp
) -> None:
    window = open_app(joined(team, "mine", "ann"), first_run_decision=lambda: False)
    qtbot.waitUntil(lambda: window.team_label.text().startswith("Team: synced"), timeout=WAIT_MS)
    sync = window.team_sync
    assert sync is not None
    window.switch_vault(str(tmp_path / "solo.kvdb"))
    assert sync.stopped and window.team_sync is None
    assert window.team_label.isHidden()
    tries = sync.attempts
    qtbot.wait(600)  # three intervals: nothing more is tried, nothing shows again
    assert sync.attempts == tries and window.team_label.isHidden()


def test_the_label_words() -> None:
    now = dt.datetime(2025, 3, 4, 14, 5, 0, tzinfo=dt.UTC)
    ago = (now - dt.timedelta(seconds=12)).isoformat(timespec="seconds")
    assert label_text(TeamState(online=True, synced_at=ago), now) == "Team: synced 12 s ago"
    hour = (now - dt.timedelta(minutes=125)).isoformat(timespec="seconds")
    assert label_text(TeamState(online=None, synced_at=hour), now) == "Team: synced 2 h ago"
    since = (now - dt.timedelta(minutes=3)).isoformat(timespec="seconds")
    local = dt.datetime.fromisoformat(since).astimezone().strftime("%H:%M")
    offline = TeamState(online=False, synced_at=ago, offline_since=since, user="ann", role="admin")
    assert label_text(offline, now) == f"Team: offline since {local}"
    assert "Signed in as: ann (admin)" in tooltip_text(offline, now)
    assert label_text(TeamState(online=None), now) == "Team: connecting…"
    failed = TeamState(online=True, synced_at=ago, error="vault is busy")
    assert label_text(failed, now) == "Team: sync failed, retrying"
    assert "Last try: vault is busy" in tooltip_text(failed, now)
