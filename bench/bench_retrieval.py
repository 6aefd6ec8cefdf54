"""Retrieval benchmark: lexical, dense, kvdesk hybrid and reciprocal-rank fusion, side by side.

Usage:
    python bench/bench_retrieval.py [--eval-dir ../shared/eval] [--work /tmp/kvdesk-bench]
        [--collections scifact jaquad-mteb] [--seed 7]

For each BEIR collection it imports the corpus as records (timed: values + lexical keys, then
dense keys), runs every test query once per candidate list, and scores:

- lexical alone, dense alone;
- reciprocal-rank fusion (k = 60) of the same two lists (what GPT4All LocalDocs and Logseq do);
- kvdesk's fusion with the weights shipped in ``FusionParams``;
- kvdesk's fusion with the lexical weight tuned on one seeded half of the queries ("tune"),
  reported on the other half ("held-out") and on all queries; the gap is memorisation.

Vaults are kept under ``--work`` and reused (import is incremental), so a rerun skips indexing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kvdesk.core.golden.evaluation import load_collection, percentile, score_run, split_queries  # noqa: E402
from kvdesk.core.knowledge_base import KnowledgeBase  # noqa: E402
from kvdesk.core.search.query import has_cjk, parse_query  # noqa: E402
from kvdesk.core.search.retrieval import FusionParams  # noqa: E402

GRID = [round(0.05 * i, 2) for i in range(21)]


def rrf(lists: list[list[int]], k: int = 60, depth: int = 100) -> list[int]:
    scores: dict[int, float] = {}
    for ranked in lists:
        for rank, vid in enumerate(ranked[:depth], start=1):
            scores[vid] = scores.get(vid, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda v: (-scores[v], v))


def run_collection(name: str, folder: Path, work: Path, seed: int) -> dict[str, object]:
    collection = load_collection(folder)
    vault = work / f"{name}.kvdb"
    kb = KnowledgeBase.open(vault)
    t0 = time.perf_counter()
    report = kb.import_records(collection.corpus_path)
    import_s = time.perf_counter() - t0
    fresh = len(report.imported)
    t1 = time.perf_counter()
    built = kb.build_dense_keys()
    dense_s = time.perf_counter() - t1
    status = kb.dense_status()
    ext = kb.values.external_ids()
    qids = list(collection.queries)
    tune, held = split_queries(qids, seed)

    def ids(ranked: list[int]) -> list[str]:
        return [ext[v] for v in ranked]

    # One gather per query holds both candidate lists; fusion variants are re-scored from it.
    gathered = {}
    latency: dict[str, list[float]] = {"lexical": [], "hybrid": []}
    for qid in qids:
        text = collection.queries[qid]
        s = time.perf_counter()
        kb.rank_ids(text, mode="lexical", k=100)
        latency["lexical"].append((time.perf_counter() - s) * 1000)
        s = time.perf_counter()
        kb.rank_ids(text, mode="hybrid", k=100)
        latency["hybrid"].append((time.perf_counter() - s) * 1000)
        gathered[qid] = kb._retriever.gather(parse_query(text), "hybrid", 100, details=False)
    lists: dict[str, dict[str, list[int]]] = {"lexical": {}, "dense": {}}
    for qid, g in gathered.items():
        cands = list(g.candidates.values())
        lex = sorted((c for c in cands if c.lexical), key=lambda c: (-c.lexical.score, c.value_id))
        den = sorted((c for c in cands if c.dense), key=lambda c: (-c.cosine, c.value_id))
        lists["lexical"][qid] = [c.value_id for c in lex][:100]
        lists["dense"][qid] = [c.value_id for c in den][:100]
    scores: dict[str, object] = {}
    for mode in ("lexical", "dense"):
        runs = {q: ids(lists[mode][q]) for q in qids}
        scores[mode] = score_run(runs, collection.qrels).to_json()
    rrf_runs = {q: ids(rrf([lists["lexical"][q], lists["dense"][q]])) for q in qids}
    scores["rrf_k60"] = score_run(rrf_runs, collection.qrels).to_json()

    def hybrid_runs(params: FusionParams) -> dict[str, list[str]]:
        fuse = kb._retriever.fuse  # the tuning experiment re-fuses gathered candidates
        return {q: ids([r.value_id for r in fuse(gathered[q], params)[:100]]) for q in qids}

    shipped = FusionParams()
    shipped_runs = hybrid_runs(shipped)
    cjk = any(has_cjk(t) for t in collection.queries.values())
    knob = "cjk_lexical_weight" if cjk else "lexical_weight"
    scores["hybrid_shipped"] = {
        knob: getattr(shipped, knob),
        "all": score_run(shipped_runs, collection.qrels).to_json(),
        "tune_half": score_run(shipped_runs, collection.qrels, tune).to_json(),
        "held_out_half": score_run(shipped_runs, collection.qrels, held).to_json(),
    }
    grid = []
    for alpha in GRID:
        if cjk:
            params = replace(shipped, cjk_lexical_weight=alpha)
        else:
            params = replace(shipped, lexical_weight=alpha, dense_weight=1 - alpha)
        runs = hybrid_runs(params)
        grid.append((alpha, score_run(runs, collection.qrels, tune).ndcg10, runs))
    best_alpha, best_tune, best_runs = max(grid, key=lambda g: g[1])
    held_score = score_run(best_runs, collection.qrels, held)
    scores["hybrid_tuned"] = {
        knob: best_alpha,
        "tune_half_ndcg@10": round(best_tune, 4),
        "held_out_half": held_score.to_json(),
        "all": score_run(best_runs, collection.qrels).to_json(),
        "gap_ndcg@10": round(best_tune - held_score.ndcg10, 4),
        "grid_tune_ndcg@10": {str(a): round(n, 4) for a, n, _ in grid},
    }
    scores["rrf_k60_halves"] = {
        "tune_half": score_run(rrf_runs, collection.qrels, tune).to_json(),
        "held_out_half": score_run(rrf_runs, collection.qrels, held).to_json(),
    }
    kb.close()
    return {
        "collection": name,
        "queries": len(qids),
        "documents": status.total_values,
        "passages_keyed_values": status.keyed_values,
        "import_seconds": round(import_s, 2),
        "import_docs_per_s": round(fresh / import_s, 1) if fresh else None,
        "dense_seconds": round(dense_s, 2),
        "dense_docs_per_s": round(built / dense_s, 1) if built else None,
        "query_ms_p50": {m: round(percentile(v, 50), 2) for m, v in latency.items()},
        "query_ms_p95": {m: round(percentile(v, 95), 2) for m, v in latency.items()},
        "scores": scores,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[1]
    parser.add_argument("--eval-dir", type=Path, default=here.parent / "shared" / "eval")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kvdesk-bench"))
    parser.add_argument("--collections", nargs="+", default=["scifact", "jaquad-mteb"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "collections": [
            run_collection(name, args.eval_dir / name, args.work, args.seed)
            for name in args.collections
        ],
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    for c in results["collections"]:
        s = c["scores"]
        tuned = s["hybrid_tuned"]
        knob = next(k for k in tuned if k.endswith("weight"))
        print(
            f"{c['collection']}: lexical {s['lexical']['ndcg@10']}, dense {s['dense']['ndcg@10']},"
            f" rrf {s['rrf_k60']['ndcg@10']},"
            f" hybrid(shipped) {s['hybrid_shipped']['all']['ndcg@10']},"
            f" hybrid(tuned {knob}={tuned[knob]}) held-out"
            f" {tuned['held_out_half']['ndcg@10']} all {tuned['all']['ndcg@10']}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
