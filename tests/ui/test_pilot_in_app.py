"""Pilot tracking in the main window: nothing recorded when off; search, open, Found it when on."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.ui.main_window import MainWindow
from kvdesk.ui.pilot_dashboard import PilotDashboard

from .conftest import close_window, make_window
from .test_main_window import search


def pilot_rows(path: Path) -> dict[str, int]:
    with KnowledgeBase.open(path) as kb:
        conn = kb._vault.conn
        return {
            t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
            for t in ("pilot_session", "pilot_query", "pilot_open")
        }


def test_pilot_off_records_nothing(qtbot, sample_vault: Path) -> None:  # type: ignore[no-untyped-def]
    window: MainWindow = make_window(qtbot, sample_vault)
    try:
        assert not window.session.pilot_on and not window.record_action.isChecked()
        assert not window.found_button.isVisible()
        search(qtbot, window, "vpn setup")
        window.select_rows([1])
        qtbot.wait(50)
        window.select_rows([0])
        assert window.mark_found() is None and window.mark_not_found() is None
        assert window.wait_idle()
    finally:
        close_window(window)
    assert pilot_rows(sample_vault) == {"pilot_session": 0, "pilot_query": 0, "pilot_open": 0}


def test_search_open_and_found_it_make_a_found_session(qtbot, sample_vault: Path) -> None:  # type: ignore[no-untyped-def]
    window: MainWindow = make_window(qtbot, sample_vault)
    try:
        window.record_action.trigger()  # Pilot ▸ Record searches
        assert window.session.pilot_on and window.record_action.isChecked()
        assert window.found_button.isVisible() and not window.found_button.isEnabled()

        with qtbot.waitSignal(window.session.pilotRecorded, timeout=10_000) as rec:
            search(qtbot, window, "company vpn linux")
        assert rec.args[0] == "search"
        session_id = rec.args[1]
        with qtbot.waitSignal(window.session.pilotRecorded, timeout=10_000) as rec:
            search(qtbot, window, "vpn setup")  # a reformulation: same session
        assert rec.args == ["search", session_id]
        assert window.found_button.isEnabled()

        # The user opens hit #2, reads it a moment, then goes to hit #1 (the VPN guide).
        window.select_rows([1])
        second = window.model.hit(1)
        assert second is not None
        qtbot.wait(300)
        with qtbot.waitSignal(window.session.pilotRecorded, timeout=10_000) as rec:
            window.select_rows([0])
        assert rec.args == ["open", session_id]
        first = window.model.hit(0)
        assert first is not None and first.title == "How to set up the company VPN"
        qtbot.wait(200)
        with qtbot.waitSignal(window.session.pilotMarked, timeout=10_000) as marked:
            qtbot.mouseClick(window.found_button, Qt.MouseButton.LeftButton)
        session = marked.args[0]
        assert session.id == session_id
        assert session.outcome == "found" and session.found_value_id == first.value_id
        assert [q.query for q in session.queries] == ["company vpn linux", "vpn setup"]
        assert [h.value_id for h in session.queries[1].hits][:2] == [
            first.value_id,
            second.value_id,
        ]
        opens = [(o.value_id, o.rank) for o in session.opens]
        assert opens == [(second.value_id, 2), (first.value_id, 1)]
        assert session.opens[0].seconds is not None and session.opens[0].seconds >= 0.25
        assert session.opens[1].seconds is not None and session.opens[1].seconds >= 0.15
        assert not window.found_button.isEnabled()  # the next query starts a new session

        with qtbot.waitSignal(window.session.pilotRecorded, timeout=10_000) as rec:
            search(qtbot, window, "parking permit")
        assert rec.args[1] != session_id
        with qtbot.waitSignal(window.session.pilotMarked, timeout=10_000) as marked:
            qtbot.mouseClick(window.notfound_button, Qt.MouseButton.LeftButton)
        assert marked.args[0].outcome == "notfound" and marked.args[0].found_value_id is None

        # Pilot ▸ Dashboard opens as a tab on the same vault and shows both sessions.
        dashboard = window.open_pilot_dashboard()
        assert isinstance(dashboard, PilotDashboard)
        assert window.tabs.currentWidget() is dashboard and window.tabs.tabBar().isVisible()
        qtbot.waitUntil(lambda: dashboard.report is not None, timeout=10_000)
        assert dashboard.report is not None and dashboard.report.overall.sessions == 2
        assert dashboard.report.overall.found == 1
        assert dashboard.enabled_box.isChecked()
        # Turning recording off in the dashboard is mirrored by the menu at once.
        dashboard.enabled_box.setChecked(False)
        assert not window.session.pilot_on and not window.record_action.isChecked()
        assert not window.found_button.isVisible()
        assert window.wait_idle()
    finally:
        close_window(window)
    with KnowledgeBase.open(sample_vault) as kb:
        assert not kb.pilot.enabled


def test_settings_dialog_sets_the_pilot_labels(qtbot, sample_vault: Path) -> None:  # type: ignore[no-untyped-def]
    window: MainWindow = make_window(qtbot, sample_vault)
    try:
        dialog = window.open_settings()
        assert dialog.pilot_user_edit.text() == "" and dialog.pilot_team_edit.text() == ""
        dialog.pilot_user_edit.setText("alice")
        dialog.pilot_team_edit.setText("support")
        with qtbot.waitSignal(window.session.pilotSettingsChanged, timeout=10_000) as saved:
            dialog.accept()
        assert (saved.args[0].user, saved.args[0].team) == ("alice", "support")
        assert not saved.args[0].enabled  # labels only: recording stays off
        window.record_action.trigger()
        with qtbot.waitSignal(window.session.pilotRecorded, timeout=10_000) as rec:
            search(qtbot, window, "holiday")
        assert window.wait_idle()
        session = window.session.kb.pilot.session(rec.args[1])
        assert (session.user, session.team) == ("alice", "support")
    finally:
        close_window(window)


def queries_of(path: Path) -> list[tuple[int, str]]:
    with KnowledgeBase.open(path) as kb:
        rows = kb._vault.conn.execute("SELECT session_id, query FROM pilot_query ORDER BY id")
        return [(int(r[0]), str(r[1])) for r in rows]


def _recording_window(qtbot, path: Path, commit_ms: int) -> MainWindow:  # type: ignore[no-untyped-def]
    window: MainWindow = make_window(qtbot, path)
    window.record_action.trigger()
    window._pilot_timer.setInterval(commit_ms)
    return window


def test_search_as_you_type_records_only_the_settled_query(qtbot, sample_vault: Path) -> None:  # type: ignore[no-untyped-def]
    window = _recording_window(qtbot, sample_vault, 400)
    try:
        typed = ""
        for ch in "vpn setup":
            typed += ch
            if ch != " ":
                search(qtbot, window, typed)  # each debounce shows results
        assert window.found_button.isEnabled()  # a verdict would commit the pending query
        with qtbot.waitSignal(window.session.pilotRecorded, timeout=5_000) as rec:
            pass  # results left on screen: committed after the pause
        assert rec.args[0] == "search"
        qtbot.wait(600)
        assert window.wait_idle()
    finally:
        close_window(window)
    assert [q for _, q in queries_of(sample_vault)] == ["vpn setup"]


def test_enter_and_opening_a_result_commit_at_once(qtbot, sample_vault: Path) -> None:  # type: ignore[no-untyped-def]
    window = _recording_window(qtbot, sample_vault, 60_000)  # the pause never commits here
    try:
        window.search_edit.setFocus()
        with qtbot.waitSignal(window.session.pilotRecorded, timeout=10_000) as rec:
            window.search_edit.setText("company vpn linux")
            qtbot.keyClick(window.search_edit, Qt.Key.Key_Return)
        assert rec.args[0] == "search"
        search(qtbot, window, "vpn")  # typed, not committed…
        search(qtbot, window, "vpn setup")
        with qtbot.waitSignal(window.session.pilotRecorded, timeout=10_000) as rec:
            window.select_rows([1])  # …until the user opens a result
        assert rec.args[0] == "search"
        search(qtbot, window, "printer")  # abandoned: cleared before it settled
        window.search_edit.clear()
        window.search_now()
        assert window.wait_idle()
    finally:
        close_window(window)
    assert [q for _, q in queries_of(sample_vault)] == ["company vpn linux", "vpn setup"]


def test_a_stale_run_starts_a_new_pilot_session(qtbot, sample_vault: Path) -> None:  # type: ignore[no-untyped-def]
    window = _recording_window(qtbot, sample_vault, 60_000)
    try:
        for query in ("holiday", "holiday calendar"):
            search(qtbot, window, query)
            with qtbot.waitSignal(window.session.pilotRecorded, timeout=10_000):
                window.commit_pilot_query()
        window.pilot_idle_s = 0.0  # pretend the user went to lunch
        qtbot.wait(20)
        search(qtbot, window, "parking")
        with qtbot.waitSignal(window.session.pilotRecorded, timeout=10_000):
            window.commit_pilot_query()
        assert window.wait_idle()
    finally:
        close_window(window)
    rows = queries_of(sample_vault)
    assert [q for _, q in rows] == ["holiday", "holiday calendar", "parking"]
    assert rows[0][0] == rows[1][0] != rows[2][0]
