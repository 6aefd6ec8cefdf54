"""Issue 12, items 9 and 10: readable import reports, one type filter, a compare view that
leaves the document readable, and a meaning-key build that says when it ends and can pause."""

from __future__ import annotations

from pathlib import Path

import pytest

from PySide6.QtCore import Qt

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.progress import Progress
from kvdesk.ui.dialogs import ImportReportDialog
from kvdesk.ui.explain import COMPARE_COLUMN_MIN
from kvdesk.ui.filters import TYPES
from kvdesk.ui.main_window import VIEWER_MIN_WIDTH, MainWindow
from kvdesk.ui.tasks import Task, eta_text

from .conftest import close_window, make_window
from .test_main_window import search

LONG_NAMES = [
    "quarterly-financial-report-for-the-board-of-directors-2024-final-approved-v3.txt",
    "minutes-of-the-extraordinary-general-meeting-held-in-the-main-auditorium.txt",
    "short.txt",
]


@pytest.fixture
def long_import(tmp_path: Path) -> tuple[KnowledgeBase, Path]:
    folder = tmp_path / "very" / "deeply" / "nested" / "department" / "archive" / "2024"
    (folder / "sub-folder-with-a-long-name").mkdir(parents=True)
    for name in LONG_NAMES:
        (folder / name).write_text(f"notes: {name}", encoding="utf-8")
    (folder / "sub-folder-with-a-long-name" / LONG_NAMES[0]).write_text("a copy with changes")
    (folder / "picture-that-is-not-supported-at-all.xyz").write_bytes(b"\x00\x01")
    kb = KnowledgeBase.open(tmp_path / "v.kvdb")
    return kb, folder


def test_import_report_keeps_file_names_readable(qtbot, long_import) -> None:  # type: ignore[no-untyped-def]
    kb, folder = long_import
    try:
        report = kb.import_paths([folder])
    finally:
        kb.close()
    dialog = ImportReportDialog(report)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    tree = dialog.tree
    # Paths are shown under the folder they share, named once above the table.
    assert dialog.folder == str(folder)
    assert dialog.folder_label.isVisible() and str(folder) in dialog.folder_label.text()
    rows = dialog.rows()
    assert len(rows) == tree.topLevelItemCount() == 5
    metrics = tree.fontMetrics()
    for i, (_result, path, _detail) in enumerate(rows):
        item = tree.topLevelItem(i)
        assert Path(path).is_absolute() and Path(path).exists()
        assert item.toolTip(1) == path  # the full path, always
        assert item.text(1) == str(Path(path).relative_to(folder))
    assert tree.textElideMode() == Qt.TextElideMode.ElideMiddle
    longest = max(metrics.horizontalAdvance(name) for name in LONG_NAMES)
    for width in (820, 480):
        dialog.resize(width, 400)
        qtbot.wait(20)
        file_w = tree.columnWidth(1)
        assert file_w >= longest, (width, file_w, longest)  # every file name fits
        result_w, details_w = tree.columnWidth(0), tree.columnWidth(2)
        assert result_w >= max(metrics.horizontalAdvance(r[0]) for r in rows)
        assert details_w <= 320
    # Narrow: the table scrolls sideways instead of cutting names off.
    assert tree.horizontalScrollBar().maximum() > 0
    dialog.resize(1400, 400)
    qtbot.wait(20)
    # Wide: the File column stretches into the room, no scrolling.
    assert tree.horizontalScrollBar().maximum() == 0
    assert sum(tree.columnWidth(c) for c in range(3)) >= tree.viewport().width() - 2


