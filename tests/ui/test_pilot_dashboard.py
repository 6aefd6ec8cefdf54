"""The pilot dashboard over scripted sessions: tiles, weekly charts, failed queries, the team and
"since" filters with the per-team table, and turning a failed query into a golden case through
the document picker (no blocking exec())."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from PySide6.QtCore import QDate
from PySide6.QtWidgets import QDialogButtonBox

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.pilot.metrics import parse_since, pilot_report
from kvdesk.core.search.retrieval import Explanation, Hit, SearchResult
from kvdesk.ui.pilot_dashboard import PilotDashboard

START = dt.datetime(2025, 2, 3, 9, 0, tzinfo=dt.UTC)  # Monday of ISO week 2025-W06
NOW = dt.datetime(2025, 3, 3, 12, 0, tzinfo=dt.UTC)  # a week after the last scripted one

# Per week: (query, outcome, rank of the found doc or None, seconds to find, hits shown)
WEEKS: list[list[tuple[str, str, int | None, int, int]]] = [
    [
        ("vpn setup", "found", 2, 95, 5),
        ("travel expenses", "found", 3, 140, 5),
        ("company vpn linux", "notfound", None, 0, 4),
        ("guest wifi password", "abandoned", None, 0, 0),
        ("parking permit", "notfound", None, 0, 0),
    ],
    [
        ("vpn setup", "found", 1, 60, 5),
        ("onboarding checklist", "found", 2, 80, 5),
        ("company vpn linux", "abandoned", None, 0, 3),
        ("hotel limit", "found", 4, 150, 5),
        ("guest wifi password", "notfound", None, 0, 0),
        ("supplier phone", "found", 1, 45, 5),
    ],
    [
        ("incident february", "found", 1, 40, 5),
        ("remote work days", "found", 1, 35, 5),
        ("company vpn linux", "notfound", None, 0, 3),
        ("security handbook passwords", "found", 2, 70, 5),
        ("meeting notes march", "found", 1, 30, 5),
        ("invoice q1", "found", 1, 25, 5),
    ],
    [
        ("office move", "found", 1, 20, 5),
        ("holiday calendar", "found", 1, 22, 5),
        ("expense policy", "found", 1, 30, 5),
        ("guest wifi password", "abandoned", None, 0, 0),
        ("vpn setup", "found", 1, 18, 5),
        ("supplier contacts", "found", 1, 26, 5),
        ("travel booking", "found", 2, 50, 5),
    ],
]


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def _result(kb: KnowledgeBase, query: str, value_ids: list[int]) -> SearchResult:
    hits = tuple(
        Hit(
            v,
            kb.values.get(v).identifier,
            None,
            "",
            "text/plain",
            1 / r,
            0.1,
            "",
            Explanation(),
        )
        for r, v in enumerate(value_ids, start=1)
    )
    return SearchResult(query, "hybrid", "none", bool(hits), {}, hits, 1.0)


def script_sessions(kb: KnowledgeBase) -> int:
    """Four weeks of sessions for teams "ops" and "sales"; returns how many."""
    clock = Clock(START)
    log = kb.pilot.with_clock(clock)
    log.configure(enabled=True, user="pilot")
    ids = [r.id for r in kb.values.list_values()]
    count = 0
    for week, sessions in enumerate(WEEKS):
        for n, (query, outcome, rank, seconds, shown) in enumerate(sessions):
            clock.now = START + dt.timedelta(weeks=week, days=n % 5, hours=n)
            sid = log.start_session(team=("ops", "sales")[n % 2])
            if outcome != "found" and shown:  # a reformulation before giving up
                log.record_search(sid, query + " how", _result(kb, query, ids[:shown]))
                clock.now += dt.timedelta(seconds=20)
            log.record_search(sid, query, _result(kb, query, ids[:shown]))
            count += 1
            if outcome == "abandoned":
                continue
            clock.now += dt.timedelta(seconds=seconds)
            log.mark(sid, outcome, ids[rank - 1] if rank else None)
    return count


@pytest.fixture
def kb(sample_vault: Path) -> Iterator[KnowledgeBase]:
    base = KnowledgeBase.open(sample_vault)
    yield base
    base.close()


@pytest.fixture
def dashboard(qtbot, kb: KnowledgeBase) -> Iterator[PilotDashboard]:  # type: ignore[no-untyped-def]
    script_sessions(kb)
    widget = PilotDashboard(lambda: kb, clock=Clock(NOW))
    qtbot.addWidget(widget)
    widget.resize(1200, 900)
    widget.show()
    with qtbot.waitSignal(widget.reportChanged, timeout=10_000):
        widget.refresh()
    yield widget
    widget.shutdown()


def apply(qtbot, dashboard: PilotDashboard, change: Callable[[], object]) -> None:  # type: ignore[no-untyped-def]
    """Change a filter and wait for the report it asks for."""
    with qtbot.waitSignal(dashboard.reportChanged, timeout=10_000):
        change()


def tiles(dashboard: PilotDashboard) -> dict[str, str]:
    return {key: tile.value.text() for key, tile in dashboard.tiles.items()}


def failed_rows(dashboard: PilotDashboard) -> list[tuple[str, str, str]]:
    table = dashboard.failed_table
    return [
        (table.item(r, 0).text(), table.item(r, 1).text(), table.item(r, 2).text())
        for r in range(table.rowCount())
    ]


def combo_items(dashboard: PilotDashboard) -> list[str]:
    combo = dashboard.team_combo
    return [combo.itemText(i) for i in range(combo.count())]


def test_tiles_charts_and_failed_queries(dashboard: PilotDashboard, tmp_path: Path) -> None:
    report = dashboard.report
    assert report is not None and report.overall.sessions == 24
    m = report.overall
    # 17 found of 24 closed sessions; 3 abandoned.
    assert (m.found, m.notfound, m.abandoned, m.open) == (17, 4, 3, 0)
    assert dashboard.tiles["sessions"].value.text() == "24"
    assert dashboard.tiles["success_rate"].value.text() == f"{17 / 24 * 100:.0f}%"
    assert dashboard.enabled_box.isChecked()

    # One point per ISO week, the x axis labelled with the week.
    xs, ys = dashboard.curves["success_rate"].getData()
    assert list(xs) == [0, 1, 2, 3]
    assert list(ys) == pytest.approx([2 / 5, 4 / 6, 5 / 6, 6 / 7])
    ticks = dashboard.rates_plot.getAxis("bottom")._tickLevels[0]
    assert [label for _x, label in ticks] == ["2025-W06", "2025-W07", "2025-W08", "2025-W09"]
    found = dashboard.outcome_bars["found"].opts
    assert list(found["height"]) == [2, 4, 5, 6]
    assert list(dashboard.outcome_bars["notfound"].opts["y0"]) == [2, 4, 5, 6]  # stacked
    _xs, med = dashboard.time_curve.getData()
    assert list(med) == [117.5, 70.0, 35.0, 24.0]  # week 4: 18 20 22 | 26 30 50

    # Failed queries: most frequent first, counted once per session.
    table = dashboard.failed_table
    rows = [
        (table.item(r, 0).text(), table.item(r, 1).text(), table.item(r, 2).text())
        for r in range(table.rowCount())
    ]
    assert rows[:2] == [("guest wifi password", "3", "3"), ("company vpn linux", "3", "0")]
    assert ("company vpn linux how", "3", "0") in rows
    assert ("parking permit", "1", "1") in rows
    assert not dashboard.golden_button.isEnabled()
    table.selectRow(1)
    assert dashboard.golden_button.isEnabled()
    assert dashboard.selected_failed().query == "company vpn linux"  # type: ignore[union-attr]

    # Filters: every team of the log is offered; "All teams" shows the per-team table.
    assert combo_items(dashboard) == ["All teams", "ops", "sales"]
    assert dashboard.selected_team() is None and dashboard.since() is None
    assert not dashboard.since_edit.isEnabled() and dashboard.scope_label.text() == (
        "all teams · all time"
    )
    assert dashboard.team_box.isVisible()
    # ops: 13 sessions, 8 found, 16 searches (3 rewordings), 2 zero-result (parking, wifi),
    # found in 18 20 30 30 | 40 50 60 95 s. sales: 11 sessions, 9 found, 2 abandoned,
    # 11 searches, 2 zero-result (wifi twice), found in 22 25 26 35 | 45 | 70 80 140 150 s.
    assert dashboard.team_rows() == [
        ("ops", "13", "62%", "35 s", "12%"),  # 8/13; 2/16 = 12.5% shows as 12%
        ("sales", "11", "82%", "45 s", "18%"),  # 9/11; 2/11
    ]

    image = dashboard.grab()
    assert not image.isNull() and image.width() >= 1000
    target = os.environ.get("KVDESK_PILOT_SCREENSHOT") or str(tmp_path / "dashboard.png")
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    assert image.save(target)


def test_make_golden_case_from_a_failed_query(
    qtbot,  # type: ignore[no-untyped-def]
    dashboard: PilotDashboard,
    kb: KnowledgeBase,
) -> None:
    dashboard.failed_table.selectRow(1)  # "company vpn linux"
    picker = dashboard.make_golden_case()
    assert picker is not None and picker.isVisible() and dashboard.picker is picker
    ok = picker.buttons.button(QDialogButtonBox.StandardButton.Ok)
    qtbot.waitUntil(lambda: picker.results.count() > 0, timeout=20_000)
    assert not ok.isEnabled()  # nothing picked yet
    # The user refines the search and picks the VPN how-to.
    picker.search_box.setText("vpn")
    with qtbot.waitSignal(picker.search().succeeded, timeout=20_000):  # type: ignore[union-attr]
        pass
    titles = [picker.results.item(i).text() for i in range(picker.results.count())]
    row = next(i for i, t in enumerate(titles) if "How to set up the company VPN" in t)
    picker.results.setCurrentRow(row)
    assert ok.isEnabled()
    value_id = picker.chosen[0]  # type: ignore[index]
    with qtbot.waitSignal(dashboard.goldenCaseAdded, timeout=10_000) as added:
        ok.click()
    name, query, identifier = added.args
    assert (name, query) == ("pilot-failures", "company vpn linux")
    assert identifier == kb.values.get(value_id).identifier
    (case,) = kb.golden.queries("pilot-failures")
    assert case.text == "company vpn linux" and case.judgements == {value_id: 1}
    qtbot.waitUntil(lambda: dashboard.picker is None, timeout=5_000)  # closed and deleted


def test_cancel_adds_nothing_and_switch_writes_the_setting(
    qtbot,  # type: ignore[no-untyped-def]
    dashboard: PilotDashboard,
    kb: KnowledgeBase,
) -> None:
    dashboard.failed_table.selectRow(0)
    picker = dashboard.make_golden_case()
    assert picker is not None
    picker.reject()
    dashboard.runner.wait()
    assert kb.golden.list_sets() == []

    with qtbot.waitSignal(dashboard.message, timeout=10_000) as said:
        dashboard.enabled_box.setChecked(False)
    assert said.args == ["Pilot recording is off"]
    assert not kb.pilot.enabled


def test_empty_log_and_no_vault(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with KnowledgeBase.open(tmp_path / "empty.kvdb") as kb:
        widget = PilotDashboard(lambda: kb)
        qtbot.addWidget(widget)
        with qtbot.waitSignal(widget.reportChanged, timeout=10_000):
            widget.refresh()
        assert widget.tiles["sessions"].value.text() == "0"
        assert widget.tiles["success_rate"].value.text() == "–"
        assert "Turn recording on" in widget.summary.text()
        assert widget.failed_table.rowCount() == 0 and widget.make_golden_case() is None
        widget.shutdown()
    none = PilotDashboard(lambda: None)
    qtbot.addWidget(none)
    assert none.refresh() is None and not none.enabled_box.isEnabled()
    none.shutdown()


def test_team_filter_scopes_tiles_charts_and_failed_queries(
    qtbot,  # type: ignore[no-untyped-def]
    dashboard: PilotDashboard,
) -> None:
    apply(qtbot, dashboard, lambda: dashboard.set_team("ops"))
    assert dashboard.selected_team() == "ops" and dashboard.team_combo.currentText() == "ops"
    assert dashboard.report is not None and dashboard.report.overall.sessions == 13
    assert tiles(dashboard) == {
        "sessions": "13",
        "success_rate": "62%",  # 8 found / 13 closed
        "abandon_rate": "8%",  # 1 / 13
        "zero_result_rate": "12%",  # 2 / 16 searches
        "mrr": "0.88",  # ranks 2 1 1 1 1 1 1 2: 7 / 8
        "median_seconds_to_find": "35 s",  # (30 + 40) / 2
        "reformulations_per_session": "0.2",  # 3 / 13
    }
    assert dashboard.scope_label.text() == "team ops · all time"
    assert not dashboard.team_box.isVisible()  # the per-team table is for "All teams" only
    xs, ys = dashboard.curves["success_rate"].getData()
    assert list(xs) == [0, 1, 2, 3]
    assert list(ys) == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1.0])
    assert list(dashboard.outcome_bars["found"].opts["height"]) == [1, 1, 2, 4]
    _xs, med = dashboard.time_curve.getData()
    assert list(med) == [95.0, 60.0, 35.0, 25.0]  # week 4: 18 20 | 30 50
    assert failed_rows(dashboard) == [
        ("company vpn linux", "3", "0"),
        ("company vpn linux how", "3", "0"),
        ("guest wifi password", "1", "1"),
        ("parking permit", "1", "1"),
    ]

    apply(qtbot, dashboard, lambda: dashboard.team_combo.setCurrentText("sales"))
    assert tiles(dashboard)["sessions"] == "11"
    assert tiles(dashboard)["success_rate"] == "82%"  # 9 / 11
    assert tiles(dashboard)["abandon_rate"] == "18%"  # 2 / 11
    assert tiles(dashboard)["zero_result_rate"] == "18%"  # 2 / 11
    assert tiles(dashboard)["median_seconds_to_find"] == "45 s"
    _xs, ys = dashboard.curves["success_rate"].getData()
    assert list(ys) == pytest.approx([1 / 2, 1.0, 1.0, 2 / 3])
    assert failed_rows(dashboard) == [("guest wifi password", "2", "2")]

    apply(qtbot, dashboard, lambda: dashboard.set_team(None))
    assert tiles(dashboard)["sessions"] == "24" and dashboard.team_box.isVisible()
    assert failed_rows(dashboard) == [
        ("guest wifi password", "3", "3"),
        ("company vpn linux", "3", "0"),
        ("company vpn linux how", "3", "0"),
        ("parking permit", "1", "1"),
    ]


def test_since_filter_alone_and_with_a_team(
    qtbot,  # type: ignore[no-untyped-def]
    dashboard: PilotDashboard,
    kb: KnowledgeBase,
) -> None:
    # Since Monday 2025-02-17: weeks W08 and W09 only (6 + 7 sessions).
    apply(qtbot, dashboard, lambda: dashboard.set_since(dt.date(2025, 2, 17)))
    assert dashboard.since_box.isChecked() and dashboard.since_edit.isEnabled()
    assert dashboard.since() == dt.datetime(2025, 2, 17, tzinfo=dt.UTC)
    assert dashboard.scope_label.text() == "all teams · since 2025-02-17"
    assert tiles(dashboard)["sessions"] == "13"
    assert tiles(dashboard)["success_rate"] == "85%"  # 11 / 13
    assert tiles(dashboard)["zero_result_rate"] == "7%"  # 1 / 14 searches
    assert tiles(dashboard)["median_seconds_to_find"] == "30 s"  # 18 20 22 25 26 [30] 30 ...
    ticks = dashboard.rates_plot.getAxis("bottom")._tickLevels[0]
    assert [label for _x, label in ticks] == ["2025-W08", "2025-W09"]
    _xs, ys = dashboard.curves["success_rate"].getData()
    assert list(ys) == pytest.approx([5 / 6, 6 / 7])
    assert failed_rows(dashboard) == [
        ("guest wifi password", "1", "1"),  # ties: the most recent first
        ("company vpn linux", "1", "0"),
        ("company vpn linux how", "1", "0"),
    ]
    assert dashboard.team_rows() == [
        ("ops", "7", "86%", "30 s", "0%"),  # 6 / 7; 18 20 30 | 30 40 50
        ("sales", "6", "83%", "26 s", "17%"),  # 5 / 6; 22 25 [26] 35 70; 1 / 6
    ]
    # With "All teams" the numbers are those of `kvdesk pilot report --since 2025-02-17`.
    cli = pilot_report(kb.pilot, since=parse_since("2025-02-17"), clock=lambda: NOW)
    assert dashboard.report is not None and dashboard.report.to_json() == cli.to_json()

    # Both filters together.
    apply(qtbot, dashboard, lambda: dashboard.set_team("ops"))
    assert dashboard.scope_label.text() == "team ops · since 2025-02-17"
    assert tiles(dashboard)["sessions"] == "7"
    assert tiles(dashboard)["success_rate"] == "86%"
    assert tiles(dashboard)["zero_result_rate"] == "0%"  # 0 / 8 searches
    assert tiles(dashboard)["median_seconds_to_find"] == "30 s"
    _xs, ys = dashboard.curves["success_rate"].getData()
    assert list(ys) == pytest.approx([2 / 3, 1.0])
    assert failed_rows(dashboard) == [
        ("company vpn linux", "1", "0"),
        ("company vpn linux how", "1", "0"),
    ]

    # Moving the date refreshes; a window with no sessions keeps the team list.
    apply(qtbot, dashboard, lambda: dashboard.since_edit.setDate(QDate(2025, 4, 1)))
    assert tiles(dashboard)["sessions"] == "0" and tiles(dashboard)["success_rate"] == "–"
    assert dashboard.summary.text() == "No sessions match these filters."
    assert failed_rows(dashboard) == []
    assert combo_items(dashboard) == ["All teams", "ops", "sales"]

    # Unchecking "Since" goes back to all time, the team kept.
    apply(qtbot, dashboard, lambda: dashboard.since_box.setChecked(False))
    assert dashboard.since() is None and not dashboard.since_edit.isEnabled()
    assert tiles(dashboard)["sessions"] == "13" and dashboard.selected_team() == "ops"


def test_a_report_overtaken_by_a_newer_filter_is_dropped(
    qtbot,  # type: ignore[no-untyped-def]
    dashboard: PilotDashboard,
) -> None:
    shown: list[int] = []
    dashboard.reportChanged.connect(lambda report: shown.append(report.overall.sessions))
    dashboard.set_team("ops")
    dashboard.set_team("sales")  # before the ops report is back
    qtbot.waitUntil(lambda: shown == [11], timeout=10_000)
    dashboard.runner.wait()
    qtbot.wait(50)  # let any queued result arrive
    assert shown == [11] and tiles(dashboard)["sessions"] == "11"


def test_double_clicking_a_team_row_filters_on_it(
    qtbot,  # type: ignore[no-untyped-def]
    dashboard: PilotDashboard,
) -> None:
    item = dashboard.team_table.item(1, 2)
    assert item is not None and item.text() == "82%"
    apply(qtbot, dashboard, lambda: dashboard.team_table.itemDoubleClicked.emit(item))
    assert dashboard.selected_team() == "sales" and tiles(dashboard)["sessions"] == "11"


def test_sessions_without_a_team_label(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with KnowledgeBase.open(tmp_path / "teamless.kvdb") as kb:
        clock = Clock(START)
        log = kb.pilot.with_clock(clock)
        log.configure(enabled=True)
        log.mark(log.start_session(), "notfound")
        log.mark(log.start_session(team="ops"), "notfound")
        widget = PilotDashboard(lambda: kb, clock=Clock(NOW))
        qtbot.addWidget(widget)
        apply(qtbot, widget, widget.refresh)
        assert combo_items(widget) == ["All teams", "(no team)", "ops"]
        assert widget.team_rows() == [
            ("(no team)", "1", "0%", "–", "–"),  # no searches: no zero-result rate
            ("ops", "1", "0%", "–", "–"),
        ]
        apply(qtbot, widget, lambda: widget.set_team(""))
        assert widget.selected_team() == "" and widget.team_combo.currentText() == "(no team)"
        assert tiles(widget)["sessions"] == "1"
        widget.shutdown()
