"""'Why this result': each key space's contribution as a stacked bar, and the keys behind it.

Two selected hits are shown side by side on the same scale, so a user sees why one outranked
the other. The numbers in the legend are the ones the bar is drawn from, and they add up to the
score shown in the header (tests read them back from the labels).
"""

from __future__ import annotations

import html

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from kvdesk.core.search.retrieval import Hit
from kvdesk.core.search.terms import group_terms
from kvdesk.ui.scan_view import ScanKey, ScanReading
from kvdesk.ui.style import CHIP_BG, CHIP_FG, MUTED, SPACE_COLORS, SPACE_LABELS

SPACES = ("identifiers", "lexical", "dense", "tags", "learned")
# Learned keys (searches that found a value before, kvdesk.core.keys.learned): their own share.
COLORS = {**SPACE_COLORS, "learned": QColor("#e11d48")}
LABELS = {**SPACE_LABELS, "learned": "Learned (past searches)"}
# Two explanations compared side by side keep at least this width each; when the panel is
# narrower, it scrolls sideways rather than squeezing them (or the document viewer).
COMPARE_COLUMN_MIN = 300
MAX_TERM_ROWS = 8  # matched-word rows shown; the best passage must stay in view


def fmt(value: float) -> str:
    """The precision used everywhere a contribution is shown."""
    return f"{value:.3f}"


