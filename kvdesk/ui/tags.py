"""Tag chips with add/remove and completion from the vault's existing tags."""

from __future__ import annotations

from PySide6.QtCore import QStringListModel, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCompleter,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QWidget,
)

from kvdesk.ui.style import CHIP_BG, CHIP_FG


class TagChip(QToolButton):
    """One tag; clicking its × removes it."""

    def __init__(self, tag: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tag = tag
        self.setText(f"{tag}  ×")
        self.setToolTip(f"Remove tag “{tag}”")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setStyleSheet(
            f"QToolButton {{ background: {CHIP_BG.name()}; color: {CHIP_FG.name()};"
            " border: none; border-radius: 10px; padding: 2px 8px; }"
            " QToolButton:hover { background: #c7dbff; }"
        )


class TagEditor(QWidget):
    """Chips for a document's accepted tags plus a line edit to add one.

    Signals:
        tagAdded(str): the user asked to add a tag.
        tagRemoved(str): the user asked to remove a tag.
    """

    tagAdded = Signal(str)
    tagRemoved = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self._icon = QLabel("Tags:")
        self._layout.addWidget(self._icon)
        self.chips: list[TagChip] = []
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("add tag…")
        self.edit.setMaximumWidth(160)
        self.edit.setClearButtonEnabled(True)
        self._completion = QStringListModel(self)
        self.completer = QCompleter(self._completion, self)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.edit.setCompleter(self.completer)
        self.edit.returnPressed.connect(self._on_return)
        self._layout.addWidget(self.edit)
        self._layout.addStretch(1)

    def set_completions(self, tags: list[str]) -> None:
        self._completion.setStringList(tags)

    def set_tags(self, tags: tuple[str, ...] | list[str]) -> None:
        for chip in self.chips:
            self._layout.removeWidget(chip)
            chip.deleteLater()
        self.chips = []
        for i, tag in enumerate(tags):
            chip = TagChip(tag, self)
            chip.clicked.connect(self._on_chip_clicked)
            self._layout.insertWidget(1 + i, chip)
            self.chips.append(chip)

    def tags(self) -> list[str]:
        return [c.tag for c in self.chips]

    def chip(self, tag: str) -> TagChip | None:
        return next((c for c in self.chips if c.tag == tag), None)

    @Slot()
    def _on_return(self) -> None:
        tag = " ".join(self.edit.text().split())
        if tag and tag not in self.tags():
            self.tagAdded.emit(tag)
        self.edit.clear()

    @Slot()
    def _on_chip_clicked(self) -> None:
        chip = self.sender()
        if isinstance(chip, TagChip):
            self.tagRemoved.emit(chip.tag)
