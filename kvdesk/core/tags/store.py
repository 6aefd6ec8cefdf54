"""The tag tables (tag, value_tag, tag_rule): every line of SQL that touches them lives here."""

from __future__ import annotations

from kvdesk.core.db import SchemaStep

SCHEMA: tuple[SchemaStep, ...] = (
    SchemaStep(
        1,
        "tags",
        """
        CREATE TABLE tag (
            id $pk,
            name TEXT NOT NULL UNIQUE $nocase,
            description TEXT NOT NULL DEFAULT '',
            color TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE value_tag (
            value_id INTEGER NOT NULL REFERENCES value(id) ON DELETE CASCADE,
            tag_id INTEGER NOT NULL REFERENCES tag(id) ON DELETE CASCADE,
            state TEXT NOT NULL CHECK (state IN ('accepted', 'suggested', 'rejected')),
            actor TEXT NOT NULL DEFAULT '',
            at TEXT NOT NULL,
            PRIMARY KEY (value_id, tag_id)
        );
        CREATE INDEX value_tag_tag ON value_tag(tag_id, state);
        """,
    ),
    SchemaStep(
        3,
        "tags",
        # Tag rules (any word, all words, phrase, regular expression, fuzzy).
        """
        CREATE TABLE IF NOT EXISTS tag_rule (
            id $pk,
            tag_id INTEGER NOT NULL REFERENCES tag(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('any', 'all', 'phrase', 'regex', 'fuzzy')),
            pattern TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (tag_id, kind, pattern)
        );
        """,
    ),
)
