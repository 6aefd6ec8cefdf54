"""The tag tables (tag, value_tag, tag_rule): every line of SQL that touches them lives here.

Written in the SQL subset SQLite and PostgreSQL share. Tag names compare case-insensitively in
the database (the ``$nocase`` collation of ``tag.name``); where names are matched here in Python
(a tag and its ``parent::child`` descendants) :func:`fold_tag` folds them the same way (ASCII
letters only, as SQLite's NOCASE does). Writes take the caller's transaction (``tx``), so an
import can store a value and its tags in one atomic step; reads use this thread's connection.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from kvdesk.core.db import Connection, Database, ReplicatedTable, SchemaStep
from kvdesk.core.errors import KvdeskError
from kvdesk.core.vault.records import now_iso

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
    SchemaStep(
        7,
        "tags",
        # Digests of tag rows and of each value's tag rows, verified by check.
        """
        ALTER TABLE tag ADD COLUMN digest TEXT;
        ALTER TABLE value_tag ADD COLUMN digest TEXT;
        """,
        backfill=lambda conn: _backfill_digests(conn),
    ),
)

# What desks of a team copy from the server; a tag's state is recorded with each change.
REPLICATED: tuple[ReplicatedTable, ...] = (
    ReplicatedTable("tag", (("id", "bigint"),)),
    ReplicatedTable("value_tag", (("value_id", "bigint"), ("tag_id", "bigint")), ("state",)),
    ReplicatedTable("tag_rule", (("id", "bigint"),)),
)

_BATCH = 500  # ids per ``IN (...)`` list


class TagState(StrEnum):
    """Where a tag stands on a value (the strings stored in ``value_tag.state``)."""

    ACCEPTED = "accepted"
    SUGGESTED = "suggested"
    REJECTED = "rejected"


@dataclass(frozen=True)
class TagRow:
    """One document-tag row as stored: its state and who set it when."""

    state: TagState
    actor: str
    at: str


@dataclass(frozen=True)
class TagSummary:
    """A tag's own columns and how many values hold it in each state."""

    name: str
    description: str
    color: str
    accepted: int
    suggested: int
    rejected: int


@dataclass(frozen=True)
class StoredRule:
    """A rule row as stored (not yet compiled: see :mod:`kvdesk.core.tags.rules`)."""

    rule_id: int
    tag: str
    kind: str
    pattern: str


_TAG_ROW = "id, name, description, color"
_VALUE_TAG_ROW = "value_id, tag_id, state, actor, at"


