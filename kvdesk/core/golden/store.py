"""The golden-set tables (golden_set, golden_query, golden_judgement): all of their SQL."""

from __future__ import annotations

from kvdesk.core.db import SchemaStep

SCHEMA: tuple[SchemaStep, ...] = (
    SchemaStep(
        2,
        "golden",
        """
        CREATE TABLE golden_set (
            id $pk,
            name TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        );
        CREATE TABLE golden_query (
            id $pk,
            set_id INTEGER NOT NULL REFERENCES golden_set(id) ON DELETE CASCADE,
            query_key TEXT NOT NULL,
            text TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (set_id, query_key)
        );
        CREATE TABLE golden_judgement (
            query_id INTEGER NOT NULL REFERENCES golden_query(id) ON DELETE CASCADE,
            value_id INTEGER NOT NULL REFERENCES value(id) ON DELETE CASCADE,
            relevance INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (query_id, value_id)
        );
        """,
    ),
)
