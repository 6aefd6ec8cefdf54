"""Golden sets: judged queries stored in the vault, to measure key sets before switching.

A golden set holds queries and, for each, the values that answer it. They come from a BEIR
folder (its corpus ids matched to the vault's values by external id; a judgement naming a
document the vault does not hold is counted and reported, never stored) or one case at a time,
typically a failed pilot query plus the document that should have been found.

Evaluation runs every query against two or more dense key sets side by side (values untouched,
the active key set unchanged) and reports nDCG@10, Recall@100, MRR@10 and per-query wins and
losses against the first key set (the active one by default). For a set imported from BEIR,
a retrieved document whose external id equals the query id is dropped before scoring, as the
BEIR protocol says (``../shared/eval/README.md``): a corpus that also holds its queries must not
score a query finding itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from kvdesk.core.errors import KvdeskError, NotFoundError
from kvdesk.core.golden.evaluation import load_collection, per_query_ndcg, score_run
from kvdesk.core.keys.manager import KeyManager, KeySet
from kvdesk.core.search.retrieval import MODES, Retriever
from kvdesk.core.vault.vault import Vault, now_iso

TIE_EPSILON = 1e-9


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
    """The golden sets of one vault. Writes belong on the writer thread."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def list_sets(self) -> list[GoldenSet]:
        rows = self.vault.conn.execute(
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

    def _ensure_set(self, name: str, source: str) -> int:
        name = name.strip()
        if not name:
            raise KvdeskError("a golden set needs a name")
        with self.vault.transaction() as tx:
            row = tx.execute("SELECT id FROM golden_set WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return int(row[0])
            cur = tx.execute(
                "INSERT INTO golden_set(name, source, created_at) VALUES (?, ?, ?)",
                (name, source, now_iso()),
            )
            return int(cur.lastrowid or 0)

    def delete_set(self, name: str) -> None:
        with self.vault.transaction() as tx:
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
        lookup = dict(
            self.vault.conn.execute(
                "SELECT external_id, id FROM value WHERE external_id IS NOT NULL"
            )
        )
        unknown: list[str] = []
        stored_queries = stored_judgements = skipped = 0
        with self.vault.transaction() as tx:
            set_id = self._ensure_set(name, f"beir:{Path(folder).name}/{split}")
            stamp = now_iso()
            for qid, judged in collection.qrels.items():
                known = {}
                for doc, rel in judged.items():
                    value_id = lookup.get(doc)
                    if value_id is None:
                        unknown.append(doc)
                    else:
                        known[int(value_id)] = rel
                if not any(rel > 0 for rel in known.values()):
                    skipped += 1
                    continue
                cur = tx.execute(
                    "INSERT INTO golden_query(set_id, query_key, text, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (set_id, qid, collection.queries[qid], stamp),
                )
                query_id = int(cur.lastrowid or 0)
                tx.executemany(
                    "INSERT INTO golden_judgement(query_id, value_id, relevance) VALUES (?, ?, ?)",
                    [(query_id, v, rel) for v, rel in known.items()],
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
        value_id = self.vault.get(document).id  # NotFoundError for unknown documents
        with self.vault.transaction() as tx:
            set_id = self._ensure_set(name, source)
            key = case_key(text)
            row = tx.execute(
                "SELECT id FROM golden_query WHERE set_id = ? AND query_key = ?", (set_id, key)
            ).fetchone()
            if row is None:
                cur = tx.execute(
                    "INSERT INTO golden_query(set_id, query_key, text, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (set_id, key, text, now_iso()),
                )
                query_id = int(cur.lastrowid or 0)
            else:
                query_id = int(row[0])
            tx.execute(
                "INSERT INTO golden_judgement(query_id, value_id, relevance) VALUES (?, ?, ?)"
                " ON CONFLICT(query_id, value_id) DO UPDATE SET relevance = excluded.relevance",
                (query_id, value_id, relevance),
            )
        return self.get_set(name)

    def add_pilot_case(
        self, name: str, session_id: int, document: str | int, query: str | None = None
    ) -> GoldenSet:
        """A failed pilot session becomes a case: its **last** query (the final reformulation,
        what the user ended up asking; or ``query``) + the document that answers it."""
        if query is None:
            exists = self.vault.conn.execute(
                "SELECT 1 FROM pilot_session WHERE id = ?", (session_id,)
            ).fetchone()
            if exists is None:
                raise NotFoundError(f"no pilot session {session_id}")
            row = self.vault.conn.execute(
                "SELECT query FROM pilot_query WHERE session_id = ? ORDER BY seq DESC LIMIT 1",
                (session_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"pilot session {session_id} has no query")
            query = str(row[0])
        return self.add_case(name, query, document, source="pilot")

    def queries(self, name: str) -> list[GoldenQuery]:
        set_id = self.get_set(name).id
        judged: dict[int, dict[int, int]] = {}
        for qid, value_id, rel in self.vault.conn.execute(
            "SELECT j.query_id, j.value_id, j.relevance FROM golden_judgement j"
            " JOIN golden_query q ON q.id = j.query_id WHERE q.set_id = ?",
            (set_id,),
        ):
            judged.setdefault(int(qid), {})[int(value_id)] = int(rel)
        rows = self.vault.conn.execute(
            "SELECT id, query_key, text FROM golden_query WHERE set_id = ? ORDER BY id", (set_id,)
        ).fetchall()
        return [GoldenQuery(r[1], r[2], judged.get(int(r[0]), {})) for r in rows]


# -- evaluation ------------------------------------------------------------------------------


class _CachedMatrices:
    """The key manager, but holding the vectors of every key set evaluated (not only the active
    one), so a non-active key set is loaded once per evaluation instead of once per query."""

    def __init__(self, keys: KeyManager) -> None:
        self._keys = keys
        self._matrices: dict[int, Any] = {}
        self._lock = threading.Lock()

    def matrix(self, key_set: KeySet | None = None) -> Any:
        if key_set is None:
            return self._keys.matrix()
        with self._lock:
            if key_set.id not in self._matrices:
                self._matrices[key_set.id] = self._keys.matrix(key_set)
            return self._matrices[key_set.id]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._keys, name)


@dataclass(frozen=True)
class KeySetScores:
    key_set: KeySet
    active: bool
    keyed_values: int
    total_values: int
    ndcg10: float
    recall100: float
    mrr10: float
    per_query: dict[str, float]  # query key -> nDCG@10

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.key_set.id,
            "model": self.key_set.name,
            "state": self.key_set.state,
            "active": self.active,
            "keyed_values": self.keyed_values,
            "total_values": self.total_values,
            "ndcg@10": round(self.ndcg10, 4),
            "recall@100": round(self.recall100, 4),
            "mrr@10": round(self.mrr10, 4),
        }


@dataclass(frozen=True)
class Comparison:
    baseline: int
    candidate: int
    wins: int  # queries where the candidate's nDCG@10 beats the baseline's
    losses: int
    ties: int

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
        }


@dataclass(frozen=True)
class GoldenEvaluation:
    set_name: str
    mode: str
    queries: tuple[GoldenQuery, ...]
    results: tuple[KeySetScores, ...]  # the first is the baseline
    comparisons: tuple[Comparison, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "set": self.set_name,
            "mode": self.mode,
            "queries": len(self.queries),
            "key_sets": [r.to_json() for r in self.results],
            "comparisons": [c.to_json() for c in self.comparisons],
            "per_query": [
                {
                    "query_key": q.key,
                    "text": q.text,
                    "ndcg@10": {
                        str(r.key_set.id): round(r.per_query[q.key], 4) for r in self.results
                    },
                }
                for q in self.queries
            ],
        }


def default_key_sets(keys: KeyManager) -> list[KeySet]:
    """The active dense key set, then the most recent other one (if any)."""
    sets = keys.key_sets("dense")
    active = [k for k in sets if k.state == "active"]
    others = sorted((k for k in sets if k.state != "active"), key=lambda k: k.id, reverse=True)
    return active + others[:1]


def evaluate(
    vault: Vault,
    keys: KeyManager,
    name: str,
    key_set_ids: Sequence[int] | None = None,
    *,
    mode: str = "hybrid",
) -> GoldenEvaluation:
    """Run golden set ``name`` against each key set; the first one is the baseline.

    Never changes which key set is active: each run uses its own Retriever pinned to a set.
    """
    if mode not in MODES:
        raise KvdeskError(f"mode must be one of {', '.join(MODES)}")
    queries = GoldenStore(vault).queries(name)
    if not queries:
        raise KvdeskError(f"golden set {name!r} has no queries")
    by_id = {k.id: k for k in keys.key_sets("dense")}
    if key_set_ids:
        missing = [i for i in key_set_ids if i not in by_id]
        if missing:
            raise NotFoundError(f"no dense key set {missing[0]}")
        chosen = [by_id[i] for i in dict.fromkeys(key_set_ids)]
    else:
        chosen = default_key_sets(keys)
    if not chosen:
        raise KvdeskError("this vault has no dense key set yet; build dense keys first")
    qrels = {q.key: {_doc(v): rel for v, rel in q.judgements.items()} for q in queries}
    # BEIR rule: a retrieved document whose id equals the query id is dropped. The run's labels
    # are "#<value id>" (never equal to a query key by accident), so the rule is applied here,
    # on external ids, for sets imported from BEIR only (hand-made cases are keyed by text).
    external: dict[int, str] = {}
    if GoldenStore(vault).get_set(name).source.startswith("beir:"):
        external = {
            int(v): str(e)
            for v, e in vault.conn.execute(
                "SELECT id, external_id FROM value WHERE external_id IS NOT NULL"
            )
        }
    cached = cast(KeyManager, _CachedMatrices(keys))
    results: list[KeySetScores] = []
    for key_set in chosen:
        retriever = Retriever(vault, cached, dense_key_set=key_set)
        runs = {
            q.key: [
                _doc(v)
                for v, _s in retriever.rank_ids(q.text, mode=mode, k=100 + bool(external))
                if external.get(v) != q.key
            ][:100]
            for q in queries
        }
        scores = score_run(runs, qrels)
        status = keys.dense_status(key_set)
        results.append(
            KeySetScores(
                key_set=key_set,
                active=key_set.state == "active",
                keyed_values=status.keyed_values,
                total_values=status.total_values,
                ndcg10=scores.ndcg10,
                recall100=scores.recall100,
                mrr10=scores.mrr10,
                per_query=per_query_ndcg(runs, qrels),
            )
        )
    base = results[0]
    comparisons = []
    for other in results[1:]:
        diffs = [other.per_query[q.key] - base.per_query[q.key] for q in queries]
        comparisons.append(
            Comparison(
                baseline=base.key_set.id,
                candidate=other.key_set.id,
                wins=sum(1 for d in diffs if d > TIE_EPSILON),
                losses=sum(1 for d in diffs if d < -TIE_EPSILON),
                ties=sum(1 for d in diffs if abs(d) <= TIE_EPSILON),
            )
        )
    return GoldenEvaluation(name, mode, tuple(queries), tuple(results), tuple(comparisons))


def _doc(value_id: int) -> str:
    # Never a bare number or an external id, so score_run's own id rule cannot misfire; the BEIR
    # self-hit rule is applied on external ids in :func:`evaluate`.
    return f"#{value_id}"
