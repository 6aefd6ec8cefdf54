"""Test-wide fixtures: every test gets its own KVDESK_HOME, so no real user data is touched."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

if TYPE_CHECKING:
    from tests.db.pgserver import PgServer

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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for the session (tests/db/pgserver.py); fails with the reason
    when it cannot start."""
    from tests.db.pgserver import PgServer, PgServerError

    try:
        server = PgServer.start()
    except PgServerError as exc:
        failure = str(exc)
    else:
        yield server
        server.stop()
        return
    pytest.fail(f"PostgreSQL test server: {failure}", pytrace=False)
