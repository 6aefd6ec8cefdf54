"""Learned keys on SciFact: learn from train-learn.tsv as pilot "found" verdicts, report test.

Usage:
    python bench/bench_learn.py [--eval-dir ../shared/eval] [--work /tmp/kvdesk-bench-learn]
        [--json FILE]

Protocol (../shared/eval/README.md, "Learning from use"): each (query, relevant document) pair
of ``qrels/train-learn.tsv`` is a pilot session that ended "found" with that document. kvdesk
learns from those pairs only (``KnowledgeBase.learn``: seeded fit / held-out split, weights
tuned on an inner split of the fit part), and the test split (never learned from) is scored
with and without the learned key set, in hybrid and in lexical mode, side by side with the
learning queries themselves (memorised) and the gap between the two. "novel" rows are the
queries whose relevant documents were not among the learned documents.

The vault under ``--work`` is reused (import and dense keys are incremental).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kvdesk.core.golden.evaluation import load_collection, ndcg_at  # noqa: E402
from kvdesk.core.keys.learned import LearnedPair  # noqa: E402
from kvdesk.core.knowledge_base import KnowledgeBase  # noqa: E402
from kvdesk.core.search.query import parse_query  # noqa: E402
from kvdesk.core.search.retrieval import Retriever  # noqa: E402


def scores(
    kb: KnowledgeBase,
    retriever: Retriever,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    ext: dict[int, str],
    mode: str,
) -> dict[str, tuple[float, float]]:
    """Per query: (nDCG@10 unlearned, nDCG@10 learned), from one gather per query."""
    source = kb._learned.source()  # noqa: SLF001 - the bench reads the active set directly
    weights = source.weights if source is not None else None
    out = {}
    for qid, text in queries.items():
        g = retriever.gather(parse_query(text), mode, 100, details=False)
        pair = []
        for w in (None, weights):
            pool = retriever.fuse(dataclasses.replace(g, learned_weights=w), retriever.params)
            ranked = [ext[r.value_id] for r in pool[:101] if ext[r.value_id] != qid][:100]
            pair.append(ndcg_at(ranked, qrels[qid]))
        out[qid] = (pair[0], pair[1])
    return out


def mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[1]
    parser.add_argument("--eval-dir", type=Path, default=here.parent / "shared" / "eval")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kvdesk-bench-learn"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    folder = args.eval_dir / "scifact"
    test = load_collection(folder, "test")
    train = load_collection(folder, "train-learn")
    args.work.mkdir(parents=True, exist_ok=True)
    kb = KnowledgeBase.open(args.work / "scifact.kvdb")
    kb.import_records(folder / "corpus.jsonl")
    kb.build_dense_keys()
    ext = kb.values.external_ids()
    by_ext = {e: v for v, e in ext.items()}
    pairs = [
        LearnedPair(text, by_ext[doc], f"pilot:train-{qid}", "pilot")
        for qid, text in train.queries.items()
        for doc, rel in train.qrels[qid].items()
        if rel > 0 and doc in by_ext
    ]
    started = time.perf_counter()
    report = kb.learn(pairs, activate=True)
    learn_s = time.perf_counter() - started
    active = next((k for k in kb.learned_key_sets() if k.state == "active"), None)
    assert active is not None, report.reason
    learned_docs = {ext[k.value_id] for k in kb._learned.keys(active.id)}  # noqa: SLF001
    retriever = kb._retriever  # noqa: SLF001
    rows: dict[str, object] = {}
    for mode in ("hybrid", "lexical"):
        for name, col in (("test", test), ("learning", train)):
            per = scores(kb, retriever, col.queries, col.qrels, ext, mode)
            novel = [q for q in per if not set(col.qrels[q]) & learned_docs]
            rows[f"{name}/{mode}"] = {
                "queries": len(per),
                "unlearned": mean([a for a, _ in per.values()]),
                "learned": mean([b for _, b in per.values()]),
                "novel_queries": len(novel),
                "novel_unlearned": mean([per[q][0] for q in novel]),
                "novel_learned": mean([per[q][1] for q in novel]),
            }
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "pairs": report.pairs,
        "learn_seconds": round(learn_s, 1),
        "weights": dataclasses.asdict(report.weights),
        "learn_command": report.to_json(),
        "activated": report.activated,
        "reason": report.reason,
        "fit_split": {
            "learn": report.learn.to_json(),
            "held_out": report.held_out.to_json(),
            "held_out_novel": report.held_out_novel.to_json(),
        },
        "splits": rows,
    }
    kb.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
