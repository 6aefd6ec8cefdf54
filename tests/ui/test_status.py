"""Status bar and settings: the provider while the model loads, the model of the key set."""

from __future__ import annotations

from pathlib import Path

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.ui.main_window import MainWindow

from .conftest import close_window


def test_provider_shows_loading_then_the_real_one(qtbot, sample_vault: Path) -> None:  # type: ignore[no-untyped-def]
    window = MainWindow(KnowledgeBase.open(sample_vault), offer_samples=False, auto_dense=False)
    qtbot.addWidget(window)
    try:
        assert window.provider_label.text() == "Provider: loading…"
        qtbot.waitUntil(lambda: not window.session.runner.busy, timeout=30_000)
        text = window.provider_label.text()
        assert ("CPU" in text or "GPU" in text) and "ExecutionProvider" in text
    finally:
        close_window(window)


def test_settings_model_comes_from_the_key_set(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    key_set = window.session.kb.dense_status().key_set
    assert key_set is not None
    dialog = window.open_settings()
    label = dialog.model_label.text()
    assert str(key_set.params["model"]) in label and f"#{key_set.id}" in label
    dialog.reject()


def test_settings_model_without_keys(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from .conftest import make_window

    window = make_window(qtbot, tmp_path / "empty.kvdb")
    try:
        assert window.provider_label.text() == "Provider: not loaded"
        dialog = window.open_settings()
        assert dialog.model_label.text().startswith("none yet")
        dialog.reject()
    finally:
        close_window(window)
