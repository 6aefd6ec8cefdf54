"""Retrieval measurement on BEIR-format collections: nDCG@10, Recall@100, MRR@10.

Gains are binary as in BEIR, and a retrieved document whose id equals the query id is dropped.
"""

from __future__ import annotations

import csv
import json
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kvdesk.core.errors import KvdeskError


@dataclass(frozen=True)
class Collection:
    """A BEIR folder: corpus.jsonl, queries.jsonl and qrels/<split>.tsv."""

    name: str
    corpus_path: Path
    queries: dict[str, str]  # query id -> text, only those judged in the split
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}


def load_collection(folder: str | Path, split: str = "test") -> Collection:
    root = Path(folder)
    corpus = root / "corpus.jsonl"
    queries_file = root / "queries.jsonl"
    qrels_file = root / "qrels" / f"{split}.tsv"
    for needed in (corpus, queries_file, qrels_file):
        if not needed.is_file():
            raise KvdeskError(f"{root} is not a BEIR folder: {needed.name} is missing")
    qrels: dict[str, dict[str, int]] = {}
    with qrels_file.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for row in reader:
            if len(row) < 3 or row[0] in ("query-id", "query_id"):
                continue
            try:
                rel = int(float(row[2]))
            except ValueError:
                continue
            qrels.setdefault(row[0], {})[row[1]] = rel
    queries: dict[str, str] = {}
    with queries_file.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            qid = str(row["_id"])
            if qid in qrels:
                queries[qid] = str(row.get("text", ""))
    missing = set(qrels) - set(queries)
    for qid in missing:
        del qrels[qid]
    return Collection(root.name, corpus, queries, qrels)


def ndcg_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    dcg = sum(
        1.0 / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]) if relevant.get(doc, 0) > 0
    )
    ideal_hits = min(k, sum(1 for r in relevant.values() if r > 0))
    idcg = sum(1.0 / math.log2(rank + 2) for rank in range(ideal_hits))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 100) -> float:
    wanted = {d for d, r in relevant.items() if r > 0}
    if not wanted:
        return 0.0
    return len(wanted.intersection(ranked[:k])) / len(wanted)


def mrr_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    for rank, doc in enumerate(ranked[:k]):
        if relevant.get(doc, 0) > 0:
            return 1.0 / (rank + 1)
    return 0.0


@dataclass(frozen=True)
class Scores:
    ndcg10: float
    recall100: float
    mrr10: float

    def to_json(self) -> dict[str, float]:
        return {
            "ndcg@10": round(self.ndcg10, 4),
            "recall@100": round(self.recall100, 4),
            "mrr@10": round(self.mrr10, 4),
        }


def per_query_ndcg(
    runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]
) -> dict[str, float]:
    return {qid: ndcg_at(_clean(qid, runs.get(qid, ())), rel) for qid, rel in qrels.items()}


def score_run(
    runs: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    query_ids: Sequence[str] | None = None,
) -> Scores:
    """Mean metrics over ``query_ids`` (default: every judged query)."""
    ids = list(query_ids) if query_ids is not None else list(qrels)
    if not ids:
        return Scores(0.0, 0.0, 0.0)
    n = [ndcg_at(_clean(q, runs.get(q, ())), qrels[q]) for q in ids]
    r = [recall_at(_clean(q, runs.get(q, ())), qrels[q]) for q in ids]
    m = [mrr_at(_clean(q, runs.get(q, ())), qrels[q]) for q in ids]
    return Scores(statistics.fmean(n), statistics.fmean(r), statistics.fmean(m))


def _clean(qid: str, ranked: Sequence[str]) -> list[str]:
    return [d for d in ranked if d != qid]


def split_queries(query_ids: Sequence[str], seed: int = 7) -> tuple[list[str], list[str]]:
    """A seeded half/half split: tune on the first part, report on the second."""
    ids = sorted(query_ids)
    random.Random(seed).shuffle(ids)
    half = len(ids) // 2
    return ids[:half], ids[half:]


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def write_trec_run(
    path: str | Path, runs: Mapping[str, Sequence[tuple[str, float]]], tag: str
) -> None:
    """TREC run format: ``qid Q0 docid rank score tag``, top 100 per query."""
    with open(path, "w", encoding="utf-8") as handle:
        for qid, ranked in runs.items():
            for rank, (doc, score) in enumerate(ranked[:100], start=1):
                handle.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")
