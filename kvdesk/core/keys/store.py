"""The key tables (key_set, passage, keyed): key metadata and passage vectors of this desk.

Keys are derived and per desk, so these tables exist in the local SQLite vault only.
"""

from __future__ import annotations

from kvdesk.core.db import SchemaStep

SCHEMA: tuple[SchemaStep, ...] = (
    SchemaStep(
        1,
        "keys",
        """
        CREATE TABLE key_set (
            id INTEGER PRIMARY KEY,
            space TEXT NOT NULL,
            name TEXT NOT NULL,
            params TEXT NOT NULL CHECK (json_valid(params)),
            state TEXT NOT NULL CHECK (state IN ('building', 'active', 'retired')),
            created_at TEXT NOT NULL,
            activated_at TEXT
        );
        CREATE UNIQUE INDEX one_active_key_set ON key_set(space) WHERE state = 'active';
        CREATE TABLE passage (
            key_set_id INTEGER NOT NULL REFERENCES key_set(id) ON DELETE CASCADE,
            value_id INTEGER NOT NULL REFERENCES value(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            start INTEGER NOT NULL,
            end INTEGER NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (key_set_id, value_id, idx)
        );
        CREATE TABLE keyed (
            key_set_id INTEGER NOT NULL REFERENCES key_set(id) ON DELETE CASCADE,
            value_id INTEGER NOT NULL REFERENCES value(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            PRIMARY KEY (key_set_id, value_id)
        );
        """,
        engines=frozenset({"sqlite"}),
    ),
)
