"""UI test fixtures: offscreen Qt, a vault with the samples (dense keys built once), a window.

Every window fixture waits for its background work and closes the vault in teardown, so no
worker thread outlives a test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest.importorskip("PySide6")

from kvdesk.core.knowledge_base import KnowledgeBase  # noqa: E402
from kvdesk.core.paths import keys_dir_for  # noqa: E402
from kvdesk.ui.resources import sample_paths  # noqa: E402


@pytest.fixture(scope="session")
def sample_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The samples imported and dense-keyed once with the real default model."""
    folder = tmp_path_factory.mktemp("template")
    path = folder / "samples.kvdb"
    kb = KnowledgeBase.open(path)
    try:
        report = kb.import_paths(sample_paths())
        assert not report.failed, report.failed
        kb.build_dense_keys()
        assert kb.dense_status().ready
    finally:
        kb.close()
    return path


@pytest.fixture
def sample_vault(sample_template: Path, tmp_path: Path) -> Path:
    """A private copy of the template vault (file plus its keys folder)."""
    path = tmp_path / "vault.kvdb"
    shutil.copy2(sample_template, path)
    shutil.copytree(keys_dir_for(sample_template), keys_dir_for(path))
    return path


def make_window(qtbot, path: Path, **kw):  # type: ignore[no-untyped-def]
    from kvdesk.ui.main_window import MainWindow

    kw.setdefault("offer_samples", False)
    kw.setdefault("auto_dense", False)
    window = MainWindow(KnowledgeBase.open(path), **kw)
    qtbot.addWidget(window)
    window.resize(1300, 800)
    window.show()
    qtbot.waitUntil(lambda: not window.session.runner.busy, timeout=30_000)
    return window


def close_window(window) -> None:  # type: ignore[no-untyped-def]
    window.close()  # cancels and waits for every task, then closes the vault
    assert window.session.closed
    assert not window.session.runner._writer.activeThreadCount()
    assert not window.session.runner._reader.activeThreadCount()


@pytest.fixture
def window(qtbot, sample_vault: Path) -> Iterator[object]:  # type: ignore[no-untyped-def]
    w = make_window(qtbot, sample_vault)
    yield w
    close_window(w)
