"""Filters (tag, type, date) that map onto the search syntax: tag:X type:pdf after:… before:…

The type filter and a ``type:`` typed in the search box are one filter, never two: the window
shows what the box says in the type box (:meth:`FilterBar.show_typed`), and then leaves the
type out of :meth:`FilterBar.query_fragment`; choosing a type while the box holds one rewrites
the box (:attr:`FilterBar.typeChosen`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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


# Other names the search syntax accepts for the types above (kvdesk.core.keys.lexical's aliases).
TYPE_SYNONYMS = {
    "txt": "text",
    "md": "markdown",
    "word": "docx",
    "doc": "docx",
    "htm": "html",
    "web": "html",
    "img": "image",
    "images": "image",
    "picture": "image",
    "photo": "image",
    "application/pdf": "pdf",
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/html": "html",
    "text/csv": "csv",
    "application/json": "json",
}

# A type filter as the search box holds it: type:pdf, TYPE:pdf or type:"…" (not -type:…).
TYPE_TOKEN_RE = re.compile(r'(?<!\S)type:(?:"[^"]*"|\S*)', re.IGNORECASE)


def _quote(value: str) -> str:
    return f'"{value}"' if any(c.isspace() for c in value) else value


def without_type_tokens(text: str) -> str:
    """``text`` with its ``type:`` filters taken out (spaces tidied)."""
    return " ".join(TYPE_TOKEN_RE.sub(" ", text).split())


def combo_value(typed: str) -> str | None:
    """The type box's value for a typed ``type:`` name (None: the box has no such entry)."""
    name = typed.strip().lower().lstrip(".")
    name = TYPE_SYNONYMS.get(name, name)
    return name if any(value == name for _, value in TYPES if value) else None


class FilterBar(QWidget):
    """Tag, type and date filters.

    Signals:
        changed(): a filter changed (the window searches again).
        typeChosen(str): the user chose a type ('' for any); not emitted by
            :meth:`show_typed`.

    Attributes:
        type_from_box: the type box shows the search box's ``type:`` filter (so
            :meth:`query_fragment` leaves the type out: the box already has it).
    """

    changed = Signal()
    typeChosen = Signal(str)

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
        self.type_from_box = False
        self._syncing = False
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
        self.type.currentIndexChanged.connect(self._on_type_changed)
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

    def show_typed(self, types: Sequence[str]) -> None:
        """Show the search box's ``type:`` filters in the type box (no signal is emitted).

        One known type selects its entry; an unknown one, or several (any may hold), shows as
        an extra entry naming them. No typed type: a type that came from the box goes back to
        'Any type', one the user chose here stays.
        """
        self._syncing = True
        try:
            while self.type.count() > len(TYPES):
                self.type.removeItem(len(TYPES))
            if not types:
                if self.type_from_box:
                    self.type.setCurrentIndex(0)
                self.type_from_box = False
                return
            self.type_from_box = True
            value = combo_value(types[0]) if len(set(types)) == 1 else None
            if value is not None:
                self.type.setCurrentIndex(self.type.findData(value))
                return
            self.type.addItem("type: " + ", ".join(dict.fromkeys(types)), None)
            self.type.setCurrentIndex(len(TYPES))
        finally:
            self._syncing = False

    def query_fragment(self, *, with_type: bool | None = None) -> str:
        """The filters in search syntax (empty when none is set).

        The type is left out while it mirrors the search box (``with_type`` overrides).
        """
        parts = []
        tag = self.tag.currentText().strip()
        if tag:
            parts.append(f"tag:{_quote(tag)}")
        kind = self.type.currentData()
        if kind and (not self.type_from_box if with_type is None else with_type):
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

    @Slot(int)
    def _on_type_changed(self, index: int) -> None:
        if self._syncing or index >= len(TYPES):
            return
        self.typeChosen.emit(str(self.type.itemData(index) or ""))
        self.changed.emit()

    @Slot()
    def _on_toggle(self) -> None:
        self.after.setEnabled(self.after_on.isChecked())
        self.before.setEnabled(self.before_on.isChecked())
        self.changed.emit()

    @Slot()
    def _emit(self) -> None:
        self.changed.emit()
