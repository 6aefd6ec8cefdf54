"""The team schema creates cleanly on a real PostgreSQL server, and once only."""

from __future__ import annotations

import re

import pytest

from kvdesk.core.db.postgres import PostgresDatabase, create_schema, schema_version
from kvdesk.core.errors import VaultFormatError
from kvdesk.core.schema import SCHEMA_VERSION, steps_for

_CREATE = re.compile(r"CREATE (TABLE|VIEW) (?:IF NOT EXISTS )?(\w+)")


def _declared(engine: str, kind: str) -> set[str]:
    return {
        name
        for version in range(1, SCHEMA_VERSION + 1)
        for step in steps_for(version, engine)
        for found_kind, name in _CREATE.findall(step.ddl)
        if found_kind == kind
    }


def _relations(db: PostgresDatabase, kind: str) -> set[str]:
    rows = db.conn.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_type = ?",
        (kind,),
    ).fetchall()
    return {row["table_name"] for row in rows}


def _catalog(db: PostgresDatabase) -> list[tuple[object, ...]]:
    rows = db.conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = current_schema()"
        " ORDER BY table_name, ordinal_position"
    ).fetchall()
    indexes = db.conn.execute(
        "SELECT tablename, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = current_schema() ORDER BY indexname"
    ).fetchall()
    return [tuple(r) for r in rows] + [tuple(r) for r in indexes]


def test_every_team_table_is_created(pg_bare: PostgresDatabase) -> None:
    assert schema_version(pg_bare) == 0
    assert create_schema(pg_bare) == tuple(range(1, SCHEMA_VERSION + 1))
    assert schema_version(pg_bare) == SCHEMA_VERSION

    team_tables = _declared("postgresql", "TABLE")
    # The scan finds the stores' tables (an empty set would prove nothing).
    assert {"blob", "value", "version", "source", "tag", "value_tag", "tag_rule", "setting"} <= (
        team_tables
    )
    assert {"pilot_session", "pilot_query", "golden_set", "golden_judgement"} <= team_tables
    assert _relations(pg_bare, "BASE TABLE") == team_tables | {"kvdesk_schema"}
    assert _relations(pg_bare, "VIEW") == _declared("postgresql", "VIEW") == {"value_current"}


def test_keys_stay_local_to_a_desk(pg_db: PostgresDatabase) -> None:
    local_only = _declared("sqlite", "TABLE") - _declared("postgresql", "TABLE")
    # Keys (OCR output and learned keys among them: derived, built per desk), and the desk's
    # queue of pilot sessions for the server.
    assert local_only == {
        "key_set", "passage", "keyed", "learned_key", "pilot_outbox", "ocr_page", "ocr_state",
    }  # fmt: skip
    assert not local_only & _relations(pg_db, "BASE TABLE")


def test_running_it_again_changes_nothing(pg_bare: PostgresDatabase) -> None:
    create_schema(pg_bare)
    before = _catalog(pg_bare)
    assert create_schema(pg_bare) == ()
    assert _catalog(pg_bare) == before
    assert schema_version(pg_bare) == SCHEMA_VERSION
    assert pg_bare.conn.execute("SELECT count(*) FROM kvdesk_schema").fetchone()[0] == 1


def test_a_migration_resumes_from_the_recorded_version(
    pg_bare: PostgresDatabase, pg_db: PostgresDatabase
) -> None:
    """A database left at an older version gets only the later steps, and ends up as one
    created at the newest version (pg_db)."""
    assert create_schema(pg_bare, target=SCHEMA_VERSION - 1) == tuple(range(1, SCHEMA_VERSION))
    assert schema_version(pg_bare) == SCHEMA_VERSION - 1
    assert create_schema(pg_bare) == (SCHEMA_VERSION,)
    assert _catalog(pg_bare) == _catalog(pg_db)


def test_a_newer_schema_is_refused(pg_bare: PostgresDatabase) -> None:
    create_schema(pg_bare)
    with pg_bare.transaction() as tx:
        tx.execute("UPDATE kvdesk_schema SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(VaultFormatError, match="newer kvdesk"):
        create_schema(pg_bare)


def test_integers_are_64_bit_as_in_sqlite(pg_db: PostgresDatabase) -> None:
    types = {
        (r["table_name"], r["column_name"]): r["data_type"]
        for r in pg_db.conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        ).fetchall()
    }
    assert "integer" not in {t for (table, _), t in types.items() if table != "kvdesk_schema"}
    assert types["source", "mtime_ns"] == "bigint"
    assert types["tag", "name"] == types["value", "identifier"] == "USER-DEFINED"  # citext
