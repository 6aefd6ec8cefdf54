"""Scans and photos as OCR read them: the page image with the matched words boxed.

Everything slow happens on the runner's reader pool: the OCR pages are fetched and matched
against the query there, page images are decoded (PDF pages rendered exactly as OCR saw them)
and scaled down there, as QImages. The GUI thread only turns a finished QImage into a pixmap
and paints it, so a 24-megapixel photo never stalls the window.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QPointF, QRectF, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent, QPen, QPixmap, QWheelEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from kvdesk.core.scans.media import OCR_MEDIA_TYPES
from kvdesk.core.scans.store import StoredPage, StoredWord
from kvdesk.core.search.highlight import term_spans
from kvdesk.core.search.identifiers import IdentifierMatch
from kvdesk.core.search.query import has_cjk
from kvdesk.ui.style import HIGHLIGHT, MUTED
from kvdesk.ui.tasks import Task, TaskRunner

log = logging.getLogger("kvdesk.ui.scan_view")

#: Longest side a page image is kept at for display (a 24 MP photo would cost 72 MB a page).
MAX_IMAGE_SIDE = 2400
#: The dpi OCR renders PDF pages at (ocr_document's default): the boxes are in these pixels.
PDF_DPI = 150
ZOOM_STEP = 1.25
MIN_ZOOM, MAX_ZOOM = 0.1, 4.0
SCALE_DEBOUNCE_MS = 60  # Ctrl+wheel zooms in bursts: one smooth rescale after the burst
IMAGE_CACHE = 6  # page images kept (decoding a page again costs tens of milliseconds)
READING_CACHE = 32
MAX_LISTED_WORDS = 8  # in the explanation's "Read on the scan" line
BOX_EDGE = QColor(217, 119, 6, 170)  # amber, translucent: the box's edge

_SEPARATORS = re.compile(r"[\s\-_./:#]+")
_NOT_ALNUM = re.compile(r"[^\w]+|_")
# Endings taken off a query word before it is looked for inside a scanned word: OCR glues
# words ("Tonercartridges") that the index's stemmer then never sees.
_ENDINGS = ("ies", "ing", "es", "ed", "s")
MIN_PREFIX = 4  # shorter prefixes ("art", "the") would box half a page


def is_scan_type(media_type: str) -> bool:
    """Media types OCR reads (images and PDFs): only these can have scan pages."""
    return media_type in OCR_MEDIA_TYPES


# -- matching --------------------------------------------------------------------------------


def word_spans(page: StoredPage) -> list[tuple[int, int] | None]:
    """Where each OCR word is in the page's text (both are in reading order), or None."""
    text, pos = page.text, 0
    out: list[tuple[int, int] | None] = []
    for word in page.words:
        at = text.find(word.text, pos) if word.text else -1
        if at < 0:
            out.append(None)
            continue
        out.append((at, at + len(word.text)))
        pos = at + len(word.text)
    return out


def _prefix(term: str) -> str:
    """A query word's stem-ish prefix ("printers" → "printer"), lowercased, letters only."""
    word = _NOT_ALNUM.sub("", term.lower())
    for ending in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= MIN_PREFIX:
            return word[: -len(ending)]
    return word


def _identifier_pattern(stored: str) -> re.Pattern[str] | None:
    """The stored identifier with any separators (or none) between its characters."""
    chars = _SEPARATORS.sub("", stored)
    if not chars:
        return None
    return re.compile(r"[\s\-_./:#]*".join(re.escape(c) for c in chars), re.IGNORECASE)


def match_words(
    page: StoredPage, terms: Sequence[str], identifiers: Iterable[str] = ()
) -> tuple[int, ...]:
    """Indices of the page's words that match the query.

    A word matches when it holds a query word as the text viewer marks it (by stem, CJK
    literally), when its lowercased letters contain a query word's stem-ish prefix (OCR glues
    words), or when it is part of an identifier as the document holds it (``stored``).
    """
    spans = word_spans(page)
    marked = list(term_spans(page.text, terms)) if terms else []
    for stored in identifiers:
        pattern = _identifier_pattern(stored)
        if pattern is not None:
            marked.extend(m.span() for m in pattern.finditer(page.text))
    prefixes = {
        p
        for t in terms
        for w in t.strip('"').split()
        if not has_cjk(w) and len(p := _prefix(w)) >= MIN_PREFIX
    }
    out = []
    for i, (word, span) in enumerate(zip(page.words, spans, strict=True)):
        if span is not None and any(a < span[1] and span[0] < b for a, b in marked):
            out.append(i)
            continue
        plain = _NOT_ALNUM.sub("", word.text.lower())
        if plain and any(p in plain for p in prefixes):
            out.append(i)
    return tuple(out)


