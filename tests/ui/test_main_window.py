"""The main window, driven like a user would: typing, clicking, importing, tagging."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from PySide6.QtCore import QPoint, QSettings, Qt, QUrl

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.paths import data_home
from kvdesk.core.vault.importer import ImportReport
from kvdesk.ui.explain import HitExplanationView
from kvdesk.ui.main_window import MainWindow
from kvdesk.ui.resources import sample_paths
from kvdesk.ui.session import SearchOutcome
from kvdesk.ui.ui_state import last_vault, vault_value

from .conftest import close_window, make_window


def search(qtbot, window: MainWindow, text: str) -> SearchOutcome:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(window.resultsShown, timeout=10_000) as blocker:
        window.search_edit.setText(text)
        window.search_now()
    outcome = blocker.args[0]
    assert isinstance(outcome, SearchOutcome)
    return outcome


def test_typing_searches_after_debounce(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(window.resultsShown, timeout=10_000) as blocker:
        qtbot.keyClicks(window.search_edit, "vpn setup")
    outcome = blocker.args[0]
    # One search for the whole word, not one per keystroke (debounced).
    assert window.session.latest_search == 1
    assert outcome.query == "vpn setup"
    assert window.model.rowCount() > 0
    assert window.model.hit(0).title == "How to set up the company VPN"
    assert window.viewer.record is not None and window.viewer.record.title.endswith("VPN")
    assert not window.banner.isVisible()
    assert window.results_count.text().startswith(f"{window.model.rowCount()} results")


def test_enter_searches_at_once_and_remembers(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    window.search_edit.setText("holiday")
    with qtbot.waitSignal(window.resultsShown, timeout=10_000):
        qtbot.keyClick(window.search_edit, Qt.Key.Key_Return)
    assert window.model.hit(0).title == "holiday-calendar-2024"
    assert window._history[0] == "holiday"
    ini = QSettings(str(data_home() / "kvdesk-ui.ini"), QSettings.Format.IniFormat)
    assert "holiday" in list(ini.value("search/history"))


def test_stale_results_are_dropped(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    shown: list[str] = []
    window.resultsShown.connect(lambda o: shown.append(o.query))
    window.search_edit.setText("invoice")
    window.search_now()
    window.search_edit.setText("forklift")
    with qtbot.waitSignal(window.resultsShown, timeout=10_000):
        window.search_now()
    assert window.wait_idle()
    qtbot.wait(50)
    assert shown == ["forklift"]
    assert window.model.hit(0).title == "incident-report-2024-02-07"


def test_no_confident_match_says_so(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    outcome = search(qtbot, window, "zebra giraffe saxophone")
    assert not outcome.result.confident
    assert window.banner.isVisible()
    assert window.banner.text() == "No confident match — these are the closest documents"
    outcome = search(qtbot, window, "forklift")
    assert outcome.result.confident and not window.banner.isVisible()


def _view(window: MainWindow, i: int = 0) -> HitExplanationView:
    views = window.explain.visible_views()
    assert views[i].isVisible()
    return views[i]


def test_explanation_shown_adds_up_to_score(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    search(qtbot, window, "hotel costs reimbursement")
    view = _view(window)
    assert view.hit is not None and view.hit.title == "Travel and Expense Policy"
    shown = view.shown_contributions()
    # A dense (meaning) contribution is part of this hit, and the parts shown add up.
    assert shown["dense"] > 0 and shown["lexical"] > 0
    assert sum(shown.values()) == pytest.approx(view.shown_score(), abs=0.0015)
    # The bar is drawn from exactly those parts and spans the score.
    assert sum(v for _, v in view.bar.segments) == pytest.approx(view.hit.score, abs=1e-9)
    # The term table's 'Adds' column makes up the lexical part.
    adds = [float(view.terms.item(r, 3).text()) for r in range(view.terms.rowCount())]
    assert {view.terms.item(r, 0).text() for r in range(view.terms.rowCount())} >= {"hotel"}
    assert sum(adds) == pytest.approx(shown["lexical"], abs=0.002)
    assert "cosine" in view.legend["dense"].text()


def test_two_hits_side_by_side(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    search(qtbot, window, "LED supplier delay")
    assert window.model.rowCount() >= 2
    rect = window.results_view.visualRect(window.model.index(1))
    qtbot.mouseClick(
        window.results_view.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.ControlModifier,
        rect.center(),
    )
    views = window.explain.visible_views()
    assert len(views) == 2 and all(v.isVisible() for v in views)
    a, b = views
    assert a.rank_label.text().startswith("#1") and b.rank_label.text().startswith("#2")
    assert window.explain.heading.text() == "Why #1 outranks #2"
    assert a.hit is not None and b.hit is not None and a.hit.score >= b.hit.score
    # Both bars use the same scale, so lengths compare across the two explanations.
    assert a.bar.scale == b.bar.scale == pytest.approx(a.hit.score)
    for view in views:
        assert sum(view.shown_contributions().values()) == pytest.approx(
            view.shown_score(), abs=0.0015
        )
    assert f"{a.hit.score - b.hit.score:+.3f}" in window.explain.summary.text()


def test_clicking_the_passage_highlights_it(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    search(qtbot, window, "what to do with a lost laptop")
    view = _view(window)
    assert view.hit is not None and view.hit.explanation.dense is not None
    dense = view.hit.explanation.dense
    assert view.passage.isVisible()
    with qtbot.waitSignal(view.passageClicked, timeout=2000):
        qtbot.mouseClick(view.passage, Qt.MouseButton.LeftButton)
    span = window.viewer.passage_highlight()
    assert span is not None
    text = window.viewer.text
    assert text[dense.start : dense.end] == dense.passage_text
    assert span == (
        len(text[: dense.start].encode("utf-16-le")) // 2,
        len(text[: dense.end].encode("utf-16-le")) // 2,
    )


def test_keyboard_next_previous_and_open_original(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    search(qtbot, window, "policy")
    opened: list[QUrl] = []
    window.viewer.opener = lambda url: opened.append(url) or True
    qtbot.keyClick(window.search_edit, Qt.Key.Key_J, Qt.KeyboardModifier.ControlModifier)
    assert window.results_view.currentIndex().row() == 1
    qtbot.keyClick(window.search_edit, Qt.Key.Key_Up, Qt.KeyboardModifier.AltModifier)
    assert window.results_view.currentIndex().row() == 0
    qtbot.keyClick(window.search_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert len(opened) == 1
    path = Path(opened[0].toLocalFile())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = window.viewer.record
    assert record is not None
    assert path.read_bytes() == window.session.kb.values.original_bytes(record.id)
    window.close()
    assert not path.exists()  # exported copies are removed on quit


def test_filters_map_onto_query_syntax(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    window.filter_bar.type.setCurrentIndex(window.filter_bar.type.findData("csv"))
    window.filter_bar.after_on.setChecked(True)
    window.filter_bar.after.setDate(
        window.filter_bar.after.date().fromString("2020-01-01", "yyyy-MM-dd")
    )
    assert window.filter_bar.query_fragment() == "type:csv after:2020-01-01"
    outcome = search(qtbot, window, "hotel")
    assert outcome.query == "hotel type:csv after:2020-01-01"
    assert {h.media_type for h in outcome.result.hits} == {"text/csv"}
    assert outcome.result.hits[0].title == "invoices-2024-q1"


def test_tag_chips_edit_tags_and_keys(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    search(qtbot, window, "forklift")
    record = window.viewer.record
    assert record is not None and record.tags == ()
    editor = window.viewer.tag_editor
    with qtbot.waitSignal(window.tagsUpdated, timeout=10_000):
        qtbot.keyClicks(editor.edit, "safety")
        qtbot.keyClick(editor.edit, Qt.Key.Key_Return)
    assert editor.tags() == ["safety"]
    assert window.session.kb.tags.of(record.id) == ("safety",)
    assert "safety" in editor.completer.model().stringList()
    outcome = search(qtbot, window, "tag:safety")
    assert [h.value_id for h in outcome.result.hits] == [record.id]
    assert window.model.hit(0).tags == ("safety",)
    chip = editor.chip("safety")
    assert chip is not None
    with qtbot.waitSignal(window.tagsUpdated, timeout=10_000):
        qtbot.mouseClick(chip, Qt.MouseButton.LeftButton)
    assert editor.tags() == []
    assert window.session.kb.tags.of(record.id) == ()
    outcome = search(qtbot, window, "tag:safety")
    assert outcome.result.hits == ()


@pytest.fixture
def many_files(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    for i in range(200):
        (folder / f"note-{i:03d}.txt").write_text(
            f"Note {i}: weekly stand-up about shipment {i * 7} and lamp order {i}.\n" * 3,
            encoding="utf-8",
        )
    return folder


def test_import_with_progress_then_cancel(qtbot, window: MainWindow, many_files: Path) -> None:  # type: ignore[no-untyped-def]
    before = window.session.count()
    task = window.import_paths([many_files])
    with qtbot.waitSignal(task.progressed, timeout=10_000) as blocker:
        pass
    assert blocker.args[0].total == 200
    assert window.progress.isVisible() and window.cancel_button.isVisible()
    with qtbot.waitSignal(window.importFinished, timeout=30_000) as finished:
        qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    report = finished.args[0]
    assert report is None or (isinstance(report, ImportReport) and report.cancelled)
    imported = window.session.count() - before
    assert 0 <= imported < 200  # cancel landed mid-way
    qtbot.waitUntil(lambda: not window.progress.isVisible(), timeout=5000)


def test_import_report_lists_failures_and_dense_follows(
    qtbot,
    sample_vault: Path,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    window = make_window(qtbot, sample_vault, auto_dense=True)
    try:
        folder = tmp_path / "drop"
        folder.mkdir()
        (folder / "minutes.txt").write_text("Board minutes: the kiosk redesign was approved.")
        (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
        with qtbot.waitSignal(window.importFinished, timeout=30_000) as blocker:
            window.import_paths([folder])
        report = blocker.args[0]
        assert isinstance(report, ImportReport)
        assert len(report.imported) == 1 and len(report.failed) == 1
        dialog = window.report_dialog
        assert dialog is not None and dialog.isVisible()
        rows = dialog.rows()
        failed = [r for r in rows if r[0] == "failed"]
        assert failed and failed[0][1].endswith("broken.pdf") and failed[0][2]
        # Dense keys are then built in the background, and the status bar says so.
        dense = window.last_dense_task
        assert dense is not None
        qtbot.waitUntil(lambda: dense.done, timeout=60_000)  # no race with a finished signal
        qtbot.waitUntil(lambda: "meaning ✓" in window.keys_label.text(), timeout=10_000)
        assert window.session.kb.dense_status().ready
        assert "CPU" in window.provider_label.text() or "GPU" in window.provider_label.text()
        outcome = search(qtbot, window, "kiosk redesign")
        assert outcome.result.hits[0].title == "minutes"
    finally:
        close_window(window)


def test_drop_imports(qtbot, window: MainWindow, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QMimeData
    from PySide6.QtGui import QDropEvent

    note = tmp_path / "dropped-note.md"
    note.write_text("# Parking\nVisitors park in bay 12 behind the showroom.", encoding="utf-8")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(note))])
    event = QDropEvent(
        QPoint(10, 10).toPointF(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(window.importFinished, timeout=30_000) as blocker:
        window.dropEvent(event)
    assert len(blocker.args[0].imported) == 1


def test_first_run_offers_samples(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window = make_window(qtbot, tmp_path / "new.kvdb", offer_samples=True)
    try:
        qtbot.waitUntil(lambda: window.first_run_dialog is not None, timeout=5000)
        dialog = window.first_run_dialog
        assert dialog is not None and dialog.isVisible()
        with qtbot.waitSignal(window.importFinished, timeout=30_000) as blocker:
            dialog.accept()
        report = blocker.args[0]
        assert len(report.imported) == len(sample_paths()) and not report.failed
        outcome = search(qtbot, window, "大阪オフィス 移転")
        assert outcome.result.hits[0].title == "office-move-memo-ja"
    finally:
        close_window(window)


def test_first_run_decline_is_remembered(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window = make_window(qtbot, tmp_path / "new.kvdb", offer_samples=True)
    try:
        qtbot.waitUntil(lambda: window.first_run_dialog is not None, timeout=5000)
        assert window.first_run_dialog is not None
        window.first_run_dialog.reject()
        assert window.session.count() == 0
    finally:
        close_window(window)
    ini = QSettings(str(data_home() / "kvdesk-ui.ini"), QSettings.Format.IniFormat)
    assert vault_value(tmp_path / "new.kvdb", "firstRunDeclined")
    assert ini.value("window/geometry") is not None  # geometry remembered on close
    again = make_window(qtbot, tmp_path / "new.kvdb", offer_samples=True)
    try:
        qtbot.wait(50)
        assert again.first_run_dialog is None
    finally:
        close_window(again)
    other = make_window(qtbot, tmp_path / "other.kvdb", offer_samples=True)
    try:  # declined per vault: another empty vault is still offered the samples
        qtbot.waitUntil(lambda: other.first_run_dialog is not None, timeout=5000)
        assert other.first_run_dialog is not None
        other.first_run_dialog.reject()
    finally:
        close_window(other)


def test_first_run_decision_can_be_injected(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window = make_window(
        qtbot, tmp_path / "new.kvdb", offer_samples=True, first_run_decision=lambda: True
    )
    try:
        qtbot.waitUntil(lambda: window.last_import_task is not None, timeout=5000)
        qtbot.waitUntil(lambda: window.session.count() == len(sample_paths()), timeout=30_000)
    finally:
        close_window(window)


def test_settings_dialog_switches_vault(qtbot, window: MainWindow, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dialog = window.open_settings()
    assert dialog.vault_edit.text() == str(window.session.path)
    assert "CPU" in dialog.provider_label.text() or "GPU" in dialog.provider_label.text()
    other = tmp_path / "other.kvdb"
    window.auto_dense = False
    window.first_run_decision = lambda: False
    dialog.vault_edit.setText(str(other))
    dialog.accept()
    assert window.session.path == other
    assert window.windowTitle() == "kvdesk — other.kvdb"
    assert last_vault() == other.resolve()  # app.main opens it on the next start
    qtbot.waitUntil(lambda: not window.session.runner.busy, timeout=10_000)


def test_session_open_is_writer_side(qtbot, sample_vault: Path) -> None:  # type: ignore[no-untyped-def]
    """Searches run on pool threads, never the GUI thread."""
    import threading

    kb = KnowledgeBase.open(sample_vault)
    threads: list[str] = []
    original = kb.search

    def recording(*a, **kw):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return original(*a, **kw)

    kb.search = recording  # type: ignore[method-assign]
    w = MainWindow(kb, offer_samples=False, auto_dense=False)
    qtbot.addWidget(w)
    try:
        search(qtbot, w, "vpn")
        assert threads and threading.main_thread().name not in threads
    finally:
        close_window(w)


def test_many_tags_wrap_instead_of_widening(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    search(qtbot, window, "forklift")
    window.resize(1300, 800)
    qtbot.wait(20)
    tags = [f"department-{i:02d}-long-tag-name" for i in range(12)]
    window.viewer.set_tags(tuple(tags))
    editor = window.viewer.tag_editor
    qtbot.waitUntil(lambda: all(c.isVisible() for c in editor.chips), timeout=2000)
    qtbot.wait(50)
    assert window.width() == 1300
    assert window.minimumSizeHint().width() < 1300
    assert editor.width() <= window.viewer.width()
    rows = {c.geometry().top() for c in editor.chips}
    assert len(rows) > 1  # the chips wrapped onto several rows
    for chip in editor.chips:  # every chip is fully inside the editor
        assert editor.rect().contains(chip.geometry())


def test_drop_on_the_search_field_imports(qtbot, window: MainWindow, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QCoreApplication, QMimeData
    from PySide6.QtGui import QDragEnterEvent, QDropEvent

    note = tmp_path / "dropped-on-field.md"
    note.write_text("# Keys\nSpare keys are in the reception safe.", encoding="utf-8")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(note))])
    for target in (window.search_edit, window.viewer.tag_editor.edit):
        enter = QDragEnterEvent(
            QPoint(5, 5),  # QDragEnterEvent takes a QPoint, QDropEvent a QPointF
            Qt.DropAction.CopyAction,
            mime,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
        QCoreApplication.sendEvent(target, enter)
        assert enter.isAccepted()
    drop = QDropEvent(
        QPoint(5, 5).toPointF(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(window.importFinished, timeout=30_000) as blocker:
        QCoreApplication.sendEvent(window.search_edit, drop)
    assert len(blocker.args[0].imported) == 1
    assert window.search_edit.text() == ""  # nothing pasted into the field
