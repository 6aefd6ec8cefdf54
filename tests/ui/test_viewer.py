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


def test_a_title_made_of_markup_is_shown_as_text(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A document's title is data: it is never rendered as HTML (nor loads a local image)."""
    from kvdesk.core.knowledge_base import KnowledgeBase

    from .conftest import close_window, make_window

    title = '<h1 style=color:red>BIG</h1><img src="/some/local.png">'
    (tmp_path / "memo.html").write_text(
        f"<html><head><title>{title.replace('<', '&lt;')}</title></head>"
        "<body><p>quarterly marmalade budget</p></body></html>",
        encoding="utf-8",
    )
    path = tmp_path / "v.kvdb"
    with KnowledgeBase.open(path) as kb:
        kb.import_paths([tmp_path / "memo.html"])
        assert kb.values.get("DOC-1").title == title
    window = make_window(qtbot, path)
    try:
        outcome = search(qtbot, window, "marmalade")
        window.show_in_viewer(outcome.result.hits[0])
        assert window.viewer.title.text() == title
        assert window.viewer.title.textFormat() == Qt.TextFormat.PlainText
        views = window.explain.visible_views()
        assert views and views[0].title_label.text() == title
        assert views[0].title_label.textFormat() == Qt.TextFormat.PlainText
    finally:
        close_window(window)
