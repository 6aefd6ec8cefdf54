"""The document viewer: extracted text with the matches highlighted, images, scans with the
matched words boxed, 'Open original'."""

from __future__ import annotations

import mimetypes
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import (
    QDesktopServices,
    QMouseEvent,
    QPixmap,
    QResizeEvent,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QTextBrowser,
    QTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from kvdesk.core.errors import KvdeskError
from kvdesk.core.search.highlight import term_spans
from kvdesk.core.vault.records import ValueRecord
from kvdesk.ui.scan_view import ScanKey, ScanReading, ScanSource, ScanView
from kvdesk.ui.style import HIGHLIGHT, MUTED, PASSAGE_HIGHLIGHT, type_badge
from kvdesk.ui.tags import TagEditor
from kvdesk.ui.tasks import TaskRunner

TEXT_PAGE, IMAGE_PAGE, SCAN_PAGE = 0, 1, 2


class ImageView(QScrollArea):
    """An image fitted to the view (aspect kept, never enlarged); double-click: 100% ↔ fit."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setToolTip("Double-click: actual size / fit to view")
        self.setWidgetResizable(True)
        self.setWidget(self.label)
        self._pixmap = QPixmap()
        self.fit = True

    def set_pixmap(self, pixmap: QPixmap) -> None:
        self._pixmap = pixmap
        self.set_fit(True)

    def clear(self) -> None:
        self._pixmap = QPixmap()
        self.label.clear()

    def pixmap(self) -> QPixmap:
        return self._pixmap

    def shown_size(self) -> QSize:
        return self.label.pixmap().size() if not self.label.pixmap().isNull() else QSize()

    def set_fit(self, fit: bool) -> None:
        self.fit = fit
        policy = (
            Qt.ScrollBarPolicy.ScrollBarAlwaysOff if fit else Qt.ScrollBarPolicy.ScrollBarAsNeeded
        )
        self.setHorizontalScrollBarPolicy(policy)
        self.setVerticalScrollBarPolicy(policy)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap.isNull():
            self.label.clear()
            return
        if not self.fit:
            self.label.setPixmap(self._pixmap)
            return
        room = self.viewport().size()
        if self._pixmap.width() <= room.width() and self._pixmap.height() <= room.height():
            self.label.setPixmap(self._pixmap)
            return
        scaled = self._pixmap.scaled(
            room.expandedTo(QSize(1, 1)),
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        self.label.setPixmap(scaled)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.fit:
            self._rescale()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.set_fit(not self.fit)
        event.accept()


def utf16_offset(text: str, index: int) -> int:
    """Qt counts positions in UTF-16 units; Python in code points (they differ past U+FFFF)."""
    return len(text[:index].encode("utf-16-le")) // 2


class DocumentViewer(QWidget):
    """Shows one value.

    Signals:
        openFailed(str): exporting or opening the original failed.
    """

    openFailed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.record: ValueRecord | None = None
        self.text = ""
        self.original: Callable[[], bytes] | None = None
        # Injected in tests so nothing is launched; the default asks the desktop to open it.
        self.opener: Callable[[QUrl], bool] = QDesktopServices.openUrl
        self.exported: list[Path] = []
        self._export_dir: Path | None = None
        self._term_selections: list[QTextEdit.ExtraSelection] = []
        self._passage_selection: list[QTextEdit.ExtraSelection] = []
        self._terms: list[str] = []
        self._own_text = ""  # the value's text, before what OCR read is added
        self._scan_wanted: tuple[ScanKey, ScanSource] | None = None
        self._is_scan = False
        # value id → version known to have OCR pages: its image is decoded once, off the GUI
        # thread, for the scan view, not a second time here.
        self._known_scans: dict[int, int] = {}

        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.setSpacing(6)
        head = QHBoxLayout()
        self.badge = QLabel()
        self.badge.setTextFormat(Qt.TextFormat.PlainText)  # data, never markup
        self.title = QLabel("No document selected")
        self.title.setTextFormat(Qt.TextFormat.PlainText)  # data, never markup
        self.title.setStyleSheet("font-size: 13pt; font-weight: 600;")
        self.title.setWordWrap(True)
        head.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignTop)
        head.addWidget(self.title, 1)
        self.scan_button = QToolButton()
        self.scan_button.setText("Scan")
        self.scan_button.setCheckable(True)
        self.scan_button.setChecked(True)
        self.scan_button.setToolTip(
            "On: the scanned page, with the words that matched boxed."
            " Off: the text, with what OCR read on the scan"
        )
        self.scan_button.setVisible(False)
        self.scan_button.toggled.connect(self._on_scan_toggled)
        head.addWidget(self.scan_button, 0, Qt.AlignmentFlag.AlignTop)
        self.open_button = QPushButton("Open original")
        self.open_button.setToolTip(
            "Export the stored original to a private temporary file and"
            " open it with the system application (Ctrl+Enter)"
        )
        self.open_button.clicked.connect(self.open_original)
        self.open_button.setEnabled(False)
        head.addWidget(self.open_button, 0, Qt.AlignmentFlag.AlignTop)
        lay.addLayout(head)
        self.meta = QLabel()
        self.meta.setTextFormat(Qt.TextFormat.PlainText)  # data, never markup
        self.meta.setStyleSheet(f"color: {MUTED.name()};")
        self.meta.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.meta.setWordWrap(True)  # a long source path must not widen the window
        self.meta.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        lay.addWidget(self.meta)
        self.tag_editor = TagEditor()
        self.tag_editor.setEnabled(False)
        lay.addWidget(self.tag_editor)

        self.stack = QStackedWidget()
        self.text_view = QTextBrowser()
        self.text_view.setOpenLinks(False)
        self.text_view.setLineWrapMode(QTextEdit.LineWrapMode.WidgetWidth)
        self.text_view.setStyleSheet("QTextBrowser { padding: 6px; }")
        self.image_view = ImageView()
        self.scan_view = ScanView()
        self.scan_view.pageShown.connect(self._on_scan_page_shown)
        self.stack.addWidget(self.text_view)
        self.stack.addWidget(self.image_view)
        self.stack.addWidget(self.scan_view)
        lay.addWidget(self.stack, 1)

    def set_runner(self, runner: TaskRunner | None) -> None:
        """Where scan pages are decoded (the session's reader pool); a new session is another
        vault, whose value ids mean other documents."""
        self.scan_view.runner = runner
        self._known_scans.clear()

    # -- showing --------------------------------------------------------------------------------

    def clear(self) -> None:
        self.record = None
        self.text = ""
        self.original = None
        self.title.setText("No document selected")
        self.badge.clear()
        self.meta.clear()
        self.text_view.clear()
        self.image_view.clear()
        self._forget_scan()
        self.scan_view.clear()
        self.stack.setCurrentIndex(TEXT_PAGE)
        self.open_button.setEnabled(False)
        self.tag_editor.set_tags([])
        self.tag_editor.setEnabled(False)

    def show_value(
        self,
        record: ValueRecord,
        text: str,
        original: Callable[[], bytes],
        terms: Iterable[str] = (),
    ) -> None:
        same = self.record is not None and self.record.id == record.id
        self.record = record
        self.original = original
        label, colour = type_badge(record.media_type)
        self.badge.setText(label)
        self.badge.setStyleSheet(
            f"background: {colour.name()}; color: white; border-radius: 4px; padding: 2px 6px;"
            " font-weight: 600; font-size: 8pt;"
        )
        self.title.setText(record.title or record.identifier)
        source = record.source_path or "(no source file)"
        missing = " — source file is gone" if record.source_missing else ""
        self.meta.setText(
            f"{record.identifier} · {record.media_type} · {_size(record.size)} · "
            f"version {record.version} · {source}{missing}"
        )
        self.open_button.setEnabled(True)
        self.tag_editor.set_tags(record.tags)
        self.tag_editor.setEnabled(True)
        self._terms = list(terms)
        self._own_text = text
        self._forget_scan()
        if self.scan_view.source is not None and self.scan_view.source.value_id != record.id:
            self.scan_view.clear()
        known_scan = self._known_scans.get(record.id) == record.version
        if record.media_type.startswith("image/") and not known_scan:
            pixmap = QPixmap()
            if pixmap.loadFromData(original()):
                self.stack.setCurrentIndex(IMAGE_PAGE)
                self.image_view.set_pixmap(pixmap)
                self.text = text
                return
        self._set_text(text, force=not same)
        if known_scan and self.scan_button.isChecked():
            # Its page comes with show_scan (at once when it is cached).
            self.stack.setCurrentIndex(SCAN_PAGE)
        else:
            self.stack.setCurrentIndex(TEXT_PAGE)

    def _set_text(self, text: str, force: bool = False) -> None:
        if force or text != self.text:
            self.text = text
            self.text_view.setPlainText(text)
        self._passage_selection = []
        self.highlight_terms(self._terms)

    # -- scans ----------------------------------------------------------------------------------

    def _forget_scan(self) -> None:
        self._scan_wanted = None
        self._is_scan = False
        self.scan_button.setVisible(False)

    def show_scan(
        self, source: ScanSource, key: ScanKey, reading: ScanReading | None = None
    ) -> None:
        """The value on screen (just given to show_value) may be a scan: show its pages with
        the matches boxed once its reading is here (``reading`` now, or show_reading later)."""
        if self.record is None or self.record.id != source.value_id:
            return
        self._scan_wanted = (key, source)
        if reading is not None:
            self.show_reading(reading)

    def show_reading(self, reading: ScanReading) -> bool:
        """Show a scan's reading if it is the one the value on screen waits for."""
        wanted = self._scan_wanted
        if wanted is None or reading.key != wanted[0] or self.record is None:
            return False
        key, source = wanted
        if not any(p.words for p in reading.pages):
            # Not a scan (or a photo without a word on it): the plain view stays.
            if self._known_scans.pop(source.value_id, None) is not None:
                self._show_plain_after_all()
            return False
        self._known_scans[source.value_id] = source.version
        self._is_scan = True
        self.scan_button.setVisible(True)
        if not self.scan_view.showing(key, source.version):
            self.scan_view.show_reading(reading, source)
        elif self.scan_button.isChecked() and self.scan_view.canvas.has_image():
            self.stack.setCurrentIndex(SCAN_PAGE)
        self._set_text(_with_ocr(self._own_text, reading))
        if not self.scan_button.isChecked():
            self.stack.setCurrentIndex(TEXT_PAGE)
        return True

    def _show_plain_after_all(self) -> None:
        """A value thought to be a scan is not (any more): show it as show_value would."""
        record, original = self.record, self.original
        if record is None or original is None:
            return
        self.scan_view.clear()
        pixmap = QPixmap()
        if record.media_type.startswith("image/") and pixmap.loadFromData(original()):
            self.image_view.set_pixmap(pixmap)
            self.stack.setCurrentIndex(IMAGE_PAGE)
        else:
            self.stack.setCurrentIndex(TEXT_PAGE)

    def _on_scan_page_shown(self, _page: int) -> None:
        if self._is_scan and self.scan_button.isChecked():
            self.stack.setCurrentIndex(SCAN_PAGE)

    def _on_scan_toggled(self, on: bool) -> None:
        if not self._is_scan:
            return
        self.stack.setCurrentIndex(SCAN_PAGE if on else TEXT_PAGE)

    def showing_scan(self) -> bool:
        return self.stack.currentIndex() == SCAN_PAGE

    def set_tags(self, tags: tuple[str, ...]) -> None:
        self.tag_editor.set_tags(tags)

    def highlight_terms(self, terms: Iterable[str]) -> int:
        """Mark every word that matched the query (by stem); returns how many were marked."""
        doc = self.text_view.document()
        fmt = QTextCharFormat()
        fmt.setBackground(HIGHLIGHT)
        spans = term_spans(self.text, terms)
        wide = any(ord(c) > 0xFFFF for c in self.text)
        selections: list[QTextEdit.ExtraSelection] = []
        for start, end in spans:
            cursor = QTextCursor(doc)
            a, b = (
                (utf16_offset(self.text, start), utf16_offset(self.text, end))
                if wide
                else (
                    start,
                    end,
                )
            )
            cursor.setPosition(a)
            cursor.setPosition(b, QTextCursor.MoveMode.KeepAnchor)
            sel = QTextEdit.ExtraSelection()
            sel.cursor = cursor  # type: ignore[misc]
            sel.format = fmt  # type: ignore[misc]
            selections.append(sel)
        self._term_selections = selections
        self._apply_selections()
        if selections:
            first = QTextCursor(selections[0].cursor)
            self.text_view.setTextCursor(first)
            self.text_view.ensureCursorVisible()
            cursor = self.text_view.textCursor()
            cursor.clearSelection()
            self.text_view.setTextCursor(cursor)
        return len(selections)

    def highlighted_words(self) -> list[str]:
        """The marked words, in text order (tests)."""
        return [s.cursor.selectedText() for s in self._term_selections]

    def highlight_passage(self, start: int, end: int) -> bool:
        """Mark the best passage (character offsets into the value's text) and scroll to it."""
        if self._is_scan and self.stack.currentIndex() == SCAN_PAGE and self.text:
            self.scan_button.setChecked(False)  # the passage is in the text, with what OCR read
        if not self.text or end <= start or self.stack.currentIndex() != TEXT_PAGE:
            return False
        fmt = QTextCharFormat()
        fmt.setBackground(PASSAGE_HIGHLIGHT)
        cursor = QTextCursor(self.text_view.document())
        cursor.setPosition(utf16_offset(self.text, start))
        cursor.setPosition(
            utf16_offset(self.text, min(end, len(self.text))), QTextCursor.MoveMode.KeepAnchor
        )
        sel = QTextEdit.ExtraSelection()
        sel.cursor = cursor  # type: ignore[misc]
        sel.format = fmt  # type: ignore[misc]
        self._passage_selection = [sel]
        self._apply_selections()
        view_cursor = QTextCursor(self.text_view.document())
        view_cursor.setPosition(cursor.selectionEnd())
        self.text_view.setTextCursor(view_cursor)
        view_cursor.setPosition(cursor.selectionStart())
        self.text_view.setTextCursor(view_cursor)
        self.text_view.ensureCursorVisible()
        return True

    def passage_highlight(self) -> tuple[int, int] | None:
        """The highlighted passage as (start, end) UTF-16 positions, or None."""
        if not self._passage_selection:
            return None
        c = self._passage_selection[0].cursor
        return c.selectionStart(), c.selectionEnd()

    def _apply_selections(self) -> None:
        self.text_view.setExtraSelections(self._passage_selection + self._term_selections)

    # -- open original --------------------------------------------------------------------------

    def export_original(self) -> Path:
        """Write the original bytes to a private (0600) file in a private (0700) folder."""
        if self.record is None or self.original is None:
            raise KvdeskError("no document is selected")
        if self._export_dir is None or not self._export_dir.exists():
            self._export_dir = Path(tempfile.mkdtemp(prefix="kvdesk-open-"))
        suffix = _suffix(self.record)
        stem = re.sub(r"[^\w.-]+", "_", self.record.title or self.record.identifier)[:60]
        stem = stem.strip("._") or self.record.identifier
        fd, name = tempfile.mkstemp(prefix=f"{stem}-", suffix=suffix, dir=self._export_dir)
        try:
            os.fchmod(fd, 0o600) if hasattr(os, "fchmod") else None
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.original())
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        path = Path(name)
        self.exported.append(path)
        return path

    def open_original(self) -> Path | None:
        try:
            path = self.export_original()
        except (OSError, KvdeskError) as exc:
            self.openFailed.emit(f"Could not export the original: {exc}")
            return None
        if not self.opener(QUrl.fromLocalFile(str(path))):
            self.openFailed.emit(f"No application could open {path.name} (saved at {path})")
        return path

    def cleanup(self) -> None:
        """Remove exported copies (on quit): they are private, but no need to keep them."""
        for path in self.exported:
            path.unlink(missing_ok=True)
        if self._export_dir is not None:
            try:
                self._export_dir.rmdir()
            except OSError:
                pass
        self.exported = []


def _with_ocr(text: str, reading: ScanReading) -> str:
    """The value's text followed by what OCR read, page after page: the text its keys (and
    so the best passage's offsets) are made from."""
    read = "\n\n".join(p.text for p in reading.pages)
    if not read.strip():
        return text
    return f"{text}\n\n{read}" if text.strip() else read


def _suffix(record: ValueRecord) -> str:
    if record.source_path:
        ext = Path(record.source_path).suffix
        if ext:
            return ext
    return mimetypes.guess_extension(record.media_type) or ".bin"


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n}"


__all__ = ["DocumentViewer", "ImageView", "utf16_offset"]
