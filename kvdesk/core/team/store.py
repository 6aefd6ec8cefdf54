"""The team's own server objects: the change log and the roles.

On the team server (PostgreSQL), schema version 8 adds:

- ``change_log``: one row per changed row of a replicated table, numbered by ``seq`` in commit
  order. Every writing transaction takes one advisory lock before its first change is logged
  and keeps it to commit, so a desk that has read up to ``seq`` N never later finds an N-1.
  Statement-level triggers write it (SECURITY DEFINER: a writer needs no right on the log).
- Three group roles per team database, enforced by the server itself: ``reader`` (read all
  values, tags and golden sets; record its own pilot sessions), ``curator`` (also tags, rules,
  golden sets; reads every pilot session), ``admin`` (everything, and grants through
  ``kvdesk_grant``). The pilot store adds its row-level security (a user writes only their
  own sessions) in the same version.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kvdesk.core.db import Connection, Database, ReplicatedTable, SchemaStep

ROLES = ("reader", "curator", "admin")
# One lock serialises the team's writing transactions (their change numbers = commit order).
CHANGE_LOCK = 0x6B766331  # "kvc1"
NOTIFY_CHANNEL = "kvdesk_changes"

_PILOT_TABLES = ("pilot_session", "pilot_query", "pilot_hit", "pilot_open")
# Curators also write the team's pilot settings (in setting).
_CURATED_TABLES = ("tag", "value_tag", "tag_rule", "golden_set", "golden_query",
                   "golden_judgement", "setting")  # fmt: skip


def role_names(database: str) -> dict[str, str]:
    """The server roles of one team database (roles are per server: the name carries the
    database, so a reader of one team is not a reader of another on the same server)."""
    base = re.sub(r"[^a-z0-9_]", "_", database.lower())[:40]
    return {role: f"kvdesk_{base}_{role}" for role in ROLES}


def _server_objects(conn: Connection) -> None:
    """Install (or refresh) the change log, its triggers, the roles and their grants."""
    from kvdesk.core.schema import replicated_tables

    schema = conn.execute("SELECT current_schema()").fetchone()[0]
    database = conn.execute("SELECT current_database()").fetchone()[0]
    roles = role_names(database)
    path = f"SET search_path = {_ident(schema)}, pg_temp"
    for table in replicated_tables():
        _log_trigger(conn, table, path)
    for role in roles.values():
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = ?", (role,)).fetchone()
        if not exists:
            conn.execute(f"CREATE ROLE {_ident(role)} NOLOGIN")
    reader, curator, admin = (_ident(roles[r]) for r in ROLES)
    conn.execute(f"GRANT {reader} TO {curator}")
    conn.execute(f"GRANT {curator} TO {admin}")
    tables = [row[0] for row in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    ).fetchall()] + ["value_current"]  # fmt: skip
    conn.execute(f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {reader}")
    conn.execute(f"GRANT SELECT ON {', '.join(map(_ident, tables))} TO {reader}")
    conn.execute(f"GRANT INSERT, UPDATE, DELETE ON {', '.join(_PILOT_TABLES)} TO {reader}")
    conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {_ident(schema)} TO {reader}")
    conn.execute(f"GRANT INSERT, UPDATE, DELETE ON {', '.join(_CURATED_TABLES)} TO {curator}")
    everything = [t for t in tables if t not in ("change_log", "kvdesk_schema", "value_current")]
    conn.execute(f"GRANT INSERT, UPDATE, DELETE ON {', '.join(everything)} TO {admin}")
    conn.execute(
        f"""
        CREATE OR REPLACE FUNCTION kvdesk_grant(who TEXT, wanted TEXT) RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER {path} AS $grant$
        DECLARE
            roles TEXT[] := ARRAY[{", ".join(_literal(roles[r]) for r in ROLES)}];
            names TEXT[] := ARRAY['reader', 'curator', 'admin'];
            r TEXT;
        BEGIN
            IF NOT wanted = ANY(names) THEN
                RAISE EXCEPTION 'unknown role %: choose reader, curator or admin', wanted
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = who) THEN
                RAISE EXCEPTION 'there is no user % on the team server (ask IT to create it)',
                    who USING ERRCODE = 'undefined_object';
            END IF;
            FOREACH r IN ARRAY roles LOOP
                IF EXISTS (
                    SELECT 1 FROM pg_auth_members m
                    JOIN pg_roles g ON g.oid = m.roleid
                    JOIN pg_roles u ON u.oid = m.member
                    WHERE g.rolname = r AND u.rolname = who
                ) THEN
                    EXECUTE format('REVOKE %I FROM %I', r, who);
                END IF;
            END LOOP;
            EXECUTE format('GRANT %I TO %I', roles[array_position(names, wanted)], who);
        END
        $grant$
        """
    )
    conn.execute("REVOKE ALL ON FUNCTION kvdesk_grant(TEXT, TEXT) FROM PUBLIC")
    conn.execute(f"GRANT EXECUTE ON FUNCTION kvdesk_grant(TEXT, TEXT) TO {admin}")
    # Whoever creates the team administers it.
    conn.execute(f"GRANT {admin} TO current_user")


def _log_trigger(conn: Connection, table: ReplicatedTable, path: str) -> None:
    key = ", ".join(f"'{col}', {col}" for col, _ in table.key)
    detail = (
        "jsonb_build_object(" + ", ".join(f"'{col}', {col}" for col in table.detail) + ")"
        if table.detail
        else "NULL"
    )
    new_key = ", ".join(f"'{col}', n.{col}" for col, _ in table.key)
    new_detail = (
        "jsonb_build_object(" + ", ".join(f"'{col}', n.{col}" for col in table.detail) + ")"
        if table.detail
        else "NULL"
    )
    using = ", ".join(col for col, _ in table.key)
    function = f"kvdesk_log_{table.name}"
    conn.execute(
        f"""
        CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER {path} AS $log$
        BEGIN
            PERFORM pg_advisory_xact_lock({CHANGE_LOCK});
            IF TG_OP = 'DELETE' THEN
                INSERT INTO change_log(tbl, pk, op, detail, actor)
                SELECT '{table.name}', jsonb_build_object({key}), 'D', {detail}, session_user
                FROM old_rows;
            ELSIF TG_OP = 'UPDATE' THEN
                -- Sealing a row (its digest, computed after it is written) is not a change
                -- of its own: the change that wrote the row already brings it to the desks.
                INSERT INTO change_log(tbl, pk, op, detail, actor)
                SELECT '{table.name}', jsonb_build_object({new_key}), 'U', {new_detail},
                       session_user
                FROM new_rows n JOIN old_rows o USING ({using})
                WHERE to_jsonb(n) - 'digest' IS DISTINCT FROM to_jsonb(o) - 'digest';
            ELSE
                INSERT INTO change_log(tbl, pk, op, detail, actor)
                SELECT '{table.name}', jsonb_build_object({key}), left(TG_OP, 1), {detail},
                       session_user
                FROM new_rows;
            END IF;
            PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
            RETURN NULL;
        END
        $log$
        """
    )
    for op, transitions in (
        ("INSERT", "NEW TABLE AS new_rows"),
        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        ("DELETE", "OLD TABLE AS old_rows"),
    ):
        name = f"kvdesk_log_{op.lower()}"
        conn.execute(f"DROP TRIGGER IF EXISTS {name} ON {table.name}")
        conn.execute(
            f"CREATE TRIGGER {name} AFTER {op} ON {table.name}"
            f" REFERENCING {transitions} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


SCHEMA: tuple[SchemaStep, ...] = (
    SchemaStep(
        8,
        "team",
        # Written only by the triggers _server_objects installs (numbered in commit order).
        """
        CREATE TABLE change_log (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tbl TEXT NOT NULL,
            pk JSONB NOT NULL,
            op CHAR(1) NOT NULL,
            detail JSONB,
            actor TEXT NOT NULL DEFAULT current_user,
            at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
        );
        """,
        engines=frozenset({"postgresql"}),
        backfill=_server_objects,
    ),
)


# -- on the server --------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One logged change: which row of which table, and who made it when."""

    seq: int
    table: str
    key: dict[str, Any]
    op: str
    actor: str
    at: str
    detail: dict[str, Any] | None


