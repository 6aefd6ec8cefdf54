"""Dialogs: first run, import report, settings. Opened with open(), never a blocking exec()."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
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


class ImportReportDialog(QDialog):
    """What an import did, file by file, with the reasons for skips and failures."""

    def __init__(self, report: ImportReport, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import report")
        self.report = report
        lay = QVBoxLayout(self)
        summary = QLabel(report.summary())
        summary.setStyleSheet("font-weight: 600;")
        lay.addWidget(summary)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Result", "File", "Details"])
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        groups = [
            ("failed", report.failed, "error"),
            ("skipped", report.skipped, "reason"),
            ("imported", report.imported, "id"),
            ("updated", report.updated, "id"),
            ("duplicate", report.duplicates, "id"),
            ("unchanged", report.unchanged, "id"),
        ]
        for name, rows, key in groups:
            for row in rows:
                detail = str(row.get(key) or row.get("reason") or row.get("error") or "")
                item = QTreeWidgetItem([name, str(row.get("path", "")), detail])
                item.setToolTip(2, detail)
                self.tree.addTopLevelItem(item)
        self.tree.resizeColumnToContents(0)
        self.tree.setColumnWidth(1, 360)
        lay.addWidget(self.tree, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        lay.addWidget(buttons)
        self.resize(720, 420)

    def rows(self) -> list[tuple[str, str, str]]:
        out = []
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            out.append((item.text(0), item.text(1), item.text(2)))
        return out


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
