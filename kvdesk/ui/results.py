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
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QTextDocument
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from kvdesk.core.retrieval import Hit
from kvdesk.ui.style import CHIP_BG, CHIP_FG, HIGHLIGHT, MUTED, SPACE_COLORS, type_badge

HitRole = Qt.ItemDataRole.UserRole + 1
DateRole = Qt.ItemDataRole.UserRole + 2

_Index = QModelIndex | QPersistentModelIndex


class ResultsModel(QAbstractListModel):
    """The hits of the newest search, best first."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._hits: list[Hit] = []
        self._dates: dict[int, str] = {}

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
        return None


_B_OPEN = re.compile(r"<b>", re.IGNORECASE)


def snippet_html(snippet: str) -> str:
    """Core snippets mark matches with <b>; show them as a soft highlight, as in the viewer."""
    marked = _B_OPEN.sub(
        f'<span style="background-color:{HIGHLIGHT.name()}; font-weight:600;">', snippet
    )
    marked = re.sub(r"</b>", "</span>", marked, flags=re.IGNORECASE)
    return marked.replace("\n", " ")


class HitDelegate(QStyledItemDelegate):
    """Draws a hit as a card: type badge, title, date, identifier, tag chips, snippet, weight."""

    PAD = 10
    BADGE_W = 40
    HEIGHT = 104

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        return QSize(0, self.HEIGHT)  # the view's width: never scroll sideways

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
        small = QFont(option.font)
        small.setPointSizeF(max(6.5, option.font.pointSizeF() * 0.75))
        small.setBold(True)
        painter.setFont(small)
        painter.setPen(QColor("white"))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, label)

        # Weight bar under the badge: the hit's share of the retrieval weight.
        bar = QRectF(x0, y0 + 32, self.BADGE_W, 6)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#e5e7eb"))
        painter.drawRoundedRect(bar, 3, 3)
        filled = QRectF(bar.left(), bar.top(), max(2.0, bar.width() * hit.weight), bar.height())
        painter.setBrush(SPACE_COLORS["lexical"].darker(110))
        painter.drawRoundedRect(filled, 3, 3)
        painter.setFont(small)
        painter.setPen(MUTED)
        painter.drawText(
            QRectF(x0 - 4, y0 + 40, self.BADGE_W + 8, 14),
            Qt.AlignmentFlag.AlignCenter,
            f"{hit.weight:.0%}",
        )

        text_x = x0 + self.BADGE_W + pad
        text_w = rect.right() - pad - text_x
        # Title and date.
        title_font = QFont(option.font)
        title_font.setBold(True)
        title_font.setPointSizeF(option.font.pointSizeF() * 1.05)
        base = QFontMetrics(option.font)
        date_w = base.horizontalAdvance(date) + 4
        painter.setFont(option.font)
        painter.setPen(MUTED)
        painter.drawText(
            QRect(rect.right() - pad - date_w, y0, date_w, 20),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            date,
        )
        painter.setFont(title_font)
        painter.setPen(palette.color(QPalette.ColorRole.Text))
        title = QFontMetrics(title_font).elidedText(
            hit.title or hit.identifier, Qt.TextElideMode.ElideRight, text_w - date_w - 8
        )
        painter.drawText(
            QRect(text_x, y0, text_w - date_w, 20),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            title,
        )

        # Identifier, then tag chips.
        y1 = y0 + 22
        painter.setFont(small)
        painter.setPen(MUTED)
        ident = hit.identifier + (f" · {hit.external_id}" if hit.external_id else "")
        ident_w = QFontMetrics(small).horizontalAdvance(ident) + 10
        painter.drawText(
            QRect(text_x, y1, ident_w, 18),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            ident,
        )
        cx = text_x + ident_w
        chip_font = QFont(option.font)
        chip_font.setPointSizeF(max(6.5, option.font.pointSizeF() * 0.8))
        fm = QFontMetrics(chip_font)
        painter.setFont(chip_font)
        for tag in hit.tags:
            w = fm.horizontalAdvance(tag) + 14
            if cx + w > rect.right() - pad:
                break
            chip = QRectF(cx, y1 + 1, w, 16)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(CHIP_BG)
            painter.drawRoundedRect(chip, 8, 8)
            painter.setPen(CHIP_FG)
            painter.drawText(chip, Qt.AlignmentFlag.AlignCenter, tag)
            cx += w + 4

        # Snippet with highlighted matches (two lines, clipped).
        y2 = y1 + 22
        doc = QTextDocument()
        doc.setDefaultFont(option.font)
        doc.setDocumentMargin(0)
        doc.setTextWidth(text_w)
        doc.setHtml(f'<div style="color:#374151">{snippet_html(hit.snippet_html)}</div>')
        clip_h = rect.bottom() - pad - y2
        painter.translate(text_x, y2)
        doc.drawContents(painter, QRectF(0, 0, text_w, clip_h))
        painter.restore()
