"""Dialogs: first run, import report, settings. Opened with open(), never a blocking exec()."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from kvdesk.core.vault.importer import ImportReport


class FirstRunDialog(QDialog):
    """Offers the sample documents when the vault is empty (accept = import them)."""

    def __init__(self, sample_count: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Welcome to kvdesk")
        lay = QVBoxLayout(self)
        title = QLabel("Your vault is empty")
        title.setStyleSheet("font-size: 14pt; font-weight: 600;")
        lay.addWidget(title)
        text = QLabel(
            f"Import {sample_count} small sample documents (policies, meeting notes, an invoice"
            " list, a Japanese memo…) to see search and its explanations working right away?"
            "\n\nYou can also drag your own files or folders onto the window at any time, or"
            " use File ▸ Import."
        )
        text.setWordWrap(True)
        lay.addWidget(text)
        buttons = QDialogButtonBox()
        self.import_button = buttons.addButton(
            "Import samples", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.skip_button = buttons.addButton("Start empty", QDialogButtonBox.ButtonRole.RejectRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.import_button.setDefault(True)
        self.resize(460, 220)


FILE_ROLE = Qt.ItemDataRole.UserRole  # a row's full path, whatever the File column shows
NAME_MIN_PX = 600  # the File column never shrinks below its longest file name, up to this
DETAILS_MAX_PX = 320  # the Details column fits its text up to this (its tooltip has it all)


def _common_folder(paths: list[str]) -> str:
    """The deepest folder holding every path ('' when there is none worth stripping)."""
    absolute = [p for p in paths if os.path.isabs(p)]
    if len(absolute) != len(paths) or not paths:
        return ""
    try:
        common = os.path.commonpath([os.path.dirname(p) for p in absolute])
    except ValueError:  # different drives
        return ""
    return "" if common in ("", os.sep) else common


class ImportReportDialog(QDialog):
    """What an import did, file by file, with the reasons for skips and failures.

    File names stay readable: paths are shown relative to the folder they share (named above
    the table), a path too long for its column is elided in the middle (the file name at its
    end stays), every row's tooltip holds the full path, and the File column never shrinks
    below its longest file name: the table scrolls sideways instead.
    """

    def __init__(self, report: ImportReport, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import report")
        self.report = report
        lay = QVBoxLayout(self)
        summary = QLabel(report.summary())
        summary.setStyleSheet("font-weight: 600;")
        lay.addWidget(summary)
        self.folder_label = QLabel()
        self.folder_label.setTextFormat(Qt.TextFormat.PlainText)  # a path, never markup
        self.folder_label.setWordWrap(True)
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.folder_label)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Result", "File", "Details"])
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.tree.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.tree.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        groups = [
            ("failed", report.failed, "error"),
            ("skipped", report.skipped, "reason"),
            ("imported", report.imported, "id"),
            ("updated", report.updated, "id"),
            ("duplicate", report.duplicates, "id"),
            ("unchanged", report.unchanged, "id"),
        ]
        self._items: list[QTreeWidgetItem] = []
        paths = [str(row.get("path", "")) for _, rows, _ in groups for row in rows]
        self.folder = _common_folder(paths)
        self.folder_label.setText(f"Files under {self.folder}" if self.folder else "")
        self.folder_label.setToolTip(self.folder)
        self.folder_label.setVisible(bool(self.folder))
        for name, rows, key in groups:
            for row in rows:
                detail = str(row.get(key) or row.get("reason") or row.get("error") or "")
                path = str(row.get("path", ""))
                shown = os.path.relpath(path, self.folder) if self.folder else path
                item = QTreeWidgetItem([name, shown, detail])
                item.setData(1, FILE_ROLE, path)
                item.setToolTip(1, path)
                item.setToolTip(2, detail)
                self.tree.addTopLevelItem(item)
                self._items.append(item)
        lay.addWidget(self.tree, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        lay.addWidget(buttons)
        self.resize(820, 440)
        self.fit_columns()

    def rows(self) -> list[tuple[str, str, str]]:
        """(result, full path, details) for every row, in order."""
        return [(it.text(0), str(it.data(1, FILE_ROLE)), it.text(2)) for it in self._items]

    def fit_columns(self) -> None:
        """Result and Details fit their text (Details up to a cap); File takes the rest, but
        never less than its longest file name (then the table scrolls sideways)."""
        tree = self.tree
        pad = 2 * tree.style().pixelMetric(tree.style().PixelMetric.PM_FocusFrameHMargin) + 16
        header = tree.header()
        metrics = tree.fontMetrics()
        result_w = max(tree.sizeHintForColumn(0), header.sectionSizeHint(0))
        details_w = min(max(tree.sizeHintForColumn(2), header.sectionSizeHint(2)), DETAILS_MAX_PX)
        names = [metrics.horizontalAdvance(Path(it.text(1)).name) for it in self._items]
        full = max(tree.sizeHintForColumn(1), header.sectionSizeHint(1))
        name_min = min(max(names, default=0) + pad, NAME_MIN_PX, full)
        room = tree.viewport().width() - result_w - details_w
        header.resizeSection(0, result_w)
        header.resizeSection(1, max(room, name_min))
        header.resizeSection(2, details_w)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        self.fit_columns()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.fit_columns()


class SettingsDialog(QDialog):
    """Vault location (switching reopens the app on it), key set and provider (read-only).

    Signals:
        vaultChosen(str): the user accepted with a different vault path.
        pilotLabelsChanged(str, str): the user accepted with another pilot user or team label.
    """

    vaultChosen = Signal(str)
    pilotLabelsChanged = Signal(str, str)

    def __init__(
        self,
        vault_path: Path,
        model: str,
        key_set: str,
        provider: str,
        parent: QWidget | None = None,
        *,
        pilot_user: str = "",
        pilot_team: str = "",
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._original = str(vault_path)
        self._pilot = (pilot_user, pilot_team)
        form = QFormLayout(self)
        row = QHBoxLayout()
        self.vault_edit = QLineEdit(str(vault_path))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.vault_edit, 1)
        row.addWidget(browse)
        form.addRow("Vault file:", row)
        self.model_label = QLabel(model)
        form.addRow("Embedding model:", self.model_label)
        self.key_set_label = QLabel(key_set)
        form.addRow("Dense key set:", self.key_set_label)
        self.provider_label = QLabel(provider)
        self.provider_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Execution provider:", self.provider_label)
        note = QLabel(
            "The provider is the one onnxruntime really uses (GPU when CUDA works, else CPU)."
            " Changing model: run `kvdesk rekey` on the command line."
        )
        note.setWordWrap(True)
        note.setStyleSheet("color: #6b7280;")
        form.addRow(note)
        self.pilot_user_edit = QLineEdit(pilot_user)
        self.pilot_user_edit.setPlaceholderText("e.g. alice (optional)")
        form.addRow("Pilot user label:", self.pilot_user_edit)
        self.pilot_team_edit = QLineEdit(pilot_team)
        self.pilot_team_edit.setPlaceholderText("e.g. support (optional)")
        form.addRow("Pilot team label:", self.pilot_team_edit)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(560, 300)

    def _browse(self) -> None:
        dialog = QFileDialog(
            self,
            "Choose or create a vault",
            self.vault_edit.text(),
            "kvdesk vaults (*.kvdb);;All files (*)",
        )
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setOption(QFileDialog.Option.DontConfirmOverwrite, True)
        dialog.fileSelected.connect(self.vault_edit.setText)
        dialog.open()

    def accept(self) -> None:
        chosen = self.vault_edit.text().strip()
        labels = (self.pilot_user_edit.text().strip(), self.pilot_team_edit.text().strip())
        super().accept()
        if labels != self._pilot:
            self.pilotLabelsChanged.emit(*labels)
        if chosen and chosen != self._original:
            self.vaultChosen.emit(chosen)
