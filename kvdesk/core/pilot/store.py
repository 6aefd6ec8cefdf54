"""The pilot tables (pilot_session, pilot_query, pilot_hit, pilot_open): all of their SQL."""

from __future__ import annotations

from kvdesk.core.db import SchemaStep

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
)
