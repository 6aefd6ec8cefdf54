"""The document viewer: extracted text with the matches highlighted, images, 'Open original'."""

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
    QVBoxLayout,
    QWidget,
)

from kvdesk.core.errors import KvdeskError
from kvdesk.core.search.highlight import term_spans
from kvdesk.core.vault.records import ValueRecord
from kvdesk.ui.style import HIGHLIGHT, MUTED, PASSAGE_HIGHLIGHT, type_badge
from kvdesk.ui.tags import TagEditor


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
        self.stack.addWidget(self.text_view)
        self.stack.addWidget(self.image_view)
        lay.addWidget(self.stack, 1)

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
        if record.media_type.startswith("image/"):
            pixmap = QPixmap()
            if pixmap.loadFromData(original()):
                self.stack.setCurrentIndex(1)
                self.image_view.set_pixmap(pixmap)
                self.text = text
                return
        self.stack.setCurrentIndex(0)
        if not same or text != self.text:
            self.text = text
            self.text_view.setPlainText(text)
        self._passage_selection = []
        self.highlight_terms(terms)

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
        if not self.text or end <= start or self.stack.currentIndex() != 0:
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
