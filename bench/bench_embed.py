"""Throughput of the default dense model: passages/s on SciFact-like texts.

usage: python bench/bench_embed.py [CORPUS.jsonl] [--docs N] [--batch 32] [--threads T] [--repeat R]
Run on a quiet machine; on a shared 2-core VM timings vary up to 2x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from kvdesk.core.keys.dense import Embedder, default_model_spec, make_passages


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="?", default="/work/shared/eval/scifact/corpus.jsonl")
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    t0 = time.perf_counter()
    embedder = Embedder(default_model_spec(), threads=args.threads)
    load_s = time.perf_counter() - t0
    docs = []
    with Path(args.corpus).open(encoding="utf-8") as f:
        for line in f:
            docs.append(json.loads(line))
            if len(docs) >= args.docs:
                break
    t0 = time.perf_counter()
    passages = [p for d in docs for p in make_passages(d["title"], d["text"], embedder)]
    chunk_s = time.perf_counter() - t0
    texts = [p.text for p in passages]
    tokens = [embedder.count_tokens(t) + 2 for t in texts]
    embedder.embed_passages(texts[: args.batch], batch_size=args.batch)  # warm-up
    rates = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        embedder.embed_passages(texts, batch_size=args.batch)
        rates.append(len(texts) / (time.perf_counter() - t0))
    print(
        json.dumps(
            {
                "provider": embedder.provider_info.provider,
                "docs": len(docs),
                "passages": len(texts),
                "mean_tokens": round(statistics.mean(tokens), 1),
                "max_tokens": max(tokens),
                "batch": args.batch,
                "threads": args.threads,
                "load_s": round(load_s, 3),
                "chunking_s": round(chunk_s, 3),
                "passages_per_s_median": round(statistics.median(rates), 1),
                "passages_per_s_best": round(max(rates), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
