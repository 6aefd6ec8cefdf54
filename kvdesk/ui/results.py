"""The results list: a model over the hits of one search and a delegate that draws each card."""

from __future__ import annotations

import re
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QRectF,
    QSize,
    Qt,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QPainter,
    QPalette,
    QPixmap,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from kvdesk.core.search.retrieval import Hit
from kvdesk.ui.style import CHIP_BG, CHIP_FG, HIGHLIGHT, MUTED, SPACE_COLORS, type_badge
from kvdesk.ui.thumbnails import Thumbnails

HitRole = Qt.ItemDataRole.UserRole + 1
DateRole = Qt.ItemDataRole.UserRole + 2
ThumbnailRole = Qt.ItemDataRole.UserRole + 3  # a QPixmap preview of an image hit, or None

_Index = QModelIndex | QPersistentModelIndex


class ResultsModel(QAbstractListModel):
    """The hits of the newest search, best first."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._hits: list[Hit] = []
        self._dates: dict[int, str] = {}
        self.thumbnails: Thumbnails | None = None  # previews of image hits (set by the window)

    def set_thumbnails(self, thumbnails: Thumbnails) -> None:
        self.thumbnails = thumbnails
        thumbnails.ready.connect(self._on_thumbnail)

    def _on_thumbnail(self, value_id: int) -> None:
        for row, hit in enumerate(self._hits):
            if hit.value_id == value_id:
                idx = self.index(row)
                self.dataChanged.emit(idx, idx, [ThumbnailRole])

    def set_hits(self, hits: tuple[Hit, ...] | list[Hit], dates: dict[int, str]) -> None:
        self.beginResetModel()
        self._hits = list(hits)
        self._dates = dict(dates)
        self.endResetModel()

    def replace_tags(self, value_id: int, tags: tuple[str, ...]) -> None:
        """Show a tag edit in the list at once (the next search brings the new scores)."""
        from dataclasses import replace

        for row, hit in enumerate(self._hits):
            if hit.value_id == value_id:
                self._hits[row] = replace(hit, tags=tags)
                idx = self.index(row)
                self.dataChanged.emit(idx, idx)

    def hits(self) -> list[Hit]:
        return list(self._hits)

    def hit(self, row: int) -> Hit | None:
        return self._hits[row] if 0 <= row < len(self._hits) else None

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._hits)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._hits):
            return None
        hit = self._hits[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return hit.title or hit.identifier
        if role == Qt.ItemDataRole.ToolTipRole:
            parts = ", ".join(f"{k} {v:.3f}" for k, v in hit.explanation.contributions().items())
            return f"{hit.identifier} · score {hit.score:.3f} ({parts}) · weight {hit.weight:.1%}"
        if role == HitRole:
            return hit
        if role == DateRole:
            return self._dates.get(hit.value_id, hit.updated_at[:10])
        if role == ThumbnailRole and self.thumbnails is not None:
            return self.thumbnails.get(hit.value_id, hit.updated_at, hit.media_type)
        return None


_B_OPEN = re.compile(r"<b>", re.IGNORECASE)


def snippet_html(snippet: str) -> str:
    """Core snippets mark matches with <b>; show them as a soft highlight, as in the viewer."""
    marked = _B_OPEN.sub(
        f'<span style="background-color:{HIGHLIGHT.name()}; font-weight:600;">', snippet
    )
    marked = re.sub(r"</b>", "</span>", marked, flags=re.IGNORECASE)
    return marked.replace("\n", " ")


def weight_text(weight: float) -> str:
    """The retrieval weight as a percentage that never reads 0% for a hit that has some."""
    if weight <= 0:
        return "0%"
    if weight < 0.001:
        return "<0.1%"
    if weight < 0.1:
        return f"{weight:.1%}"
    return f"{weight:.0%}"


def elide_lines(doc: QTextDocument, max_lines: int) -> bool:
    """Cut a laid-out rich text document to ``max_lines`` whole lines, ending in "…".

    Returns whether anything was cut. The text keeps its formatting (highlights).
    """
    doc.size()  # lay it out
    block = doc.firstBlock()
    lines = 0
    while block.isValid():
        layout = block.layout()
        if lines + layout.lineCount() > max_lines:
            line = layout.lineAt(max_lines - lines - 1)
            end = block.position() + line.textStart() + line.textLength()
            cursor = QTextCursor(doc)
            cursor.setPosition(end)
            cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
            cursor.insertText("…", QTextCharFormat())
            for _ in range(200):  # drop characters until the "…" fits on the last line
                doc.size()
                if _line_count(doc) <= max_lines:
                    break
                cursor.movePosition(QTextCursor.MoveOperation.End)
                cursor.movePosition(QTextCursor.MoveOperation.Left)
                cursor.deletePreviousChar()
            return True
        lines += layout.lineCount()
        block = block.next()
    return False


def _line_count(doc: QTextDocument) -> int:
    count, block = 0, doc.firstBlock()
    while block.isValid():
        count += block.layout().lineCount()
        block = block.next()
    return count


class HitDelegate(QStyledItemDelegate):
    """Draws a hit as a card: type badge, title, date, identifier, tag chips, snippet, weight.

    Every height comes from the font metrics, so a larger font (or a CJK fallback with a
    taller line) never cuts the snippet: it shows ``SNIPPET_LINES`` whole lines, elided.
    """

    PAD = 10
    BADGE_W = 40
    SNIPPET_LINES = 3

    @staticmethod
    def _fonts(option: QStyleOptionViewItem) -> tuple[QFont, QFont, QFont]:
        title_font = QFont(option.font)
        title_font.setBold(True)
        title_font.setPointSizeF(option.font.pointSizeF() * 1.05)
        small = QFont(option.font)
        small.setPointSizeF(max(6.5, option.font.pointSizeF() * 0.75))
        small.setBold(True)
        chip_font = QFont(option.font)
        chip_font.setPointSizeF(max(6.5, option.font.pointSizeF() * 0.8))
        return title_font, small, chip_font

    def _rows(self, option: QStyleOptionViewItem) -> tuple[int, int, int]:
        """Heights of the title row, the identifier/tags row and the snippet."""
        title_font, small, chip_font = self._fonts(option)
        title_h = QFontMetrics(title_font).height() + 4
        ident_h = max(QFontMetrics(small).height(), QFontMetrics(chip_font).height() + 4) + 4
        snippet_h = text_line_height(option.font) * self.SNIPPET_LINES + 2
        return title_h, ident_h, snippet_h

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        title_h, ident_h, snippet_h = self._rows(option)
        left = 40 + QFontMetrics(self._fonts(option)[1]).height() + 4
        height = max(title_h + ident_h + snippet_h, left) + 2 * self.PAD
        return QSize(0, height)  # the view's width: never scroll sideways

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        hit = index.data(HitRole)
        if not isinstance(hit, Hit):
            return
        date = str(index.data(DateRole) or "")
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = option.rect
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(rect, palette.color(QPalette.ColorRole.Highlight).lighter(185))
            painter.fillRect(
                QRect(rect.left(), rect.top(), 3, rect.height()),
                palette.color(QPalette.ColorRole.Highlight),
            )
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.fillRect(rect, palette.color(QPalette.ColorRole.AlternateBase))
        painter.setPen(QColor("#e5e7eb"))
        painter.drawLine(rect.bottomLeft(), rect.bottomRight())

        pad = self.PAD
        x0 = rect.left() + pad
        y0 = rect.top() + pad
        # Type badge (the type icon).
        label, colour = type_badge(hit.media_type)
        badge = QRectF(x0, y0 + 2, self.BADGE_W, 22)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawRoundedRect(badge, 4, 4)
        small = self._fonts(option)[1]
        painter.setFont(small)
        painter.setPen(QColor("white"))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, label)

        # Weight bar under the badge: the hit's share of the retrieval weight (never invisible).
        bar = QRectF(x0, y0 + 32, self.BADGE_W, 6)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#e5e7eb"))
        painter.drawRoundedRect(bar, 3, 3)
        if hit.weight > 0:
            fill_w = min(bar.width(), max(6.0, bar.width() * hit.weight))
            painter.setBrush(SPACE_COLORS["lexical"].darker(110))
            painter.drawRoundedRect(QRectF(bar.left(), bar.top(), fill_w, bar.height()), 3, 3)
        painter.setFont(small)
        painter.setPen(MUTED)
        painter.drawText(
            QRectF(x0 - 6, y0 + 40, self.BADGE_W + 12, QFontMetrics(small).height() + 2),
            Qt.AlignmentFlag.AlignCenter,
            weight_text(hit.weight),
        )
        # A scan's or photo's preview, in the room left under the weight (if any).
        thumb = index.data(ThumbnailRole)
        top = y0 + 44 + QFontMetrics(small).height()
        room = QRectF(x0, top, self.BADGE_W, rect.bottom() - pad - top)
        if isinstance(thumb, QPixmap) and not thumb.isNull() and room.height() >= 16:
            size = thumb.size().scaled(room.size().toSize(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRectF(
                room.left() + (room.width() - size.width()) / 2,
                room.top(),
                size.width(),
                size.height(),
            )
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawPixmap(target, thumb, QRectF(thumb.rect()))
            painter.setPen(QColor("#d1d5db"))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(target)

        text_x = x0 + self.BADGE_W + pad
        text_w = rect.right() - pad - text_x
        # Title and date.
        title_font, _small, chip_font = self._fonts(option)
        title_h, ident_h, snippet_h = self._rows(option)
        base = QFontMetrics(option.font)
        date_w = base.horizontalAdvance(date) + 4
        painter.setFont(option.font)
        painter.setPen(MUTED)
        painter.drawText(
            QRect(rect.right() - pad - date_w, y0, date_w, title_h),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            date,
        )
        painter.setFont(title_font)
        painter.setPen(palette.color(QPalette.ColorRole.Text))
        title = QFontMetrics(title_font).elidedText(
            hit.title or hit.identifier, Qt.TextElideMode.ElideRight, text_w - date_w - 8
        )
        painter.drawText(
            QRect(text_x, y0, text_w - date_w, title_h),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            title,
        )

        # Identifier, then tag chips.
        y1 = y0 + title_h
        painter.setFont(small)
        painter.setPen(MUTED)
        ident = hit.identifier + (f" · {hit.external_id}" if hit.external_id else "")
        ident = QFontMetrics(small).elidedText(ident, Qt.TextElideMode.ElideMiddle, text_w)
        ident_w = QFontMetrics(small).horizontalAdvance(ident) + 10
        painter.drawText(
            QRect(text_x, y1, ident_w, ident_h),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            ident,
        )
        cx = text_x + ident_w
        fm = QFontMetrics(chip_font)
        chip_h = fm.height() + 4
        painter.setFont(chip_font)
        for tag in hit.tags:
            w = fm.horizontalAdvance(tag) + 14
            if cx + w > rect.right() - pad:
                break
            chip = QRectF(cx, y1 + (ident_h - chip_h) / 2, w, chip_h)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(CHIP_BG)
            painter.drawRoundedRect(chip, chip_h / 2, chip_h / 2)
            painter.setPen(CHIP_FG)
            painter.drawText(chip, Qt.AlignmentFlag.AlignCenter, tag)
            cx += w + 4

        # Snippet with highlighted matches: whole lines, the last one elided.
        y2 = y1 + ident_h
        doc = snippet_document(hit.snippet_html, option.font, text_w, self.SNIPPET_LINES)
        painter.translate(text_x, y2)
        doc.drawContents(painter, QRectF(0, 0, text_w, snippet_h))
        painter.restore()


_LINE_HEIGHTS: dict[tuple[str, tuple[str, ...]], float] = {}


def text_line_height(font: QFont) -> int:
    """One laid-out line of mixed Latin and Japanese text (a CJK fallback font can be taller).

    Cached by the font's key *and* its fallback families: the key names the first family
    only, so a height measured before the app font got its CJK fallback was reused after."""
    key = (font.key(), tuple(font.families()))
    if key not in _LINE_HEIGHTS:
        doc = QTextDocument()
        doc.setDefaultFont(font)
        doc.setDocumentMargin(0)
        doc.setPlainText("Agy 東京の会議")
        _LINE_HEIGHTS[key] = max(float(QFontMetrics(font).lineSpacing()), doc.size().height())
    return int(_LINE_HEIGHTS[key] + 0.999)


def snippet_document(snippet: str, font: QFont, width: float, lines: int) -> QTextDocument:
    """The snippet as a document ``width`` wide, cut to ``lines`` whole lines."""
    doc = QTextDocument()
    doc.setDefaultFont(font)
    doc.setDocumentMargin(0)
    doc.setTextWidth(max(20.0, width))
    doc.setHtml(f'<div style="color:#374151">{snippet_html(snippet)}</div>')
    elide_lines(doc, lines)
    return doc
