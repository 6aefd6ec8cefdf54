"""The pilot tables (pilot_session, pilot_query, pilot_hit, pilot_open): all of their SQL.

Written in the SQL subset SQLite and PostgreSQL share (see :mod:`kvdesk.core.db`). The store
knows rows, not rules: :class:`~kvdesk.core.pilot.log.PilotLog` decides what is written when.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from kvdesk.core.db import Connection, Database, SchemaStep
from kvdesk.core.pilot.records import (
    Outcome,
    PilotHit,
    PilotOpen,
    PilotQuery,
    PilotSession,
    aware,
    from_iso,
)

SCHEMA: tuple[SchemaStep, ...] = (
    SchemaStep(
        2,
        "pilot",
        """
        CREATE TABLE pilot_session (
            id $pk,
            "user" TEXT NOT NULL DEFAULT '',
            team TEXT NOT NULL DEFAULT '',
            started_at TEXT NOT NULL,
            ended_at TEXT,
            outcome TEXT CHECK (outcome IN ('found', 'notfound', 'abandoned')),
            found_value_id INTEGER REFERENCES value(id) ON DELETE SET NULL,
            found_at TEXT
        );
        CREATE TABLE pilot_query (
            id $pk,
            session_id INTEGER NOT NULL REFERENCES pilot_session(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            query TEXT NOT NULL,
            mode TEXT NOT NULL,
            at TEXT NOT NULL,
            hit_count INTEGER NOT NULL,
            confident INTEGER NOT NULL,
            key_set_id INTEGER
        );
        CREATE INDEX pilot_query_session ON pilot_query(session_id, seq);
        CREATE TABLE pilot_hit (
            query_id INTEGER NOT NULL REFERENCES pilot_query(id) ON DELETE CASCADE,
            rank INTEGER NOT NULL,
            value_id INTEGER NOT NULL,
            score $real NOT NULL,
            PRIMARY KEY (query_id, rank)
        );
        CREATE TABLE pilot_open (
            id $pk,
            session_id INTEGER NOT NULL REFERENCES pilot_session(id) ON DELETE CASCADE,
            value_id INTEGER NOT NULL,
            rank INTEGER,
            opened_at TEXT NOT NULL,
            seconds $real
        );
        """,
    ),
    SchemaStep(
        4,
        "pilot",
        # What a pilot search saw beyond its hits (NULL: recorded before kvdesk kept it).
        """
        ALTER TABLE pilot_query ADD COLUMN lexical_match INTEGER;
        ALTER TABLE pilot_query ADD COLUMN tag_match INTEGER;
        """,
    ),
    SchemaStep(
        8,
        "pilot",
        # A desk's sessions not yet delivered to its team server; ``changes`` counts writes,
        # so a delivery forgets only what it read (triggers fill it once the desk joins).
        """
        CREATE TABLE IF NOT EXISTS pilot_outbox (
            session_id INTEGER PRIMARY KEY,
            changes INTEGER NOT NULL DEFAULT 1
        );
        """,
        engines=frozenset({"sqlite"}),
    ),
    SchemaStep(
        8,
        "pilot",
        # On the team server: where a delivered session came from (one session however often
        # it is delivered), and row-level security (each user writes only their own sessions).
        "ALTER TABLE pilot_session ADD COLUMN IF NOT EXISTS origin TEXT UNIQUE;",
        engines=frozenset({"postgresql"}),
        backfill=lambda conn: _team_policies(conn),
    ),
)


def _team_policies(conn: Connection) -> None:
    from kvdesk.core.team.store import role_names

    database = conn.execute("SELECT current_database()").fetchone()[0]
    curator = role_names(database)["curator"].replace("'", "''")
    everyone = f"pg_has_role(current_user, '{curator}', 'MEMBER')"
    visible = (
        "EXISTS (SELECT 1 FROM pilot_session s WHERE s.id = session_id"
        ' AND (s."user" = current_user OR ' + everyone + "))"
    )
    own = (
        'EXISTS (SELECT 1 FROM pilot_session s WHERE s.id = session_id AND s."user" = current_user)'
    )
    via_query = "EXISTS (SELECT 1 FROM pilot_query q WHERE q.id = query_id)"
    policies = {
        "pilot_session": (f'"user" = current_user OR {everyone}', '"user" = current_user'),
        "pilot_query": (visible, own),
        "pilot_open": (visible, own),
        "pilot_hit": (via_query, via_query),
    }
    for table, (read, write) in policies.items():
        conn.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        for name in ("kvdesk_read", "kvdesk_write"):
            conn.execute(f"DROP POLICY IF EXISTS {name} ON {table}")
        conn.execute(f"CREATE POLICY kvdesk_read ON {table} FOR SELECT USING ({read})")
        conn.execute(
            f"CREATE POLICY kvdesk_write ON {table} FOR ALL USING ({write}) WITH CHECK ({write})"
        )


class PilotStore:
    """Every statement on the pilot tables. Writes belong on the writer thread."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # writing

    def add_session(self, user: str, team: str, started_at: str) -> int:
        with self._db.transaction() as tx:
            row = tx.execute(
                'INSERT INTO pilot_session("user", team, started_at) VALUES (?, ?, ?) RETURNING id',
                (user, team, started_at),
            ).fetchone()
        return int(row[0])

    def add_query(
        self,
        session_id: int,
        *,
        query: str,
        mode: str,
        at: str,
        confident: bool,
        lexical_match: bool,
        tag_match: bool,
        key_set_id: int | None,
        hits: Sequence[tuple[int, float]],
    ) -> int:
        """The session's next query (seq = last + 1) and its hits ``(value_id, score)`` ranked
        from 1, in one transaction. Returns the query's id."""
        with self._db.transaction() as tx:
            seq = tx.execute(
                "SELECT coalesce(max(seq), 0) + 1 FROM pilot_query WHERE session_id = ?",
                (session_id,),
            ).fetchone()[0]
            query_id = int(
                tx.execute(
                    "INSERT INTO pilot_query(session_id, seq, query, mode, at, hit_count,"
                    " confident, lexical_match, tag_match, key_set_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        session_id,
                        int(seq),
                        query,
                        mode,
                        at,
                        len(hits),
                        int(confident),
                        int(lexical_match),
                        int(tag_match),
                        key_set_id,
                    ),
                ).fetchone()[0]
            )
            for rank, (value_id, score) in enumerate(hits, start=1):
                tx.execute(
                    "INSERT INTO pilot_hit(query_id, rank, value_id, score) VALUES (?, ?, ?, ?)",
                    (query_id, rank, value_id, float(score)),
                )
        return query_id

    def add_open(
        self,
        session_id: int,
        value_id: int,
        rank: int | None,
        opened_at: str,
        seconds: float | None,
    ) -> int:
        with self._db.transaction() as tx:
            row = tx.execute(
                "INSERT INTO pilot_open(session_id, value_id, rank, opened_at, seconds)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                (session_id, value_id, rank, opened_at, seconds),
            ).fetchone()
        return int(row[0])

    def set_verdict(
        self,
        session_id: int,
        outcome: Outcome,
        ended_at: str,
        found_value_id: int | None,
        found_at: str | None,
    ) -> None:
        with self._db.transaction() as tx:
            tx.execute(
                "UPDATE pilot_session SET outcome = ?, ended_at = ?, found_value_id = ?,"
                " found_at = ? WHERE id = ?",
                (str(outcome), ended_at, found_value_id, found_at, session_id),
            )

    def set_abandoned(self, ended: Iterable[tuple[int, str]]) -> None:
        """Write "abandoned" on sessions ``(id, ended_at)``, in one transaction."""
        with self._db.transaction() as tx:
            for session_id, ended_at in ended:
                tx.execute(
                    "UPDATE pilot_session SET outcome = ?, ended_at = ? WHERE id = ?",
                    (str(Outcome.ABANDONED), ended_at, session_id),
                )

    def clear(self) -> int:
        """Delete every session with its queries, hits and opens; returns how many sessions."""
        with self._db.transaction() as tx:
            count = int(tx.execute("SELECT count(*) FROM pilot_session").fetchone()[0])
            tx.execute("DELETE FROM pilot_hit")
            tx.execute("DELETE FROM pilot_query")
            tx.execute("DELETE FROM pilot_open")
            tx.execute("DELETE FROM pilot_session")
        return count

    # reading

    def exists(self, session_id: int) -> bool:
        row = self._db.conn.execute(
            "SELECT 1 FROM pilot_session WHERE id = ?", (session_id,)
        ).fetchone()
        return row is not None

    def count(self) -> int:
        return int(self._db.conn.execute("SELECT count(*) FROM pilot_session").fetchone()[0])

    def teams(self) -> tuple[str, ...]:
        rows = self._db.conn.execute("SELECT DISTINCT team FROM pilot_session").fetchall()
        return tuple(sorted(str(r[0]) for r in rows))

    def last_opened(self, session_id: int) -> int | None:
        """The document opened last in the session, if any."""
        row = self._db.conn.execute(
            "SELECT value_id FROM pilot_open WHERE session_id = ?"
            " ORDER BY opened_at DESC, id DESC LIMIT 1",
            (session_id,),
        ).fetchone()
        return None if row is None else int(row[0])

    def last_query(self, session_id: int) -> str | None:
        """The session's last query (its final reformulation), if it has one."""
        row = self._db.conn.execute(
            "SELECT query FROM pilot_query WHERE session_id = ? ORDER BY seq DESC LIMIT 1",
            (session_id,),
        ).fetchone()
        return None if row is None else str(row[0])

    def sessions(
        self, *, since: dt.datetime | None = None, ids: Sequence[int] | None = None
    ) -> list[PilotSession]:
        """Sessions (with queries, hits and opens) started at or after ``since``, oldest first."""
        conn = self._db.conn
        sql = (
            'SELECT id, "user", team, started_at, ended_at, outcome, found_value_id, found_at'
            " FROM pilot_session"
        )
        params: list[Any] = []
        if ids is not None:
            if not ids:
                return []
            sql += f" WHERE id IN ({', '.join('?' * len(ids))})"
            params += ids
        rows = conn.execute(sql + " ORDER BY id", params).fetchall()
        if since is not None:
            rows = [r for r in rows if from_iso(r[3]) >= aware(since)]
        wanted = {int(r[0]) for r in rows}
        hits: dict[int, list[PilotHit]] = {}
        for qid, rank, value_id, score in conn.execute(
            "SELECT query_id, rank, value_id, score FROM pilot_hit ORDER BY query_id, rank"
        ):
            hits.setdefault(int(qid), []).append(PilotHit(int(rank), int(value_id), float(score)))
        queries: dict[int, list[PilotQuery]] = {}
        for r in conn.execute(
            "SELECT id, session_id, seq, query, mode, at, hit_count, confident, key_set_id,"
            " lexical_match, tag_match FROM pilot_query ORDER BY session_id, seq"
        ):
            if int(r[1]) in wanted:
                queries.setdefault(int(r[1]), []).append(
                    PilotQuery(
                        id=int(r[0]),
                        seq=int(r[2]),
                        query=str(r[3]),
                        mode=str(r[4]),
                        at=str(r[5]),
                        hit_count=int(r[6]),
                        confident=bool(r[7]),
                        key_set_id=None if r[8] is None else int(r[8]),
                        hits=tuple(hits.get(int(r[0]), ())),
                        lexical_match=None if r[9] is None else bool(r[9]),
                        tag_match=None if r[10] is None else bool(r[10]),
                    )
                )
        opens: dict[int, list[PilotOpen]] = {}
        for r in conn.execute(
            "SELECT session_id, value_id, rank, opened_at, seconds FROM pilot_open ORDER BY id"
        ):
            if int(r[0]) in wanted:
                opens.setdefault(int(r[0]), []).append(
                    PilotOpen(int(r[1]), None if r[2] is None else int(r[2]), str(r[3]), r[4])
                )
        return [
            PilotSession(
                id=int(r[0]),
                user=str(r[1]),
                team=str(r[2]),
                started_at=str(r[3]),
                ended_at=r[4],
                outcome=None if r[5] is None else Outcome(r[5]),
                found_value_id=None if r[6] is None else int(r[6]),
                found_at=r[7],
                queries=tuple(queries.get(int(r[0]), ())),
                opens=tuple(opens.get(int(r[0]), ())),
            )
            for r in rows
        ]

    # delivery to a team server (a desk's sessions, recorded locally first)

    def track_for_team(self) -> None:
        """From now on every local pilot write marks its session for delivery; sessions
        recorded before are marked too."""
        with self._db.transaction() as tx:
            for table, session in (
                ("pilot_session", "NEW.id"),
                ("pilot_query", "NEW.session_id"),
                ("pilot_open", "NEW.session_id"),
            ):
                for op in ("INSERT", "UPDATE"):
                    tx.execute(
                        f"CREATE TRIGGER IF NOT EXISTS outbox_{table}_{op.lower()}"
                        f" AFTER {op} ON {table} BEGIN"
                        f" INSERT INTO pilot_outbox(session_id) VALUES ({session})"
                        " ON CONFLICT(session_id) DO UPDATE SET changes = changes + 1; END"
                    )
            tx.execute(
                "INSERT INTO pilot_outbox(session_id) SELECT id FROM pilot_session WHERE true"
                " ON CONFLICT(session_id) DO NOTHING"
            )

    def undelivered(self, limit: int = 100) -> list[tuple[int, int]]:
        """(session id, change count) of sessions not yet delivered, oldest first."""
        rows = self._db.conn.execute(
            "SELECT session_id, changes FROM pilot_outbox ORDER BY session_id LIMIT ?", (limit,)
        ).fetchall()
        return [(int(r[0]), int(r[1])) for r in rows]

    def undelivered_count(self) -> int:
        return int(self._db.conn.execute("SELECT count(*) FROM pilot_outbox").fetchone()[0])

    def mark_delivered(self, sessions: Iterable[tuple[int, int]]) -> None:
        """Forget delivered sessions, unless they changed again since they were read."""
        with self._db.transaction() as tx:
            for session_id, changes in sessions:
                tx.execute(
                    "DELETE FROM pilot_outbox WHERE session_id = ? AND changes = ?",
                    (session_id, changes),
                )

    def deliver(self, tx: Any, session: PilotSession, origin: str, team: str) -> None:
        """Write ``session`` as it now stands on the server (``tx``: the server's transaction),
        replacing what an earlier delivery of the same ``origin`` wrote: delivering twice
        leaves one session. The user is the server login (row-level security checks it)."""
        session_id = int(
            tx.execute(
                'INSERT INTO pilot_session(origin, "user", team, started_at, ended_at, outcome,'
                " found_value_id, found_at) VALUES (?, current_user, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(origin) DO UPDATE SET team = excluded.team,"
                " ended_at = excluded.ended_at, outcome = excluded.outcome,"
                " found_value_id = excluded.found_value_id, found_at = excluded.found_at"
                " RETURNING id",
                (origin, team, session.started_at, session.ended_at,
                 None if session.outcome is None else str(session.outcome),
                 session.found_value_id, session.found_at),
            ).fetchone()[0]
        )  # fmt: skip
        tx.execute("DELETE FROM pilot_query WHERE session_id = ?", (session_id,))
        tx.execute("DELETE FROM pilot_open WHERE session_id = ?", (session_id,))
        for q in session.queries:
            query_id = tx.execute(
                "INSERT INTO pilot_query(session_id, seq, query, mode, at, hit_count,"
                " confident, lexical_match, tag_match, key_set_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) RETURNING id",
                (session_id, q.seq, q.query, q.mode, q.at, q.hit_count, int(q.confident),
                 None if q.lexical_match is None else int(q.lexical_match),
                 None if q.tag_match is None else int(q.tag_match)),
            ).fetchone()[0]  # fmt: skip
            # Key set ids are the desk's own: not stored on the server.
            for hit in q.hits:
                tx.execute(
                    "INSERT INTO pilot_hit(query_id, rank, value_id, score) VALUES (?, ?, ?, ?)",
                    (query_id, hit.rank, hit.value_id, hit.score),
                )
        for o in session.opens:
            tx.execute(
                "INSERT INTO pilot_open(session_id, value_id, rank, opened_at, seconds)"
                " VALUES (?, ?, ?, ?, ?)",
                (session_id, o.value_id, o.rank, o.opened_at, o.seconds),
            )
