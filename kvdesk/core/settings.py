"""The setting table: small per-vault settings (pilot, tagging), one owner for its SQL."""

from __future__ import annotations

from kvdesk.core.db import Database, SchemaStep

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

    def delete(self, key: str) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM setting WHERE key = ?", (key,))
