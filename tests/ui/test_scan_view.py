"""Scans in the app: the page with the matched words boxed, and the explanation listing the
words OCR read (real OCR on rendered scans, read once per module)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QPixmap, QWheelEvent
from PySide6.QtWidgets import QApplication

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.paths import keys_dir_for
from kvdesk.core.scans.store import StoredPage, StoredWord
from kvdesk.ui.main_window import MainWindow
from kvdesk.ui.results import ThumbnailRole
from kvdesk.ui.scan_view import ScanKey, match_words, read_scan
from kvdesk.ui.thumbnails import THUMB_SIZE
from kvdesk.ui.viewer import SCAN_PAGE, TEXT_PAGE

from .conftest import close_window, make_window
from .test_main_window import search

ROOT = Path(__file__).resolve().parents[2]
FONT = ROOT / "kvdesk" / "resources" / "fonts" / "KvdeskNotoSansJP-Subset.otf"
WAIT_MS = 15_000


def _render(lines: list[str], size: tuple[int, int] = (900, 200)) -> Image.Image:
    font = ImageFont.truetype(str(FONT), 30)
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((40, 40 + 70 * i), line, font=font, fill=0)
    return img


@pytest.fixture(scope="module")
def scan_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vault with a one-page PNG scan, a two-page TIFF and an image-only PDF, read by OCR."""
    folder = tmp_path_factory.mktemp("scans")
    inbox = folder / "inbox"
    inbox.mkdir()
    _render(["Invoice INV-2O24-0117", "Toner cartridges for the printer"]).save(
        inbox / "scan0042.png"
    )
    first = _render(["Delivery note for the warehouse"])
    second = _render(["Signature of the driver"])
    first.save(inbox / "delivery.tif", save_all=True, append_images=[second])
    _render(["Statement of account", "Ink for the plotter"]).save(inbox / "statement.pdf")
    path = folder / "scans.kvdb"
    with KnowledgeBase.open(path) as kb:
        report = kb.import_paths([inbox])
        assert not report.failed and len(report.imported) == 3
        assert kb.read_scans() == 3
    return path


@pytest.fixture
def scan_window(qtbot, scan_template: Path, tmp_path: Path) -> Iterator[MainWindow]:  # type: ignore[no-untyped-def]
    path = tmp_path / "vault.kvdb"
    shutil.copy2(scan_template, path)
    if keys_dir_for(scan_template).exists():
        shutil.copytree(keys_dir_for(scan_template), keys_dir_for(path))
    window = make_window(qtbot, path)
    yield window
    close_window(window)


def _select(qtbot, window: MainWindow, query: str, title: str):  # type: ignore[no-untyped-def]
    outcome = search(qtbot, window, query)
    row = next(i for i, h in enumerate(outcome.result.hits) if h.title.startswith(title))
    window.select_rows([row])
    hit = outcome.result.hits[row]
    viewer = window.viewer
    qtbot.waitUntil(
        lambda: viewer.showing_scan() and viewer.scan_view.canvas.has_image(), timeout=WAIT_MS
    )
    return hit


def _yellowish(c: QColor) -> bool:
    return c.red() > 200 and c.green() > 180 and c.blue() < 200


