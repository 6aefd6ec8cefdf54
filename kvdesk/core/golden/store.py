"""The golden-set tables (golden_set, golden_query, golden_judgement): all of their SQL.

A golden set holds queries and, for each, the values that answer it. They come from a BEIR
folder (its corpus ids matched to the vault's values by external id; a judgement naming a
document the vault does not hold is counted and reported, never stored) or one case at a time,
typically a failed pilot query plus the document that should have been found. Values are
resolved through the values owner and pilot sessions read through the pilot log; this module
runs SQL on the golden tables only. How a set is evaluated: :mod:`kvdesk.core.golden.protocol`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvdesk.core.db import Database, ReplicatedTable, SchemaStep
from kvdesk.core.errors import KvdeskError, NotFoundError
from kvdesk.core.golden.evaluation import load_collection
from kvdesk.core.vault.records import now_iso

if TYPE_CHECKING:  # not at run time: the schema module imports this one, and both import vaults
    from kvdesk.core.pilot.log import PilotLog
    from kvdesk.core.vault.values import ValueStore

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

# What desks of a team copy from the server, parents first.
REPLICATED: tuple[ReplicatedTable, ...] = (
    ReplicatedTable("golden_set", (("id", "bigint"),)),
    ReplicatedTable("golden_query", (("id", "bigint"),)),
    ReplicatedTable("golden_judgement", (("query_id", "bigint"), ("value_id", "bigint"))),
)


@dataclass(frozen=True)
class GoldenSet:
    id: int
    name: str
    source: str
    created_at: str
    queries: int
    judgements: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "created_at": self.created_at,
            "queries": self.queries,
            "judgements": self.judgements,
        }


@dataclass(frozen=True)
class GoldenImport:
    """What a BEIR import stored and what it had to leave out."""

    set: GoldenSet
    queries: int
    judgements: int
    unknown_docs: int  # judgements naming documents the vault does not hold (not stored)
    unknown_examples: tuple[str, ...]
    skipped_queries: int  # queries none of whose judged documents are in the vault

    def to_json(self) -> dict[str, Any]:
        return {
            "set": self.set.to_json(),
            "queries": self.queries,
            "judgements": self.judgements,
            "unknown_docs": self.unknown_docs,
            "unknown_examples": list(self.unknown_examples),
            "skipped_queries": self.skipped_queries,
        }


@dataclass(frozen=True)
class GoldenQuery:
    key: str
    text: str
    judgements: dict[int, int]  # value id -> relevance


def case_key(text: str) -> str:
    """Hand-made cases are keyed by their normalised text, so the same query is one case."""
    return " ".join(text.casefold().split())


class GoldenStore:
    """The golden sets of one vault. Writes belong on the writer thread.

    ``values`` resolves the documents a case or a BEIR judgement names; ``pilot`` gives a pilot
    session's queries. Neither's tables are read here.
    """

    def __init__(self, db: Database, values: ValueStore, pilot: PilotLog) -> None:
        self.db = db
        self.values = values
        self.pilot = pilot

    # -- reading --------------------------------------------------------------------------------

    def list_sets(self) -> list[GoldenSet]:
        rows = self.db.conn.execute(
            "SELECT s.id, s.name, s.source, s.created_at,"
            " (SELECT count(*) FROM golden_query q WHERE q.set_id = s.id),"
            " (SELECT count(*) FROM golden_judgement j JOIN golden_query q ON q.id = j.query_id"
            "  WHERE q.set_id = s.id)"
            " FROM golden_set s ORDER BY s.name"
        ).fetchall()
        return [GoldenSet(int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5])) for r in rows]

    def get_set(self, name: str) -> GoldenSet:
        for s in self.list_sets():
            if s.name == name:
                return s
        raise NotFoundError(f"no golden set named {name!r}")

    def queries(self, name: str) -> list[GoldenQuery]:
        set_id = self.get_set(name).id
        judged: dict[int, dict[int, int]] = {}
        for qid, value_id, rel in self.db.conn.execute(
            "SELECT j.query_id, j.value_id, j.relevance FROM golden_judgement j"
            " JOIN golden_query q ON q.id = j.query_id WHERE q.set_id = ?",
            (set_id,),
        ):
            judged.setdefault(int(qid), {})[int(value_id)] = int(rel)
        rows = self.db.conn.execute(
            "SELECT id, query_key, text FROM golden_query WHERE set_id = ? ORDER BY id", (set_id,)
        ).fetchall()
        return [GoldenQuery(r[1], r[2], judged.get(int(r[0]), {})) for r in rows]

    # -- writing --------------------------------------------------------------------------------

    def _ensure_set(self, name: str, source: str) -> int:
        name = name.strip()
        if not name:
            raise KvdeskError("a golden set needs a name")
        with self.db.transaction() as tx:
            row = tx.execute("SELECT id FROM golden_set WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return int(row[0])
            row = tx.execute(
                "INSERT INTO golden_set(name, source, created_at) VALUES (?, ?, ?) RETURNING id",
                (name, source, now_iso()),
            ).fetchone()
            return int(row[0])

    def _add_query(self, tx: Any, set_id: int, key: str, text: str, stamp: str) -> int:
        row = tx.execute(
            "INSERT INTO golden_query(set_id, query_key, text, created_at)"
            " VALUES (?, ?, ?, ?) RETURNING id",
            (set_id, key, text, stamp),
        ).fetchone()
        return int(row[0])

    def delete_set(self, name: str) -> None:
        with self.db.transaction() as tx:
            cur = tx.execute("DELETE FROM golden_set WHERE name = ?", (name,))
            if not cur.rowcount:
                raise NotFoundError(f"no golden set named {name!r}")

    def import_beir(
        self, name: str, folder: str | os.PathLike[str], split: str = "test"
    ) -> GoldenImport:
        """Queries and judgements of a BEIR folder whose corpus is already in the vault."""
        if any(s.name == name for s in self.list_sets()):
            raise KvdeskError(f"a golden set named {name!r} exists already")
        collection = load_collection(Path(folder), split)
        lookup = {external: value_id for value_id, external in self.values.external_ids().items()}
        unknown: list[str] = []
        stored_queries = stored_judgements = skipped = 0
        with self.db.transaction() as tx:
            set_id = self._ensure_set(name, f"beir:{Path(folder).name}/{split}")
            stamp = now_iso()
            for qid, judged in collection.qrels.items():
                known = {}
                for doc, rel in judged.items():
                    value_id = lookup.get(doc)
                    if value_id is None:
                        unknown.append(doc)
                    else:
                        known[value_id] = rel
                if not any(rel > 0 for rel in known.values()):
                    skipped += 1
                    continue
                query_id = self._add_query(tx, set_id, qid, collection.queries[qid], stamp)
                for value_id, rel in known.items():
                    tx.execute(
                        "INSERT INTO golden_judgement(query_id, value_id, relevance)"
                        " VALUES (?, ?, ?)",
                        (query_id, value_id, rel),
                    )
                stored_queries += 1
                stored_judgements += len(known)
            if not stored_queries:
                raise KvdeskError(
                    f"none of the documents judged in {folder} is in this vault; import its"
                    " corpus first (kvdesk import --records corpus.jsonl)"
                )
        return GoldenImport(
            set=self.get_set(name),
            queries=stored_queries,
            judgements=stored_judgements,
            unknown_docs=len(unknown),
            unknown_examples=tuple(sorted(set(unknown))[:10]),
            skipped_queries=skipped,
        )

    def add_case(
        self,
        name: str,
        query: str,
        document: str | int,
        *,
        relevance: int = 1,
        source: str = "manual",
    ) -> GoldenSet:
        """One judged query: ``document`` (id, identifier or external id) answers ``query``.

        Creates the set if needed; the same query again adds another relevant document.
        """
        text = query.strip()
        if not text:
            raise KvdeskError("a golden case needs a query")
        value_id = self.values.get(document).id  # NotFoundError for unknown documents
        with self.db.transaction() as tx:
            set_id = self._ensure_set(name, source)
            key = case_key(text)
            row = tx.execute(
                "SELECT id FROM golden_query WHERE set_id = ? AND query_key = ?", (set_id, key)
            ).fetchone()
            if row is None:
                query_id = self._add_query(tx, set_id, key, text, now_iso())
            else:
                query_id = int(row[0])
            tx.execute(
                "INSERT INTO golden_judgement(query_id, value_id, relevance) VALUES (?, ?, ?)"
                " ON CONFLICT (query_id, value_id) DO UPDATE SET relevance = excluded.relevance",
                (query_id, value_id, relevance),
            )
        return self.get_set(name)

    def add_pilot_case(
        self, name: str, session_id: int, document: str | int, query: str | None = None
    ) -> GoldenSet:
        """A failed pilot session becomes a case: its **last** query (the final reformulation,
        what the user ended up asking; or ``query``) + the document that answers it."""
        if query is None:
            session = self.pilot.session(session_id)  # NotFoundError: no pilot session N
            if not session.queries:
                raise NotFoundError(f"pilot session {session_id} has no query")
            query = max(session.queries, key=lambda q: q.seq).query
        return self.add_case(name, query, document, source="pilot")
