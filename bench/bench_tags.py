"""Tag-suggestion benchmark: kvdesk vs the Paperless-ngx "Auto" classifier, in one run.

Usage:
    python bench/bench_tags.py [--corpus ../shared/eval/debtags/corpus.jsonl]
        [--work /tmp/kvdesk-bench] [--seed 7] [--limit N] [--no-dense] [--json OUT.json]
        [--examples-per-tag 1,3,10,30]

Protocol (shared/eval/README.md): rows shuffled with ``random.Random(seed)``, the first 80% keep
their tags (curated), the last 20% are held out with their tags removed. Both systems learn from
the curated part only and are scored on the held-out part only: p@3, r@5, and micro-F1 of the
set each would auto-apply (kvdesk: its own threshold chosen on curated documents; the baseline:
``predict``, i.e. probability >= 0.5, as Paperless-ngx does).

Baseline (what Paperless-ngx's ``DocumentClassifier`` does): CountVectorizer(word 1-2-grams,
min_df=0.01) + MLPClassifier(tol=0.01) over a MultiLabelBinarizer. scikit-learn is a bench-only
dependency (``pip install scikit-learn``); kvdesk itself never imports it.

The vault is kept under ``--work`` and reused (import and dense keys are incremental), so a rerun
skips the slow dense-key build. ``--limit N`` uses the first N rows of the corpus (a smaller,
separate vault) when the full protocol is too slow for the machine; the table says so.

``--examples-per-tag 1,3,10,30`` adds the few-examples protocol: for each N, every tag is learnt
from its first N curated documents only (the held-out part is the same), and the table shows the
ranking figures next to whether confidence means what it says: expected calibration error (ECE,
10 bins, over all suggestions), mean confidence vs precision, suggestions per document at
confidence >= 0.5 and their precision, and how often the top suggestion says "only N examples".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from kvdesk.core.knowledge_base import KnowledgeBase  # noqa: E402
from kvdesk.core.progress import Progress  # noqa: E402
from kvdesk.core.tags.evaluate import evaluate, read_corpus, score_ranking, split_corpus  # noqa: E402

DEFAULT_CORPUS = (
    Path(__file__).resolve().parents[2] / "shared" / "eval" / "debtags" / "corpus.jsonl"
)


def baseline(corpus_rows: list[dict[str, object]], seed: int) -> dict[str, float]:
    """Paperless-ngx "Auto": bag of 1-2-grams + a multi-label MLP, retrained from scratch."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    curated, held = split_corpus(corpus_rows, seed)

    def text(row: dict[str, object]) -> str:
        return f"{row.get('title', '')}\n{row.get('text', '')}".lower()

    t0 = time.perf_counter()
    vectorizer = CountVectorizer(analyzer="word", ngram_range=(1, 2), min_df=0.01)
    x = vectorizer.fit_transform([text(r) for r in curated])
    binarizer = MultiLabelBinarizer()
    y = binarizer.fit_transform([list(r.get("tags") or []) for r in curated])  # type: ignore[call-overload]
    clf = MLPClassifier(tol=0.01, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning, as in Paperless-ngx's logs
        clf.fit(x, y)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    probs = clf.predict_proba(vectorizer.transform([text(r) for r in held]))
    predict_ms = (time.perf_counter() - t1) * 1000 / max(len(held), 1)
    classes = binarizer.classes_
    ranked = [[str(classes[j]) for j in np.argsort(-p)[:5]] for p in probs]
    predicted = [{str(classes[j]) for j in np.flatnonzero(p >= 0.5)} for p in probs]
    truth = [{str(t) for t in r.get("tags") or []} for r in held]  # type: ignore[attr-defined]
    p3, r5, f1 = score_ranking(ranked, truth, predicted)
    return {
        "p@3": p3,
        "r@5": r5,
        "f1": f1,
        "train_s": train_s,
        "predict_ms_per_doc": predict_ms,
        "features": float(x.shape[1]),
        "labels": float(y.shape[1]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--work", type=Path, default=Path("/tmp/kvdesk-bench"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--limit", type=int, default=None, help="first N rows only (noted)")
    ap.add_argument("--no-dense", action="store_true", help="kvdesk without dense keys")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument(
        "--examples-per-tag",
        default="",
        help="comma-separated N: also learn each tag from its first N curated documents only",
    )
    ap.add_argument("--only-examples", action="store_true", help="skip the full-data run")
    args = ap.parse_args()
    few = [int(n) for n in args.examples_per_tag.split(",") if n.strip()]

    args.work.mkdir(parents=True, exist_ok=True)
    corpus = args.corpus
    name = "debtags"
    if args.limit:
        lines = corpus.read_bytes().splitlines()[: args.limit]
        corpus = args.work / f"debtags-first{args.limit}.jsonl"
        corpus.write_bytes(b"\n".join(lines) + b"\n")
        name = f"debtags-first{args.limit}"
    rows = read_corpus(corpus)

    last = [0.0]

    def progress(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] > 15 or (p.total is not None and p.done >= p.total):
            last[0] = now
            print(f"  {p.stage}: {p.done}/{p.total}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    per_n = []
    with KnowledgeBase.open(args.work / f"{name}.kvdb") as kb:
        ours = None
        if not args.only_examples:
            ours = evaluate(kb, corpus, seed=args.seed, dense=not args.no_dense, progress=progress)
        for n in few:
            per_n.append(
                evaluate(
                    kb,
                    corpus,
                    seed=args.seed,
                    dense=not args.no_dense,
                    examples_per_tag=n,
                    progress=progress,
                )
            )
    kvdesk_s = time.perf_counter() - t0
    base = None if args.no_baseline or ours is None else baseline(rows, args.seed)
    if per_n:
        print()
        print(
            f"{'examples/tag':>12} {'docs':>6} {'p@3':>7} {'r@5':>7} {'F1':>7} {'thr':>5}"
            f" {'ECE':>6} {'meanconf':>8} {'precision':>9} {'>=0.5/doc':>9} {'prec>=0.5':>9}"
            f" {'k':>4} {'top1 says few':>13}"
        )
        for r in per_n:
            e = r.to_json()
            print(
                f"{e['examples_per_tag']:>12} {e['curated_docs_used']:>6} {r.p_at_3:>7.4f}"
                f" {r.r_at_5:>7.4f} {r.f1:>7.4f} {r.threshold:>5.2f} {e['ece']:>6.3f}"
                f" {e['mean_conf']:>8.3f} {e['precision']:>9.3f} {e['per_doc_at_0.5']:>9.2f}"
                f" {e['precision_at_0.5']:>9.3f} {e['examples_prior']:>4.0f}"
                f" {e['top1_few_examples_share']:>13.2f}"
            )
    if ours is None:
        if args.json:
            args.json.write_text(
                json.dumps(
                    {"collection": name, "examples_per_tag": [r.to_json() for r in per_n]}, indent=2
                )
                + "\n"
            )
        return 0

    k = ours.to_json()
    print()
    print(
        f"Tag suggestion on {name}: {len(rows)} docs, {ours.curated} curated,"
        f" {ours.held_out} held out (seed {args.seed}); {os.cpu_count()} CPUs,"
        f" {platform.python_version()}"
    )
    print(f"{'system':<34} {'p@3':>7} {'r@5':>7} {'F1':>7}  notes")
    dense_note = "dense+lexical" if k.get("dense") else "lexical only"
    print(
        f"{'kvdesk (' + dense_note + ')':<34} {ours.p_at_3:>7.4f} {ours.r_at_5:>7.4f}"
        f" {ours.f1:>7.4f}  suggest p50 {ours.suggest_ms_p50:.1f} ms/doc,"
        f" threshold {ours.threshold:.2f}, calibration fit {ours.fit_seconds:.1f} s"
    )
    if base is not None:
        print(
            f"{'Paperless-ngx Auto (sklearn MLP)':<34} {base['p@3']:>7.4f} {base['r@5']:>7.4f}"
            f" {base['f1']:>7.4f}  training {base['train_s']:.1f} s,"
            f" predict {base['predict_ms_per_doc']:.2f} ms/doc,"
            f" {int(base['features'])} features x {int(base['labels'])} labels"
        )
    print(f"(kvdesk total incl. import/keys {kvdesk_s:.1f} s)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "collection": name,
                    "kvdesk": k,
                    "baseline": base,
                    "examples_per_tag": [r.to_json() for r in per_n],
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