@dataclass(frozen=True)
class ScanKey:
    """What a reading answers: a value, the query's words, the identifiers the hit matched."""

    value_id: int
    terms: tuple[str, ...]
    identifiers: tuple[IdentifierMatch, ...] = ()


@dataclass(frozen=True)
class ScanReading:
    """A value's OCR pages and, per page, which of their words match the query."""

    key: ScanKey
    pages: tuple[StoredPage, ...]
    matches: dict[int, tuple[int, ...]] = field(default_factory=dict)

    @property
    def value_id(self) -> int:
        return self.key.value_id

    def page(self, number: int) -> StoredPage | None:
        return next((p for p in self.pages if p.page == number), None)

    def matched(self, number: int) -> list[StoredWord]:
        page = self.page(number)
        if page is None:
            return []
        return [page.words[i] for i in self.matches.get(number, ())]

    def matched_words(self) -> list[tuple[int, StoredWord]]:
        """(page number, word) of every match, in page and reading order."""
        return [(p.page, w) for p in self.pages for w in self.matched(p.page)]

    def first_page(self) -> int:
        """The first page with a match (the first page when none has one)."""
        for p in self.pages:
            if self.matches.get(p.page):
                return p.page
        return self.pages[0].page if self.pages else 1

    def describe(self) -> str:
        """The explanation's line: the words read on the scan, with OCR's confidence, and the
        identifiers as the document holds them (plain text)."""
        words = self.matched_words()
        multi = len(self.pages) > 1
        listed = [
            f"{w.text} ({f'page {n}, ' if multi else ''}confidence {w.confidence:.0%})"
            for n, w in words[:MAX_LISTED_WORDS]
        ]
        if len(words) > MAX_LISTED_WORDS:
            listed.append(f"and {len(words) - MAX_LISTED_WORDS} more")
        line = "Read on the scan (OCR): " + (
            ", ".join(listed) if listed else "none of the query's words"
        )
        said = [m.describe() for m in self.key.identifiers]
        return "\n".join([line, *said])


def read_scan(key: ScanKey, pages: Sequence[StoredPage]) -> ScanReading:
    """Match a value's OCR pages against the query (worker thread)."""
    stored = [m.stored for m in key.identifiers]
    matches = {p.page: match_words(p, key.terms, stored) for p in pages}
    return ScanReading(key, tuple(pages), {n: m for n, m in matches.items() if m})


# -- page images -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanSource:
    """Where one value's scan comes from; the callables run on a worker thread."""

    value_id: int
    version: int
    media_type: str
    original: Callable[[], bytes]


