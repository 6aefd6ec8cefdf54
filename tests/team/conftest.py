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


def create_users(server: PgServer) -> dict[str, str]:
    """The login users of :data:`USERS` on ``server`` (kept if they exist already)."""
    import psycopg

    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        for user in USERS:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone():
                conn.execute(f"CREATE ROLE {user} LOGIN")
    return USERS


def create_team_database(server: PgServer, database: str, root: Path) -> Team:
    """A new database on ``server`` with the team schema and :data:`USERS`' roles granted."""
    server.admin(f"CREATE DATABASE {database}")
    made = Team(server, database, root)
    create_team(made.url())
    with made.db() as db:
        for user, role in USERS.items():
            if role:
                grant(db, user, role)
    return made


@pytest.fixture(scope="session")
def team_users(pg_server: PgServer) -> dict[str, str]:
    return create_users(pg_server)


@pytest.fixture
def team(pg_server: PgServer, team_users: dict[str, str], tmp_path: Path) -> Iterator[Team]:
    made = create_team_database(pg_server, f"team{next(_numbers)}", tmp_path)
    yield made
    for kb in made.desks:
        kb.close()
    if pg_server.process is not None and pg_server.process.poll() is None:
        pg_server.admin(f"DROP DATABASE {made.database} WITH (FORCE)")
