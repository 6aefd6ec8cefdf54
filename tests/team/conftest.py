"""A team vault on a real PostgreSQL server (the session's, see tests/conftest.py).

``team`` is a new team database per test, created as the server's superuser (who becomes its
admin), with login users ``ann`` (admin), ``cal`` (curator), ``cora`` (curator), ``rex``
(reader) and ``nemo`` (no role). The test server trusts local connections, so no passwords.
Desks are real vault files joined with ``team.desk(name, user)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kvdesk.core.db.postgres import PostgresDatabase
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.team.desk import create_team
from kvdesk.core.team.store import grant
from tests.db.pgserver import SUPERUSER, PgServer

USERS = {"ann": "admin", "cal": "curator", "cora": "curator", "rex": "reader", "nemo": ""}
_numbers = itertools.count(1)


@dataclass
class Team:
    server: PgServer
    database: str
    root: Path
    desks: list[KnowledgeBase] = field(default_factory=list)

    def url(self, user: str = SUPERUSER) -> str:
        return self.server.conninfo(self.database).replace(f"user={SUPERUSER}", f"user={user}")

    def db(self, user: str = SUPERUSER) -> PostgresDatabase:
        """A direct connection to the team database as ``user`` (close it when done)."""
        return PostgresDatabase(self.url(user))

    def desk(self, name: str, user: str = "ann") -> KnowledgeBase:
        """A new desk (vault ``name``.kvdb) joined as ``user``; closed after the test."""
        kb = KnowledgeBase.open(self.root / f"{name}.kvdb")
        self.desks.append(kb)
        kb.join_team(self.url(user))
        return kb

    def open(self, name: str) -> KnowledgeBase:
        """An already joined desk, opened again (a new process would do the same)."""
        kb = KnowledgeBase.open(self.root / f"{name}.kvdb", create=False)
        self.desks.append(kb)
        return kb


@pytest.fixture(scope="session")
def team_users(pg_server: PgServer) -> dict[str, str]:
    import psycopg

    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
        for user in USERS:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone():
                conn.execute(f"CREATE ROLE {user} LOGIN")
    return USERS


@pytest.fixture
def team(pg_server: PgServer, team_users: dict[str, str], tmp_path: Path) -> Iterator[Team]:
    database = f"team{next(_numbers)}"
    pg_server.admin(f"CREATE DATABASE {database}")
    made = Team(pg_server, database, tmp_path)
    create_team(made.url())
    with made.db() as db:
        for user, role in team_users.items():
            if role:
                grant(db, user, role)
    yield made
    for kb in made.desks:
        kb.close()
    if pg_server.process is not None and pg_server.process.poll() is None:
        pg_server.admin(f"DROP DATABASE {database} WITH (FORCE)")