def page_image(data: bytes, media_type: str, number: int, max_side: int = MAX_IMAGE_SIDE) -> QImage:
    """Page ``number`` as the image OCR read (EXIF orientation applied; PDF pages rendered at
    OCR's dpi), reduced to ``max_side``. Runs on a worker thread: QImage, never QPixmap."""
    from PIL import Image, ImageOps

    from kvdesk.core.extract.ocr import pages_of

    images = pages_of(data, media_type, max_pages=1, dpi=PDF_DPI, pages=[number])
    try:
        img = next(images)
    finally:
        images.close()
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - broken EXIF: OCR read the pixels as stored too
        pass
    if img.mode in ("RGBA", "LA", "PA", "P"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    img = img.convert("RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    width, height = img.size
    data = img.tobytes()
    return QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


@dataclass(frozen=True)
class _PageImage:
    request: int
    key: tuple[int, int, int]  # value id, version, page
    image: QImage | None
    error: str = ""


@dataclass(frozen=True)
class _Scaled:
    request: int
    size: QSize
    image: QImage


def _run(runner: TaskRunner | None, name: str, fn: Callable[[], Any]) -> Task | None:
    """Run ``fn`` on the reader pool (None without a runner: the caller runs it itself)."""
    if runner is None:
        return None
    return runner.read(name, lambda report, cancel: fn())


# -- readings, shared by the viewer and the explanation ---------------------------------------


class ScanReadings(QObject):
    """OCR pages matched against a query, read off the GUI thread and kept for a while.

    Signals:
        ready(ScanReading): a reading requested earlier is here (also one without pages: the
            value is not a scan, or not read yet).
    """

    ready = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner: TaskRunner | None = None
        self._pages: Callable[[int], list[StoredPage]] | None = None
        self._cache: OrderedDict[ScanKey, ScanReading] = OrderedDict()
        self._pending: set[ScanKey] = set()
        self._generation = 0

    def attach(self, runner: TaskRunner, pages: Callable[[int], list[StoredPage]]) -> None:
        """Read from another vault: what was cached or is on its way is forgotten."""
        self.runner = runner
        self._pages = pages
        self._generation += 1
        self._cache.clear()
        self._pending.clear()

    def request(self, key: ScanKey) -> ScanReading | None:
        """The reading at once when it is cached; else None, and ``ready`` brings it."""
        reading = self._cache.get(key)
        if reading is not None:
            self._cache.move_to_end(key)
            return reading
        if key in self._pending or self._pages is None:
            return None
        pages, generation = self._pages, self._generation

        def read() -> tuple[int, ScanReading]:
            try:
                return generation, read_scan(key, pages(key.value_id))
            except Exception as exc:  # noqa: BLE001 - shown as "not a scan", never a crash
                log.warning("could not read the OCR pages of value %s: %s", key.value_id, exc)
                return generation, ScanReading(key, ())

        task = _run(self.runner, f"scan {key.value_id}", read)
        if task is None:
            return self._store(read()[1])
        self._pending.add(key)
        task.succeeded.connect(self._on_read)
        return None

    @Slot(object)
    def _on_read(self, result: object) -> None:
        if not isinstance(result, tuple) or result[0] != self._generation:
            return  # read from a vault that is closed now
        reading = result[1]
        self._pending.discard(reading.key)
        self._store(reading)
        self.ready.emit(reading)

    def _store(self, reading: ScanReading) -> ScanReading:
        if reading.pages:  # a value not read yet is asked again: OCR may finish meanwhile
            self._cache[reading.key] = reading
            while len(self._cache) > READING_CACHE:
                self._cache.popitem(last=False)
        return reading


# -- widgets ---------------------------------------------------------------------------------


class PageCanvas(QWidget):
    """One page drawn at the view's zoom, with the matched words boxed.

    ``zoom`` is display pixels per page pixel (the pixels OCR's boxes are in). A smooth copy
    at the current size is made off the GUI thread; until it comes, the page image is drawn
    scaled on the fly (fast, slightly rough).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image = QImage()  # the page as decoded (what smooth copies are made from)
        self.source = QPixmap()
        self.scaled = QPixmap()
        self.page_size = QSize()
        self.boxes: list[QRectF] = []  # in page pixels
        self.zoom = 1.0
        self.message = ""
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)

    def has_image(self) -> bool:
        return not self.source.isNull()

    def set_page(self, image: QImage, page_size: QSize, boxes: list[QRectF]) -> None:
        self.image = image
        self.source = QPixmap.fromImage(image)
        self.scaled = QPixmap()
        self.page_size = page_size
        self.boxes = boxes
        self.message = ""
        self._resize()

    def clear(self, message: str = "") -> None:
        self.image = QImage()
        self.source = self.scaled = QPixmap()
        self.boxes = []
        self.message = message
        self.update()

    def set_zoom(self, zoom: float) -> None:
        self.zoom = zoom
        self._resize()

    def display_size(self) -> QSize:
        if self.page_size.isEmpty():
            return QSize(0, 0)
        return QSize(
            max(1, round(self.page_size.width() * self.zoom)),
            max(1, round(self.page_size.height() * self.zoom)),
        )

    def _resize(self) -> None:
        size = self.display_size()
        self.resize(size if not size.isEmpty() else QSize(1, 1))
        self.update()

    def shown_boxes(self) -> list[QRectF]:
        """The boxes as drawn, in this widget's coordinates."""
        z = self.zoom
        return [QRectF(b.x() * z, b.y() * z, b.width() * z, b.height() * z) for b in self.boxes]

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        if self.source.isNull():
            if self.message:
                painter.setPen(MUTED)
                painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.message)
            painter.end()
            return
        target = QRectF(0, 0, self.width(), self.height())
        if self.scaled.size() == self.size():
            painter.drawPixmap(0, 0, self.scaled)
        else:
            enlarged = self.width() > self.source.width()
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, enlarged)
            painter.drawPixmap(target, self.source, QRectF(self.source.rect()))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        boxes = [box.adjusted(-2, -2, 2, 2) for box in self.shown_boxes()]
        # Multiplied like a highlighter pen: the paper turns the text highlight's colour and
        # the ink stays as dark as it was.
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Multiply)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(HIGHLIGHT)
        for box in boxes:
            painter.drawRoundedRect(box, 3, 3)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
        painter.setPen(QPen(BOX_EDGE, 1.5))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for box in boxes:
            painter.drawRoundedRect(box, 3, 3)
        painter.end()


