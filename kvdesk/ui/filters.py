"""Filters (tag, type, date) that map onto the search syntax: tag:X type:pdf after:… before:…"""

from __future__ import annotations

from PySide6.QtCore import QDate, Qt, Signal, Slot
from PySide6.QtWidgets import QCheckBox, QComboBox, QDateEdit, QHBoxLayout, QLabel, QWidget

TYPES = [
    ("Any type", ""),
    ("PDF", "pdf"),
    ("Word", "docx"),
    ("Text", "text"),
    ("Markdown", "markdown"),
    ("HTML", "html"),
    ("CSV", "csv"),
    ("JSON", "json"),
    ("Image", "image"),
]


def _quote(value: str) -> str:
    return f'"{value}"' if any(c.isspace() for c in value) else value


class FilterBar(QWidget):
    """Tag, type and date filters.

    Signals:
        changed(): a filter changed (the window searches again).
    """

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(6)
        self.tag = QComboBox()
        self.tag.setEditable(True)
        self.tag.setMinimumWidth(130)
        self.tag.lineEdit().setPlaceholderText("any tag")
        self.tag.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.tag.setToolTip("Only documents with this tag (tag:NAME)")
        self.type = QComboBox()
        for label, value in TYPES:
            self.type.addItem(label, value)
        self.type.setToolTip("Only documents of this type (type:X)")
        self.after_on = QCheckBox("After")
        self.after = QDateEdit(QDate.currentDate().addMonths(-1))
        self.before_on = QCheckBox("Before")
        self.before = QDateEdit(QDate.currentDate().addDays(1))
        for edit in (self.after, self.before):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setEnabled(False)
        lay.addWidget(QLabel("Filters:"))
        lay.addWidget(self.tag)
        lay.addWidget(self.type)
        lay.addWidget(self.after_on)
        lay.addWidget(self.after)
        lay.addWidget(self.before_on)
        lay.addWidget(self.before)
        lay.addStretch(1)
        self.tag.currentTextChanged.connect(self._emit)
        self.type.currentIndexChanged.connect(self._emit)
        self.after_on.toggled.connect(self._on_toggle)
        self.before_on.toggled.connect(self._on_toggle)
        self.after.dateChanged.connect(self._emit)
        self.before.dateChanged.connect(self._emit)

    def set_tags(self, tags: list[str]) -> None:
        current = self.tag.currentText()
        self.tag.blockSignals(True)
        self.tag.clear()
        self.tag.addItem("")
        self.tag.addItems(tags)
        self.tag.setCurrentText(current)
        self.tag.blockSignals(False)

    def query_fragment(self) -> str:
        """The filters in search syntax (empty when none is set)."""
        parts = []
        tag = self.tag.currentText().strip()
        if tag:
            parts.append(f"tag:{_quote(tag)}")
        kind = self.type.currentData()
        if kind:
            parts.append(f"type:{kind}")
        if self.after_on.isChecked():
            parts.append(f"after:{self.after.date().toString(Qt.DateFormat.ISODate)}")
        if self.before_on.isChecked():
            parts.append(f"before:{self.before.date().toString(Qt.DateFormat.ISODate)}")
        return " ".join(parts)

    def reset(self) -> None:
        self.tag.setCurrentText("")
        self.type.setCurrentIndex(0)
        self.after_on.setChecked(False)
        self.before_on.setChecked(False)

    @Slot()
    def _on_toggle(self) -> None:
        self.after.setEnabled(self.after_on.isChecked())
        self.before.setEnabled(self.before_on.isChecked())
        self.changed.emit()

    @Slot()
    def _emit(self) -> None:
        self.changed.emit()
