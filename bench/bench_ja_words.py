"""Weight of the Japanese dictionary-word field next to CJK bigrams, lexical keys only.

Usage:
    python bench/bench_ja_words.py [--vault /tmp/kvdesk-bench/jaquad-mteb.kvdb]
        [--collection ../shared/eval/jaquad-mteb] [--seed 7]

Reuses the JaQuAD vault that ``bench_retrieval.py`` builds. For each weight of the ``ja_words``
field (0 = bigrams alone) it prints nDCG@10 on the seeded tuning half, the held-out half and all
queries: choose on the tuning half, report the held-out one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kvdesk.core.golden.evaluation import load_collection, score_run, split_queries  # noqa: E402
from kvdesk.core.keys.lexical import LexicalIndex  # noqa: E402
from kvdesk.core.knowledge_base import KnowledgeBase  # noqa: E402

WEIGHTS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)


def main() -> int:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vault", type=Path, default=Path("/tmp/kvdesk-bench/jaquad-mteb.kvdb"))
    ap.add_argument("--collection", type=Path, default=here.parent / "shared/eval/jaquad-mteb")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    collection = load_collection(args.collection)
    kb = KnowledgeBase.open(args.vault)
    kb.import_records(collection.corpus_path)  # incremental: a no-op when already there
    ext = kb.values.external_ids()
    qids = list(collection.queries)
    tune, held = split_queries(qids, args.seed)
    shipped = LexicalIndex.JA_WORDS_BOOST
    results = {}
    for weight in WEIGHTS:
        LexicalIndex.JA_WORDS_BOOST = weight
        runs = {
            q: [ext[vid] for vid, _score in kb.rank_ids(text, mode="lexical", k=100)]
            for q, text in collection.queries.items()
        }
        results[str(weight)] = {
            part: round(score_run(runs, collection.qrels, subset).ndcg10, 4)
            for part, subset in (("tune_half", tune), ("held_out_half", held), ("all", None))
        }
    LexicalIndex.JA_WORDS_BOOST = shipped
    kb.close()
    print(json.dumps({"shipped_weight": shipped, "ndcg@10": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
