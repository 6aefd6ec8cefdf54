"""The tag review queue: suggestions across the vault, reviewed from the keyboard.

Suggestions come from a :class:`~kvdesk.core.tags.suggest.TagSuggester` (``kb.tags.suggester()``).
Preparing one (loading the vault's tags and terms, and perhaps fitting and storing its
calibration) is a write, so it runs on the runner's writer thread; computing the suggestions
for many documents runs on the reader pool; every accept, reject and undo is a writer task.
The widget only sees results through queued signals, and updates its rows at once (an
optimistic update, rolled back on failure).

Keys: A accept, R reject, J/Down next, K/Up previous, Shift+A accept the selection (a selected
tag group accepts all its documents), Ctrl+Z undo the last accept/reject.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from kvdesk.ui.tasks import Task, TaskRunner

KbProvider = Callable[[], Any]  # the open KnowledgeBase, or None
SuggesterFactory = Callable[[Any], Any]  # KnowledgeBase -> TagSuggester

PENDING, ACCEPTED, AUTO, REJECTED = "pending", "accepted", "auto-accepted", "rejected"
_STATUS_COLOURS = {ACCEPTED: "#15803d", AUTO: "#15803d", REJECTED: "#b91c1c", PENDING: "#6b7280"}
_KEY_ROLE = Qt.ItemDataRole.UserRole
DEFAULT_AUTO_THRESHOLD = 0.90
COLUMNS = ("Suggestion", "Confidence", "Status", "Evidence")


@dataclass(frozen=True)
class ReviewEntry:
    """One suggested tag for one document, as listed."""

    value_id: int
    identifier: str
    title: str
    tag: str
    confidence: float
    evidence: tuple[str, ...]

    @property
    def key(self) -> tuple[int, str]:
        return (self.value_id, self.tag)

    @property
    def document(self) -> str:
        return f"{self.identifier} · {self.title}" if self.title else self.identifier


@dataclass(frozen=True)
class ReviewBatch:
    """What a reader task computed: entries best first, the calibrated threshold, docs seen."""

    entries: tuple[ReviewEntry, ...]
    threshold: float
    documents: int


@dataclass(frozen=True)
class _Action:
    """One undoable step: these entries moved from their previous statuses to ``state``."""

    keys: tuple[tuple[int, str], ...]
    previous: tuple[str, ...]
    state: str
    #: The rows as stored just before the write (filled by the writer task), so undo puts back
    #: exactly what was there, a stored 'suggested' state included.
    stored: dict[tuple[int, str], Any] = field(default_factory=dict, compare=False)


def default_suggester(kb: Any) -> Any:
    return kb.tags.suggester()


class ReviewQueue(QWidget):
    """Suggestions grouped by tag or by document, with evidence, accept/reject, bulk and undo.

    Signals:
        loaded(int): a fresh list of suggestions is shown (how many).
        applied(str, object): a write finished: state ('accepted', 'rejected', 'undone') and
            the list of (value_id, accepted tags) it changed.
        tagsChanged(int, object): a document's accepted tags after a change (for the viewer).
        message(str): a line for the status bar (errors included).
    """

    loaded = Signal(int)
    applied = Signal(str, object)
    tagsChanged = Signal(int, object)
    message = Signal(str)

    def __init__(
        self,
        kb_provider: KbProvider,
        runner: TaskRunner,
        parent: QWidget | None = None,
        *,
        suggester_factory: SuggesterFactory | None = None,
        per_document: int = 3,
        min_confidence: float = 0.10,
        max_documents: int = 500,
        actor: str = "gui",
    ) -> None:
        super().__init__(parent)
        self._kb_provider = kb_provider
        self.runner = runner
        self._factory = suggester_factory or default_suggester
        self.per_document = per_document
        self.min_confidence = min_confidence
        self.max_documents = max_documents
        self.actor = actor
        self.suggester: Any = None
        self.entries: list[ReviewEntry] = []
        self.status: dict[tuple[int, str], str] = {}
        self.threshold: float | None = None
        self.undo_stack: list[_Action] = []
        self._items: dict[tuple[int, str], QTreeWidgetItem] = {}
        self._refresh_task: Task | None = None
        self._writes: dict[Task, tuple[str, _Action | None]] = {}
        self._build()

    # -- construction ---------------------------------------------------------------------------

    def _build(self) -> None:
        self.group_combo = QComboBox()
        self.group_combo.addItem("Group by tag", "tag")
        self.group_combo.addItem("Group by document", "document")
        self.group_combo.setToolTip("Toggle the grouping of the suggestions")
        self.refresh_button = QPushButton("Refresh")
        self.auto_box = QCheckBox("Auto-accept from")
        self.auto_box.setToolTip(
            "Off by default. When on, suggestions at least this confident are accepted"
            " without review (listed as auto-accepted; Ctrl+Z undoes them)."
        )
        self.auto_spin = QDoubleSpinBox()
        self.auto_spin.setRange(0.05, 1.0)
        self.auto_spin.setSingleStep(0.05)
        self.auto_spin.setDecimals(2)
        self.auto_spin.setValue(DEFAULT_AUTO_THRESHOLD)
        self.auto_spin.setEnabled(False)
        self.summary = QLabel("")
        self.summary.setStyleSheet("color: #6b7280;")
        top = QHBoxLayout()
        top.addWidget(self.group_combo)
        top.addWidget(self.refresh_button)
        top.addSpacing(16)
        top.addWidget(self.auto_box)
        top.addWidget(self.auto_spin)
        top.addStretch(1)
        top.addWidget(self.summary)

        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setMinimumWidth(520)
        header = self.tree.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(0, 330)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)

        self.evidence_view = QTextBrowser()
        self.evidence_view.setOpenLinks(False)
        self.evidence_view.setMinimumWidth(280)
        self.evidence_view.setPlaceholderText("Select a suggestion to see why it was made.")

        self.accept_button = QPushButton("Accept  (A)")
        self.reject_button = QPushButton("Reject  (R)")
        self.bulk_button = QPushButton("Accept selected  (Shift+A)")
        self.bulk_button.setToolTip(
            "Accept every selected suggestion; a selected tag group accepts it for all its"
            " documents"
        )
        self.undo_button = QPushButton("Undo  (Ctrl+Z)")
        self.undo_button.setEnabled(False)
        self.keys_hint = QLabel("J/↓ next · K/↑ previous")
        self.keys_hint.setStyleSheet("color: #6b7280;")
        buttons = QHBoxLayout()
        for b in (self.accept_button, self.reject_button, self.bulk_button, self.undo_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.keys_hint)

        left = QWidget()
        left_lay = QVBoxLayout(left)
        left_lay.setContentsMargins(0, 0, 0, 0)
        left_lay.addWidget(self.tree, 1)
        left_lay.addLayout(buttons)
        right = QWidget()
        right_lay = QVBoxLayout(right)
        right_lay.setContentsMargins(0, 0, 0, 0)
        evidence_title = QLabel("<b>Evidence</b>")
        right_lay.addWidget(evidence_title)
        right_lay.addWidget(self.evidence_view, 1)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)

        self.group_combo.currentIndexChanged.connect(self._rebuild)
        self.refresh_button.clicked.connect(self.refresh)
        self.auto_box.toggled.connect(self._on_auto_toggled)
        self.auto_spin.valueChanged.connect(self._on_threshold_changed)
        self.tree.currentItemChanged.connect(self._on_current_changed)
        self.accept_button.clicked.connect(self.accept_current)
        self.reject_button.clicked.connect(self.reject_current)
        self.bulk_button.clicked.connect(self.accept_selected)
        self.undo_button.clicked.connect(self.undo)

        scope = Qt.ShortcutContext.WidgetWithChildrenShortcut
        self.shortcuts: list[QShortcut] = []
        for keys, slot, owner in (
            ("A", self.accept_current, self),
            ("R", self.reject_current, self),
            ("Shift+A", self.accept_selected, self),
            ("J", self.next_item, self),
            ("K", self.previous_item, self),
            ("Down", self.next_item, self.tree),
            ("Up", self.previous_item, self.tree),
            (QKeySequence.StandardKey.Undo, self.undo, self),
        ):
            shortcut = QShortcut(QKeySequence(keys), owner)
            shortcut.setContext(scope if owner is self else Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(slot)
            self.shortcuts.append(shortcut)

    # -- loading --------------------------------------------------------------------------------

    @Slot()
    def refresh(self) -> Task | None:
        """Prepare a fresh suggester (writer: it may store its calibration), then suggest."""
        kb = self._kb_provider()
        if kb is None:
            return None
        if self._refresh_task is not None:
            self._refresh_task.cancel()
        self.summary.setText("Computing suggestions…")
        factory = self._factory

        def prepare(_report: object, _cancel: object) -> Any:
            suggester = factory(kb)
            _ = suggester.threshold  # loads, and fits + stores a calibration when needed
            return suggester

        task = self.runner.write("prepare tag suggestions", prepare)
        task.succeeded.connect(self._on_prepared)
        task.failed.connect(self._on_failed)
        self._refresh_task = task
        return task

    @Slot(object)
    def _on_prepared(self, suggester: object) -> None:
        if self.sender() is not self._refresh_task:
            return  # a newer refresh is on its way
        self.suggester = suggester
        kb = self._kb_provider()
        if kb is None:
            return
        per_doc, floor, cap = self.per_document, self.min_confidence, self.max_documents

        def run(_report: object, cancel: Any) -> ReviewBatch:
            untagged = list(suggester.untagged())  # type: ignore[attr-defined]
            seen = set(untagged)
            others = [r.id for r in kb.values.list_values() if r.id not in seen]
            ids = (untagged + others)[:cap]
            entries: list[ReviewEntry] = []
            for vid in ids:
                cancel.raise_if_cancelled()
                suggestions = [
                    s
                    for s in suggester.suggest(vid, k=per_doc)  # type: ignore[attr-defined]
                    if s.confidence >= floor
                ]
                if not suggestions:
                    continue
                record = kb.values.get(vid)
                for s in suggestions:
                    entries.append(
                        ReviewEntry(
                            vid,
                            record.identifier,
                            record.title,
                            s.tag,
                            float(s.confidence),
                            tuple(s.evidence),
                        )
                    )
            entries.sort(key=lambda e: (-e.confidence, e.tag, e.identifier))
            threshold = float(suggester.threshold)  # type: ignore[attr-defined]
            return ReviewBatch(tuple(entries), threshold, len(ids))

        task = self.runner.read("tag suggestions", run)
        task.succeeded.connect(self._on_batch)
        task.failed.connect(self._on_failed)
        self._refresh_task = task

    @Slot(object)
    def _on_batch(self, batch: object) -> None:
        if not isinstance(batch, ReviewBatch) or self.sender() is not self._refresh_task:
            return
        self._refresh_task = None
        self.entries = list(batch.entries)
        self.status = {e.key: PENDING for e in self.entries}
        self.threshold = batch.threshold
        self.undo_stack.clear()
        self.auto_spin.setToolTip(f"Calibrated threshold of this vault: {batch.threshold:.2f}")
        self._rebuild()
        self.summary.setText(
            f"{len(self.entries)} suggestions for {len({e.value_id for e in self.entries})}"
            f" of {batch.documents} documents reviewed"
        )
        if self.auto_box.isChecked():
            self.auto_accept()
        self.loaded.emit(len(self.entries))
        self._select_first_pending()

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.summary.setText("Suggestions failed")
        self.message.emit(message)

    def note_outside_change(self, what: str) -> None:
        """Someone else changed the vault (a team desk synced): say so; the list is kept, so
        a review in progress is not lost, and Refresh shows the new state."""
        if self.summary.text() and "Refresh" not in self.summary.text():
            self.summary.setText(f"{self.summary.text()} · {what} — Refresh to update")

    # -- display --------------------------------------------------------------------------------

    @property
    def grouping(self) -> str:
        return str(self.group_combo.currentData())

    def set_grouping(self, grouping: str) -> None:
        self.group_combo.setCurrentIndex(max(0, self.group_combo.findData(grouping)))

    @Slot()
    def _rebuild(self) -> None:
        current = self.current_entry()
        self.tree.clear()
        self._items = {}
        by_tag = self.grouping == "tag"
        groups: dict[str, list[ReviewEntry]] = {}
        for e in self.entries:
            groups.setdefault(e.tag if by_tag else e.document, []).append(e)
        bold = QFont(self.tree.font())
        bold.setBold(True)
        for name, members in groups.items():
            head = QTreeWidgetItem([f"{name}  ({len(members)})", "", "", ""])
            head.setFont(0, bold)
            head.setFirstColumnSpanned(False)
            self.tree.addTopLevelItem(head)
            for e in members:
                label = e.document if by_tag else e.tag
                item = QTreeWidgetItem([label, f"{e.confidence:.2f}", "", " · ".join(e.evidence)])
                item.setData(0, _KEY_ROLE, e.key)
                item.setToolTip(3, "\n".join(e.evidence))
                item.setTextAlignment(
                    1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                )
                head.addChild(item)
                self._items[e.key] = item
                self._paint(e.key)
            head.setExpanded(True)
        if current is not None and current.key in self._items:
            self.tree.setCurrentItem(self._items[current.key])

    def _paint(self, key: tuple[int, str]) -> None:
        item = self._items.get(key)
        if item is None:
            return
        status = self.status.get(key, PENDING)
        item.setText(2, "" if status == PENDING else status)
        item.setForeground(2, QBrush(QColor(_STATUS_COLOURS[status])))
        font = QFont(self.tree.font())
        font.setStrikeOut(status == REJECTED)
        font.setItalic(status == AUTO)
        item.setFont(0, font)
        dim = QColor("#9ca3af") if status == REJECTED else self.palette().text().color()
        item.setForeground(0, QBrush(dim))

    def entry(self, key: tuple[int, str]) -> ReviewEntry | None:
        return next((e for e in self.entries if e.key == key), None)

    def _entry_of(self, item: QTreeWidgetItem | None) -> ReviewEntry | None:
        if item is None:
            return None
        key = item.data(0, _KEY_ROLE)
        return self.entry(tuple(key)) if key else None

    def current_entry(self) -> ReviewEntry | None:
        return self._entry_of(self.tree.currentItem())

    def item_for(self, value_id: int, tag: str) -> QTreeWidgetItem | None:
        return self._items.get((value_id, tag))

    def select_entry(self, value_id: int, tag: str) -> None:
        item = self._items.get((value_id, tag))
        if item is not None:
            self.tree.setCurrentItem(item)

    def group_items(self) -> list[QTreeWidgetItem]:
        items = (self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount()))
        return [item for item in items if item is not None]

    @Slot(QTreeWidgetItem, QTreeWidgetItem)
    def _on_current_changed(self, current: QTreeWidgetItem | None, _prev: object) -> None:
        e = self._entry_of(current)
        if e is None:
            self.evidence_view.clear()
            return
        status = self.status.get(e.key, PENDING)
        rows = "".join(f"<li>{html.escape(line)}</li>" for line in e.evidence) or (
            "<li><i>no evidence recorded</i></li>"
        )
        pct = round(e.confidence * 100)
        bar = (
            "<table width='100%' cellspacing='0' cellpadding='0'><tr>"
            f"<td width='{max(pct, 1)}%' style='background:#3b82f6'>&nbsp;</td>"
            f"<td width='{max(100 - pct, 1)}%' style='background:#e5e7eb'>&nbsp;</td>"
            "</tr></table>"
        )
        self.evidence_view.setHtml(
            f"<p><span style='font-size:13pt'><b>{html.escape(e.tag)}</b></span><br>"
            f"for <b>{html.escape(e.identifier)}</b> {html.escape(e.title)}</p>"
            f"<p>Confidence {e.confidence:.2f}"
            + (f" (calibrated threshold {self.threshold:.2f})" if self.threshold else "")
            + f"</p>{bar}<p><b>Why</b></p><ul>{rows}</ul>"
            + ("" if status == PENDING else f"<p>Status: <b>{status}</b></p>")
        )

    # -- navigation -----------------------------------------------------------------------------

    def _suggestion_items(self) -> list[QTreeWidgetItem]:
        out: list[QTreeWidgetItem] = []
        for head in self.group_items():
            out.extend(c for i in range(head.childCount()) if (c := head.child(i)) is not None)
        return out

    def _move(self, delta: int, *, pending_only: bool = False) -> None:
        items = self._suggestion_items()
        if not items:
            return
        current = self.tree.currentItem()
        index = items.index(current) if current in items else (-1 if delta > 0 else len(items))
        i = index + delta
        while 0 <= i < len(items):
            e = self._entry_of(items[i])
            if not pending_only or (e is not None and self.status.get(e.key) == PENDING):
                self.tree.setCurrentItem(items[i])
                self.tree.scrollToItem(items[i])
                return
            i += delta

    @Slot()
    def next_item(self) -> None:
        self._move(1)

    @Slot()
    def previous_item(self) -> None:
        self._move(-1)

    def _select_first_pending(self) -> None:
        for item in self._suggestion_items():
            e = self._entry_of(item)
            if e is not None and self.status.get(e.key) == PENDING:
                self.tree.setCurrentItem(item)
                return

    # -- decisions ------------------------------------------------------------------------------

    @Slot()
    def accept_current(self) -> Task | None:
        return self._decide_current(ACCEPTED)

    @Slot()
    def reject_current(self) -> Task | None:
        return self._decide_current(REJECTED)

    def _decide_current(self, state: str) -> Task | None:
        """Decide the current suggestion, then move on to the next pending one."""
        e = self.current_entry()
        if e is None:
            return None
        task = self._decide([e], state)
        self._move(1, pending_only=True)
        return task

    def selected_entries(self) -> list[ReviewEntry]:
        """Selected suggestions; a selected group header stands for all its members."""
        keys: list[tuple[int, str]] = []
        for item in self.tree.selectedItems():
            children = [item.child(i) for i in range(item.childCount())] or [item]
            for child in children:
                e = self._entry_of(child)
                if e is not None and e.key not in keys:
                    keys.append(e.key)
        return [e for k in keys if (e := self.entry(k)) is not None]

    @Slot()
    def accept_selected(self, tag: str | None = None) -> Task | None:
        """Bulk accept: every pending selected suggestion (of ``tag`` only, when given)."""
        chosen = [
            e
            for e in self.selected_entries()
            if self.status.get(e.key) == PENDING and (tag is None or e.tag == tag)
        ]
        if not chosen:
            self.message.emit("Nothing selected to accept")
            return None
        return self._decide(chosen, ACCEPTED)

    def _decide(self, entries: list[ReviewEntry], state: str, *, auto: bool = False) -> Task | None:
        entries = [e for e in entries if self.status.get(e.key) == PENDING]
        if not entries or self.suggester is None:
            return None
        shown = AUTO if auto else state
        action = _Action(
            tuple(e.key for e in entries), tuple(self.status[e.key] for e in entries), shown
        )
        for e in entries:
            self.status[e.key] = shown
            self._paint(e.key)
        self.undo_stack.append(action)
        self.undo_button.setEnabled(True)
        self._on_current_changed(self.tree.currentItem(), None)
        suggester, actor = self.suggester, ("auto" if auto else self.actor)
        pairs = [(e.value_id, e.tag) for e in entries]

        def run(_report: object, _cancel: object) -> list[tuple[int, tuple[str, ...]]]:
            tags = suggester.tags  # the vault's tag manager: writes re-key the documents
            decide = suggester.accept if state == ACCEPTED else suggester.reject
            for vid, tag in pairs:
                action.stored[(vid, tag)] = tags.row(vid, tag)
                decide(vid, tag, actor)
            return [(vid, tags.of(vid)) for vid in dict.fromkeys(v for v, _ in pairs)]

        task = self.runner.write(f"tags {state}", run)
        self._writes[task] = (state, action)
        self._connect_write(task)
        return task

    @Slot()
    def undo(self) -> Task | None:
        """Undo the last accept/reject: each (document, tag) goes back to its stored state."""
        if not self.undo_stack or self.suggester is None:
            return None
        action = self.undo_stack.pop()
        self.undo_button.setEnabled(bool(self.undo_stack))
        for key, previous in zip(action.keys, action.previous, strict=True):
            self.status[key] = previous
            self._paint(key)
        self.select_entry(*action.keys[0])
        self._on_current_changed(self.tree.currentItem(), None)
        suggester = self.suggester
        keys = list(action.keys)

        def run(_report: object, _cancel: object) -> list[tuple[int, tuple[str, ...]]]:
            # Writes run one at a time, so the decision's task has filled ``stored`` by now.
            for vid, tag in keys:
                suggester.restore(vid, tag, action.stored.get((vid, tag)))
            tags = suggester.tags
            return [(vid, tags.of(vid)) for vid in dict.fromkeys(v for v, _ in keys)]

        task = self.runner.write("undo tag decision", run)
        self._writes[task] = ("undone", None)
        self._connect_write(task)
        return task

    def _connect_write(self, task: Task) -> None:
        task.succeeded.connect(self._on_written)
        task.failed.connect(self._on_write_failed)
        task.finished.connect(self._on_write_finished)

    @Slot(object)
    def _on_written(self, result: object) -> None:
        task = self.sender()
        state, _action = (
            self._writes.get(task, ("", None)) if isinstance(task, Task) else ("", None)
        )
        changed = list(result) if isinstance(result, list) else []
        for vid, tags in changed:
            self.tagsChanged.emit(int(vid), tuple(tags))
        self.applied.emit(state, changed)

    @Slot(str)
    def _on_write_failed(self, message: str) -> None:
        task = self.sender()
        _state, action = (
            self._writes.get(task, ("", None)) if isinstance(task, Task) else ("", None)
        )
        if action is None:
            self.message.emit(f"Could not undo: {message}")
            return
        for key, previous in zip(action.keys, action.previous, strict=True):
            self.status[key] = previous
            self._paint(key)
        if action in self.undo_stack:
            self.undo_stack.remove(action)
        self.undo_button.setEnabled(bool(self.undo_stack))
        self.summary.setText(f"Not saved: {message}")  # where the user is looking, too
        self.message.emit(f"Could not save the tag decision: {message}")

    @Slot()
    def _on_write_finished(self) -> None:
        task = self.sender()
        if isinstance(task, Task):
            self._writes.pop(task, None)

    # -- auto-accept ----------------------------------------------------------------------------

    @Slot(bool)
    def _on_auto_toggled(self, on: bool) -> None:
        self.auto_spin.setEnabled(on)
        if on:
            self.auto_accept()

    @Slot(float)
    def _on_threshold_changed(self, _value: float) -> None:
        if self.auto_box.isChecked():
            self.auto_accept()

    def auto_accept(self) -> Task | None:
        """Accept every pending suggestion at or above the threshold (one undoable step)."""
        threshold = self.auto_spin.value()
        chosen = [
            e
            for e in self.entries
            if self.status.get(e.key) == PENDING and e.confidence >= threshold - 1e-9
        ]
        if not chosen:
            return None
        self.message.emit(f"Auto-accepted {len(chosen)} suggestions ≥ {threshold:.2f}")
        return self._decide(chosen, ACCEPTED, auto=True)

    def counts(self) -> dict[str, int]:
        out = {PENDING: 0, ACCEPTED: 0, AUTO: 0, REJECTED: 0}
        for status in self.status.values():
            out[status] += 1
        return out
