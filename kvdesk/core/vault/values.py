"""The value tables (blob, value, version, source): what is stored, verbatim and versioned."""

from __future__ import annotations

from kvdesk.core.db import SchemaStep

SCHEMA: tuple[SchemaStep, ...] = (
    SchemaStep(
        1,
        "values",
        """
        CREATE TABLE blob (
            id $pk,
            sha256 TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            data $blob NOT NULL
        );
        CREATE TABLE value (
            id $pk,
            identifier TEXT NOT NULL UNIQUE $nocase,
            external_id TEXT UNIQUE,
            title TEXT NOT NULL,
            media_type TEXT NOT NULL,
            source_path $blob,
            source_missing INTEGER NOT NULL DEFAULT 0,
            current_version INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE version (
            value_id INTEGER NOT NULL REFERENCES value(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            sha256 TEXT NOT NULL REFERENCES blob(sha256),
            size INTEGER NOT NULL,
            media_type TEXT NOT NULL,
            title TEXT NOT NULL,
            source_path $blob,
            source_mtime $real,
            text TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
            created_at TEXT NOT NULL,
            PRIMARY KEY (value_id, version)
        );
        CREATE INDEX version_sha ON version(sha256);
        CREATE TABLE source (
            path $blob PRIMARY KEY,
            value_id INTEGER NOT NULL REFERENCES value(id) ON DELETE CASCADE,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            sha256 TEXT NOT NULL
        );
        CREATE INDEX source_value ON source(value_id);
        """,
    ),
    SchemaStep(
        5,
        "values",
        # The one place that says which version of a value is current.
        """
        CREATE VIEW value_current AS
        SELECT v.id, v.identifier, v.external_id, v.title, v.media_type, v.source_path,
               v.source_missing, v.current_version, v.created_at, v.updated_at,
               ver.sha256, ver.size, ver.source_mtime, ver.metadata, ver.text
        FROM value v JOIN version ver
          ON ver.value_id = v.id AND ver.version = v.current_version;
        """,
    ),
)
