"""The same store code and the same SQL on both engines: a vault's SQLite and PostgreSQL.

Each test here runs twice (``engine_db``): the shared SQL subset must mean the same on both.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import pytest

from kvdesk.core.settings import SettingStore

INTEGRITY = (sqlite3.IntegrityError, psycopg.IntegrityError)
NOW = "2026-01-01T00:00:00.000+00:00"


def _value(db: Any, identifier: str) -> int:
    with db.transaction() as tx:
        row = tx.execute(
            "INSERT INTO value(identifier, title, media_type, current_version, created_at,"
            " updated_at) VALUES (?, ?, 'text/plain', 1, ?, ?) RETURNING id",
            (identifier, identifier, NOW, NOW),
        ).fetchone()
    return int(row["id"])


def test_setting_store_works_unchanged(engine_db: Any) -> None:
    settings = SettingStore(engine_db)
    assert settings.get("pilot.user", "nobody") == "nobody"
    settings.set("pilot.user", "ada")
    settings.set("pilot.user", "grace")  # ON CONFLICT ... DO UPDATE
    settings.set("tags.suggest", "50%")
    assert settings.get("pilot.user") == "grace"
    assert settings.get("tags.suggest") == "50%"
    settings.delete("pilot.user")
    assert settings.get("pilot.user", "-") == "-"


def test_nested_transaction_undoes_only_the_inner_part(engine_db: Any) -> None:
    settings = SettingStore(engine_db)
    with engine_db.transaction() as tx:
        tx.execute("INSERT INTO setting(key, value) VALUES (?, ?)", ("kept", "1"))
        with pytest.raises(INTEGRITY):
            with engine_db.transaction() as inner:
                inner.execute("INSERT INTO setting(key, value) VALUES (?, ?)", ("undone", "1"))
                inner.execute("INSERT INTO setting(key, value) VALUES (?, ?)", ("kept", "2"))
        settings.set("after", "1")  # the outer transaction is still usable
    assert (settings.get("kept"), settings.get("undone"), settings.get("after")) == ("1", "", "1")

    with pytest.raises(RuntimeError):
        with engine_db.transaction() as tx:
            tx.execute("INSERT INTO setting(key, value) VALUES (?, ?)", ("gone", "1"))
            raise RuntimeError("abort")
    assert settings.get("gone") == ""


def test_tag_names_are_unique_whatever_their_case(engine_db: Any) -> None:
    with engine_db.transaction() as tx:
        tx.execute("INSERT INTO tag(name) VALUES (?)", ("Invoices",))
    with pytest.raises(INTEGRITY), engine_db.transaction() as tx:
        tx.execute("INSERT INTO tag(name) VALUES (?)", ("INVOICES",))
    conn = engine_db.conn
    found = conn.execute("SELECT name FROM tag WHERE name = ?", ("invoices",)).fetchall()
    assert [row["name"] for row in found] == ["Invoices"]
    like = conn.execute("SELECT name FROM tag WHERE name LIKE ? ESCAPE '\\'", ("inv%",))
    assert [row[0] for row in like.fetchall()] == ["Invoices"]
    with engine_db.transaction() as tx:
        tx.execute("INSERT INTO tag(name) VALUES (?) ON CONFLICT (name) DO NOTHING", ("iNvOiCeS",))
    assert conn.execute("SELECT count(*) FROM tag").fetchone()[0] == 1


def test_value_identifiers_are_unique_whatever_their_case(engine_db: Any) -> None:
    first = _value(engine_db, "DOC-1")
    with pytest.raises(INTEGRITY):
        _value(engine_db, "doc-1")
    row = engine_db.conn.execute("SELECT id FROM value WHERE identifier = ?", ("Doc-1",))
    assert row.fetchone()["id"] == first


def test_metadata_must_be_json(engine_db: Any) -> None:
    value_id = _value(engine_db, "DOC-7")
    with engine_db.transaction() as tx:
        tx.execute("INSERT INTO blob(sha256, size, data) VALUES (?, ?, ?)", ("ab" * 32, 2, b"hi"))

    def version(number: int, metadata: str) -> None:
        with engine_db.transaction() as tx:
            tx.execute(
                "INSERT INTO version(value_id, version, sha256, size, media_type, title, text,"
                " metadata, created_at) VALUES (?, ?, ?, 2, 'text/plain', 't', 'hi', ?, ?)",
                (value_id, number, "ab" * 32, metadata, NOW),
            )

    version(1, '{"pages": 3, "author": "Ada"}')
    for bad in ("not json", "{'single': 'quotes'}", '{"open": '):
        with pytest.raises(INTEGRITY):
            version(2, bad)
    current = engine_db.conn.execute(
        "SELECT identifier, metadata, size FROM value_current WHERE id = ?", (value_id,)
    ).fetchone()
    assert (current["identifier"], current["metadata"], current[2]) == (
        "DOC-7",
        '{"pages": 3, "author": "Ada"}',
        2,
    )


def test_rows_read_by_index_and_by_name(engine_db: Any) -> None:
    row = engine_db.conn.execute(
        "SELECT 1 AS one, 'x?%' AS text_col, CAST(? AS INTEGER) AS flag", (True,)
    ).fetchone()
    assert (row[0], row[1], row[2]) == (1, "x?%", 1)
    assert (row["one"], row["TEXT_COL"], row["flag"]) == (1, "x?%", 1)
    assert list(row.keys()) == ["one", "text_col", "flag"]
    assert dict(row) == {"one": 1, "text_col": "x?%", "flag": 1}
    assert len(row) == 3
