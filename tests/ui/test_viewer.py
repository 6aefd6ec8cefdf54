"""The viewer: stem-aware highlighting, images fitted to the view."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QImage

from kvdesk.ui.main_window import MainWindow

from .test_main_window import search


def test_viewer_highlights_stems_of_the_query(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    for query, stem in (("policies", "polic"), ("travelling", "travel")):
        outcome = search(qtbot, window, query)
        assert outcome.result.hits
        marked = window.viewer.highlighted_words()
        assert marked, query
        assert all(w.lower().startswith(stem) for w in marked), marked


def test_image_value_is_fitted_and_zooms_on_double_click(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    image = QImage(2400, 1600, QImage.Format.Format_RGB32)
    image.fill(QColor("#2563eb"))
    path = tmp_path / "floor-plan.png"
    assert image.save(str(path))
    with qtbot.waitSignal(window.importFinished, timeout=30_000):
        window.import_paths([path])
    window.report_dialog.close()
    outcome = search(qtbot, window, "floor-plan")
    hit = next(h for h in outcome.result.hits if h.media_type.startswith("image/"))
    window.show_in_viewer(hit)
    viewer = window.viewer
    assert viewer.stack.currentWidget() is viewer.image_view
    qtbot.wait(20)
    view = viewer.image_view
    shown = view.shown_size()
    room = view.viewport().size()
    assert 0 < shown.width() <= room.width() and 0 < shown.height() <= room.height()
    assert abs(shown.width() / shown.height() - 1.5) < 0.02  # aspect kept
    assert not view.horizontalScrollBar().isVisible()
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(5, 5))
    assert not view.fit and view.shown_size().width() == 2400
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(5, 5))
    assert view.fit and view.shown_size() == shown
    # An image has no text passage: the explanation hides the empty "best passage" heading.
    window.select_rows([next(i for i, h in enumerate(window.model.hits()) if h is hit)])
    ex = window.explain.visible_views()[0]
    if ex.hit is not None and (
        ex.hit.explanation.dense is None or not ex.hit.explanation.dense.passage_text
    ):
        assert not ex.passage_heading.isVisibleTo(ex)
