"""The main window: search, results, 'why this result', viewer, import; wiring only.

Every call into the core goes through :class:`~kvdesk.ui.session.Session`, which runs it off
the GUI thread; this module turns its signals into widget updates.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import (
    QByteArray,
    QEvent,
    QEventLoop,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QStringListModel,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QCompleter,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from kvdesk.core.errors import KvdeskError
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.pilot.recorder import COMMIT_SECONDS, IDLE_SECONDS
from kvdesk.core.progress import Progress
from kvdesk.core.search.query import has_cjk, parse_query
from kvdesk.core.search.retrieval import Hit, SearchResult
from kvdesk.core.vault.importer import ImportReport
from kvdesk.ui.confusable import ConfusableView
from kvdesk.ui.dialogs import FirstRunDialog, ImportReportDialog, SettingsDialog
from kvdesk.ui.explain import ExplanationPanel
from kvdesk.ui.filters import FilterBar, without_type_tokens
from kvdesk.ui.pilot_dashboard import PilotDashboard
from kvdesk.ui.resources import app_icon, sample_paths
from kvdesk.ui.results import HitDelegate, HitRole, ResultsModel
from kvdesk.ui.review_queue import ReviewQueue
from kvdesk.ui.scan_view import ScanKey, ScanReading, ScanReadings, ScanSource, is_scan_type
from kvdesk.ui.session import KeyState, SearchOutcome, Session
from kvdesk.ui.tasks import Task, eta_text
from kvdesk.ui.team import TeamState, TeamStatusLabel, TeamSync
from kvdesk.ui.thumbnails import Thumbnails
from kvdesk.ui.ui_state import (
    load_history,
    remember_vault,
    save_history,
    save_settings,
    set_vault_value,
    ui_settings,
    vault_value,
)
from kvdesk.ui.viewer import DocumentViewer

log = logging.getLogger("kvdesk.ui")

DEBOUNCE_MS = 250
# Pilot log (see kvdesk.core.pilot.recorder): a query typed as you go is recorded only once the
# user commits to it — Enter, opening a result, a verdict, or results left on screen this long.
PILOT_COMMIT_MS = int(COMMIT_SECONDS * 1000)
# A pilot run idle this long is stale: the next committed query starts a new run.
PILOT_IDLE_S = IDLE_SECONDS
MODES = [("Hybrid", "hybrid"), ("Words only", "lexical"), ("Meaning only", "dense")]
# The document viewer never gets narrower than this (about 60 characters a line), not even
# when two explanations are compared side by side; those want COMPARE_WIDTH, taken first from
# the results list, then from the viewer down to its minimum; what is still missing, the
# explanation panel scrolls.
VIEWER_MIN_WIDTH = 420
COMPARE_WIDTH = 660
CURRENT_NAME_PX = 240  # the status bar's "current file" is elided in the middle to this
SEARCH_HELP = (
    'Words, "exact phrases", -exclude, tag:NAME, type:pdf|docx|text|html|csv|image, '
    "after:YYYY-MM-DD, before:YYYY-MM-DD"
)


class MainWindow(QMainWindow):
    """The kvdesk main window.

    Signals:
        resultsShown(object): the newest search's SearchOutcome is on screen.
        importFinished(object): an import ended (ImportReport, or None when cancelled/failed).
        tagsUpdated(int): a document's tags changed and are shown.
    """

    resultsShown = Signal(object)
    importFinished = Signal(object)
    tagsUpdated = Signal(int)

    def __init__(
        self,
        kb: KnowledgeBase,
        *,
        offer_samples: bool = True,
        auto_dense: bool = True,
        first_run_decision: Callable[[], bool] | None = None,
        kb_factory: Callable[[str], KnowledgeBase] | None = None,
        remember_layout: bool = True,
    ) -> None:
        super().__init__()
        self.setWindowTitle("kvdesk")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.auto_dense = auto_dense
        # Off in screenshot mode: neither the saved window layout nor history is read or written.
        self.remember_layout = remember_layout
        self.first_run_decision = first_run_decision
        self.kb_factory = kb_factory or (lambda p: KnowledgeBase.open(p))
        self.first_run_dialog: FirstRunDialog | None = None
        self.report_dialog: ImportReportDialog | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.last_import_task: Task | None = None
        self.last_dense_task: Task | None = None
        self.last_search_task: Task | None = None
        self.last_outcome: SearchOutcome | None = None
        self._progress_tasks: list[Task] = []
        self._shown_task: Task | None = None
        self._history = load_history() if remember_layout else []
        self.review_queue: ReviewQueue | None = None
        self.pilot_dashboard: PilotDashboard | None = None
        self._auto_select = False
        self._pilot_idle_s: float = PILOT_IDLE_S
        self.team_sync: TeamSync | None = None
        self._quiet_seq = 0  # the search re-run because the team changed something
        self._results_stale = False  # the team changed something; re-run the search on screen
        self._dense_wanted = False  # the team's documents arrived: build their meaning keys

        self._build_widgets()
        self._build_menus()
        self._forward_file_drops()
        self._restore_state()
        self._attach(kb)
        if offer_samples:
            QTimer.singleShot(0, self._maybe_offer_samples)

    # -- construction ---------------------------------------------------------------------------

    def _build_widgets(self) -> None:
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(10, 10, 10, 4)
        outer.setSpacing(6)

        top = QHBoxLayout()
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search your documents…   (Ctrl+F)")
        self.search_edit.setToolTip(SEARCH_HELP)
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setMinimumHeight(32)
        self.search_edit.setStyleSheet("QLineEdit { font-size: 12pt; padding: 2px 8px; }")
        self._history_model = QStringListModel(self._history, self)
        self.history_completer = QCompleter(self._history_model, self)
        self.history_completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.history_completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.search_edit.setCompleter(self.history_completer)
        self.history_button = QToolButton()
        self.history_button.setText("History ▾")
        self.history_button.setToolTip("Recent searches")
        self.history_button.clicked.connect(self._show_history)
        self.mode_combo = QComboBox()
        for label, mode in MODES:
            self.mode_combo.addItem(label, mode)
        self.mode_combo.setToolTip("Which key spaces rank the results")
        top.addWidget(self.search_edit, 1)
        top.addWidget(self.history_button)
        top.addWidget(self.mode_combo)
        self.found_button = QPushButton("✓ Found it")
        self.found_button.setToolTip(
            "Pilot: this search found what you needed (the document in the viewer)"
        )
        self.notfound_button = QPushButton("✗ Not found")
        self.notfound_button.setToolTip("Pilot: this search did not find what you needed")
        for b in (self.found_button, self.notfound_button):
            b.setVisible(False)
            b.setEnabled(False)
            top.addWidget(b)
        outer.addLayout(top)

        self.filter_bar = FilterBar()
        outer.addWidget(self.filter_bar)

        self.banner = QLabel()
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet(
            "#banner { background: #fff7e0; border: 1px solid #f5d68a; border-radius: 6px;"
            " padding: 6px 10px; color: #7a5200; }"
        )
        self.banner.setVisible(False)
        outer.addWidget(self.banner)

        self.model = ResultsModel(self)
        self.thumbnails = Thumbnails(self)  # previews of scans and photos on their cards
        self.model.set_thumbnails(self.thumbnails)
        self.results_view = QListView()
        self.results_view.setModel(self.model)
        self.results_view.setItemDelegate(HitDelegate(self.results_view))
        self.results_view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.results_view.setUniformItemSizes(True)
        self.results_view.setMouseTracking(True)
        self.results_view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.results_view.setMinimumWidth(320)
        self.results_view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.results_count = QLabel("")
        self.results_count.setStyleSheet("color: #6b7280;")
        left = QWidget()
        left_lay = QVBoxLayout(left)
        left_lay.setContentsMargins(0, 0, 0, 0)
        left_lay.addWidget(self.results_count)
        left_lay.addWidget(self.results_view, 1)

        self.viewer = DocumentViewer()
        self.viewer.setMinimumWidth(VIEWER_MIN_WIDTH)
        self.explain = ExplanationPanel()
        # OCR pages of scans matched against the query, read off the GUI thread; the viewer
        # boxes the matched words, the explanation lists them.
        self.scan_readings = ScanReadings(self)
        self.scan_readings.ready.connect(self._on_scan_read)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.viewer)
        self.splitter.addWidget(self.explain)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 4)
        self.splitter.setStretchFactor(2, 3)
        self.splitter.setChildrenCollapsible(False)
        outer.addWidget(self.splitter, 1)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.setTabBarAutoHide(True)  # just the search until a second tab is opened
        self.tabs.setTabsClosable(True)
        self.tabs.addTab(central, "Search")
        self.tabs.tabBar().setTabButton(0, self.tabs.tabBar().ButtonPosition.RightSide, None)
        self.tabs.tabCloseRequested.connect(self._close_tab)
        self.setCentralWidget(self.tabs)

        bar = self.statusBar()
        self.provider_label = QLabel("Provider: loading…")
        self.provider_label.setToolTip("Loading the embedding model…")
        self.keys_label = QLabel("Keys: –")
        self.progress_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(200)
        self.progress.setTextVisible(True)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.clicked.connect(self.cancel_current)
        self.pause_button = QToolButton()
        self.pause_button.setText("Pause")
        self.pause_button.clicked.connect(self.toggle_dense_pause)
        for w in (self.progress_label, self.progress, self.cancel_button, self.pause_button):
            w.setVisible(False)
            bar.addPermanentWidget(w)
        self.team_label = TeamStatusLabel()
        self.team_label.setVisible(False)  # only on a desk of a team vault
        bar.addPermanentWidget(self.team_label)
        bar.addPermanentWidget(self.keys_label)
        bar.addPermanentWidget(self.provider_label)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.search_now)
        self._pilot_timer = QTimer(self)
        self._pilot_timer.setSingleShot(True)
        self._pilot_timer.setInterval(PILOT_COMMIT_MS)
        self._pilot_timer.timeout.connect(self.commit_pilot_query)
        self.search_edit.textChanged.connect(self._on_text_changed)
        self.search_edit.returnPressed.connect(self._on_return)
        self.filter_bar.changed.connect(self._on_filters_changed)
        self.filter_bar.typeChosen.connect(self._on_type_chosen)
        self.mode_combo.currentIndexChanged.connect(self._on_filters_changed)
        self.results_view.activated.connect(self._on_activated)
        self.results_view.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.explain.passageClicked.connect(self._on_passage_clicked)
        self.viewer.tag_editor.tagAdded.connect(self._on_tag_added)
        self.viewer.tag_editor.tagRemoved.connect(self._on_tag_removed)
        self.viewer.openFailed.connect(self._show_error)
        self.found_button.clicked.connect(self.mark_found)
        self.notfound_button.clicked.connect(self.mark_not_found)

    def _build_menus(self) -> None:
        def action(
            text: str,
            slot: Callable[[], object],
            *keys: str | QKeySequence | QKeySequence.StandardKey,
        ) -> QAction:
            act = QAction(text, self)
            if keys:
                act.setShortcuts([QKeySequence(k) for k in keys])
            act.triggered.connect(slot)
            self.addAction(act)  # shortcuts work wherever the focus is
            return act

        file_menu = self.menuBar().addMenu("&File")
        self.import_action = action(
            "&Import files…", self.choose_files, QKeySequence.StandardKey.Open
        )
        file_menu.addAction(self.import_action)
        file_menu.addAction(action("Import &folder…", self.choose_folder, "Ctrl+Shift+O"))
        file_menu.addAction(action("Import &records (JSONL)…", self.choose_records))
        file_menu.addAction(action("Import &sample documents", self.import_samples))
        file_menu.addSeparator()
        file_menu.addAction(action("&Settings…", self.open_settings, "Ctrl+,"))
        file_menu.addSeparator()
        file_menu.addAction(action("&Quit", self.close, QKeySequence.StandardKey.Quit))

        search_menu = self.menuBar().addMenu("&Search")
        search_menu.addAction(action("&Focus search", self.focus_search, "Ctrl+F", "Ctrl+L"))
        search_menu.addAction(action("&Next result", self.next_hit, "Ctrl+J", "Alt+Down"))
        search_menu.addAction(action("&Previous result", self.previous_hit, "Ctrl+K", "Alt+Up"))
        search_menu.addAction(
            action("&Open original", self.open_current, "Ctrl+Return", "Ctrl+Enter")
        )
        search_menu.addAction(action("&Clear filters", self.filter_bar.reset))

        keys_menu = self.menuBar().addMenu("&Keys")
        keys_menu.addAction(action("Build &dense keys", self.build_dense))
        self.pause_action = action("&Pause meaning keys", self.toggle_dense_pause)
        self.pause_action.setEnabled(False)
        keys_menu.addAction(self.pause_action)
        keys_menu.addAction(action("&Cancel background work", self.cancel_current, "Ctrl+."))
        keys_menu.addSeparator()
        keys_menu.addAction(action("Con&fusable documents…", self.open_confusable_documents))

        tags_menu = self.menuBar().addMenu("&Tags")
        self.review_action = action("&Review suggestions…", self.open_review_queue, "Ctrl+Shift+T")
        tags_menu.addAction(self.review_action)

        pilot_menu = self.menuBar().addMenu("&Pilot")
        self.dashboard_action = action("&Dashboard", self.open_pilot_dashboard)
        pilot_menu.addAction(self.dashboard_action)
        self.record_action = QAction("&Record searches", self)
        self.record_action.setCheckable(True)
        self.record_action.setToolTip("Pilot log: record search sessions in this vault (local)")
        self.record_action.toggled.connect(self.set_pilot_recording)
        pilot_menu.addAction(self.record_action)
        pilot_menu.addSeparator()
        pilot_menu.addAction(action("&Found it", self.mark_found, "Ctrl+Shift+Y"))
        pilot_menu.addAction(action("&Not found", self.mark_not_found, "Ctrl+Shift+N"))

        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(action("Search &syntax", self._show_syntax))
        help_menu.addAction(action("&Keyboard shortcuts", self._show_shortcuts))
        help_menu.addAction(action("&About kvdesk", self._show_about))

    # -- session --------------------------------------------------------------------------------

    def _attach(self, kb: KnowledgeBase) -> None:
        self.session = Session(kb, self)
        self.session.searched.connect(self._on_searched)
        self.session.searchFailed.connect(self._on_search_failed)
        self.session.keysChanged.connect(self._on_keys_changed)
        self.session.tagsChanged.connect(self._on_tags_changed)
        self.session.error.connect(self._show_error)
        self.session.message.connect(self._status_message)
        self.session.densePaused.connect(self._on_dense_paused)
        # Re-read the pause state once a task is marked done (not from its own finished signal,
        # whose slots may run before the runner marks it).
        self.session.runner.taskDone.connect(self._sync_pause_ui_after)
        self.session.runner.taskDone.connect(self._on_tracked_done)
        self.session.pilotMarked.connect(self._on_pilot_marked)
        self.session.denseYielded.connect(self._resume_dense)
        self.scan_readings.attach(self.session.runner, kb.scan_pages)
        self.thumbnails.attach(self.session.runner, kb.values.original_bytes)
        self.viewer.set_runner(self.session.runner)
        self.start_task = self.session.start()
        self._attach_team()
        self.session.pilot.idle_s = self._pilot_idle_s
        self._sync_pilot_ui()
        self._refresh_tag_lists()
        self._update_title()
        self._show_idle_hint()

    def _attach_team(self) -> None:
        """On a desk of a team vault: sync in the background and show how it stands."""
        self._results_stale = self._dense_wanted = False
        self._quiet_seq = 0  # a new session numbers its searches from 1 again
        if self.session.kb.team is None:
            self.team_sync = None
            self.team_label.set_state(None)
            return
        sync = TeamSync(self.session, self.session)
        sync.stateChanged.connect(self._on_team_state)
        sync.pulled.connect(self._on_team_pulled)
        self.team_sync = sync
        self.team_label.set_state(sync.state)
        sync.start()  # queued behind the task that opens the vault

    def _detach_team(self) -> None:
        if self.team_sync is not None:
            self.team_sync.stop()
            self.team_sync = None

    def _update_title(self) -> None:
        self.setWindowTitle(f"kvdesk — {self.session.path.name}")

    def switch_vault(self, path: str) -> None:
        """Close the current vault (waiting for its work) and open another."""
        try:
            kb = self.kb_factory(path)
        except (KvdeskError, OSError) as exc:
            self._show_error(f"Could not open {path}: {exc}")
            return
        self._close_tool_tabs()
        self._detach_team()
        self.session.close()
        self.session.deleteLater()
        self.model.set_hits([], {})
        self.viewer.clear()
        self.explain.show_hits([])
        self._attach(kb)
        remember_vault(kb.path)
        self._maybe_offer_samples()

    # -- searching ------------------------------------------------------------------------------

    def compose_query(self) -> str:
        # A type typed in the box is shown by the type filter, and counted once (the box's).
        return " ".join(
            p for p in (self.search_edit.text().strip(), self.filter_bar.query_fragment()) if p
        )

    @Slot(str)
    def _on_text_changed(self, text: str) -> None:
        self.filter_bar.show_typed(parse_query(text).types)
        self._pilot_timer.stop()  # still typing: the results on screen are not committed yet
        self._debounce.start()

    @Slot(str)
    def _on_type_chosen(self, value: str) -> None:
        """A type chosen in the filter replaces one typed in the box (one filter, not two)."""
        text = self.search_edit.text()
        if not parse_query(text).types:
            return  # the filter alone holds the type
        rest = without_type_tokens(text)
        self.search_edit.setText(" ".join(p for p in (rest, f"type:{value}" if value else "") if p))

    @Slot()
    def _on_filters_changed(self) -> None:
        self._debounce.start()

    @Slot()
    def _on_return(self) -> None:
        self._debounce.stop()
        query = self.compose_query()
        if self.session.pilot.is_pending(query):
            self.commit_pilot_query()  # these results are on screen already
        else:
            self.session.pilot.commit_when_shown(query)
            self.search_now()
        self._remember(self.search_edit.text().strip())

    def _remember(self, query: str) -> None:
        if not query:
            return
        if not self.remember_layout:
            return
        self._history = [query] + [q for q in self._history if q != query]
        self._history_model.setStringList(self._history[:50])
        save_history(self._history)

    @Slot()
    def _show_history(self) -> None:
        self.search_edit.setFocus()
        self.history_completer.setCompletionPrefix("")
        self.history_completer.complete()

    @Slot()
    def search_now(self) -> Task | None:
        """Search at once with the box and the filters (the debounce timer calls this too)."""
        self._debounce.stop()
        query = self.compose_query()
        if not query:
            self.session.pilot.drop_pending()  # a cleared box abandons the uncommitted query
            self._pilot_timer.stop()
            self.session.search("")  # makes any running search stale
            self.model.set_hits([], {})
            self.banner.setVisible(False)
            self._show_idle_hint()
            return None
        task = self.session.search(query, mode=str(self.mode_combo.currentData()))
        self.last_search_task = task
        self.results_count.setText("Searching…")
        return task

    def _show_idle_hint(self) -> None:
        try:
            n = self.session.count()
        except KvdeskError:
            n = 0
        self.results_count.setText(
            f"{n} documents in this vault — type to search"
            if n
            else "The vault is empty — drop files or folders here, or use File ▸ Import"
        )

    @Slot(object)
    def _on_searched(self, outcome: object) -> None:
        if not isinstance(outcome, SearchOutcome):
            return
        if outcome.query != self.compose_query():
            return  # the box changed since: a newer search is on its way
        if outcome.seq == self._quiet_seq:
            self._show_refreshed(outcome)
            return
        self.last_outcome = outcome
        result = outcome.result
        self.model.set_hits(result.hits, outcome.dates)
        self._show_result_summary(result)
        if self.session.pilot_on:
            # Held until the user commits to it; a newer search (the next keystroke) replaces
            # it, so typing "vpn setup" records one query, not v, vp, vpn…
            if self.session.pilot.shown(outcome.query, result):
                self._pilot_timer.start()
            else:
                self._pilot_timer.stop()  # committed at once (Enter was pressed on it)
            self._sync_pilot_ui()
        self._select_first_hit(result)
        self.resultsShown.emit(outcome)
        if self._results_stale:
            self.refresh_results()

    def _show_result_summary(self, result: SearchResult) -> None:
        n = len(result.hits)
        spaces = ", ".join(s for s, ok in result.ready.items() if ok)
        self.results_count.setText(
            f"{n} result{'s' if n != 1 else ''} · {result.elapsed_ms:.0f} ms · {result.mode}"
            f" ({spaces})"
        )
        if not result.hits:
            self.banner.setText("No documents match this search.")
            self.banner.setVisible(True)
        elif not result.confident:
            self.banner.setText("No confident match — these are the closest documents")
            self.banner.setVisible(True)
        else:
            self.banner.setVisible(False)
        if result.provider and result.provider != "none":
            self._set_provider(result.provider)

    def refresh_results(self) -> Task | None:
        """Run the search on screen again because the team changed documents or tags: the
        same query, so it is not a new one for the pilot log, and the selection stays."""
        self._results_stale = False
        query = self.compose_query()
        if not query:
            self._show_idle_hint()
            return None
        if self.session.searching:
            self._results_stale = True  # once the user's own search is shown
            return None
        task = self.session.search(query, mode=str(self.mode_combo.currentData()))
        self._quiet_seq = self.session.latest_search
        return task

    def _show_refreshed(self, outcome: SearchOutcome) -> None:
        """A re-run search on screen: the documents selected before stay selected (and the
        viewer stays where it was); only a selection that is gone moves to the first hit."""
        selected = [hit.value_id for _, hit in self.selected_hits()]
        current = self.model.hit(self.results_view.currentIndex().row())
        result = outcome.result
        self.last_outcome = outcome
        self.model.set_hits(result.hits, outcome.dates)
        self._show_result_summary(result)
        rows = [i for i, h in enumerate(result.hits) if h.value_id in selected]
        if rows:
            sel = self.results_view.selectionModel()
            sel.blockSignals(True)
            for row in rows:
                sel.select(self.model.index(row), QItemSelectionModel.SelectionFlag.Select)
            current_id = current.value_id if current is not None else None
            now = next((i for i in rows if result.hits[i].value_id == current_id), rows[0])
            sel.setCurrentIndex(self.model.index(now), QItemSelectionModel.SelectionFlag.NoUpdate)
            sel.blockSignals(False)
            self.results_view.viewport().update()
            self._explain(self.selected_hits())
            record = self.viewer.record
            shown = next((h for h in result.hits if record and h.value_id == record.id), None)
            if shown is not None and tuple(shown.tags) != tuple(self.viewer.tag_editor.tags()):
                self.viewer.set_tags(tuple(shown.tags))
        else:
            self._select_first_hit(result)
        self.resultsShown.emit(outcome)

    def _select_first_hit(self, result: SearchResult) -> None:
        """Show the first hit (as the search's own choice, not the user's), or nothing."""
        if result.hits:
            self._auto_select = True
            try:
                self.select_rows([0])
            finally:
                self._auto_select = False
        else:
            self.viewer.clear()
            self.explain.show_hits([])

    @Slot(str)
    def _on_search_failed(self, message: str) -> None:
        self.results_count.setText(f"Search failed: {message}")

    # -- selection, viewer, explanation ---------------------------------------------------------

    def select_rows(self, rows: list[int]) -> None:
        """Select hits (the first becomes current); two rows show the comparison."""
        sel = self.results_view.selectionModel()
        sel.blockSignals(True)
        sel.clearSelection()
        for row in rows:
            sel.select(self.model.index(row), QItemSelectionModel.SelectionFlag.Select)
        sel.blockSignals(False)
        if rows:
            sel.setCurrentIndex(
                self.model.index(rows[0]), QItemSelectionModel.SelectionFlag.NoUpdate
            )
        self.results_view.viewport().update()
        self._on_selection_changed()

    def selected_hits(self) -> list[tuple[int, Hit]]:
        rows = sorted(i.row() for i in self.results_view.selectionModel().selectedRows())
        current = self.results_view.currentIndex().row()
        if len(rows) > 2:
            others = [r for r in rows if r != current]
            rows = sorted([current, others[0]]) if current in rows else rows[:2]
        out = []
        for row in rows:
            hit = self.model.hit(row)
            if hit is not None:
                out.append((row + 1, hit))
        return out

    @Slot()
    def _on_selection_changed(self) -> None:
        hits = self.selected_hits()
        self._explain(hits)
        if len(hits) == 2:
            self._fit_compare()
        if not hits:
            return
        current = self.model.hit(self.results_view.currentIndex().row())
        chosen = current if current is not None and any(h is current for _, h in hits) else None
        self.show_in_viewer(chosen or hits[0][1])

    def _fit_compare(self) -> None:
        """Make room for two explanations side by side: from the results list first (down to
        its minimum), then from the viewer down to VIEWER_MIN_WIDTH; the rest, they scroll."""
        sizes = self.splitter.sizes()
        if len(sizes) != 3 or sizes[2] >= COMPARE_WIDTH:
            return
        results, viewer, explain = sizes
        left = self.splitter.widget(0)
        results_min = max(left.minimumWidth(), left.minimumSizeHint().width()) if left else 0
        need = COMPARE_WIDTH - explain
        take = min(need, max(0, results - results_min))
        results, explain, need = results - take, explain + take, need - take
        take = min(need, max(0, viewer - VIEWER_MIN_WIDTH))
        viewer, explain = viewer - take, explain + take
        self.splitter.setSizes([results, viewer, explain])

    def _explain(self, hits: list[tuple[int, Hit]]) -> None:
        """Show the explanations, and ask for the OCR words of the scans among them."""
        self.explain.show_hits(hits)
        for view in self.explain.visible_views():
            if view.hit is not None and is_scan_type(view.hit.media_type):
                view.scan_key = self._scan_key(view.hit)
                reading = self.scan_readings.request(view.scan_key)
                if reading is not None:
                    view.show_scan(reading)

    def _terms_for(self, hit: Hit) -> list[str]:
        """The query words to mark in a hit: those that really matched, else the query's."""
        if hit.explanation.lexical is not None and hit.explanation.lexical.terms:
            # The words that really matched (stop words like "I" or "do" never do).
            return [t.term for t in hit.explanation.lexical.terms if t.field != "identifier"]
        parsed = (
            self.last_outcome.result.parsed if self.last_outcome is not None else None
        ) or parse_query(self.compose_query())
        return [t for t in (*parsed.terms, *parsed.phrases) if len(t) >= 3 or has_cjk(t)]

    def _scan_key(self, hit: Hit) -> ScanKey:
        ids = hit.explanation.identifiers
        return ScanKey(
            hit.value_id, tuple(self._terms_for(hit)), ids.matches if ids is not None else ()
        )

    def show_in_viewer(self, hit: Hit) -> None:
        try:
            record = self.session.kb.values.get(hit.value_id)
            text = self.session.kb.values.text(hit.value_id)
        except KvdeskError as exc:
            self._show_error(str(exc))
            return
        values, value_id = self.session.kb.values, hit.value_id
        original = functools.partial(values.original_bytes, value_id)
        self.viewer.show_value(record, text, original, self._terms_for(hit))
        if is_scan_type(record.media_type):
            key = self._scan_key(hit)
            source = ScanSource(value_id, record.version, record.media_type, original)
            self.viewer.show_scan(source, key, self.scan_readings.request(key))
        self._start_view(hit)

    @Slot(object)
    def _on_scan_read(self, reading: object) -> None:
        if isinstance(reading, ScanReading):
            self.viewer.show_reading(reading)
            self.explain.show_scan(reading)

    @Slot(int, int, int)
    def _on_passage_clicked(self, value_id: int, start: int, end: int) -> None:
        if self.viewer.record is None or self.viewer.record.id != value_id:
            hit = next((h for h in self.model.hits() if h.value_id == value_id), None)
            if hit is not None:
                self.show_in_viewer(hit)
        self.viewer.highlight_passage(start, end)

    @Slot(QModelIndex)
    def _on_activated(self, index: QModelIndex) -> None:
        hit = index.data(HitRole)
        if isinstance(hit, Hit):
            self.show_in_viewer(hit)
            self.session.pilot.chosen(hit.value_id)  # opened on purpose
            self.viewer.text_view.setFocus()

    @Slot()
    def focus_search(self) -> None:
        self.search_edit.setFocus()
        self.search_edit.selectAll()

    @Slot()
    def next_hit(self) -> None:
        self._step(1)

    @Slot()
    def previous_hit(self) -> None:
        self._step(-1)

    def _step(self, delta: int) -> None:
        n = self.model.rowCount()
        if not n:
            return
        row = self.results_view.currentIndex().row()
        row = 0 if row < 0 else max(0, min(n - 1, row + delta))
        self.select_rows([row])
        self.results_view.scrollTo(self.model.index(row))

    @Slot()
    def open_current(self) -> None:
        if self.viewer.record is not None:
            self.viewer.open_original()

    # -- pilot log ------------------------------------------------------------------------------

    @property
    def pilot_idle_s(self) -> float:
        """Seconds after which a pilot run is stale (the next query starts a new session)."""
        return self._pilot_idle_s

    @pilot_idle_s.setter
    def pilot_idle_s(self, seconds: float) -> None:
        self._pilot_idle_s = seconds
        self.session.pilot.idle_s = seconds

    @Slot()
    def commit_pilot_query(self) -> Task | None:
        """Record the search on screen in the pilot log (the user committed to it)."""
        self._pilot_timer.stop()
        task = self.session.pilot.commit()
        if task is not None:
            self._sync_pilot_ui()
        return task

    def _start_view(self, hit: Hit) -> None:
        """Time the document now on screen (pilot on); the previous view is recorded."""
        pilot = self.session.pilot
        if not pilot.enabled:
            pilot.view(hit.value_id, None, user=False)  # nothing is timed
            return
        user = not self._auto_select  # not the first hit the window selected by itself
        rank = next((i + 1 for i, h in enumerate(self.model.hits()) if h is hit), None)
        pilot.view(hit.value_id, rank, user=user)
        if user:  # opening a result committed the query it came from
            self._pilot_timer.stop()
            self._sync_pilot_ui()

    @Slot(bool)
    def set_pilot_recording(self, on: bool) -> Task | None:
        """Pilot ▸ Record searches: saved in the vault; applies from the next search."""
        if on == self.session.pilot_on:
            self._sync_pilot_ui()
            return None
        task = self.session.configure_pilot(enabled=on)  # a new run; nothing pending
        self._sync_pilot_ui()
        self.statusBar().showMessage(
            "Pilot: recording searches in this vault" if on else "Pilot: recording is off", 5000
        )
        return task

    def _sync_pilot_ui(self) -> None:
        on = self.session.pilot_on
        self.record_action.blockSignals(True)
        self.record_action.setChecked(on)
        self.record_action.blockSignals(False)
        if self.pilot_dashboard is not None:
            box = self.pilot_dashboard.enabled_box
            box.blockSignals(True)
            box.setChecked(on)
            box.blockSignals(False)
        has_session = self.session.pilot.has_session
        for b in (self.found_button, self.notfound_button):
            b.setVisible(on)
            b.setEnabled(has_session)

    @Slot()
    def mark_found(self) -> Task | None:
        """Found it: the document in the viewer ends the session as found."""
        value_id = self.viewer.record.id if self.viewer.record is not None else None
        return self._after_verdict(self.session.pilot.found(value_id))

    @Slot()
    def mark_not_found(self) -> Task | None:
        return self._after_verdict(self.session.pilot.not_found())

    def _after_verdict(self, task: Task | None) -> Task | None:
        self._pilot_timer.stop()  # a verdict commits the query on screen first
        self._sync_pilot_ui()
        return task

    @Slot(object)
    def _on_pilot_marked(self, pilot_session: object) -> None:
        found = getattr(pilot_session, "outcome", None) == "found"
        self.statusBar().showMessage(
            f"Pilot: marked {'found' if found else 'not found'} — the next search starts a new"
            " session",
            5000,
        )
        if self.pilot_dashboard is not None:
            self.pilot_dashboard.refresh()

    @Slot()
    def open_pilot_dashboard(self) -> PilotDashboard:
        """Pilot ▸ Dashboard: a tab with the pilot metrics of this vault."""
        if self.pilot_dashboard is None:
            session = self.session
            dashboard = PilotDashboard(
                lambda: None if session.closed else session.kb, runner=session.runner
            )
            dashboard.message.connect(self._status_message)
            dashboard.enabled_box.toggled.connect(self._on_dashboard_pilot_toggled)
            self.pilot_dashboard = dashboard
            self.tabs.addTab(dashboard, "Pilot dashboard")
        self._sync_pilot_ui()
        self.tabs.setCurrentWidget(self.pilot_dashboard)
        self.pilot_dashboard.refresh()
        return self.pilot_dashboard

    @Slot(bool)
    def _on_dashboard_pilot_toggled(self, on: bool) -> None:
        # The dashboard saves the switch itself (writer thread); mirror it here at once.
        self.session.pilot.set_enabled(on)  # a change: a new run, nothing pending
        self._sync_pilot_ui()

    @Slot()
    def open_confusable_documents(self) -> ConfusableView:
        """Keys ▸ Confusable documents: a tab listing look-alike pairs and what tells them apart
        (found again each time it is opened; closing the tab forgets it)."""
        for i in range(self.tabs.count()):
            widget = self.tabs.widget(i)
            if isinstance(widget, ConfusableView):
                self.tabs.setCurrentWidget(widget)
                widget.refresh()
                return widget
        session = self.session
        view = ConfusableView(lambda: None if session.closed else session.kb, session.runner)
        view.tagsChanged.connect(self._on_tags_changed)
        view.message.connect(self._status_message)
        self.tabs.addTab(view, "Confusable documents")
        self.tabs.setCurrentWidget(view)
        view.refresh()
        return view

    @Slot()
    def open_review_queue(self) -> ReviewQueue:
        """Tags ▸ Review suggestions: a tab listing suggestions across the vault."""
        if self.review_queue is None:
            session = self.session
            queue = ReviewQueue(lambda: None if session.closed else session.kb, session.runner)
            queue.tagsChanged.connect(self._on_tags_changed)
            queue.message.connect(self._status_message)
            self.review_queue = queue
            self.tabs.addTab(queue, "Review tags")
            queue.refresh()
        self.tabs.setCurrentWidget(self.review_queue)
        self.review_queue.tree.setFocus()
        return self.review_queue

    @Slot(int)
    def _close_tab(self, index: int) -> None:
        widget = self.tabs.widget(index)
        if index == 0 or widget is None:
            return
        widget.deleteLater()  # its in-flight tasks finish on the runner; their signals drop
        self.tabs.removeTab(index)
        if widget is self.review_queue:
            self.review_queue = None
        if widget is self.pilot_dashboard:
            self.pilot_dashboard = None

    def _close_tool_tabs(self) -> None:
        for i in reversed(range(1, self.tabs.count())):
            self._close_tab(i)

    @Slot(str)
    def _status_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 6000)

    # -- tags -----------------------------------------------------------------------------------

    @Slot(str)
    def _on_tag_added(self, tag: str) -> None:
        if self.viewer.record is not None:
            self.session.set_tag(self.viewer.record.id, tag)

    @Slot(str)
    def _on_tag_removed(self, tag: str) -> None:
        if self.viewer.record is not None:
            self.session.remove_tag(self.viewer.record.id, tag)

    @Slot(int, object)
    def _on_tags_changed(self, value_id: int, tags: object) -> None:
        shown = tuple(tags) if isinstance(tags, tuple) else ()
        if self.viewer.record is not None and self.viewer.record.id == value_id:
            self.viewer.set_tags(shown)
        self.model.replace_tags(value_id, shown)
        self._refresh_tag_lists()
        self.statusBar().showMessage("Tags saved — tag keys updated", 3000)
        self.tagsUpdated.emit(value_id)

    def _refresh_tag_lists(self) -> None:
        try:
            tags = self.session.all_tags()
        except KvdeskError:
            return
        self.viewer.tag_editor.set_completions(tags)
        self.filter_bar.set_tags(tags)

    # -- team -----------------------------------------------------------------------------------

    @Slot(object)
    def _on_team_state(self, state: object) -> None:
        if isinstance(state, TeamState):
            self.team_label.set_state(state)
        if self._results_stale:
            self.refresh_results()  # the user's own search was running when changes arrived

    @Slot(object)
    def _on_team_pulled(self, state: object) -> None:
        """The team's changes are in this desk's copy: show them where the user looks (the
        results on screen, the document's tags, the tag lists), and key them."""
        if not isinstance(state, TeamState):
            return
        self._refresh_tag_lists()
        record = self.viewer.record
        if record is not None and record.id in state.value_ids:
            try:
                self.viewer.set_tags(tuple(self.session.kb.values.get(record.id).tags))
            except KvdeskError:
                pass  # gone from the team: the refreshed results say so
        if self.review_queue is not None:
            self.review_queue.note_outside_change("The team changed documents or tags")
        self.refresh_results()
        self._dense_wanted = self.auto_dense
        self.session.refresh_keys()  # counts; and meaning keys follow (_on_keys_changed)

    @Slot()
    def _resume_dense(self) -> None:
        """The meaning-key build stopped for a team sync: go on (after the sync)."""
        if not self.session.closed:
            self.build_dense()

    # -- import ---------------------------------------------------------------------------------

    def import_paths(self, paths: list[str] | list[Path]) -> Task:
        return self._importing(self.session.import_paths(paths), "Importing")

    def import_records(self, path: str) -> Task:
        return self._importing(self.session.import_records(path), "Importing records")

    def _importing(self, task: Task, label: str) -> Task:
        """Track an import task and report its outcome (files or a records file alike)."""
        self._track(task, label)
        task.succeeded.connect(self._on_import_done)
        task.cancelled.connect(self._on_import_cancelled)
        task.failed.connect(self._on_import_failed)
        self.last_import_task = task
        return task

    @Slot()
    def import_samples(self) -> Task | None:
        paths = sample_paths()
        if not paths:
            self._show_error("The sample documents are missing from this installation.")
            return None
        return self.import_paths(paths)

    @Slot(object)
    def _on_import_done(self, report: object) -> None:
        if not isinstance(report, ImportReport):
            return
        message = f"Import: {report.summary()}"
        suggestion = self.session.kb.model_suggestion()  # mostly Japanese: a model that reads it
        if suggestion:
            message = f"{message} — {suggestion}"
        self.statusBar().showMessage(message, 15000 if suggestion else 8000)
        self.report_dialog = ImportReportDialog(report, self)
        self.report_dialog.open()
        self._refresh_tag_lists()
        if self.compose_query():
            self.search_now()
        else:
            self._show_idle_hint()
        self.session.refresh_keys()
        if self.auto_dense and (report.imported or report.updated):
            if self.session.dense_paused:  # the user paused it: they resume it
                self._status_message("Meaning keys are paused — Resume builds the new ones too")
            else:
                self.build_dense()
        self.importFinished.emit(report)

    @Slot()
    def _on_import_cancelled(self) -> None:
        self.statusBar().showMessage("Import cancelled — what was stored so far is kept", 8000)
        self.session.refresh_keys()
        self._show_idle_hint()
        self.importFinished.emit(None)

    @Slot(str)
    def _on_import_failed(self, message: str) -> None:
        self._show_error(f"Import failed: {message}")
        self.importFinished.emit(None)

    @Slot()
    def build_dense(self) -> Task:
        self._dense_wanted = False
        task = self.session.build_dense()
        self._track(task, "Dense keys")
        self.last_dense_task = task
        self._sync_pause_ui()
        task.finished.connect(self._sync_pause_ui)
        return task

    @Slot()
    def toggle_dense_pause(self) -> None:
        """Pause the meaning-key build after its current batch, or resume a paused one."""
        if self.session.dense_paused:
            self.build_dense()
        elif self.session.pause_dense():
            self.pause_button.setEnabled(False)
            self.pause_button.setText("Pausing…")

    @Slot(bool)
    def _on_dense_paused(self, paused: bool) -> None:
        if not paused:
            self.keys_label.setText(self.keys_label.text().removesuffix(" (paused)"))
        self._sync_pause_ui()

    @Slot(object)
    def _sync_pause_ui_after(self, _task: object) -> None:
        self._sync_pause_ui()

    @Slot()
    def _sync_pause_ui(self) -> None:
        """The Pause/Resume button: shown while meaning keys are being built or are paused."""
        session = self.session
        task = session.dense_task
        try:
            running = task is not None and not task.done
        except RuntimeError:  # a finished task the runner has already deleted
            running = False
        paused = session.dense_paused and not running
        self.pause_button.setVisible(running or paused)
        self.pause_button.setEnabled(running or paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_button.setToolTip(
            "Continue building meaning keys where they stopped"
            if paused
            else "Pause building meaning keys after the current batch (nothing is lost)"
        )
        self.pause_action.setEnabled(running or paused)
        self.pause_action.setText("&Resume meaning keys" if paused else "&Pause meaning keys")

    def _choose(
        self,
        mode: QFileDialog.FileMode,
        title: str,
        slot: Callable[[list[str]], object],
        name_filter: str = "",
    ) -> QFileDialog:
        dialog = QFileDialog(self, title)
        dialog.setFileMode(mode)
        if name_filter:
            dialog.setNameFilter(name_filter)
        dialog.filesSelected.connect(slot)
        dialog.open()
        return dialog

    @Slot()
    def choose_files(self) -> QFileDialog:
        return self._choose(QFileDialog.FileMode.ExistingFiles, "Import files", self.import_paths)

    @Slot()
    def choose_folder(self) -> QFileDialog:
        return self._choose(QFileDialog.FileMode.Directory, "Import folder", self.import_paths)

    @Slot()
    def choose_records(self) -> QFileDialog:
        return self._choose(
            QFileDialog.FileMode.ExistingFile,
            "Import records",
            lambda files: self.import_records(files[0]) if files else None,
            "JSON Lines (*.jsonl *.ndjson);;All files (*)",
        )

    def _forward_file_drops(self) -> None:
        """Files dropped on any child (the search field, the viewer…) import, not paste."""
        for widget in [self, *self.findChildren(QWidget)]:
            if widget is not self and widget.acceptDrops():
                widget.installEventFilter(self)
            viewport = getattr(widget, "viewport", None)
            if callable(viewport) and viewport() is not None and viewport().acceptDrops():
                viewport().installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop):
            mime = event.mimeData()  # type: ignore[attr-defined]
            urls = mime.urls() if mime is not None and mime.hasUrls() else []
            if urls and all(u.isLocalFile() for u in urls):
                if kind == QEvent.Type.Drop:
                    self.dropEvent(event)  # type: ignore[arg-type]
                else:
                    event.acceptProposedAction()  # type: ignore[attr-defined]
                return True
        return super().eventFilter(watched, event)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if urls and all(u.isLocalFile() for u in urls):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.import_paths(paths)

    # -- progress -------------------------------------------------------------------------------

    def _track(self, task: Task, label: str) -> None:
        task.setProperty("label", label)
        self._progress_tasks.append(task)
        task.progressed.connect(self._on_progress)
        if self._shown_task is None:
            self._show_task(task, None)

    def _show_task(self, task: Task | None, progress: Progress | None) -> None:
        self._shown_task = task
        visible = task is not None
        for w in (self.progress_label, self.progress, self.cancel_button):
            w.setVisible(visible)
        if task is None:
            return
        label = str(task.property("label"))
        if progress is None or not progress.total:
            self.progress.setRange(0, 0)
            self.progress_label.setText(f"{label}…")
            self.progress.setToolTip("")
            return
        self.progress.setRange(0, progress.total)
        self.progress.setValue(progress.done)
        self.progress.setFormat(f"{progress.done}/{progress.total}")
        current = Path(progress.current).name if progress.current else ""
        shown = self.progress_label.fontMetrics().elidedText(
            current, Qt.TextElideMode.ElideMiddle, CURRENT_NAME_PX
        )
        eta = eta_text(task.eta_s()) if progress.done < progress.total else ""
        self.progress_label.setText(" · ".join(p for p in (label, eta, shown) if p))
        self.progress.setToolTip(
            f"{progress.done} of {progress.total}"
            + (f" · {eta} (from the measured rate, smoothed)" if eta else "")
            + (f"\n{progress.current}" if progress.current else "")
        )

    @Slot(object)
    def _on_progress(self, progress: object) -> None:
        task = self.sender()
        if isinstance(task, Task) and isinstance(progress, Progress) and not task.done:
            self._show_task(task, progress)

    @Slot(object)
    def _on_tracked_done(self, task: object) -> None:
        """A tracked task ended: show the next one. From the runner's taskDone (emitted before
        it deletes the task), not the task's own finished, whose queued call can be dropped
        once the task is gone, which left a deleted task in the list."""
        if not any(t is task for t in self._progress_tasks):
            return
        self._progress_tasks = [t for t in self._progress_tasks if t is not task]
        if task is self._shown_task or self._shown_task not in self._progress_tasks:
            self._show_task(self._progress_tasks[0] if self._progress_tasks else None, None)

    @Slot()
    def cancel_current(self) -> None:
        if self._shown_task is not None:
            self._shown_task.cancel()
            self.progress_label.setText("Cancelling…")

    # -- status ---------------------------------------------------------------------------------

    @Slot(object)
    def _on_keys_changed(self, state: object) -> None:
        if not isinstance(state, KeyState):
            return
        if state.dense_model is None:
            dense = "meaning: not built"
        elif state.dense_ready:
            dense = f"meaning ✓ ({state.dense_model})"
        else:
            dense = f"meaning {state.dense_keyed}/{state.dense_total}"
        self.keys_label.setText(f"Keys: words ✓ · tags ✓ · {dense}")
        self.keys_label.setToolTip(
            f"{state.values} documents; dense keys for {state.dense_keyed} of {state.dense_total}"
        )
        if state.provider:
            self._set_provider(state.provider)
        elif state.dense_model is None and self.session.provider is None:
            self.provider_label.setText("Provider: not loaded")
            self.provider_label.setToolTip(
                "The embedding model loads when meaning keys are first built"
            )
        if not state.dense_ready and self.session.dense_paused:
            self.keys_label.setText(f"{self.keys_label.text()} (paused)")
        if (
            self.auto_dense
            and state.values
            and not state.dense_ready
            and (self.last_dense_task is None or self._dense_wanted)
            and not self.session.dense_paused
            and not self.session.dense_running
        ):
            self.build_dense()  # resume an interrupted build, or key the team's new documents

    def _set_provider(self, provider: str) -> None:
        kind = (
            "GPU"
            if any(g in provider for g in ("CUDA", "Tensorrt", "ROCM", "DML", "CoreML"))
            else "CPU"
        )
        self.provider_label.setText(f"{kind} · {provider}")
        self.provider_label.setToolTip("The onnxruntime execution provider really in use")

    @Slot(str)
    def _show_error(self, message: str) -> None:
        self.statusBar().showMessage(message, 10000)
        box = QMessageBox(
            QMessageBox.Icon.Warning, "kvdesk", message, QMessageBox.StandardButton.Ok, self
        )
        box.setTextFormat(Qt.TextFormat.PlainText)  # may quote file names and titles
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # -- first run ------------------------------------------------------------------------------

    @Slot()
    def _maybe_offer_samples(self) -> None:
        if self.session.kb.team is not None:
            return  # an empty desk waits for its team's documents; samples would go to the team
        try:
            empty = self.session.count() == 0
        except KvdeskError:
            return
        if not empty or vault_value(self.session.path, "firstRunDeclined"):
            return
        self.offer_samples()

    def offer_samples(self) -> FirstRunDialog | None:
        if self.first_run_decision is not None:
            if self.first_run_decision():
                self.import_samples()
            return None
        dialog = FirstRunDialog(len(sample_paths()), self)
        dialog.accepted.connect(self.import_samples)
        dialog.rejected.connect(self._decline_samples)
        self.first_run_dialog = dialog
        dialog.open()
        return dialog

    @Slot()
    def _decline_samples(self) -> None:
        set_vault_value(self.session.path, "firstRunDeclined", True)

    # -- settings, help -------------------------------------------------------------------------

    @Slot()
    def open_settings(self) -> SettingsDialog:
        state = self.session.key_state
        try:
            pilot = self.session.pilot_settings()
            labels = {"pilot_user": pilot.user, "pilot_team": pilot.team}
        except KvdeskError:
            labels = {}
        dialog = SettingsDialog(
            self.session.path,
            self._model_description(),
            (
                f"{state.dense_model}: {state.dense_keyed}/{state.dense_total} documents keyed"
                if state and state.dense_model
                else "not built yet"
            ),
            self.session.provider or "not loaded yet",
            self,
            **labels,
        )
        dialog.vaultChosen.connect(self.switch_vault)
        dialog.pilotLabelsChanged.connect(self._on_pilot_labels)
        self.settings_dialog = dialog
        dialog.open()
        return dialog

    def _model_description(self) -> str:
        """The active dense key set's model, as the settings show it."""
        try:
            key_set = self.session.kb.dense_status().key_set
        except KvdeskError:
            key_set = None
        if key_set is None:
            return "none yet — meaning keys are built after the first import"
        params = key_set.params
        model = str(params.get("model") or key_set.name)
        extra = [f"{params['dim']}-dim"] if params.get("dim") else []
        if params.get("source"):
            extra.append(str(params["source"]))
        detail = f" ({', '.join(extra)})" if extra else ""
        return f"{model}{detail} · key set #{key_set.id} “{key_set.name}”"

    @Slot(str, str)
    def _on_pilot_labels(self, user: str, team: str) -> Task:
        return self.session.configure_pilot(user=user, team=team)

    def _info(self, title: str, text: str) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Information, title, text, QMessageBox.StandardButton.Ok, self
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setTextFormat(Qt.TextFormat.RichText)  # our own help text (callers escape)
        box.open()

    @Slot()
    def _show_syntax(self) -> None:
        self._info("Search syntax", html.escape(SEARCH_HELP).replace(", ", "<br>"))

    @Slot()
    def _show_shortcuts(self) -> None:
        rows = [
            ("Ctrl+F / Ctrl+L", "focus the search box"),
            ("Enter", "search now / open result"),
            ("Ctrl+J / Alt+Down", "next result"),
            ("Ctrl+K / Alt+Up", "previous result"),
            ("Ctrl+Enter", "open the original"),
            ("Ctrl+click", "compare two results"),
            ("Ctrl+O / Ctrl+Shift+O", "import files / a folder"),
            ("Ctrl+.", "cancel"),
            ("Ctrl+Shift+T", "review tag suggestions (A/R/J/K, Ctrl+Z undo)"),
            ("Ctrl+Shift+Y / Ctrl+Shift+N", "pilot: found it / not found"),
        ]
        self._info(
            "Keyboard shortcuts",
            "<table>"
            + "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in rows)
            + "</table>",
        )

    @Slot()
    def _show_about(self) -> None:
        from kvdesk import __version__

        self._info(
            "About kvdesk",
            f"<b>kvdesk {__version__}</b><br>Local-first knowledge base:"
            " documents kept verbatim, keys derived, search that explains itself.",
        )

    # -- state ----------------------------------------------------------------------------------

    def _restore_state(self) -> None:
        if not self.remember_layout:
            self.resize(1400, 860)
            self.splitter.setSizes([440, 520, 440])
            return
        s = ui_settings()
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 860)
        splitter = s.value("window/splitter")
        if isinstance(splitter, QByteArray) and not splitter.isEmpty():
            self.splitter.restoreState(splitter)
        else:
            self.splitter.setSizes([440, 520, 440])

    def save_state(self) -> None:
        if not self.remember_layout:
            return
        s = ui_settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/splitter", self.splitter.saveState())
        save_settings(s)

    def wait_idle(self, timeout_ms: int = 60_000) -> bool:
        """Spin the event loop until no background task is left (tests, screenshot mode)."""
        loop = QEventLoop()
        timer = QTimer()
        timer.setInterval(10)
        timer.timeout.connect(lambda: loop.quit() if not self.session.runner.busy else None)
        deadline = QTimer()
        deadline.setSingleShot(True)
        deadline.timeout.connect(loop.quit)
        timer.start()
        deadline.start(timeout_ms)
        if self.session.runner.busy:
            loop.exec()
        timer.stop()
        deadline.stop()
        return not self.session.runner.busy

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_state()
        self._debounce.stop()
        self._pilot_timer.stop()
        self._detach_team()
        self.session.close()  # the pending pilot query is dropped
        self.viewer.cleanup()
        super().closeEvent(event)
