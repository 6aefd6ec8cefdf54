"""Tag chips with add/remove and completion from the vault's existing tags."""

from __future__ import annotations

from PySide6.QtCore import QMargins, QPoint, QRect, QSize, QStringListModel, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCompleter,
    QLabel,
    QLayout,
    QLayoutItem,
    QLineEdit,
    QSizePolicy,
    QToolButton,
    QWidget,
    QWidgetItem,
)

from kvdesk.ui.style import CHIP_BG, CHIP_FG


class FlowLayout(QLayout):
    """Lays widgets out left to right and wraps to a new row when the width runs out.

    Its minimum width is the widest single item, so any number of chips never widens the
    window; the height follows the width (``heightForWidth``).
    """

    def __init__(self, parent: QWidget | None = None, spacing: int = 4) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._spacing = spacing
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 (Qt API)
        self._items.append(item)

    def insert_widget(self, index: int, widget: QWidget) -> None:
        self.addChildWidget(widget)
        self._items.insert(max(0, min(index, len(self._items))), QWidgetItem(widget))
        self.invalidate()

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        if 0 <= index < len(self._items):
            item = self._items.pop(index)
            self.invalidate()
            return item
        return None

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:  # noqa: N802
        return self.minimumSize()

    def minimumSize(self) -> QSize:  # noqa: N802
        size = QSize()
        for item in self._items:
            if not item.isEmpty():
                size = size.expandedTo(item.minimumSize())
        m: QMargins = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    def _arrange(self, rect: QRect, *, move: bool) -> int:
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        x, y, row_height = area.x(), area.y(), 0
        for item in self._items:
            if item.isEmpty():
                continue
            hint = item.sizeHint()
            width = min(hint.width(), max(area.width(), item.minimumSize().width()))
            if x > area.x() and x + width > area.right() + 1:
                x, y, row_height = area.x(), y + row_height + self._spacing, 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), QSize(width, hint.height())))
            x += width + self._spacing
            row_height = max(row_height, hint.height())
        return y + row_height - rect.y() + m.bottom()


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
        self._layout = FlowLayout(self)
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self._icon = QLabel("Tags:")
        self._layout.addWidget(self._icon)
        self.chips: list[TagChip] = []
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("add tag…")
        self.edit.setFixedWidth(160)
        self.edit.setClearButtonEnabled(True)
        self._completion = QStringListModel(self)
        self.completer = QCompleter(self._completion, self)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.edit.setCompleter(self.completer)
        self.edit.returnPressed.connect(self._on_return)
        self._layout.addWidget(self.edit)

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
            self._layout.insert_widget(1 + i, chip)
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