class StackedBar(QWidget):
    """Horizontal bar: one segment per key space, lengths proportional to their scores."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.segments: list[tuple[str, float]] = []
        self.scale = 1.0
        self.setMinimumHeight(22)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(240, 22)

    def set_segments(self, segments: list[tuple[str, float]], scale: float) -> None:
        self.segments = segments
        self.scale = max(scale, 1e-9)
        tips = [f"{LABELS[s]}: {fmt(v)}" for s, v in segments]
        self.setToolTip("\n".join(tips))
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect()).adjusted(0.5, 2.5, -0.5, -2.5)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#eef0f3"))
        painter.drawRoundedRect(r, 4, 4)
        x = r.left()
        painter.setClipRect(r)
        for space, value in self.segments:
            if value <= 0:
                continue
            w = r.width() * value / self.scale
            painter.setBrush(COLORS[space])
            painter.drawRect(QRectF(x, r.top(), w, r.height()))
            x += w
        painter.end()


class _Passage(QLabel):
    """The best-matching passage; a click asks the viewer to highlight it."""

    clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setStyleSheet(
            "QLabel { background: #f5f0ff; border: 1px solid #e3d5fb; border-radius: 6px;"
            " padding: 6px; color: #3b0764; } QLabel:hover { border-color: #a855f7; }"
        )
        self.setToolTip("Click to highlight this passage in the viewer")

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mouseReleaseEvent(event)


class HitExplanationView(QFrame):
    """One hit's explanation.

    Signals:
        passageClicked(int, int, int): value id, start and end (character offsets) of the
            best passage.
    """

    passageClicked = Signal(int, int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hit: Hit | None = None
        self.scan_key: ScanKey | None = None  # the scan reading this hit waits for
        self.setObjectName("hitExplanation")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#hitExplanation { background: palette(base); border-radius: 8px; }")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 10, 12, 10)
        lay.setSpacing(6)
        self.rank_label = QLabel()
        self.rank_label.setTextFormat(Qt.TextFormat.PlainText)  # data, never markup
        self.rank_label.setStyleSheet(f"color: {MUTED.name()};")
        self.rank_label.setWordWrap(True)
        self.title_label = QLabel()
        self.title_label.setTextFormat(Qt.TextFormat.PlainText)  # data, never markup
        self.title_label.setWordWrap(True)
        self.title_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.title_label.setStyleSheet("font-weight: 600; font-size: 11pt;")
        self.score_label = QLabel()
        self.score_label.setObjectName("score")
        lay.addWidget(self.rank_label)
        lay.addWidget(self.title_label)
        lay.addWidget(self.score_label)
        self.bar = StackedBar()
        lay.addWidget(self.bar)
        self.legend: dict[str, QLabel] = {}
        for space in SPACES:
            label = QLabel()
            label.setObjectName(f"contrib_{space}")
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setWordWrap(True)
            self.legend[space] = label
            lay.addWidget(label)

        self.terms_heading = self._heading("Matched words")
        lay.addWidget(self.terms_heading)
        self.terms = QTableWidget(0, 4)
        self.terms.setHorizontalHeaderLabels(["Word", "Where", "BM25", "Adds"])
        self.terms.verticalHeader().setVisible(False)
        self.terms.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.terms.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.terms.setShowGrid(False)
        self.terms.setAlternatingRowColors(True)
        header = self.terms.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.terms.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.terms.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.terms.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.terms.setMinimumWidth(120)
        lay.addWidget(self.terms)
        # A scan's matched words as OCR read them (and how sure it was), and identifiers as
        # the scan holds them: filled in when the OCR pages have been read (off the GUI).
        self.scan_label = QLabel()
        self.scan_label.setObjectName("scanWords")
        self.scan_label.setTextFormat(Qt.TextFormat.PlainText)  # OCR output is data
        self.scan_label.setWordWrap(True)
        self.scan_label.setStyleSheet(
            "#scanWords { background: #fffbeb; border: 1px solid #fde68a; border-radius: 6px;"
            " padding: 4px 6px; color: #78350f; }"
        )
        self.scan_label.setVisible(False)
        lay.addWidget(self.scan_label)

        self.passage_heading = self._heading("Best passage")
        lay.addWidget(self.passage_heading)
        self.passage = _Passage()
        self.passage.clicked.connect(self._emit_passage)
        lay.addWidget(self.passage)

        self.tags_heading = self._heading("Matched tags")
        lay.addWidget(self.tags_heading)
        self.tags_label = QLabel()
        self.tags_label.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.tags_label)
        lay.addStretch(1)
        for label in self.findChildren(QLabel):
            # Two explanations must fit side by side: labels clip or wrap, never widen us.
            label.setSizePolicy(QSizePolicy.Policy.Ignored, label.sizePolicy().verticalPolicy())

    @staticmethod
    def _heading(text: str) -> QLabel:
        label = QLabel(text.upper())
        label.setWordWrap(True)  # a long heading wraps in a narrow (compare) column
        label.setStyleSheet(
            f"color: {MUTED.name()}; font-size: 8pt; font-weight: 600; letter-spacing: 1px;"
            " margin-top: 6px;"
        )
        return label

    def _emit_passage(self) -> None:
        hit = self.hit
        if hit is not None and hit.explanation.dense is not None:
            d = hit.explanation.dense
            self.passageClicked.emit(hit.value_id, d.start, d.end)

    def show_scan(self, reading: ScanReading | None) -> None:
        """The "Read on the scan (OCR)" line (hidden for None or a value without OCR words)."""
        if reading is None or not any(p.words for p in reading.pages):
            self.scan_label.clear()
            self.scan_label.setVisible(False)
            return
        self.scan_label.setText(reading.describe())
        self.scan_label.setVisible(True)

    def show_hit(self, hit: Hit, rank: int, scale: float) -> None:
        self.hit = hit
        self.scan_key = None
        self.show_scan(None)
        exp = hit.explanation
        parts = exp.contributions()
        self.rank_label.setText(f"#{rank} · {hit.identifier}")
        self.title_label.setText(hit.title or hit.identifier)
        self.score_label.setText(
            f"Score <b>{fmt(hit.score)}</b> &nbsp;·&nbsp; weight {hit.weight:.1%}"
        )
        self.bar.set_segments([(s, parts[s]) for s in SPACES if s in parts], scale)
        for space, label in self.legend.items():
            if space not in parts or (space == "lexical" and parts[space] <= 0):
                label.setVisible(False)  # "Words 0.000" says nothing: the heading below does
                continue
            label.setVisible(True)
            colour = COLORS[space].name()
            detail = ""
            if space == "lexical" and exp.lexical is not None:
                detail = f"BM25 {exp.lexical.bm25:.2f}"
                if exp.lexical.quoted_in:  # a short document found by the words around it
                    detail += html.escape(
                        " · quoted in "
                        + ", ".join(q.title or q.identifier for q in exp.lexical.quoted_in)
                    )
            elif space == "dense" and exp.dense is not None:
                detail = f"cosine {exp.dense.cosine:.3f}"
            elif space == "tags" and exp.tags is not None:
                detail = f"{len(exp.tags.tags)} tag(s)"
            elif space == "identifiers" and exp.identifiers is not None:
                detail = html.escape(", ".join(m.stored for m in exp.identifiers.matches))
            elif space == "learned" and exp.learned is not None:
                detail = html.escape(exp.learned.describe())  # other users' words: as allowed
            label.setText(
                f'<span style="color:{colour}; font-size:12pt;">■</span>&nbsp;'
                f"{LABELS[space]} &nbsp;<b>{fmt(parts[space])}</b>"
                f' &nbsp;<span style="color:{MUTED.name()}">{detail}</span>'
            )

        # One row per word (a Japanese word gathers its bigrams), fields as the user knows them;
        # a long list stops at MAX_TERM_ROWS so the best passage stays in view.
        groups = group_terms(exp.lexical.terms if exp.lexical is not None else ())
        terms = groups[:MAX_TERM_ROWS]
        self.terms.setRowCount(len(terms))
        for row, g in enumerate(terms):
            cells = (g.word, ", ".join(g.where), f"{g.bm25:.2f}", fmt(g.score))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col >= 2:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                if len(g.parts) > 1:
                    item.setToolTip(g.detail)
                self.terms.setItem(row, col, item)
        self.terms.resizeRowsToContents()
        rows_h = sum(self.terms.rowHeight(r) for r in range(len(terms)))
        self.terms.setFixedHeight(self.terms.horizontalHeader().height() + rows_h + 4)
        self.terms.setVisible(bool(terms))
        self.terms_heading.setVisible(True)
        more = f" (top {len(terms)} of {len(groups)})" if len(groups) > len(terms) else ""
        self.terms_heading.setText(
            f"MATCHED WORDS{more}"
            if terms
            else "MATCHED WORDS — none of the query's words occur here"
        )
        self._fit_columns()

        dense = exp.dense
        has_passage = dense is not None and bool(dense.passage_text)
        self.passage_heading.setVisible(has_passage)  # no passage (an image): no heading
        self.passage.setVisible(has_passage)
        if dense is not None:
            rank = f", ranked #{dense.passage_rank}" if dense.passage_rank else ""
            self.passage_heading.setText(
                f"BEST PASSAGE — #{dense.passage_index + 1}, cosine {dense.cosine:.3f}{rank}"
            )
        if dense is not None and has_passage:
            text = " ".join(dense.passage_text.split())
            if len(text) > 320:
                text = text[:319].rsplit(" ", 1)[0] + "…"
            self.passage.setText(html.escape(text))

        tags = exp.tags.tags if exp.tags is not None else ()
        self.tags_heading.setVisible(exp.tags is not None)
        self.tags_label.setVisible(exp.tags is not None)
        self.tags_label.setText(
            " ".join(
                f'<span style="background:{CHIP_BG.name()}; color:{CHIP_FG.name()};">'
                f"&nbsp;{html.escape(t)}&nbsp;</span>"
                for t in tags
            )
            or f'<span style="color:{MUTED.name()}">none</span>'
        )

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit_columns()

    def _fit_columns(self) -> None:
        """In a narrow column drop Field, then BM25, rather than clip them ("BM2")."""
        table = self.terms
        if not table.rowCount():
            return
        header = table.horizontalHeader()
        room = table.viewport().width() or table.width()
        for col in (1, 2):
            table.setColumnHidden(col, False)
        needed = {c: max(header.sectionSizeHint(c), table.sizeHintForColumn(c)) for c in (1, 2, 3)}
        word_min = max(72, min(table.sizeHintForColumn(0), 140))
        for col in (1, 2):
            shown = [c for c in (1, 2, 3) if not table.isColumnHidden(c)]
            if word_min + sum(needed[c] for c in shown) <= room:
                break
            table.setColumnHidden(col, True)
        for row in range(table.rowCount()):
            item = table.item(row, 0)
            if item is None:
                continue
            parts = []
            for c in (1, 2, 3):
                head, cell = table.horizontalHeaderItem(c), table.item(row, c)
                if head is not None and cell is not None:
                    parts.append(f"{head.text()} {cell.text()}")
            item.setToolTip(" · ".join(parts))

    def shown_contributions(self) -> dict[str, float]:
        """The contributions as displayed (parsed back from the legend labels)."""
        out: dict[str, float] = {}
        for space, label in self.legend.items():
            if label.isVisibleTo(self):
                text = label.text()
                start = text.index("<b>") + 3
                out[space] = float(text[start : text.index("</b>", start)])
        return out

    def shown_score(self) -> float:
        text = self.score_label.text()
        start = text.index("<b>") + 3
        return float(text[start : text.index("</b>", start)])


class ExplanationPanel(QWidget):
    """'Why this result': one explanation, or two side by side on the same scale.

    Signals:
        passageClicked(int, int, int): forwarded from a hit's passage.
    """

    passageClicked = Signal(int, int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 8, 8, 8)
        outer.setSpacing(6)
        self.heading = QLabel("Why this result")
        self.heading.setStyleSheet("font-size: 12pt; font-weight: 600;")
        outer.addWidget(self.heading)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setStyleSheet(f"color: {MUTED.name()};")
        outer.addWidget(self.summary)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.scroll_area = scroll
        body = QWidget()
        self.body = body
        self._row = QHBoxLayout(body)
        self._row.setContentsMargins(0, 0, 0, 0)
        self._row.setSpacing(8)
        self.views = [HitExplanationView(), HitExplanationView()]
        for view in self.views:
            view.passageClicked.connect(self.passageClicked)
            self._row.addWidget(view, 1)
            view.setVisible(False)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)
        self.placeholder = QLabel(
            "Select a result to see how each key space contributed.\n"
            "Ctrl+click a second result to compare the two."
        )
        self.placeholder.setWordWrap(True)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet(f"color: {MUTED.name()};")
        outer.addWidget(self.placeholder)
        self.show_hits([])

    def show_hits(self, hits: list[tuple[int, Hit]]) -> None:
        """Show up to two (rank, hit) pairs, best rank first."""
        hits = sorted(hits, key=lambda rh: rh[0])[:2]
        scale = max((h.score for _, h in hits), default=1.0)
        spacing = self._row.spacing()
        self.body.setMinimumWidth(2 * COMPARE_COLUMN_MIN + spacing if len(hits) == 2 else 0)
        for view, item in zip(self.views, [*hits, None, None], strict=False):
            if item is None:
                view.setVisible(False)
                view.hit = None
            else:
                view.show_hit(item[1], item[0], scale)
                view.setVisible(True)
        self.placeholder.setVisible(not hits)
        self.summary.setVisible(bool(hits))
        if len(hits) == 2:
            (ra, a), (rb, b) = hits
            self.heading.setText(f"Why #{ra} outranks #{rb}")
            self.summary.setText(self._difference(a, b))
        elif hits:
            self.heading.setText("Why this result")
            self.summary.setText(
                "The score is the sum of what each key space adds; the bar shows the parts."
            )
        else:
            self.heading.setText("Why this result")

    @staticmethod
    def _difference(a: Hit, b: Hit) -> str:
        pa, pb = a.explanation.contributions(), b.explanation.contributions()
        lines = []
        for space in SPACES:
            if space in pa or space in pb:
                delta = pa.get(space, 0.0) - pb.get(space, 0.0)
                colour = COLORS[space].name()
                lines.append(
                    f'<span style="color:{colour}">■</span> {LABELS[space]} <b>{delta:+.3f}</b>'
                )
        return f"Score difference <b>{a.score - b.score:+.3f}</b>: " + " &nbsp; ".join(lines)

    def visible_views(self) -> list[HitExplanationView]:
        return [v for v in self.views if v.hit is not None]

    def show_scan(self, reading: ScanReading) -> bool:
        """Show a scan reading on the explanations waiting for it; whether any was."""
        shown = False
        for view in self.visible_views():
            if view.scan_key == reading.key:
                view.show_scan(reading)
                shown = True
        return shown
