"""The pilot dashboard: metrics over time, the queries that failed, and a one-step way to turn a
failed query into a golden-set case (pick the document that should have been found).

A **Team** filter ("All teams" or one team label found in the log) and a **Since** date (or all
time) scope the tiles, the weekly charts and the failed queries; with "All teams" a small table
compares the teams over the same window. "Since" is a UTC date, as ``kvdesk pilot report
--since DATE``: with "All teams" the numbers are the ones that command prints.

All vault work runs on a :class:`~kvdesk.ui.tasks.TaskRunner` (reads on the reader pool, the
golden-case write and the on/off switch on the single writer), never on the GUI thread; the
widget only receives results through queued signals (a result overtaken by a newer filter is
dropped). Charts are pyqtgraph plots.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, cast

from PySide6.QtCore import QDate, Qt, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from kvdesk.core.errors import KvdeskError
from kvdesk.core.pilot.metrics import (
    FailedQuery,
    Metrics,
    PilotReport,
    confusable_failed_sessions,
    pilot_report,
)
from kvdesk.core.pilot.records import Clock, utc_now
from kvdesk.ui.tasks import Task, TaskRunner

KbProvider = Callable[[], Any]  # returns the open KnowledgeBase, or None when none is open
DEFAULT_GOLDEN_SET = "pilot-failures"

_SERIES = (
    # (metric, label, colour) of the rates chart
    ("success_rate", "Success", "#16a34a"),
    ("abandon_rate", "Abandoned", "#f59e0b"),
    ("zero_result_rate", "Zero results", "#dc2626"),
    ("mrr", "MRR", "#3b82f6"),
)
_OUTCOMES = (
    # (count, label, colour) of the stacked sessions chart
    ("found", "Found", "#16a34a"),
    ("notfound", "Not found", "#dc2626"),
    ("abandoned", "Abandoned", "#f59e0b"),
    ("open", "Open", "#9ca3af"),
)
_FAILED_COLUMNS = ("Query", "Sessions", "Zero results", "Last asked")
_TEAM_COLUMNS = ("Team", "Sessions", "Success", "Median time to find", "Zero results")
ALL_TEAMS = "All teams"
NO_TEAM = "(no team)"  # how the empty team label is shown
SINCE_DEFAULT_DAYS = 28  # where the "Since" date starts when first turned on


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} s"


def _team_label(team: str) -> str:
    return team or NO_TEAM


@dataclass(frozen=True)
class _Loaded:
    """What a refresh hands back to the GUI thread."""

    generation: int
    report: PilotReport
    enabled: bool
    teams: tuple[str, ...]  # every team label in the log (all time), ascending
    confusable_failed: int | None = None  # failed sessions that met look-alikes (None: unknown)
    learned: tuple[str, str] = ("–", "")  # the active learned keys' gap, and what it is made of


class _Tile(QFrame):
    """One headline number with its caption."""

    def __init__(self, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        self.value = QLabel("–")
        font = self.value.font()
        font.setPointSizeF(font.pointSizeF() * 1.8)
        font.setBold(True)
        self.value.setFont(font)
        self.caption = QLabel(caption)
        self.caption.setStyleSheet("color: #6b7280;")
        layout.addWidget(self.value)
        layout.addWidget(self.caption)


class DocumentPicker(QDialog):
    """Search the vault and pick the document that should have been found.

    Shown with ``open()`` (window-modal, never a blocking ``exec()``); ``chosen`` holds the
    (value id, identifier, title) picked when ``accepted`` fires.
    """

    def __init__(
        self, kb_provider: KbProvider, runner: TaskRunner, query: str, parent: QWidget | None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Which document should have been found?")
        self.resize(560, 420)
        self._kb_provider = kb_provider
        self._runner = runner
        self._generation = 0
        self.chosen: tuple[int, str, str] | None = None

        self.prompt = QLabel(f"Failed query: <b>{_escape(query)}</b>")
        self.search_box = QLineEdit(query)
        self.search_box.setPlaceholderText("Search for the right document…")
        self.search_box.setClearButtonEnabled(True)
        self.results = QListWidget()
        self.status = QLabel("")
        self.status.setStyleSheet("color: #6b7280;")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText("Add golden case")
        ok.setEnabled(False)

        layout = QVBoxLayout(self)
        layout.addWidget(self.prompt)
        layout.addWidget(self.search_box)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)

        self.search_box.returnPressed.connect(self.search)
        self.results.currentItemChanged.connect(self._on_current)
        self.results.itemDoubleClicked.connect(self._on_double_click)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

    @Slot()
    def search(self) -> Task | None:
        text = self.search_box.text().strip()
        kb = self._kb_provider()
        if not text or kb is None:
            return None
        self._generation += 1
        generation = self._generation
        self.status.setText("Searching…")

        def run(_report: object, _cancel: object) -> tuple[int, list[tuple[int, str, str]]]:
            result = kb.search(text, k=20, mode="hybrid", details=False)
            return generation, [(h.value_id, h.identifier, h.title) for h in result.hits]

        task = self._runner.read("pick document", run)
        task.succeeded.connect(self._on_results)
        task.failed.connect(self.status.setText)
        return task

    @Slot(object)
    def _on_results(self, payload: object) -> None:
        generation, hits = cast(tuple[int, list[tuple[int, str, str]]], payload)
        if generation != self._generation:
            return  # a newer search is on its way
        self.results.clear()
        for value_id, identifier, title in hits:
            item = QListWidgetItem(f"{identifier}   {title}")
            item.setData(Qt.ItemDataRole.UserRole, (value_id, identifier, title))
            self.results.addItem(item)
        self.status.setText(f"{len(hits)} documents" if hits else "No documents match")

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_current(self, current: QListWidgetItem | None, _previous: object) -> None:
        self.chosen = None if current is None else current.data(Qt.ItemDataRole.UserRole)
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(self.chosen is not None)

    @Slot(QListWidgetItem)
    def _on_double_click(self, item: QListWidgetItem) -> None:
        self.chosen = item.data(Qt.ItemDataRole.UserRole)
        self.accept()


class PilotDashboard(QWidget):
    """Pilot metrics per week, failed queries, and "Make golden case…".

    Signals:
        reportChanged(object): a fresh :class:`PilotReport` is shown.
        goldenCaseAdded(str, str, str): set name, query, identifier of the document.
        message(str): a line for the status bar (errors included).
    """

    reportChanged = Signal(object)
    goldenCaseAdded = Signal(str, str, str)
    message = Signal(str)

    def __init__(
        self,
        kb_provider: KbProvider,
        parent: QWidget | None = None,
        *,
        runner: TaskRunner | None = None,
        clock: Clock | None = None,
        golden_set: str = DEFAULT_GOLDEN_SET,
    ) -> None:
        super().__init__(parent)
        self._kb_provider = kb_provider
        self._owns_runner = runner is None
        self.runner = runner or TaskRunner(self)
        self._clock = clock
        self.golden_set = golden_set
        self.report: PilotReport | None = None
        self.teams: tuple[str, ...] = ()
        self.picker: DocumentPicker | None = None
        self.confusable_failed: int | None = None  # shown beside the tiles
        self._generation = 0

        # Top row: on/off switch, status, refresh.
        self.enabled_box = QCheckBox("Record searches in this vault (pilot)")
        self.enabled_box.setToolTip(
            "Off by default. Records queries, ranks shown, documents opened and your"
            " Found it / Not found verdicts, in this vault only."
        )
        self.summary = QLabel("")
        self.summary.setStyleSheet("color: #6b7280;")
        self.refresh_button = QPushButton("Refresh")
        top = QHBoxLayout()
        top.addWidget(self.enabled_box)
        top.addStretch(1)
        top.addWidget(self.refresh_button)

        # Filters: team and start date; they scope the tiles, charts and failed queries.
        self.team_combo = QComboBox()
        self.team_combo.addItem(ALL_TEAMS)
        self.team_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.team_combo.setMinimumContentsLength(12)
        self.team_combo.setToolTip("Show one team's sessions (the team label of each session)")
        team_label = QLabel("Team:")
        team_label.setBuddy(self.team_combo)
        self.since_box = QCheckBox("Since")
        self.since_box.setToolTip(
            "Only sessions started on or after this day (UTC), as pilot report --since;"
            " unchecked: all time"
        )
        self.since_edit = QDateEdit()
        self.since_edit.setCalendarPopup(True)
        self.since_edit.setDisplayFormat("yyyy-MM-dd")
        today = (self._clock or utc_now)().astimezone(dt.UTC).date()
        start = today - dt.timedelta(days=SINCE_DEFAULT_DAYS)
        self.since_edit.setDate(QDate(start.year, start.month, start.day))
        self.since_edit.setEnabled(False)
        self.scope_label = QLabel("all time")
        self.scope_label.setStyleSheet("color: #6b7280;")
        filters = QHBoxLayout()
        filters.addWidget(team_label)
        filters.addWidget(self.team_combo)
        filters.addSpacing(16)
        filters.addWidget(self.since_box)
        filters.addWidget(self.since_edit)
        filters.addSpacing(8)
        filters.addWidget(self.scope_label)
        filters.addStretch(1)
        filters.addWidget(self.summary)

        # Headline tiles.
        self.tiles = {
            "sessions": _Tile("sessions"),
            "success_rate": _Tile("success rate"),
            "abandon_rate": _Tile("abandoned"),
            "zero_result_rate": _Tile("zero-result searches"),
            "mrr": _Tile("MRR of found doc"),
            "median_seconds_to_find": _Tile("median time to find"),
            "reformulations_per_session": _Tile("reformulations / session"),
        }
        # Beside the metric tiles: failed sessions that met confusable documents.
        self.confusable_tile = _Tile("failed amid look-alikes")
        self.confusable_tile.setToolTip(
            "Failed sessions whose search showed both documents of a confusable pair, or ranked"
            " one of them first (Keys ▸ Confusable documents lists the pairs)"
        )
        tiles = QGridLayout()
        for column, tile in enumerate(self.tiles.values()):
            tiles.addWidget(tile, 0, column)
        tiles.addWidget(self.confusable_tile, 0, len(self.tiles))
        # Learned keys (kvdesk learn): memorisation = learning queries minus held-out ones.
        self.learned_tile = _Tile("learned keys: gap")
        tiles.addWidget(self.learned_tile, 0, len(self.tiles) + 1)

        # Charts. pyqtgraph is imported here, after PySide6, so it binds to PySide6 (and the
        # app starts without it until the dashboard is first shown).
        import pyqtgraph as pg

        pg.setConfigOptions(antialias=True, background="w", foreground="#374151")
        self.rates_plot = pg.PlotWidget(title="Per week: rates and MRR")
        self.rates_plot.setYRange(0, 1.18, padding=0.02)  # headroom for the legend row
        self.rates_plot.showGrid(x=False, y=True, alpha=0.3)
        self.rates_plot.addLegend(offset=(8, 4), colCount=len(_SERIES))
        self.curves: dict[str, Any] = {}
        for key, label, colour in _SERIES:
            pen = pg.mkPen(QColor(colour), width=2)
            self.curves[key] = self.rates_plot.plot(
                [], [], pen=pen, symbol="o", symbolSize=7, symbolBrush=QColor(colour), name=label
            )
        self.time_plot = pg.PlotWidget(title="Per week: median seconds to find")
        self.time_plot.showGrid(x=False, y=True, alpha=0.3)
        self.time_curve = self.time_plot.plot(
            [],
            [],
            pen=pg.mkPen(QColor("#7c3aed"), width=2),
            symbol="s",
            symbolSize=7,
            symbolBrush=QColor("#7c3aed"),
        )
        self.sessions_plot = pg.PlotWidget(title="Per week: sessions by outcome")
        self.sessions_plot.showGrid(x=False, y=True, alpha=0.3)
        self.sessions_plot.addLegend(offset=(8, 4), colCount=len(_OUTCOMES))
        self.outcome_bars: dict[str, Any] = {}
        for key, label, colour in _OUTCOMES:
            bars = pg.BarGraphItem(
                x=[], height=[], width=0.6, brush=QColor(colour), pen=None, name=label
            )
            self.sessions_plot.addItem(bars)
            self.outcome_bars[key] = bars
        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.addWidget(self.time_plot)
        right.addWidget(self.sessions_plot)
        charts = QHBoxLayout()
        charts.setContentsMargins(0, 0, 0, 0)
        charts.addWidget(self.rates_plot, 3)
        charts.addLayout(right, 2)
        chart_box = QWidget()
        chart_box.setLayout(charts)

        # Failed queries.
        self.failed_table = QTableWidget(0, len(_FAILED_COLUMNS))
        self.failed_table.setHorizontalHeaderLabels(list(_FAILED_COLUMNS))
        self.failed_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.failed_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.failed_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.failed_table.verticalHeader().setVisible(False)
        self.failed_table.setMinimumHeight(190)  # about five rows
        header = self.failed_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(_FAILED_COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.golden_button = QPushButton("Make golden case…")
        self.golden_button.setToolTip(
            "Pick the document this query should have found; the pair joins the golden set"
            f" '{golden_set}' so the next key set is measured on it before you switch."
        )
        self.golden_button.setEnabled(False)
        failed_head = QHBoxLayout()
        failed_title = QLabel("<b>Top failed queries</b> (not found or abandoned)")
        failed_head.addWidget(failed_title)
        failed_head.addStretch(1)
        failed_head.addWidget(self.golden_button)
        failed_box = QWidget()
        failed_layout = QVBoxLayout(failed_box)
        failed_layout.setContentsMargins(0, 0, 0, 0)
        failed_layout.addLayout(failed_head)
        failed_layout.addWidget(self.failed_table)

        # Per team, shown with "All teams" (double-click a row to filter on that team).
        self.team_table = QTableWidget(0, len(_TEAM_COLUMNS))
        self.team_table.setHorizontalHeaderLabels(list(_TEAM_COLUMNS))
        self.team_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.team_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.team_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.team_table.verticalHeader().setVisible(False)
        self.team_table.setToolTip("Double-click a team to show only its sessions")
        self.team_table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        team_header = self.team_table.horizontalHeader()
        team_header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(_TEAM_COLUMNS)):
            team_header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.team_box = QWidget()
        team_layout = QVBoxLayout(self.team_box)
        team_layout.setContentsMargins(0, 0, 0, 0)
        team_head = QLabel("<b>Per team</b>")
        team_head.setMinimumHeight(self.golden_button.sizeHint().height())
        team_layout.addWidget(team_head)
        team_layout.addWidget(self.team_table)

        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.setChildrenCollapsible(False)
        bottom.addWidget(failed_box)
        bottom.addWidget(self.team_box)
        bottom.setStretchFactor(0, 3)
        bottom.setStretchFactor(1, 2)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(chart_box)
        splitter.addWidget(bottom)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(filters)
        layout.addLayout(tiles)
        layout.addWidget(splitter, 1)

        self.refresh_button.clicked.connect(self.refresh)
        self.enabled_box.toggled.connect(self._on_enabled_toggled)
        self.failed_table.itemSelectionChanged.connect(self._on_selection)
        self.failed_table.itemDoubleClicked.connect(lambda _item: self.make_golden_case())
        self.golden_button.clicked.connect(lambda: self.make_golden_case())
        self.team_combo.currentIndexChanged.connect(self._on_filter_changed)
        self.since_box.toggled.connect(self._on_since_toggled)
        self.since_edit.dateChanged.connect(self._on_since_date)
        self.team_table.itemDoubleClicked.connect(self._on_team_double_clicked)

    # -- filters --------------------------------------------------------------------------------

    def selected_team(self) -> str | None:
        """The team shown, or None for all teams."""
        index = self.team_combo.currentIndex()
        if index <= 0:
            return None
        return cast(str, self.team_combo.itemData(index))

    def set_team(self, team: str | None) -> None:
        """Show one team (None: all teams); a label not in the log yet is added."""
        if team is None:
            self.team_combo.setCurrentIndex(0)
            return
        index = self._team_index(team)
        if index < 0:
            self.team_combo.addItem(_team_label(team), team)
            index = self.team_combo.count() - 1
        self.team_combo.setCurrentIndex(index)

    def _team_index(self, team: str) -> int:
        for index in range(1, self.team_combo.count()):
            if self.team_combo.itemData(index) == team:
                return index
        return -1

    def since(self) -> dt.datetime | None:
        """The start of the window (UTC midnight of the chosen day), or None for all time."""
        if not self.since_box.isChecked():
            return None
        from kvdesk.core.pilot.metrics import parse_since

        return parse_since(self.since_edit.date().toString("yyyy-MM-dd"))

    def set_since(self, day: dt.date | None) -> None:
        """Scope to sessions started on or after ``day`` (None: all time); refreshes once."""
        if day is None:
            self.since_box.setChecked(False)
            return
        self.since_edit.blockSignals(True)
        self.since_edit.setDate(QDate(day.year, day.month, day.day))
        self.since_edit.blockSignals(False)
        if self.since_box.isChecked():
            self._on_filter_changed()
        else:
            self.since_box.setChecked(True)

    @Slot()
    def _on_filter_changed(self) -> None:
        self.refresh()

    @Slot(bool)
    def _on_since_toggled(self, on: bool) -> None:
        self.since_edit.setEnabled(on)
        self.refresh()

    @Slot(QDate)
    def _on_since_date(self, _date: QDate) -> None:
        if self.since_box.isChecked():
            self.refresh()

    @Slot(QTableWidgetItem)
    def _on_team_double_clicked(self, item: QTableWidgetItem) -> None:
        team = item.data(Qt.ItemDataRole.UserRole)
        if isinstance(team, str):
            self.set_team(team)

    def _fill_team_combo(self, teams: tuple[str, ...]) -> None:
        """Offer every team in the log, keeping the current choice (without refreshing)."""
        current = self.selected_team()
        wanted = list(teams)
        if current is not None and current not in wanted:
            wanted.append(current)  # e.g. the log was cleared: keep showing what was asked
        have = [self.team_combo.itemData(i) for i in range(1, self.team_combo.count())]
        if have == wanted:
            return
        self.team_combo.blockSignals(True)
        while self.team_combo.count() > 1:
            self.team_combo.removeItem(1)
        for team in wanted:
            self.team_combo.addItem(_team_label(team), team)
        self.team_combo.setCurrentIndex(0 if current is None else self._team_index(current))
        self.team_combo.blockSignals(False)

    def _scope_text(self, team: str | None, since: dt.datetime | None) -> str:
        who = "all teams" if team is None else f"team {_team_label(team)}"
        when = "all time" if since is None else f"since {since.date().isoformat()}"
        return f"{who} · {when}"

    # -- loading --------------------------------------------------------------------------------

    @Slot()
    def refresh(self) -> Task | None:
        """Recompute the report on a reader thread; the view updates when it arrives."""
        self._generation += 1
        generation = self._generation
        kb = self._kb_provider()
        if kb is None:
            self.teams = ()
            self._show(None, False)
            return None
        clock = self._clock
        team, since = self.selected_team(), self.since()

        def confusable(shown: Collection[int]) -> list[tuple[int, int]]:
            return [pair.value_ids for pair in kb.confusable_pairs(among=shown).pairs]

        def run(_report: object, _cancel: object) -> _Loaded:
            # overall and per week: the chosen team; per team: every team, same window
            report = pilot_report(kb.pilot, team=team, since=since, clock=clock)
            try:
                met = confusable_failed_sessions(
                    kb.pilot, confusable, team=team, since=since, clock=clock
                )
            except KvdeskError:  # the keys cannot be compared now: the rest still shows
                met = None
            # every team in the log, whatever the window, so the filter keeps offering them
            return _Loaded(
                generation, report, kb.pilot.enabled, kb.pilot.teams(), met, _learned_gap(kb)
            )

        task = self.runner.read("pilot report", run)
        task.succeeded.connect(self._on_report)
        task.failed.connect(self.message)
        return task

    @Slot(object)
    def _on_report(self, payload: object) -> None:
        loaded = cast(_Loaded, payload)
        if loaded.generation != self._generation:
            return  # the filters changed meanwhile; a newer report is on its way
        self.teams = loaded.teams
        self._fill_team_combo(loaded.teams)
        self.confusable_failed = loaded.confusable_failed
        self.learned_tile.value.setText(loaded.learned[0])
        self.learned_tile.setToolTip(loaded.learned[1])
        self._show(loaded.report, loaded.enabled)

    def _show(self, report: PilotReport | None, enabled: bool) -> None:
        self.report = report
        team = self.selected_team()
        self.scope_label.setText(self._scope_text(team, self.since()))
        self.team_box.setVisible(team is None)
        self._fill_teams(report.per_team if report else {})
        self.enabled_box.blockSignals(True)
        self.enabled_box.setChecked(enabled)
        self.enabled_box.blockSignals(False)
        self.enabled_box.setEnabled(self._kb_provider() is not None)
        overall = report.overall if report else None
        self._fill_tiles(overall)
        met = self.confusable_failed if report is not None else None
        self.confusable_tile.value.setText("–" if met is None else str(met))
        self._fill_charts(report)
        self._fill_failed(overall.top_failed if overall else ())
        if overall is None or not overall.sessions:
            filtered = team is not None or self.since_box.isChecked()
            if report is not None and filtered and self.teams:
                self.summary.setText("No sessions match these filters.")
            else:
                self.summary.setText(
                    "No pilot sessions yet." + ("" if enabled else " Turn recording on to start.")
                )
        else:
            self.summary.setText(
                f"{overall.found} found · {overall.notfound} not found · "
                f"{overall.abandoned} abandoned · {overall.open} open · "
                f"{overall.searches} searches"
            )
        self.reportChanged.emit(report)

    def _fill_tiles(self, m: Metrics | None) -> None:
        values = {
            "sessions": "–" if m is None else str(m.sessions),
            "success_rate": _pct(m.success_rate if m else None),
            "abandon_rate": _pct(m.abandon_rate if m else None),
            "zero_result_rate": _pct(m.zero_result_rate if m else None),
            "mrr": "–" if m is None or m.mrr is None else f"{m.mrr:.2f}",
            "median_seconds_to_find": _seconds(m.median_seconds_to_find if m else None),
            "reformulations_per_session": (
                "–"
                if m is None or m.reformulations_per_session is None
                else f"{m.reformulations_per_session:.1f}"
            ),
        }
        for key, text in values.items():
            self.tiles[key].value.setText(text)

    def _fill_charts(self, report: PilotReport | None) -> None:
        weeks = list(report.per_week.items()) if report else []
        ticks = [[(i, week) for i, (week, _m) in enumerate(weeks)]]
        for plot in (self.rates_plot, self.time_plot, self.sessions_plot):
            plot.getAxis("bottom").setTicks(ticks)
            if weeks:
                plot.setXRange(-0.5, len(weeks) - 0.5, padding=0.02)
        for key, _label, _colour in _SERIES:
            points = [
                (i, value)
                for i, (_w, m) in enumerate(weeks)
                if (value := getattr(m, key)) is not None
            ]
            self.curves[key].setData([p[0] for p in points], [p[1] for p in points])
        base = [0.0] * len(weeks)
        for key, _label, _colour in _OUTCOMES:
            heights = [float(getattr(m, key)) for _w, m in weeks]
            self.outcome_bars[key].setOpts(
                x=list(range(len(weeks))), y0=list(base), height=heights, width=0.6
            )
            base = [b + h for b, h in zip(base, heights, strict=True)]
        self.sessions_plot.setYRange(0, max(base, default=1.0) * 1.3 or 1.0, padding=0.02)
        times = [
            (i, m.median_seconds_to_find)
            for i, (_w, m) in enumerate(weeks)
            if m.median_seconds_to_find is not None
        ]
        self.time_curve.setData([t[0] for t in times], [t[1] for t in times])
        self.time_plot.enableAutoRange(axis="y")

    def _fill_teams(self, per_team: dict[str, Metrics]) -> None:
        _fill_table(
            self.team_table,
            (
                (
                    (
                        _team_label(team),
                        str(m.sessions),
                        _pct(m.success_rate),
                        _seconds(m.median_seconds_to_find),
                        _pct(m.zero_result_rate),
                    ),
                    team,
                )
                for team, m in per_team.items()
            ),
        )
        self._fit_team_table()

    def _fit_team_table(self) -> None:
        """Wide enough for every column, so the table never needs a horizontal scroll bar."""
        table = self.team_table
        header = table.horizontalHeader()
        width = sum(
            max(header.sectionSizeHint(c), table.sizeHintForColumn(c))
            for c in range(table.columnCount())
        )
        table.setMinimumWidth(width + 2 * table.frameWidth() + 24)  # room for a scroll bar

    def team_rows(self) -> list[tuple[str, ...]]:
        """The per-team table as text, row by row."""
        table = self.team_table
        return [
            tuple(
                item.text() if (item := table.item(r, c)) else ""
                for c in range(table.columnCount())
            )
            for r in range(table.rowCount())
        ]

    def _fill_failed(self, failed: tuple[FailedQuery, ...]) -> None:
        _fill_table(
            self.failed_table,
            (
                ((f.query, str(f.count), str(f.zero_results), f.last_at[:16].replace("T", " ")), f)
                for f in failed
            ),
        )
        self._on_selection()

    # -- actions --------------------------------------------------------------------------------

    def selected_failed(self) -> FailedQuery | None:
        rows = self.failed_table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.failed_table.item(rows[0].row(), 0)
        data = None if item is None else item.data(Qt.ItemDataRole.UserRole)
        return data if isinstance(data, FailedQuery) else None

    @Slot()
    def _on_selection(self) -> None:
        self.golden_button.setEnabled(self.selected_failed() is not None)

    def make_golden_case(self) -> DocumentPicker | None:
        """Open the document picker for the selected failed query (non-blocking)."""
        failed = self.selected_failed()
        if failed is None or self._kb_provider() is None:
            return None
        picker = DocumentPicker(self._kb_provider, self.runner, failed.query, self)
        picker.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        picker.accepted.connect(lambda: self._on_picked(failed, picker.chosen))
        picker.destroyed.connect(self._forget_picker)
        self.picker = picker
        picker.open()
        picker.search()
        return picker

    @Slot()
    def _forget_picker(self) -> None:
        self.picker = None

    def _on_picked(self, failed: FailedQuery, chosen: tuple[int, str, str] | None) -> None:
        if chosen is None:
            return
        self.add_golden_case(failed, chosen[0], chosen[1])

    def add_golden_case(self, failed: FailedQuery, value_id: int, identifier: str) -> Task | None:
        """Store (query, document) in the golden set, on the writer thread."""
        kb = self._kb_provider()
        if kb is None:
            return None
        name = self.golden_set

        def run(_report: object, _cancel: object) -> tuple[str, str, str]:
            kb.golden.add_case(name, failed.query, value_id, source="pilot")
            return name, failed.query, identifier

        task = self.runner.write("add golden case", run)
        task.succeeded.connect(self._on_golden_added)
        task.failed.connect(self.message)
        return task

    @Slot(object)
    def _on_golden_added(self, payload: object) -> None:
        name, query, identifier = cast(tuple[str, str, str], payload)
        self.goldenCaseAdded.emit(name, query, identifier)
        self.message.emit(f"Added “{query}” → {identifier} to golden set {name}")

    @Slot(bool)
    def _on_enabled_toggled(self, on: bool) -> None:
        kb = self._kb_provider()
        if kb is None:
            return

        def run(_report: object, _cancel: object) -> bool:
            return bool(kb.pilot.configure(enabled=on).enabled)

        task = self.runner.write("pilot on/off", run)
        task.succeeded.connect(self._on_enabled_saved)
        task.failed.connect(self.message)

    @Slot(object)
    def _on_enabled_saved(self, state: object) -> None:
        self.message.emit("Pilot recording is on" if state else "Pilot recording is off")

    def shutdown(self) -> None:
        """Wait for this widget's own background work (the main window's runner is its own)."""
        if self._owns_runner:
            self.runner.shutdown()


def _learned_gap(kb: Any) -> tuple[str, str]:
    """The active learned key set's gap (nDCG@10 on its learning queries minus on held-out
    ones: memorisation), and the figures behind it for the tooltip."""
    active = next((k for k in kb.learned_key_sets() if k.state == "active"), None)
    quality = active.params.get("quality", {}) if active is not None else {}
    if active is None or not quality:
        return "–", "No learned keys are active (kvdesk learn --from-pilot)."
    learn, held = quality["learn"], quality["held_out"]
    novel = quality["held_out_novel"]
    return f"{quality['gap']:+.3f}", (
        f"Learned from {active.params.get('pairs')} searches that found their document.\n"
        f"nDCG@10 on the learning queries {learn['ndcg@10']:.3f};"
        f" on {held['queries']} held-out queries {held['ndcg@10']:.3f}"
        f" (without learned keys {held['baseline_ndcg@10']:.3f});"
        f" on {novel['queries']} whose answers were not learned {novel['ndcg@10']:.3f}"
        f" (without {novel['baseline_ndcg@10']:.3f})."
    )


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def _fill_table(table: QTableWidget, rows: Iterable[tuple[tuple[str, ...], object]]) -> None:
    """Replace ``table``'s rows: each row's cells (all but the first centred) and the object
    every cell carries as its user data (what a selection or a double-click hands back)."""
    table.setRowCount(0)
    for row, (cells, data) in enumerate(rows):
        table.insertRow(row)
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if column:
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            item.setData(Qt.ItemDataRole.UserRole, data)
            table.setItem(row, column, item)