def test_typed_type_is_the_type_filter(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    bar = window.filter_bar
    window.search_edit.setText("invoice type:pdf")
    assert bar.type.currentData() == "pdf" and bar.type_from_box
    assert window.compose_query() == "invoice type:pdf"  # counted once
    # Choosing another type rewrites the box: still one filter, and the box says which.
    bar.type.setCurrentIndex(bar.type.findData("csv"))
    assert window.search_edit.text() == "invoice type:csv"
    assert window.compose_query() == "invoice type:csv"
    outcome = search(qtbot, window, window.search_edit.text())
    assert outcome.query == "invoice type:csv"
    assert outcome.result.hits and {h.media_type for h in outcome.result.hits} == {"text/csv"}
    # 'Any type' takes the typed filter out of the box.
    bar.type.setCurrentIndex(0)
    assert window.search_edit.text() == "invoice"
    assert window.compose_query() == "invoice"
    # Without a typed type, the filter alone holds it, and the box is left alone.
    bar.type.setCurrentIndex(bar.type.findData("markdown"))
    assert window.search_edit.text() == "invoice" and not bar.type_from_box
    assert window.compose_query() == "invoice type:markdown"
    # Typing one replaces the chosen one (box wins), synonyms included; no double filter.
    window.search_edit.setText("invoice TYPE:txt")
    assert bar.type.currentData() == "text"
    assert window.compose_query() == "invoice TYPE:txt"
    # A type the filter has no entry for (or several) is shown as typed.
    window.search_edit.setText("invoice type:xlsx type:pdf")
    assert bar.type.currentText() == "type: xlsx, pdf" and bar.type.count() == len(TYPES) + 1
    assert window.compose_query() == "invoice type:xlsx type:pdf"
    # Erasing the typed type erases it from the filter too.
    window.search_edit.setText("invoice")
    assert bar.type.currentIndex() == 0 and bar.type.count() == len(TYPES)
    assert window.compose_query() == "invoice"
    # Clear filters clears a typed type as well; -type:pdf is a word, not a filter.
    window.search_edit.setText("type:csv hotel -type:pdf")
    bar.reset()
    assert window.search_edit.text() == "hotel -type:pdf"
    assert bar.type.currentIndex() == 0


@pytest.mark.parametrize("width", [1300, 1100])
def test_compare_keeps_the_viewer_readable(qtbot, window: MainWindow, width: int) -> None:  # type: ignore[no-untyped-def]
    window.resize(width, 800)
    search(qtbot, window, "LED supplier delay")
    qtbot.wait(20)
    results_before = window.splitter.sizes()[0]
    window.select_rows([0, 1])
    qtbot.wait(50)
    results, viewer, explain = window.splitter.sizes()
    assert viewer >= VIEWER_MIN_WIDTH and window.viewer.width() >= VIEWER_MIN_WIDTH
    assert results <= results_before  # the room came from the results list first
    views = window.explain.visible_views()
    assert len(views) == 2
    for view in views:
        assert view.width() >= COMPARE_COLUMN_MIN  # never squeezed below a readable column
    needs_scroll = 2 * COMPARE_COLUMN_MIN > window.explain.scroll_area.viewport().width()
    assert (window.explain.scroll_area.horizontalScrollBar().maximum() > 0) == needs_scroll
    # Back to one result: one explanation, no sideways scrolling.
    window.select_rows([0])
    qtbot.wait(50)
    assert window.explain.scroll_area.horizontalScrollBar().maximum() == 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_eta_text() -> None:
    assert eta_text(None) == ""
    assert eta_text(20) == "less than a minute left"
    assert eta_text(600) == "about 10 min left"
    assert eta_text(5400) == "about 1 h 30 min left"
    assert eta_text(47 * 60) == "about 47 min left"


def test_progress_shows_time_left_from_the_measured_rate(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    task = Task("dense keys", lambda report, cancel: None, window, clock=clock)
    window._track(task, "Dense keys")
    task.report(Progress("dense keys", 0, 610))
    assert window.progress_label.text() == "Dense keys"  # no rate measured yet: no guess
    clock.now += 10
    task.report(Progress("dense keys", 10, 610, "/some/where/chapter-5-network-setup.html"))
    assert window.progress_label.isVisible()
    assert window.progress_label.text() == (
        "Dense keys · about 10 min left · chapter-5-network-setup.html"
    )
    tip = window.progress.toolTip()
    assert "10 of 610 · about 10 min left" in tip and "chapter-5-network-setup.html" in tip
    clock.now += 30
    task.report(Progress("dense keys", 40, 610))  # slower (1/s): the estimate follows, smoothly
    assert task.rate == pytest.approx(1.0)
    assert "about 10 min left" in window.progress_label.text()
    clock.now += 60
    task.report(Progress("dense keys", 70, 610))  # 0.5/s for a minute
    assert task.rate == pytest.approx(0.85)
    assert "about 11 min left" in window.progress_label.text()
    clock.now += 1
    task.report(Progress("dense keys", 610, 610))
    assert "left" not in window.progress_label.text()


def test_pause_stops_between_batches_and_resume_completes(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "notes"
    docs.mkdir()
    for i in range(150):
        (docs / f"note-{i:03d}.txt").write_text(
            f"Note {i}: the weekly stand-up discussed shipment {i * 7} and lamp order {i}. " * 4,
            encoding="utf-8",
        )
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        assert len(kb.import_paths([docs]).imported) == 150
    window = make_window(qtbot, tmp_path / "v.kvdb")
    try:
        session = window.session
        assert not session.kb.dense_status().ready and not window.pause_button.isVisible()
        clock = FakeClock()

        def ticking() -> float:  # a second per reading: no progress report is throttled away
            clock.now += 1.0
            return clock.now

        session.runner.clock = ticking
        task = window.build_dense()
        assert window.pause_button.isVisible() and window.pause_button.text() == "Pause"
        # Asked on the GUI thread, as the button does: the build stops at a batch boundary.
        assert session.pause_dense()
        qtbot.waitUntil(lambda: session.dense_paused and task.done, timeout=120_000)
        status = session.kb.dense_status()
        stopped_at = status.keyed_values
        assert stopped_at % 32 == 0 and stopped_at < status.total_values == 150
        assert session.dense_paused
        qtbot.waitUntil(
            lambda: window.pause_button.text() == "Resume"
            and window.pause_button.isVisible()
            and not window.progress.isVisible(),
            timeout=5000,
        )
        qtbot.waitUntil(lambda: "(paused)" in window.keys_label.text(), timeout=5000)
        assert window.pause_action.text() == "&Resume meaning keys"

        qtbot.mouseClick(window.pause_button, Qt.MouseButton.LeftButton)
        resumed = window.last_dense_task
        assert resumed is not None and resumed is not task and not session.dense_paused
        totals: list[int] = []
        resumed.progressed.connect(lambda p: totals.append(p.total))
        qtbot.waitUntil(lambda: resumed.done, timeout=120_000)
        qtbot.wait(50)  # the last queued progress reports
        assert set(totals) <= {150 - stopped_at}  # only what was missing: nothing built twice
        assert session.kb.dense_status().ready
        qtbot.waitUntil(lambda: "meaning ✓" in window.keys_label.text(), timeout=10_000)
        qtbot.waitUntil(lambda: not window.pause_button.isVisible(), timeout=5000)
    finally:
        close_window(window)
