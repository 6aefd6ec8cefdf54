"""The key tables (key_set, passage, keyed): key metadata and passage vectors of this desk.

Keys are derived and per desk, so these tables exist in the local SQLite vault only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kvdesk.core.db import Connection, Database, SchemaStep
from kvdesk.core.vault.records import now_iso

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


class KeySetState(StrEnum):
    BUILDING = "building"  # being built, or complete and waiting as a candidate
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True)
class KeySet:
    """One concrete build of a key space."""

    id: int
    space: str
    name: str
    params: dict[str, Any]
    state: str
    created_at: str
    activated_at: str | None


@dataclass(frozen=True)
class StoredPassage:
    value_id: int
    version: int
    index: int
    start: int
    end: int
    vector: bytes


class KeyStore:
    """Every statement on key_set, passage and keyed."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def key_sets(self, space: str) -> list[KeySet]:
        rows = self._db.conn.execute(
            "SELECT id, space, name, params, state, created_at, activated_at FROM key_set"
            " WHERE space = ? ORDER BY id",
            (space,),
        ).fetchall()
        return [KeySet(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in rows]

    def create(self, space: str, name: str, params: dict[str, Any], state: KeySetState) -> int:
        stamp = now_iso()
        with self._db.transaction() as tx:
            row = tx.execute(
                "INSERT INTO key_set(space, name, params, state, created_at, activated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    space,
                    name,
                    json.dumps(params),
                    str(state),
                    stamp,
                    stamp if state == KeySetState.ACTIVE else None,
                ),
            ).fetchone()
        return int(row[0])

    def activate(self, space: str, key_set_id: int) -> None:
        """Retire the active key set of ``space`` and activate ``key_set_id``, atomically."""
        with self._db.transaction() as tx:
            tx.execute(
                "UPDATE key_set SET state = ? WHERE space = ? AND state = ?",
                (str(KeySetState.RETIRED), space, str(KeySetState.ACTIVE)),
            )
            tx.execute(
                "UPDATE key_set SET state = ?, activated_at = ? WHERE id = ?",
                (str(KeySetState.ACTIVE), now_iso(), key_set_id),
            )

    def drop(self, key_set_id: int) -> int:
        """Delete a key set and its vectors; returns how many passages went."""
        with self._db.transaction() as tx:
            passages = tx.execute(
                "DELETE FROM passage WHERE key_set_id = ?", (key_set_id,)
            ).rowcount
            tx.execute("DELETE FROM keyed WHERE key_set_id = ?", (key_set_id,))
            tx.execute("DELETE FROM key_set WHERE id = ?", (key_set_id,))
        return int(passages)

    def forget(self, value_ids: Sequence[int]) -> None:
        """Mark values unkeyed in every key set (their text grew: a scan was read)."""
        with self._db.transaction() as tx:
            tx.executemany("DELETE FROM keyed WHERE value_id = ?", [(v,) for v in value_ids])

    def keyed_versions(self, key_set_id: int) -> dict[int, int]:
        """``value id`` → the version its keys in ``key_set_id`` were built from."""
        return {
            int(v): int(ver)
            for v, ver in self._db.conn.execute(
                "SELECT value_id, version FROM keyed WHERE key_set_id = ?", (key_set_id,)
            )
        }

    def write_passages(
        self,
        tx: Connection,
        key_set_id: int,
        value_id: int,
        version: int,
        passages: Sequence[tuple[int, int, int, bytes]],
    ) -> None:
        """Replace a value's passages (index, start, end, vector) and mark it keyed."""
        # New rows get rowids above every current one, even when the value's old passages were
        # the last rows: a derived vector file tells passages apart by rowid (dense_stamp).
        top = int(tx.execute("SELECT coalesce(max(rowid), 0) FROM passage").fetchone()[0])
        tx.execute(
            "DELETE FROM passage WHERE key_set_id = ? AND value_id = ?", (key_set_id, value_id)
        )
        tx.executemany(
            "INSERT INTO passage(rowid, key_set_id, value_id, version, idx, start, end, vector)"
            " VALUES (?,?,?,?,?,?,?,?)",
            [
                (top + 1 + n, key_set_id, value_id, version, i, s, e, v)
                for n, (i, s, e, v) in enumerate(passages)
            ],
        )
        tx.execute(
            "INSERT INTO keyed(key_set_id, value_id, version) VALUES (?,?,?)"
            " ON CONFLICT(key_set_id, value_id) DO UPDATE SET version = excluded.version",
            (key_set_id, value_id, version),
        )

    def passage_span(self, key_set_id: int, value_id: int, index: int) -> tuple[int, int] | None:
        row = self._db.conn.execute(
            "SELECT start, end FROM passage WHERE key_set_id = ? AND value_id = ? AND idx = ?",
            (key_set_id, value_id, index),
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def passage_count(self, key_set_id: int) -> int:
        return int(
            self._db.conn.execute(
                "SELECT count(*) FROM passage WHERE key_set_id = ?", (key_set_id,)
            ).fetchone()[0]
        )

    def current_vectors(self, key_set_id: int) -> list[tuple[int, int, bytes]]:
        """(value id, passage index, vector bytes) of passages of the keyed version, in order."""
        return [
            (int(r[0]), int(r[1]), r[2])
            for r in self._db.conn.execute(
                "SELECT p.value_id, p.idx, p.vector FROM passage p JOIN keyed k"
                " ON k.key_set_id = p.key_set_id AND k.value_id = p.value_id"
                " AND k.version = p.version WHERE p.key_set_id = ? ORDER BY p.value_id, p.idx",
                (key_set_id,),
            )
        ]

    # -- derived vector files (see kvdesk.core.keys.vector_file) --------------------------------

    @contextlib.contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """Several reads that see one state of the vault (a deferred read transaction)."""
        conn = self._db.conn
        if getattr(conn, "in_transaction", False):  # inside a write: already one state
            yield
            return
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    def dense_stamp(self, key_set_id: int) -> dict[str, int]:
        """What a derived vector file of ``key_set_id`` must have been built from: counts and
        order-free sums over its keyed values and all its passages' (rowid, value id, index).

        Index-only scans (~0.1 s at a million passages); no vector is read. Rowids are never
        reused for a rewritten value (see :meth:`write_passages`), so a change shows.
        """
        conn = self._db.conn
        keyed = conn.execute(
            "SELECT count(*), coalesce(sum((value_id % 1000000007 * 1000003 + version)"
            " % 2147483647), 0) FROM keyed WHERE key_set_id = ?",
            (key_set_id,),
        ).fetchone()
        passages = conn.execute(
            "SELECT count(*), coalesce(max(rowid), 0), coalesce(sum((rowid % 1000000007 * 1000003"
            " + value_id % 1000003 * 8191 + idx) % 2147483647), 0)"
            " FROM passage WHERE key_set_id = ?",
            (key_set_id,),
        ).fetchone()
        return {
            "key_set": key_set_id,
            "keyed": int(keyed[0]),
            "keyed_sum": int(keyed[1]),
            "passages": int(passages[0]),
            "max_rowid": int(passages[1]),
            "passage_sum": int(passages[2]),
        }

    def iter_current_vectors(
        self, key_set_id: int, value_ids: Sequence[int] | None = None
    ) -> Iterator[tuple[int, int, int, bytes]]:
        """(value id, passage index, rowid, vector bytes) of keyed passages, in (value, index)
        order, streamed (a million vectors are never held at once); ``value_ids``: only those."""
        sql = (
            "SELECT p.value_id, p.idx, p.rowid, p.vector FROM passage p JOIN keyed k"
            " ON k.key_set_id = p.key_set_id AND k.value_id = p.value_id"
            " AND k.version = p.version WHERE p.key_set_id = ?"
        )
        if value_ids is None:
            cursor = self._db.conn.execute(sql + " ORDER BY p.value_id, p.idx", (key_set_id,))
            for row in cursor:
                yield int(row[0]), int(row[1]), int(row[2]), row[3]
            return
        wanted = sorted(set(value_ids))
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            for row in self._db.conn.execute(
                sql + f" AND p.value_id IN ({marks}) ORDER BY p.value_id, p.idx",
                (key_set_id, *part),
            ):
                yield int(row[0]), int(row[1]), int(row[2]), row[3]

    def keyed_passage_spans(self, key_set_id: int) -> dict[int, tuple[int, int, int]]:
        """``value id`` → (passages, lowest rowid, highest rowid) of every keyed value: what a
        vector file is compared with, value by value, to catch up without reading vectors."""
        keyed = {
            int(v)
            for (v,) in self._db.conn.execute(
                "SELECT value_id FROM keyed WHERE key_set_id = ?", (key_set_id,)
            )
        }
        return {
            int(v): (int(n), int(lo), int(hi))
            for v, n, lo, hi in self._db.conn.execute(
                "SELECT value_id, count(*), min(rowid), max(rowid) FROM passage"
                " WHERE key_set_id = ? GROUP BY value_id",
                (key_set_id,),
            )
            if int(v) in keyed
        }