class _ZoomScroll(QScrollArea):
    """A scroll area whose Ctrl+wheel zooms instead of scrolling."""

    zoomed = Signal(int)  # wheel steps: positive zooms in

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            steps = event.angleDelta().y() // 120 or (1 if event.angleDelta().y() > 0 else -1)
            if event.angleDelta().y():
                self.zoomed.emit(steps)
            event.accept()
            return
        super().wheelEvent(event)


class ScanView(QWidget):
    """A scan's pages with the matched words boxed: a page selector, zoom (fit width by
    default; Ctrl+wheel or −/+), and the first matching page opened first.

    Signals:
        pageShown(int): a page's image is on screen (its number).
    """

    pageShown = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner: TaskRunner | None = None
        self.reading: ScanReading | None = None
        self.source: ScanSource | None = None
        self.page_number = 0
        self.fit = True
        self._request = 0
        self._images: OrderedDict[tuple[int, int, int], QImage] = OrderedDict()

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        bar = QHBoxLayout()
        bar.setSpacing(4)
        self.page_combo = QComboBox()
        self.page_combo.setToolTip("Pages OCR read; the count says how many words matched")
        self.page_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.page_combo.currentIndexChanged.connect(self._on_page_chosen)
        self.caption = QLabel()
        self.caption.setTextFormat(Qt.TextFormat.PlainText)
        self.caption.setStyleSheet(f"color: {MUTED.name()};")
        # The caption gives way (clipped) before the page selector or the zoom buttons do.
        self.caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.zoom_out_button = QToolButton()
        self.zoom_out_button.setText("−")
        self.zoom_out_button.setToolTip("Zoom out (Ctrl+wheel)")
        self.zoom_out_button.clicked.connect(self.zoom_out)
        self.zoom_label = QLabel("100%")
        self.zoom_label.setMinimumWidth(40)
        self.zoom_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.zoom_in_button = QToolButton()
        self.zoom_in_button.setText("+")
        self.zoom_in_button.setToolTip("Zoom in (Ctrl+wheel)")
        self.zoom_in_button.clicked.connect(self.zoom_in)
        self.fit_button = QToolButton()
        self.fit_button.setText("Fit width")
        self.fit_button.setCheckable(True)
        self.fit_button.setChecked(True)
        self.fit_button.setToolTip("Fit the page to the view's width")
        self.fit_button.clicked.connect(self.fit_width)
        bar.addWidget(self.page_combo)
        bar.addWidget(self.caption, 1)
        for w in (self.zoom_out_button, self.zoom_label, self.zoom_in_button, self.fit_button):
            bar.addWidget(w)
        lay.addLayout(bar)
        self.scroll_area = _ZoomScroll()
        self.scroll_area.setWidgetResizable(False)
        self.scroll_area.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.scroll_area.zoomed.connect(self._on_wheel_zoom)
        self.canvas = PageCanvas()
        self.scroll_area.setWidget(self.canvas)
        lay.addWidget(self.scroll_area, 1)

        self._scale_timer = QTimer(self)
        self._scale_timer.setSingleShot(True)
        self._scale_timer.setInterval(SCALE_DEBOUNCE_MS)
        self._scale_timer.timeout.connect(self._request_scaled)

    # -- content --------------------------------------------------------------------------

    def clear(self) -> None:
        self._request += 1  # whatever is on its way is stale
        self.reading = None
        self.source = None
        self.page_number = 0
        self.page_combo.blockSignals(True)
        self.page_combo.clear()
        self.page_combo.blockSignals(False)
        self.caption.clear()
        self.canvas.clear()

    def showing(self, key: ScanKey, version: int) -> bool:
        return (
            self.reading is not None
            and self.reading.key == key
            and self.source is not None
            and self.source.version == version
        )

    def show_reading(self, reading: ScanReading, source: ScanSource) -> None:
        """Show a scan, opened on its first page with a match, fitted to the width."""
        self.clear()
        self.reading = reading
        self.source = source
        self.fit = True
        self.fit_button.setChecked(True)
        self.page_combo.blockSignals(True)
        for page in reading.pages:
            n = len(reading.matches.get(page.page, ()))
            label = f"Page {page.page}" + (f" ({n} match{'es' if n != 1 else ''})" if n else "")
            self.page_combo.addItem(label, page.page)
        self.page_combo.blockSignals(False)
        self.page_combo.setVisible(len(reading.pages) > 1)
        self.set_page(reading.first_page())

    def set_page(self, number: int) -> None:
        reading, source = self.reading, self.source
        if reading is None or source is None:
            return
        page = reading.page(number)
        if page is None:
            return
        self.page_number = number
        index = self.page_combo.findData(number)
        if index >= 0 and index != self.page_combo.currentIndex():
            self.page_combo.blockSignals(True)
            self.page_combo.setCurrentIndex(index)
            self.page_combo.blockSignals(False)
        n = len(reading.matched(number))
        self.caption.setText(f"{n} matching word{'s' if n != 1 else ''} boxed")
        self.caption.setToolTip(
            f"Page {number}; OCR read {len(reading.pages)} page"
            f"{'s' if len(reading.pages) != 1 else ''} of this document"
        )
        self._request += 1
        key = (source.value_id, source.version, number)
        image = self._images.get(key)
        if image is not None:
            self._images.move_to_end(key)
            self._show_image(image)
            return
        self.canvas.clear("Loading the page…")
        request, original, media_type = self._request, source.original, source.media_type

        def load() -> _PageImage:
            try:
                return _PageImage(request, key, page_image(original(), media_type, number))
            except Exception as exc:  # noqa: BLE001 - a damaged original: say so on the page
                return _PageImage(request, key, None, str(exc) or type(exc).__name__)

        task = _run(self.runner, "scan page", load)
        if task is None:
            self._on_image(load())
            return
        task.succeeded.connect(self._on_image)

    @Slot(object)
    def _on_image(self, result: object) -> None:
        if not isinstance(result, _PageImage):
            return
        if result.image is None:
            if result.request == self._request:
                self.canvas.clear(f"The page cannot be shown: {result.error}")
            return
        self._images[result.key] = result.image
        while len(self._images) > IMAGE_CACHE:
            self._images.popitem(last=False)
        if result.request == self._request:
            self._show_image(result.image)

    def _show_image(self, image: QImage) -> None:
        reading = self.reading
        page = reading.page(self.page_number) if reading is not None else None
        if page is None:
            return
        size = QSize(page.width, page.height)
        if size.isEmpty():  # not expected from OCR; the image's own pixels then
            size = image.size()
        boxes = [
            QRectF(QPointF(w.box[0], w.box[1]), QPointF(w.box[2], w.box[3]))
            for w in reading.matched(self.page_number)  # type: ignore[union-attr]
        ]
        self.canvas.set_page(image, size, boxes)
        self._apply_zoom()
        self._scroll_to_first_box()
        self.pageShown.emit(self.page_number)

    def _scroll_to_first_box(self) -> None:
        boxes = self.canvas.shown_boxes()
        if boxes:
            first = boxes[0]
            self.scroll_area.ensureVisible(
                round(first.center().x()), round(first.center().y()), 40, 80
            )
        else:
            self.scroll_area.verticalScrollBar().setValue(0)

    @Slot(int)
    def _on_page_chosen(self, index: int) -> None:
        number = self.page_combo.itemData(index)
        if isinstance(number, int):
            self.set_page(number)

    # -- zoom -----------------------------------------------------------------------------

    def fit_zoom(self) -> float:
        """The zoom at which the page fills the view's width (and the scroll bar its page
        then needs, if any, still fits beside it)."""
        page = self.canvas.page_size
        if page.isEmpty():
            return 1.0
        frame = 2 * self.scroll_area.frameWidth()
        room_w, room_h = self.scroll_area.width() - frame, self.scroll_area.height() - frame
        zoom = room_w / page.width()
        if page.height() * zoom > room_h:
            bar = self.scroll_area.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
            zoom = (room_w - bar) / page.width()
        return max(MIN_ZOOM, min(MAX_ZOOM, zoom))

    def set_zoom(self, zoom: float) -> None:
        """Zoom to ``zoom`` display pixels per page pixel (leaves fit-width mode)."""
        self.fit = False
        self.fit_button.setChecked(False)
        self._apply_zoom(max(MIN_ZOOM, min(MAX_ZOOM, zoom)))

    @Slot()
    def zoom_in(self) -> None:
        self.set_zoom(self.canvas.zoom * ZOOM_STEP)

    @Slot()
    def zoom_out(self) -> None:
        self.set_zoom(self.canvas.zoom / ZOOM_STEP)

    @Slot()
    def fit_width(self) -> None:
        self.fit = True
        self.fit_button.setChecked(True)
        self._apply_zoom()

    @Slot(int)
    def _on_wheel_zoom(self, steps: int) -> None:
        self.set_zoom(self.canvas.zoom * ZOOM_STEP**steps)

    def _apply_zoom(self, zoom: float | None = None) -> None:
        self.scroll_area.setHorizontalScrollBarPolicy(
            Qt.ScrollBarPolicy.ScrollBarAlwaysOff
            if self.fit
            else Qt.ScrollBarPolicy.ScrollBarAsNeeded
        )
        if zoom is None:
            zoom = self.fit_zoom() if self.fit else self.canvas.zoom
        self.canvas.set_zoom(zoom)
        self.zoom_label.setText(f"{zoom:.0%}")
        self.zoom_out_button.setEnabled(zoom > MIN_ZOOM + 1e-6)
        self.zoom_in_button.setEnabled(zoom < MAX_ZOOM - 1e-6)
        if self.canvas.has_image():
            self._scale_timer.start()

    def _request_scaled(self) -> None:
        """A smooth copy of the page at the zoom shown, made on a worker (shrinking only:
        an enlarged page is drawn from the image itself, only where it is exposed)."""
        image, size, request = self.canvas.image, self.canvas.display_size(), self._request
        if image.isNull() or size.isEmpty() or size.width() >= image.width():
            return

        def scale() -> _Scaled:
            return _Scaled(
                request,
                size,
                image.scaled(
                    size,
                    Qt.AspectRatioMode.IgnoreAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                ),
            )

        task = _run(self.runner, "scale page", scale)
        if task is None:
            self._on_scaled(scale())
            return
        task.succeeded.connect(self._on_scaled)

    @Slot(object)
    def _on_scaled(self, result: object) -> None:
        if (
            isinstance(result, _Scaled)
            and result.request == self._request
            and result.size == self.canvas.display_size()
        ):
            self.canvas.scaled = QPixmap.fromImage(result.image)
            self.canvas.update()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.fit and self.canvas.has_image():
            self._apply_zoom()


__all__ = [
    "PageCanvas",
    "ScanKey",
    "ScanReading",
    "ScanReadings",
    "ScanSource",
    "ScanView",
    "is_scan_type",
    "match_words",
    "page_image",
    "read_scan",
]
