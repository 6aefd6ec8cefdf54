"""Keys ▸ Confusable documents: the pairs are found off the GUI thread, shown side by side with
what tells them apart, and the suggested tag is applied through the tag API."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from PySide6.QtCore import Qt

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.paths import keys_dir_for
from kvdesk.ui.confusable import COLUMNS, ConfusableView
from kvdesk.ui.pilot_dashboard import PilotDashboard
from kvdesk.ui.tasks import TaskRunner
from tests.core.test_confusable import _records
from tests.ui.conftest import close_window, make_window


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("confusable-ui")
    path = folder / "v.kvdb"
    with KnowledgeBase.open(path) as kb:
        kb.import_records(_records(folder / "docs.jsonl"))
        kb.build_dense_keys()
    return path


@pytest.fixture
def vault(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "v.kvdb"
    shutil.copy2(template, path)
    shutil.copytree(keys_dir_for(template), keys_dir_for(path))
    return path


@pytest.fixture
def kb(vault: Path) -> Iterator[KnowledgeBase]:
    base = KnowledgeBase.open(vault, create=False)
    yield base
    base.close()


@pytest.fixture
def view(qtbot, kb: KnowledgeBase) -> Iterator[ConfusableView]:  # type: ignore[no-untyped-def]
    runner = TaskRunner()
    widget = ConfusableView(lambda: kb, runner)
    qtbot.addWidget(widget)
    widget.resize(1200, 500)
    widget.show()
    with qtbot.waitSignal(widget.loaded, timeout=30_000) as blocker:
        widget.refresh()
    assert blocker.args == [3]
    yield widget
    assert runner.shutdown()
    assert not runner._writer.activeThreadCount() and not runner._reader.activeThreadCount()


def _row_of(view: ConfusableView, title: str) -> int:
    return next(i for i, p in enumerate(view.pairs) if p.a.title == title)


def test_pairs_are_listed_side_by_side(view: ConfusableView) -> None:
    assert view.table.rowCount() == 3 and view.table.columnCount() == len(COLUMNS)
    assert view.summary.text().startswith("3 confusable pairs among 10 documents")
    row = _row_of(view, "Library maintenance contract")
    pair = view.pairs[row]
    assert view.cell_text(row, 1) == f"{pair.a.identifier} · Library maintenance contract"
    assert view.cell_text(row, 2).startswith("2023-05-02")
    assert view.cell_text(row, 4).startswith("2024-05-02")
    assert view.cell_text(row, 5) == f"2024 → {pair.b.identifier}"
    dense, words = (float(x) for x in view.cell_text(row, 0).split(" · "))
    assert dense >= 0.8 and words >= 0.8
    view.table.selectRow(row)
    shown = view.detail.toPlainText()
    assert "What tells them apart" in shown and "2023-05-02" in shown and "2024-05-02" in shown
    assert view.apply_button.isEnabled()


def test_apply_suggested_tag_saves_it_and_refresh_shows_it_told_apart(
    qtbot,
    view: ConfusableView,
    kb: KnowledgeBase,  # type: ignore[no-untyped-def]
) -> None:
    row = _row_of(view, "Library maintenance contract")
    view.table.selectRow(row)
    target = view.pairs[row].suggested_tag
    assert target is not None
    with qtbot.waitSignal(view.tagsChanged, timeout=20_000) as blocker:
        qtbot.mouseClick(view.apply_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0] == target.value_id and "2024" in blocker.args[1]
    assert "2024" in kb.tags.of(target.value_id)
    assert view.cell_text(row, 5).startswith("✓ 2024")
    assert not view.apply_button.isEnabled()
    assert view.apply_suggested(row) is None  # applied once only
    with qtbot.waitSignal(view.loaded, timeout=30_000):
        view.refresh()
    row = _row_of(view, "Library maintenance contract")
    assert view.pairs[row].tagged_apart == ("2024",) and view.cell_text(row, 5) == "—"


def test_pilot_dashboard_counts_failed_sessions_amid_look_alikes(
    qtbot,  # type: ignore[no-untyped-def]
    kb: KnowledgeBase,
) -> None:
    kb.pilot.configure(enabled=True, user="ann")
    for query in ("summer party catering invoice", "lentil soup"):
        sid = kb.pilot.start_session()
        kb.pilot.record_search(sid, query, kb.search(query, mode="lexical"))
        kb.pilot.mark(sid, "notfound")
    runner = TaskRunner()
    dashboard = PilotDashboard(lambda: kb, runner=runner)
    qtbot.addWidget(dashboard)
    with qtbot.waitSignal(dashboard.reportChanged, timeout=30_000):
        dashboard.refresh()
    assert dashboard.confusable_tile.value.text() == "1"  # both invoices came up; soup did not
    assert dashboard.tiles["sessions"].value.text() == "2"
    assert runner.shutdown()


def test_reachable_from_the_keys_menu(qtbot, vault: Path) -> None:  # type: ignore[no-untyped-def]
    window = make_window(qtbot, vault)
    try:
        action = next(
            a
            for menu in window.menuBar().actions()
            if menu.text() == "&Keys"
            for a in menu.menu().actions()
            if a.text() == "Con&fusable documents…"
        )
        action.trigger()
        view = window.tabs.currentWidget()
        assert isinstance(view, ConfusableView)
        qtbot.waitUntil(lambda: view.report is not None, timeout=30_000)
        assert len(view.pairs) == 3
        assert window.open_confusable_documents() is view  # one tab, refreshed
        qtbot.waitUntil(lambda: not window.session.runner.busy, timeout=30_000)
    finally:
        close_window(window)