def row_digest(values: Sequence[object]) -> str:
    """The hash of one stored row's fields (check recomputes it)."""
    payload = json.dumps(list(values), ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def _backfill_digests(conn: Connection) -> None:
    for row in conn.execute(f"SELECT {_TAG_ROW} FROM tag").fetchall():
        conn.execute("UPDATE tag SET digest = ? WHERE id = ?", (row_digest(tuple(row)), row[0]))
    for row in conn.execute(f"SELECT {_VALUE_TAG_ROW} FROM value_tag").fetchall():
        conn.execute(
            "UPDATE value_tag SET digest = ? WHERE value_id = ? AND tag_id = ?",
            (row_digest(tuple(row)), row[0], row[1]),
        )


def normalise_tag(name: str) -> str:
    """Tags are trimmed, inner whitespace collapsed; ``parent::child`` marks hierarchy."""
    parts = [" ".join(p.split()) for p in name.split("::")]
    clean = "::".join(p for p in parts if p)
    if not clean:
        raise KvdeskError(f"{name!r} is not a usable tag name")
    return clean


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_tag(name: str) -> str:
    """A tag name as the database compares it: ASCII letters case-folded, nothing else."""
    return name.translate(_ASCII_LOWER)


def _marks(ids: Sequence[int]) -> str:
    return ",".join("?" * len(ids))


class TagStore:
    """Every statement on tag, value_tag and tag_rule."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- reading: tags ----------------------------------------------------------------------------

    def names(self, *, in_creation_order: bool = False) -> list[str]:
        """Every tag name, by name (case-insensitively) or in the order tags were created."""
        order = "id" if in_creation_order else "name"
        return [str(r[0]) for r in self._db.conn.execute(f"SELECT name FROM tag ORDER BY {order}")]

    def stored_name(self, name: str) -> str | None:
        """The spelling a tag is stored under (names compare case-insensitively), if any."""
        row = self._db.conn.execute(
            "SELECT name FROM tag WHERE name = ?", (normalise_tag(name),)
        ).fetchone()
        return None if row is None else str(row[0])

    def summaries(self) -> list[TagSummary]:
        """Every tag with its description, colour and per-state counts, by name."""
        return [
            TagSummary(str(n), str(d), str(c), int(a), int(s), int(r))
            for n, d, c, a, s, r in self._db.conn.execute(
                "SELECT t.name, t.description, t.color,"
                " count(CASE WHEN vt.state = 'accepted' THEN 1 END),"
                " count(CASE WHEN vt.state = 'suggested' THEN 1 END),"
                " count(CASE WHEN vt.state = 'rejected' THEN 1 END)"
                " FROM tag t LEFT JOIN value_tag vt ON vt.tag_id = t.id"
                " GROUP BY t.id, t.name, t.description, t.color ORDER BY t.name"
            )
        ]

    # -- reading: values' tags --------------------------------------------------------------------

    def tags_of(self, value_id: int, state: str = TagState.ACCEPTED) -> tuple[str, ...]:
        """The names of the tags a value holds in ``state``, by name."""
        rows = self._db.conn.execute(
            "SELECT t.name FROM value_tag vt JOIN tag t ON t.id = vt.tag_id"
            " WHERE vt.value_id = ? AND vt.state = ? ORDER BY t.name",
            (value_id, str(state)),
        ).fetchall()
        return tuple(str(r[0]) for r in rows)

    def accepted_tags(self, value_ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
        """Each value's accepted tag names, by name (every asked-for id is a key)."""
        ids = list(dict.fromkeys(value_ids))
        found: dict[int, list[str]] = {v: [] for v in ids}
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            for value_id, name in self._db.conn.execute(
                "SELECT vt.value_id, t.name FROM value_tag vt JOIN tag t ON t.id = vt.tag_id"
                f" WHERE vt.state = 'accepted' AND vt.value_id IN ({_marks(batch)})"
                " ORDER BY vt.value_id, t.name",
                batch,
            ):
                found[int(value_id)].append(str(name))
        return {v: tuple(names) for v, names in found.items()}

    def row(self, value_id: int, tag: str) -> TagRow | None:
        """The stored row of (value, tag), or None when the value does not carry it at all."""
        row = self._db.conn.execute(
            "SELECT vt.state, vt.actor, vt.at FROM value_tag vt JOIN tag t ON t.id = vt.tag_id"
            " WHERE vt.value_id = ? AND t.name = ?",
            (value_id, normalise_tag(tag)),
        ).fetchone()
        return None if row is None else TagRow(TagState(row[0]), str(row[1]), str(row[2]))

    def rows(self, *, decided_only: bool = False) -> list[tuple[int, str, TagState]]:
        """Every (value id, tag name, state) row; ``decided_only`` leaves out 'suggested'."""
        sql = (
            "SELECT vt.value_id, t.name, vt.state FROM value_tag vt JOIN tag t ON t.id = vt.tag_id"
        )
        if decided_only:
            sql += " WHERE vt.state <> 'suggested'"
        return [(int(v), str(n), TagState(s)) for v, n, s in self._db.conn.execute(sql)]

    def tagged_values(
        self, tag: str, *, descendants: bool = False, state: str = TagState.ACCEPTED
    ) -> set[int]:
        """Values holding ``tag`` in ``state``; with ``descendants`` also its ``tag::...`` tags.

        Names are matched in Python (tags are few), the way the database compares them.
        """
        want = fold_tag(tag)
        tag_ids = [
            int(i)
            for i, name in self._db.conn.execute("SELECT id, name FROM tag")
            if fold_tag(str(name)) == want
            or (descendants and fold_tag(str(name)).startswith(want + "::"))
        ]
        out: set[int] = set()
        for start in range(0, len(tag_ids), _BATCH):
            batch = tag_ids[start : start + _BATCH]
            out.update(
                int(r[0])
                for r in self._db.conn.execute(
                    "SELECT value_id FROM value_tag"
                    f" WHERE state = ? AND tag_id IN ({_marks(batch)})",
                    [str(state), *batch],
                )
            )
        return out

    # -- reading: rules ---------------------------------------------------------------------------

    def rules(self) -> list[StoredRule]:
        """Every stored rule, oldest first."""
        return [
            StoredRule(int(i), str(t), str(k), str(p))
            for i, t, k, p in self._db.conn.execute(
                "SELECT r.id, t.name, r.kind, r.pattern FROM tag_rule r"
                " JOIN tag t ON t.id = r.tag_id ORDER BY r.id"
            )
        ]

    # -- writing (in the caller's transaction) ---------------------------------------------------

    def tag_id(self, tx: Connection, name: str, *, create: bool = True) -> int | None:
        """The id of tag ``name`` (normalised); created unless ``create`` is false."""
        clean = normalise_tag(name)
        row = tx.execute("SELECT id FROM tag WHERE name = ?", (clean,)).fetchone()
        if row:
            return int(row[0])
        if not create:
            return None
        tag_id = int(
            tx.execute("INSERT INTO tag(name) VALUES (?) RETURNING id", (clean,)).fetchone()[0]
        )
        self._seal_tag(tx, tag_id)
        return tag_id

    def _seal_tag(self, tx: Connection, tag_id: int) -> None:
        row = tx.execute(f"SELECT {_TAG_ROW} FROM tag WHERE id = ?", (tag_id,)).fetchone()
        if row is not None:
            digest = row_digest(tuple(row))
            tx.execute("UPDATE tag SET digest = ? WHERE id = ?", (digest, tag_id))

    def _seal_value_tag(self, tx: Connection, value_id: int, tag_id: int | None) -> None:
        row = tx.execute(
            f"SELECT {_VALUE_TAG_ROW} FROM value_tag WHERE value_id = ? AND tag_id = ?",
            (value_id, tag_id),
        ).fetchone()
        if row is not None:
            tx.execute(
                "UPDATE value_tag SET digest = ? WHERE value_id = ? AND tag_id = ?",
                (row_digest(tuple(row)), value_id, tag_id),
            )

    def check(self) -> list[tuple[int | None, str]]:
        """Rows whose digest no longer matches: (value id or None, what changed)."""
        conn = self._db.conn
        problems: list[tuple[int | None, str]] = []
        for row in conn.execute(f"SELECT digest, {_TAG_ROW} FROM tag ORDER BY id"):
            if row[0] is None or row_digest(tuple(row)[1:]) != row[0]:
                problems.append((None, f"tag {row[1]}: its name or description changed"))
        for row in conn.execute(
            f"SELECT digest, {_VALUE_TAG_ROW} FROM value_tag ORDER BY value_id, tag_id"
        ):
            if row[0] is None or row_digest(tuple(row)[1:]) != row[0]:
                problems.append((int(row[1]), "a tag on it changed since it was set"))
        return problems

    def set_state(
        self,
        tx: Connection,
        value_id: int,
        tag: str,
        state: str,
        actor: str = "",
        at: str | None = None,
    ) -> None:
        """Put (value, tag) into ``state`` (the tag created if need be); ``at`` defaults to now."""
        tag_id = self.tag_id(tx, tag)
        tx.execute(
            "INSERT INTO value_tag(value_id, tag_id, state, actor, at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(value_id, tag_id) DO UPDATE SET state = excluded.state,"
            " actor = excluded.actor, at = excluded.at",
            (value_id, tag_id, str(TagState(state)), actor, at or now_iso()),
        )
        self._seal_value_tag(tx, value_id, tag_id)

    def add_suggested(self, tx: Connection, value_id: int, tag: str, actor: str = "") -> bool:
        """Store (value, tag) as 'suggested' unless it has a row already; True when stored."""
        tag_id = self.tag_id(tx, tag)
        added = tx.execute(
            "INSERT INTO value_tag(value_id, tag_id, state, actor, at) VALUES"
            " (?, ?, 'suggested', ?, ?) ON CONFLICT(value_id, tag_id) DO NOTHING"
            " RETURNING value_id",
            (value_id, tag_id, actor, now_iso()),
        ).fetchall()
        if added:
            self._seal_value_tag(tx, value_id, tag_id)
        return bool(added)

    def remove(self, tx: Connection, value_id: int, tag: str) -> bool:
        """Delete the (value, tag) row; True when there was one."""
        tag_id = self.tag_id(tx, tag, create=False)
        if tag_id is None:
            return False
        gone = tx.execute(
            "DELETE FROM value_tag WHERE value_id = ? AND tag_id = ? RETURNING value_id",
            (value_id, tag_id),
        ).fetchall()
        return bool(gone)

    def clear_value(self, tx: Connection, value_id: int) -> None:
        """Delete every tag row of a value, whatever its state."""
        tx.execute("DELETE FROM value_tag WHERE value_id = ?", (value_id,))

    def set_info(
        self, tx: Connection, tag: str, *, description: str | None = None, color: str | None = None
    ) -> None:
        """Set a tag's description and/or colour as given (the tag is created if need be)."""
        tag_id = self.tag_id(tx, tag)
        if description is not None:
            tx.execute("UPDATE tag SET description = ? WHERE id = ?", (description, tag_id))
        if color is not None:
            tx.execute("UPDATE tag SET color = ? WHERE id = ?", (color, tag_id))
        if tag_id is not None:
            self._seal_tag(tx, tag_id)

    def add_rule(self, tx: Connection, tag: str, kind: str, pattern: str) -> None:
        """Store a rule for a tag (the tag is created if need be); an existing one stays."""
        tag_id = self.tag_id(tx, tag)
        tx.execute(
            "INSERT INTO tag_rule(tag_id, kind, pattern, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(tag_id, kind, pattern) DO NOTHING",
            (tag_id, str(kind), pattern, now_iso()),
        )

    def remove_rule(self, tx: Connection, rule_id: int) -> bool:
        """Delete a rule by id; True when there was one."""
        return bool(
            tx.execute("DELETE FROM tag_rule WHERE id = ? RETURNING id", (rule_id,)).fetchall()
        )
