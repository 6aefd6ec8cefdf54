"""Fixtures for store tests on both engines.

``engine_db`` runs a test once on a vault (SQLite) and once on a PostgreSQL database with the
team schema, both empty. The PostgreSQL server is real (:mod:`tests.db.pgserver`), started once
per session; if it cannot start, every test that needs it fails with the reason.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kvdesk.core.db.postgres import PostgresDatabase, create_schema
from kvdesk.core.vault.vault import Vault
from tests.db.pgserver import PgServer

ENGINES = ("sqlite", "postgresql")
TEAM_DATABASE = "kvdesk_team"
_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg_team_tables(pg_server: PgServer) -> tuple[str, ...]:
    """One database with the team schema, shared by the tests (emptied after each)."""
    pg_server.admin(f"CREATE DATABASE {TEAM_DATABASE}")
    with PostgresDatabase(pg_server.conninfo(TEAM_DATABASE)) as db:
        create_schema(db)
        rows = db.conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            " AND tablename <> 'kvdesk_schema'"
        ).fetchall()
    return tuple(row[0] for row in rows)


@pytest.fixture
def pg_db(pg_server: PgServer, pg_team_tables: tuple[str, ...]) -> Iterator[PostgresDatabase]:
    """The team schema with no rows. Emptied afterwards (ids are not reset: never assume them);
    a test that changes the schema itself uses ``pg_bare`` instead."""
    db = PostgresDatabase(pg_server.conninfo(TEAM_DATABASE))
    yield db
    db.close()
    # Replica mode skips the foreign-key triggers, so the order of the deletes does not matter.
    pg_server.admin(
        "BEGIN",
        "SET LOCAL session_replication_role = replica",
        *(f"DELETE FROM {table}" for table in pg_team_tables),
        "COMMIT",
        dbname=TEAM_DATABASE,
    )


@pytest.fixture
def pg_bare(pg_server: PgServer) -> Iterator[PostgresDatabase]:
    """A new, empty database with no kvdesk schema yet (about half a second: use sparingly)."""
    name = f"kvdesk_bare{next(_names)}"
    pg_server.admin(f"CREATE DATABASE {name}")
    db = PostgresDatabase(pg_server.conninfo(name))
    yield db
    db.close()
    pg_server.admin(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Vault]:
    vault = Vault.open(tmp_path / "engine.kvdb")
    yield vault
    vault.close()


@pytest.fixture(params=ENGINES)
def engine_db(request: pytest.FixtureRequest) -> Any:
    """An empty database of each engine in turn, as stores see it (a ``Database``)."""
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")