def test_the_page_shows_exactly_the_matched_words_boxed(qtbot, scan_window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    window = scan_window
    hit = _select(qtbot, window, "toner", "scan0042")
    (page,) = window.session.kb.scan_pages(hit.value_id)
    toner = [w for w in page.words if w.text.lower() == "toner"]
    assert len(toner) == 1
    view = window.viewer.scan_view
    canvas = view.canvas
    assert view.page_number == 1 and not view.page_combo.isVisible()  # one page: no selector
    assert [b.getCoords() for b in canvas.boxes] == [tuple(map(float, w.box)) for w in toner]
    # Fitted to the width: the page fills the view, boxes scale with it.
    assert view.fit and canvas.width() <= view.scroll_area.viewport().width()
    assert canvas.width() >= view.scroll_area.viewport().width() - 30
    zoom = canvas.zoom
    assert abs(zoom - canvas.width() / page.width) < 0.01
    (shown,) = canvas.shown_boxes()
    x0, y0, x1, y1 = toner[0].box
    assert abs(shown.left() - x0 * zoom) < 0.5 and abs(shown.bottom() - y1 * zoom) < 0.5
    # The box is drawn as a translucent highlight over the word; the rest stays white.
    qtbot.waitUntil(lambda: canvas.scaled.size() == canvas.size(), timeout=WAIT_MS)
    image = canvas.grab().toImage()
    inside = [
        image.pixelColor(round(shown.left() + dx), round(shown.top() + dy))
        for dx in range(1, int(shown.width()), 3)
        for dy in (1, 2)
    ]
    assert sum(_yellowish(c) for c in inside) > len(inside) / 2
    far = image.pixelColor(canvas.width() - 5, canvas.height() - 5)
    assert far.red() > 240 and far.green() > 240 and far.blue() > 240
    # The explanation lists the word as OCR read it, with its confidence.
    ex = window.explain.visible_views()[0]
    qtbot.waitUntil(lambda: ex.scan_label.isVisibleTo(ex), timeout=WAIT_MS)
    assert ex.scan_label.text() == (
        f"Read on the scan (OCR): Toner (confidence {toner[0].confidence:.0%})"
    )


def test_zoom_with_buttons_and_ctrl_wheel_and_back_to_fit(qtbot, scan_window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    window = scan_window
    _select(qtbot, window, "toner", "scan0042")
    view = window.viewer.scan_view
    canvas = view.canvas
    fit = canvas.zoom
    qtbot.mouseClick(view.zoom_in_button, Qt.MouseButton.LeftButton)
    assert not view.fit and abs(canvas.zoom - fit * 1.25) < 1e-6
    assert view.zoom_label.text() == f"{canvas.zoom:.0%}"
    wide = canvas.width()
    viewport = view.scroll_area.viewport()
    wheel = QWheelEvent(
        QPointF(20, 20),
        QPointF(viewport.mapToGlobal(QPoint(20, 20))),
        QPoint(0, 0),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.ControlModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(viewport, wheel)
    assert abs(canvas.zoom - fit * 1.25**2) < 1e-6 and canvas.width() > wide
    assert [b.width() for b in canvas.shown_boxes()] == [
        b.width() * canvas.zoom for b in canvas.boxes
    ]
    qtbot.mouseClick(view.zoom_out_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(view.zoom_out_button, Qt.MouseButton.LeftButton)
    assert abs(canvas.zoom - fit) < 1e-6
    qtbot.mouseClick(view.zoom_in_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(view.fit_button, Qt.MouseButton.LeftButton)
    assert view.fit and abs(canvas.zoom - fit) < 1e-6


def test_an_identifier_query_boxes_it_and_says_how_it_was_read(
    qtbot, scan_window: MainWindow
) -> None:  # type: ignore[no-untyped-def]
    window = scan_window
    kb = window.session.kb
    first = kb.search("INV-2024-0117", mode="lexical").hits[0]
    (read,) = first.explanation.identifiers.matches  # type: ignore[union-attr]
    stored = read.stored.upper()  # as OCR read it: INV-2024-0117 or INV-2O24-0117
    # Type the number the way OCR did *not* read it, so one character needs correcting.
    query = stored.replace("2024", "2O24") if "2024" in stored else stored.replace("2O24", "2024")
    assert query != stored
    hit = _select(qtbot, window, query, "scan0042")
    (match,) = hit.explanation.identifiers.matches  # type: ignore[union-attr]
    assert match.corrections == 1
    said = match.describe()
    assert said == f"{query}: read in the document as {match.stored}, 1 character corrected"
    (page,) = kb.scan_pages(hit.value_id)
    canvas = window.viewer.scan_view.canvas
    boxed = [w for w in page.words if tuple(map(float, w.box)) in
             [b.getCoords() for b in canvas.boxes]]  # fmt: skip
    assert len(boxed) == len(canvas.boxes)
    assert re.sub(r"[^0-9A-Z]", "", "".join(w.text for w in boxed).upper()) == re.sub(
        r"[^0-9A-Z]", "", match.stored.upper()
    )
    ex = window.explain.visible_views()[0]
    qtbot.waitUntil(lambda: ex.scan_label.isVisibleTo(ex), timeout=WAIT_MS)
    lines = ex.scan_label.text().splitlines()
    assert lines[0].startswith("Read on the scan (OCR): ")
    assert said in lines[1:]


def test_a_multi_page_scan_opens_on_the_page_that_matched(qtbot, scan_window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    window = scan_window
    hit = _select(qtbot, window, "driver", "delivery")
    view = window.viewer.scan_view
    assert view.page_number == 2
    assert view.page_combo.isVisibleTo(view) and view.page_combo.count() == 2
    assert view.page_combo.currentText() == "Page 2 (1 match)"
    pages = window.session.kb.scan_pages(hit.value_id)
    driver = next(w for w in pages[1].words if w.text.lower() == "driver")
    assert [b.getCoords() for b in view.canvas.boxes] == [tuple(map(float, driver.box))]
    view.page_combo.setCurrentIndex(0)  # page 1: nothing matched there
    qtbot.waitUntil(lambda: view.page_number == 1 and view.canvas.has_image(), timeout=WAIT_MS)
    assert view.canvas.boxes == []
    ex = window.explain.visible_views()[0]
    qtbot.waitUntil(lambda: ex.scan_label.isVisibleTo(ex), timeout=WAIT_MS)
    assert ex.scan_label.text().startswith("Read on the scan (OCR): driver (page 2, confidence")


def test_the_text_toggle_shows_what_ocr_read_highlighted(qtbot, scan_window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    window = scan_window
    _select(qtbot, window, "toner", "scan0042")
    viewer = window.viewer
    assert viewer.scan_button.isVisible() and viewer.scan_button.isChecked()
    viewer.scan_button.click()
    assert viewer.stack.currentIndex() == TEXT_PAGE
    assert "Toner cartridges" in viewer.text_view.toPlainText()
    assert [w.lower() for w in viewer.highlighted_words()] == ["toner"]
    viewer.scan_button.click()
    assert viewer.stack.currentIndex() == SCAN_PAGE
    # Back to the same hit: the scan is known, shown at once from what was read before.
    window.select_rows([])
    window.select_rows([0])
    assert viewer.stack.currentIndex() == SCAN_PAGE and viewer.scan_view.canvas.has_image()


def test_a_plain_image_without_ocr_words_stays_a_plain_image(
    qtbot, scan_window: MainWindow, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    window = scan_window
    Image.new("RGB", (600, 400), (37, 99, 235)).save(tmp_path / "floor-plan.png")
    with qtbot.waitSignal(window.importFinished, timeout=30_000):
        window.import_paths([tmp_path / "floor-plan.png"])
    window.report_dialog.close()
    outcome = search(qtbot, window, "floor-plan")
    row = next(i for i, h in enumerate(outcome.result.hits) if h.title.startswith("floor"))
    window.select_rows([row])
    assert window.wait_idle()
    viewer = window.viewer
    assert viewer.stack.currentWidget() is viewer.image_view
    assert not viewer.scan_button.isVisible()
    ex = window.explain.visible_views()[0]
    assert not ex.scan_label.isVisibleTo(ex)


def _page(text: str, words: list[str]) -> StoredPage:
    stored = tuple(StoredWord(w, (10 * i, 0, 10 * i + 8, 10), 0.9) for i, w in enumerate(words))
    return StoredPage(1, 1, 100, 20, text, stored)


def test_match_words_by_stem_by_glued_prefix_and_by_identifier() -> None:
    page = _page(
        "Policies: Tonercartridges, printers. INV-2O24-0117 and the other",
        ["Policies", "Tonercartridges", "printers", "INV-2O24-0117", "and", "the", "other"],
    )
    assert match_words(page, ["policy"]) == (0,)  # by stem, as the text viewer marks
    assert match_words(page, ["toner"]) == (1,)  # glued by OCR: contains the prefix
    assert match_words(page, ["printer"]) == (2,)
    assert match_words(page, ["the"]) == (5,)  # a short word only as a whole word
    assert match_words(page, [], ["INV-2O24-0117"]) == (3,)
    assert match_words(page, [], ["inv 2o24 0117"]) == (3,)  # separators aside
    cjk = _page("請求書 東京", ["請", "求", "書", "東", "京"])
    assert match_words(cjk, ["請求"]) == (0, 1)
    reading = read_scan(ScanKey(1, ("toner",)), [page])
    assert reading.first_page() == 1 and [w.text for _, w in reading.matched_words()] == [
        "Tonercartridges"
    ]


def test_image_hits_get_a_preview_on_their_card(qtbot, scan_window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    window = scan_window
    outcome = search(qtbot, window, "toner")
    row = next(i for i, h in enumerate(outcome.result.hits) if h.title.startswith("scan0042"))
    index = window.model.index(row)
    window.results_view.viewport().grab()  # painting the card asks for the preview
    qtbot.waitUntil(lambda: isinstance(index.data(ThumbnailRole), QPixmap), timeout=WAIT_MS)
    thumb = index.data(ThumbnailRole)
    assert thumb.width() == THUMB_SIZE.width() and abs(thumb.height() - 96 * 200 / 900) <= 1
    # Drawn in the room under the weight: the card keeps its height.
    before = window.results_view.visualRect(index).height()
    assert not window.results_view.viewport().grab().isNull()
    assert window.results_view.visualRect(index).height() == before


def test_a_scanned_pdf_page_is_drawn_as_ocr_saw_it(qtbot, scan_window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    window = scan_window
    hit = _select(qtbot, window, "plotter", "statement")
    assert hit.media_type == "application/pdf"
    (page,) = window.session.kb.scan_pages(hit.value_id)
    canvas = window.viewer.scan_view.canvas
    # Rendered at OCR's dpi: the image has the page's pixels, so the boxes land on the words.
    assert (canvas.image.width(), canvas.image.height()) == (page.width, page.height)
    plotter = next(w for w in page.words if w.text.lower() == "plotter")
    assert [b.getCoords() for b in canvas.boxes] == [tuple(map(float, plotter.box))]
