"""Keys ▸ Confusable documents: pairs of different values whose keys collide, side by side.

Each row is one pair (:class:`~kvdesk.core.keys.confusable.ConfusablePair`): how close their
meaning keys and word profiles are, what only one of them holds (dates, identifiers, numbers,
names, words) and a suggested tag that would tell them apart. "Apply suggested tag" accepts that
tag on its document through the tag API (``kb.set_tag``), which re-keys it at once. Finding the
pairs runs on the runner's reader pool; applying a tag is a writer task; the widget only sees
results through queued signals.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any, cast

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from kvdesk.core.keys.confusable import ConfusablePair, ConfusableReport, Tell
from kvdesk.core.progress import Progress
from kvdesk.ui.tasks import Task, TaskRunner

KbProvider = Callable[[], Any]  # the open KnowledgeBase, or None

COLUMNS = ("Meaning · words", "Document A", "Only in A", "Document B", "Only in B", "Suggested tag")
_PAIR_ROLE = Qt.ItemDataRole.UserRole
_TELLS_SHOWN = 4  # per cell; the detail pane shows them all


def _tells(tells: tuple[Tell, ...], limit: int | None = None) -> str:
    return ", ".join(t.text for t in tells[:limit]) or "—"


def _similarity(pair: ConfusablePair) -> str:
    dense = "–" if pair.dense_similarity is None else f"{pair.dense_similarity:.3f}"
    return f"{dense} · {pair.lexical_similarity:.3f}"


class ConfusableView(QWidget):
    """The confusable pairs of the vault, with what tells each pair apart and a tag to apply.

    Signals:
        loaded(int): a fresh list of pairs is shown (how many).
        tagApplied(int, str): a suggested tag was saved on a document (value id, tag).
        tagsChanged(int, object): a document's accepted tags after a change (for the viewer).
        message(str): a line for the status bar (errors included).
    """

    loaded = Signal(int)
    tagApplied = Signal(int, str)
    tagsChanged = Signal(int, object)
    message = Signal(str)

    def __init__(
        self, kb_provider: KbProvider, runner: TaskRunner, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._kb_provider = kb_provider
        self.runner = runner
        self.report: ConfusableReport | None = None
        self.applied: set[int] = set()  # rows whose suggested tag was saved
        self._refresh_task: Task | None = None
        self._writes: dict[Task, int] = {}  # tag task -> its row
        self._build()

    # -- construction ---------------------------------------------------------------------------

    def _build(self) -> None:
        self.refresh_button = QPushButton("Refresh")
        self.summary = QLabel("")
        self.summary.setStyleSheet("color: #6b7280;")
        top = QHBoxLayout()
        top.addWidget(self.refresh_button)
        top.addStretch(1)
        top.addWidget(self.summary)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for column, width in ((1, 170), (2, 130), (3, 170), (4, 130)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(column, width)
        header.setStretchLastSection(True)
        first = self.table.horizontalHeaderItem(0)
        if first is not None:
            first.setToolTip(
                "Cosine of the two documents' meaning keys (dense) · of their word profiles"
            )

        self.detail = QTextBrowser()
        self.detail.setOpenLinks(False)
        self.detail.setPlaceholderText("Select a pair to see what tells the two apart.")

        self.apply_button = QPushButton("Apply suggested tag")
        self.apply_button.setToolTip(
            "Accept the suggested tag on its document: the tag becomes one of its keys, so a"
            " search naming it finds that document first. The documents themselves are not"
            " changed."
        )
        self.apply_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.apply_button)
        buttons.addStretch(1)

        left = QWidget()
        left_lay = QVBoxLayout(left)
        left_lay.setContentsMargins(0, 0, 0, 0)
        left_lay.addWidget(self.table, 1)
        left_lay.addLayout(buttons)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([900, 360])
        self.splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)

        self.refresh_button.clicked.connect(self.refresh)
        self.apply_button.clicked.connect(self.apply_suggested)
        self.table.itemSelectionChanged.connect(self._on_selection)

    # -- loading --------------------------------------------------------------------------------

    @Slot()
    def refresh(self) -> Task | None:
        """Look for confusable pairs on a reader thread; the table updates when they arrive."""
        kb = self._kb_provider()
        if kb is None:
            return None
        if self._refresh_task is not None:
            self._refresh_task.cancel()
        self.summary.setText("Comparing the keys of every document…")

        def run(report: Callable[[Progress], None], cancel: Any) -> ConfusableReport:
            return cast(ConfusableReport, kb.confusable_pairs(progress=report, cancel=cancel))

        task = self.runner.read("confusable documents", run)
        task.succeeded.connect(self._on_report)
        task.failed.connect(self._on_failed)
        task.progressed.connect(self._on_progress)
        self._refresh_task = task
        return task

    @Slot(object)
    def _on_progress(self, progress: object) -> None:
        if isinstance(progress, Progress) and self.sender() is self._refresh_task:
            self.summary.setText(f"Comparing… {progress.stage.removeprefix('confusable: ')}")

    @Slot(object)
    def _on_report(self, payload: object) -> None:
        if not isinstance(payload, ConfusableReport) or self.sender() is not self._refresh_task:
            return  # a newer refresh is on its way
        self._refresh_task = None
        self.report = payload
        self.applied.clear()
        self._fill()
        n = len(payload.pairs)
        text = (
            f"{n} confusable pair{'s' if n != 1 else ''} among {payload.checked} documents"
            f" · {payload.seconds:.1f} s"
        )
        if payload.notes:
            text += " · " + "; ".join(payload.notes)
        self.summary.setText(text)
        if n:
            self.table.selectRow(0)
        else:
            self.detail.setHtml("<p>No two documents have keys this close.</p>")
        self.loaded.emit(n)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if self.sender() is self._refresh_task:
            self._refresh_task = None
        self.summary.setText("Could not compare the documents")
        self.message.emit(message)

    # -- display --------------------------------------------------------------------------------

    @property
    def pairs(self) -> tuple[ConfusablePair, ...]:
        return self.report.pairs if self.report is not None else ()

    def _fill(self) -> None:
        self.table.setRowCount(0)
        self.table.setRowCount(len(self.pairs))
        for row, pair in enumerate(self.pairs):
            cells = (
                _similarity(pair),
                f"{pair.a.identifier} · {pair.a.title}",
                _tells(pair.tells_a, _TELLS_SHOWN),
                f"{pair.b.identifier} · {pair.b.title}",
                _tells(pair.tells_b, _TELLS_SHOWN),
                "",
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(_PAIR_ROLE, row)
                item.setToolTip(text)
                self.table.setItem(row, column, item)
            self._paint_tag(row)

    def _paint_tag(self, row: int) -> None:
        pair = self.pairs[row]
        tag = pair.suggested_tag
        if tag is None:
            text = "—"
        elif row in self.applied:
            text = f"✓ {tag.tag} on {tag.identifier}"
        else:
            text = f"{tag.tag} → {tag.identifier}"
        item = self.table.item(row, len(COLUMNS) - 1)
        if item is not None:
            item.setText(text)
            item.setToolTip(tag.why if tag is not None else "nothing tells these two apart")

    def current_row(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].row() if rows else None

    def cell_text(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return item.text() if item is not None else ""

    @Slot()
    def _on_selection(self) -> None:
        row = self.current_row()
        if row is None or row >= len(self.pairs):
            self.apply_button.setEnabled(False)
            self.detail.clear()
            return
        pair = self.pairs[row]
        self.apply_button.setEnabled(pair.suggested_tag is not None and row not in self.applied)
        self.detail.setHtml(self._detail_html(pair, row))

    def _detail_html(self, pair: ConfusablePair, row: int) -> str:
        def column(member: Any, tells: tuple[Tell, ...]) -> str:
            items = "".join(
                f"<li><b>{html.escape(t.text)}</b> <span style='color:#6b7280'>{t.kind}</span></li>"
                for t in tells
            )
            return (
                f"<td valign='top' width='50%'><b>{html.escape(member.identifier)}</b><br>"
                f"{html.escape(member.title)}<ul>{items or '<li><i>nothing of its own</i></li>'}"
                "</ul></td>"
            )

        dense = "–" if pair.dense_similarity is None else f"{pair.dense_similarity:.3f}"
        tag = pair.suggested_tag
        if tag is None:
            suggestion = "<p>No tag to suggest: the two hold the same words.</p>"
        else:
            done = " (applied)" if row in self.applied else ""
            suggestion = (
                f"<p>Suggested tag: <b>{html.escape(tag.tag)}</b> on"
                f" <b>{html.escape(tag.identifier)}</b>{done}<br>"
                f"<span style='color:#6b7280'>{html.escape(tag.why)}</span></p>"
            )
        return (
            f"<p>Meaning keys {dense} · words {pair.lexical_similarity:.3f}</p>"
            "<p><b>What tells them apart</b></p>"
            "<table width='100%' cellspacing='6'><tr>"
            f"{column(pair.a, pair.tells_a)}{column(pair.b, pair.tells_b)}</tr></table>"
            f"{suggestion}"
        )

    # -- applying a tag -------------------------------------------------------------------------

    @Slot()
    def apply_suggested(self, row: int | None = None) -> Task | None:
        """Accept the suggested tag of the pair in ``row`` (default: the selected one)."""
        row = self.current_row() if row is None else row
        kb = self._kb_provider()
        if kb is None or row is None or row >= len(self.pairs) or row in self.applied:
            return None
        tag = self.pairs[row].suggested_tag
        if tag is None:
            return None
        value_id, name = tag.value_id, tag.tag

        def run(_report: object, _cancel: object) -> tuple[int, str, tuple[str, ...]]:
            kb.set_tag(value_id, name, actor="confusable")
            return value_id, name, tuple(kb.tags.of(value_id))

        self.applied.add(row)  # shown at once, rolled back if the write fails
        self._paint_tag(row)
        self.apply_button.setEnabled(False)
        task = self.runner.write("apply suggested tag", run)
        self._writes[task] = row
        task.succeeded.connect(self._on_applied)
        task.failed.connect(self._on_apply_failed)
        task.finished.connect(self._on_write_finished)
        return task

    @Slot(object)
    def _on_applied(self, payload: object) -> None:
        value_id, name, tags = cast(tuple[int, str, tuple[str, ...]], payload)
        self.tagsChanged.emit(value_id, tags)
        self.tagApplied.emit(value_id, name)
        self.message.emit(f"Tag {name!r} saved — the two documents can now be told apart")

    @Slot(str)
    def _on_apply_failed(self, message: str) -> None:
        task = self.sender()
        row = self._writes.get(task) if isinstance(task, Task) else None
        if row is not None:
            self.applied.discard(row)
            if row < len(self.pairs):
                self._paint_tag(row)
            self._on_selection()
        self.message.emit(f"Could not save the tag: {message}")

    @Slot()
    def _on_write_finished(self) -> None:
        task = self.sender()
        if isinstance(task, Task):
            self._writes.pop(task, None)
