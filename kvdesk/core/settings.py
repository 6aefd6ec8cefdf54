"""The setting table: small per-vault settings (pilot, tagging), one owner for its SQL."""

from __future__ import annotations

import uuid

from kvdesk.core.db import Connection, Database, SchemaStep

SCHEMA: tuple[SchemaStep, ...] = (
    SchemaStep(
        2,
        "settings",
        """
        CREATE TABLE setting (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
    ),
    SchemaStep(
        6,
        "settings",
        "",  # no DDL: the vault's identity, which its key folder records
        backfill=lambda conn: _create_vault_id(conn),
    ),
)

VAULT_ID = "vault.id"


def _create_vault_id(conn: Connection) -> None:
    conn.execute(
        "INSERT INTO setting(key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
        (VAULT_ID, uuid.uuid4().hex),
    )


class SettingStore:
    """Key/value settings stored in the vault, so every desk of a vault sees the same ones."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, key: str, default: str = "") -> str:
        row = self._db.conn.execute("SELECT value FROM setting WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set(self, key: str, value: str) -> None:
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO setting(key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def vault_id(self) -> str:
        """This vault's identity (made when it was created or upgraded to schema 6)."""
        return self.get(VAULT_ID)

    def delete(self, key: str) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM setting WHERE key = ?", (key,))
