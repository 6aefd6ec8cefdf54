"""Test-wide fixtures: every test gets its own KVDESK_HOME, so no real user data is touched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

EVAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "eval"


@pytest.fixture(autouse=True)
def _private_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = tmp_path_factory.mktemp("kvdesk-home")
    monkeypatch.setenv("KVDESK_HOME", str(home))
    return home


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "test.kvdb"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "qtbot" in getattr(item, "fixturenames", ()) or "qapp" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.gui)