class ChangeLog:
    """Reads of the server's change log (written only by its triggers)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def last_seq(self) -> int:
        row = self._db.conn.execute("SELECT coalesce(max(seq), 0) FROM change_log").fetchone()
        return int(row[0])

    def last_seq_after(self, seq: int) -> bool:
        """Whether any change is numbered after ``seq``."""
        row = self._db.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM change_log WHERE seq > ?)", (seq,)
        ).fetchone()
        return bool(row[0])

    def since(self, seq: int, limit: int) -> list[Change]:
        rows = self._db.conn.execute(
            "SELECT seq, tbl, pk, op, actor, at::text AS at, detail FROM change_log"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        return [Change(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def oldest_after(self, seq: int) -> float | None:
        """Seconds since the oldest change after ``seq`` was made (None: there is none)."""
        row = self._db.conn.execute(
            "SELECT extract(epoch FROM clock_timestamp() - at) FROM change_log"
            " WHERE seq = (SELECT min(seq) FROM change_log WHERE seq > ?)",
            (seq,),
        ).fetchone()
        return None if row is None else float(row[0])

    def history(self, table: str, key: dict[str, Any]) -> list[Change]:
        """Every logged change of one row, oldest first."""
        import json

        rows = self._db.conn.execute(
            "SELECT seq, tbl, pk, op, actor, at::text AS at, detail FROM change_log"
            " WHERE tbl = ? AND pk = ?::jsonb ORDER BY seq",
            (table, json.dumps(key)),
        ).fetchall()
        return [Change(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


def server_role(db: Database) -> str:
    """This login's strongest team role on the server ('' when it has none)."""
    database = db.conn.execute("SELECT current_database()").fetchone()[0]
    names = role_names(database)
    for role in reversed(ROLES):
        row = db.conn.execute(
            "SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = ?",
            (names[role],),
        ).fetchone()
        if row is not None and row[0]:
            return role
    return ""


def grant(db: Database, user: str, role: str) -> None:
    """Give ``user`` exactly ``role`` on the team (the server checks the caller is an admin)."""
    db.conn.execute("SELECT kvdesk_grant(?, ?)", (user, role))


# -- on a desk ------------------------------------------------------------------------------


def table_columns(db: Database, table: str) -> Sequence[str]:
    """A local table's columns, in order (what a replicated row is written with)."""
    rows = db.conn.execute(f"PRAGMA table_info({table})").fetchall()
    return [row[1] for row in rows]
