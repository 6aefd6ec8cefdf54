"""The document viewer: extracted text with the matches highlighted, images, 'Open original'."""

from __future__ import annotations

import mimetypes
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QPixmap, QTextCharFormat, QTextCursor
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
from kvdesk.core.vault import ValueRecord
from kvdesk.ui.style import HIGHLIGHT, MUTED, PASSAGE_HIGHLIGHT, type_badge
from kvdesk.ui.tags import TagEditor

MAX_HIGHLIGHTS = 500


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
        self.title = QLabel("No document selected")
        self.title.setStyleSheet("font-size: 13pt; font-weight: 600;")
        self.title.setWordWrap(True)
        head.addWidget(self.badge)
        head.addWidget(self.title, 1)
        self.open_button = QPushButton("Open original")
        self.open_button.setToolTip(
            "Export the stored original to a private temporary file and"
            " open it with the system application (Ctrl+Enter)"
        )
        self.open_button.clicked.connect(self.open_original)
        self.open_button.setEnabled(False)
        head.addWidget(self.open_button)
        lay.addLayout(head)
        self.meta = QLabel()
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
        self.image_view = QLabel()
        self.image_view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        image_scroll = QScrollArea()
        image_scroll.setWidgetResizable(True)
        image_scroll.setWidget(self.image_view)
        self.stack.addWidget(self.text_view)
        self.stack.addWidget(image_scroll)
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
                self.image_view.setPixmap(pixmap)
                self.stack.setCurrentIndex(1)
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
        """Mark every occurrence of the query's words; returns how many were marked."""
        doc = self.text_view.document()
        fmt = QTextCharFormat()
        fmt.setBackground(HIGHLIGHT)
        selections: list[QTextEdit.ExtraSelection] = []
        first: QTextCursor | None = None
        for term in sorted(
            {t.strip('"').strip() for t in terms if t.strip('"').strip()}, key=len, reverse=True
        ):
            cursor = QTextCursor(doc)
            while len(selections) < MAX_HIGHLIGHTS:
                cursor = doc.find(term, cursor)
                if cursor.isNull():
                    break
                sel = QTextEdit.ExtraSelection()
                sel.cursor = cursor  # type: ignore[misc]
                sel.format = fmt  # type: ignore[misc]
                selections.append(sel)
                if first is None or cursor.position() < first.position():
                    first = QTextCursor(cursor)
        self._term_selections = selections
        self._apply_selections()
        if first is not None:
            self.text_view.setTextCursor(first)
            self.text_view.ensureCursorVisible()
            cursor = self.text_view.textCursor()
            cursor.clearSelection()
            self.text_view.setTextCursor(cursor)
        return len(selections)

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


__all__ = ["DocumentViewer", "utf16_offset"]
