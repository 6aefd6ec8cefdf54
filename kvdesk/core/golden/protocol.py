"""The golden-set evaluation protocol: key sets compared side by side on one golden set.

Evaluation runs every query against two or more dense key sets side by side (values untouched,
the active key set unchanged) and reports nDCG@10, Recall@100, MRR@10 and per-query wins and
losses against the first key set (the active one by default). For a set imported from BEIR,
a retrieved document whose external id equals the query id is dropped before scoring, as the
BEIR protocol says (``../shared/eval/README.md``): a corpus that also holds its queries must not
score a query finding itself. The scores themselves: :mod:`kvdesk.core.golden.evaluation`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from kvdesk.core.errors import KvdeskError, NotFoundError
from kvdesk.core.golden.evaluation import per_query_ndcg, score_run
from kvdesk.core.golden.store import GoldenQuery, GoldenStore
from kvdesk.core.keys.manager import DenseStatus, KeyManager, KeySet
from kvdesk.core.search.retrieval import MODES, Retriever
from kvdesk.core.vault.vault import Vault

TIE_EPSILON = 1e-9


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
    golden: GoldenStore,
    vault: Vault,
    keys: KeyManager,
    name: str,
    key_set_ids: Sequence[int] | None = None,
    *,
    mode: str = "hybrid",
) -> GoldenEvaluation:
    """Run golden set ``name`` of ``golden`` against each key set; the first is the baseline.

    Never changes which key set is active: each run uses its own Retriever pinned to a set.
    """
    if mode not in MODES:
        raise KvdeskError(f"mode must be one of {', '.join(MODES)}")
    queries = golden.queries(name)
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
    # BEIR rule: a retrieved document whose id equals the query id is dropped. The run's labels
    # are "#<value id>" (never equal to a query key by accident), so the rule is applied here,
    # on external ids, for sets imported from BEIR only (hand-made cases are keyed by text).
    external: dict[int, str] = {}
    if golden.get_set(name).source.startswith("beir:"):
        external = golden.values.external_ids()
    cached = cast(KeyManager, _CachedMatrices(keys))
    scored: list[tuple[KeySet, DenseStatus, dict[str, list[str]]]] = []
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
        scored.append((key_set, keys.dense_status(key_set), runs))
    return compare_runs(name, mode, queries, scored)


def compare_runs(
    name: str,
    mode: str,
    queries: Sequence[GoldenQuery],
    runs: Sequence[tuple[KeySet, DenseStatus, dict[str, list[str]]]],
) -> GoldenEvaluation:
    """Score each key set's run (query key -> ranked "#<value id>") on the golden set and
    compare every other one with the first, query by query."""
    qrels = {q.key: {_doc(v): rel for v, rel in q.judgements.items()} for q in queries}
    results: list[KeySetScores] = []
    for key_set, status, run in runs:
        scores = score_run(run, qrels)
        results.append(
            KeySetScores(
                key_set=key_set,
                active=key_set.state == "active",
                keyed_values=status.keyed_values,
                total_values=status.total_values,
                ndcg10=scores.ndcg10,
                recall100=scores.recall100,
                mrr10=scores.mrr10,
                per_query=per_query_ndcg(run, qrels),
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
