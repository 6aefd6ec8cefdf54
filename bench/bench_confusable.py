"""Confusable documents: how fast pairs are found at SciFact scale, and how precisely planted
look-alikes (a document and an edited copy with a changed date, amount or name) are found.

Usage:
    python bench/bench_confusable.py [--eval-dir ../shared/eval]
        [--work /tmp/kvdesk-bench-confusable] [--from-vault /tmp/kvdesk-bench/scifact.kvdb]
        [--planted 60] [--repeats 3] [--seed 7] [--out bench/results/confusable.json]

1. SciFact (5,183 abstracts, dense keys of the default model): ``kb.confusable_pairs()`` timed
   ``--repeats`` times (median), the pairs it reports (SciFact holds no planted copies: every pair
   is a false alarm unless the two abstracts really are near-copies), the restricted form the
   pilot report uses (``among`` 200 values), and the words-only fallback (no dense keys).
2. Planted: the same vault plus ``--planted`` edited copies of seeded SciFact abstracts, a third
   each with a changed year (date), number (amount) and capitalised word (name). Precision =
   reported pairs that are planted / reported pairs; recall = planted pairs reported / planted.
   Also: how often the tells and the suggested tag name the edited token, and a threshold sweep.

The SciFact vault is imported and dense-keyed once (slow on a CPU: minutes) or copied from
``--from-vault`` (a vault bench_retrieval.py built); the planted vault is rebuilt each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kvdesk.core.keys.confusable import MIN_DENSE, MIN_LEXICAL  # noqa: E402
from kvdesk.core.knowledge_base import KnowledgeBase  # noqa: E402
from kvdesk.core.paths import keys_dir_for  # noqa: E402

NAMES = ["Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "Haddad", "Ferreira", "Kowalski"]
YEAR = re.compile(r"(?<!\d)(19[5-9]\d|20[0-2]\d)(?!\d)")
NUMBER = re.compile(r"(?<![\w.,])(\d+(?:\.\d+)?)(?![\w.,]?\d)")
# A capitalised word inside a sentence (not opening it), not an acronym: a name or a place.
NAME = re.compile(r"(?<=[a-z,;] )([A-Z][a-z]{3,})\b")
SWEEP = [(0.80, 0.80), (0.90, 0.80), (0.80, 0.70), (0.90, 0.90), (0.70, 0.80)]


def copy_vault(source: Path, target: Path) -> None:
    """A consistent copy (SQLite's backup API) plus its key folder."""
    for stale in (target, keys_dir_for(target)):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    src.backup(dst)
    dst.close()
    src.close()
    shutil.copytree(keys_dir_for(source), keys_dir_for(target))


def scifact_vault(args: argparse.Namespace) -> tuple[Path, float | None]:
    """The SciFact vault with complete dense keys; the seconds its build took, if built now."""
    path = args.work / "scifact.kvdb"
    if not path.exists():
        if args.from_vault and args.from_vault.exists():
            copy_vault(args.from_vault, path)
        else:
            started = time.perf_counter()
            with KnowledgeBase.open(path) as kb:
                kb.import_records(args.eval_dir / "scifact" / "corpus.jsonl")
                kb.build_dense_keys()
            return path, time.perf_counter() - started
    with KnowledgeBase.open(path, create=False) as kb:
        status = kb.dense_status()
        if not status.ready:
            kb.build_dense_keys()
    return path, None


def timed(fn: Any, repeats: int) -> tuple[Any, list[float]]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return result, times


def summary(times: list[float]) -> dict[str, Any]:
    return {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times]}


def run_scifact(path: Path, repeats: int, seed: int) -> dict[str, Any]:
    with KnowledgeBase.open(path, create=False) as kb:
        kb.confusable_pairs()  # loads the vectors once, as an open app has them
        report, times = timed(kb.confusable_pairs, repeats)
        ids = sorted(kb.values.external_ids())
        among = random.Random(seed).sample(ids, 200)
        _, among_times = timed(lambda: kb.confusable_pairs(among=among), repeats)
        loose, _ = timed(lambda: kb.confusable_pairs(min_dense=0.80, min_lexical=0.60), 1)
        # The fallback when no meaning keys exist: word profiles of every value, hashed.
        keys = kb._keys
        keys.active_key_set = lambda space="dense": None  # type: ignore[method-assign]
        words_only, fallback_times = timed(kb.confusable_pairs, 1)
        ext = kb.values.external_ids()
        return {
            "values": report.checked,
            "dense_keyed": report.dense_keyed,
            "candidates_after_dense_screen": report.candidates,
            "pairs": len(report.pairs),
            "pairs_listed": [
                {
                    "a": ext[p.a.value_id],
                    "b": ext[p.b.value_id],
                    "dense": p.dense_similarity,
                    "lexical": round(p.lexical_similarity, 4),
                }
                for p in report.pairs
            ],
            "seconds": summary(times),
            "among_200_seconds": summary(among_times),
            "pairs_at_0.80_0.60": len(loose.pairs),
            "words_only_fallback": {
                "pairs": len(words_only.pairs),
                "candidates": words_only.candidates,
                "seconds": summary(fallback_times),
            },
        }


def edit(text: str, kind: str, rng: random.Random) -> tuple[str, str, str] | None:
    """``text`` with one ``kind`` of token changed: (new text, old token, new token)."""
    pattern = {"date": YEAR, "amount": NUMBER, "name": NAME}[kind]
    matches = list(pattern.finditer(text))
    if kind == "amount":
        matches = [m for m in matches if not YEAR.fullmatch(m.group(1))]
    if not matches:
        return None
    m = rng.choice(matches)
    old = m.group(1)
    if kind == "date":
        new = str(int(old) + rng.choice([-3, -2, -1, 1, 2, 3]))
    elif kind == "amount":
        if "." in old:
            whole, frac = old.split(".")
            new = f"{int(whole) + rng.randint(1, 9)}.{frac}"
        else:
            new = str(int(old) + rng.randint(1, 9))
    else:
        new = rng.choice([n for n in NAMES if n != old])
    return text[: m.start(1)] + new + text[m.end(1) :], old, new


def _has(text: str, token: str) -> bool:
    return re.search(rf"(?<![\w.,]){re.escape(token)}(?![\w]|[.,]\d)", text) is not None


def plant(corpus: Path, count: int, seed: int, records: Path) -> dict[str, dict[str, str]]:
    """Edited copies of seeded abstracts, a third of each kind; returns copy id -> what changed."""
    docs = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines() if line]
    rng = random.Random(seed)
    rng.shuffle(docs)
    kinds = ["date", "amount", "name"]
    planted: dict[str, dict[str, str]] = {}
    lines = []
    for doc in docs:
        kind = kinds[len(planted) % 3]
        changed = edit(doc["text"], kind, rng)
        if changed is None:
            continue
        text, old, new = changed
        copy_id = f"{doc['_id']}-edited"
        planted[copy_id] = {"original": doc["_id"], "kind": kind, "old": old, "new": new}
        # What can tell the two apart: a token is distinctive only if the other lacks it (a
        # year written twice and edited once stays in both).
        planted[copy_id]["expected"] = " ".join(
            token
            for token, other in ((old, text), (new, doc["text"]))
            if not _has(f"{doc['title']}\n{other}", token)
        )
        lines.append(json.dumps({"_id": copy_id, "title": doc["title"], "text": text}))
        if len(planted) == count:
            break
    records.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return planted


def score(report: Any, ext: dict[int, str], planted: dict[str, dict[str, str]]) -> dict[str, Any]:
    truth = {frozenset((info["original"], copy)) for copy, info in planted.items()}
    found = {frozenset((ext[p.a.value_id], ext[p.b.value_id])) for p in report.pairs}
    hits = found & truth

    def recall(kind: str) -> float:
        of_kind = [frozenset((i["original"], c)) for c, i in planted.items() if i["kind"] == kind]
        return round(sum(1 for pair in of_kind if pair in hits) / max(1, len(of_kind)), 4)

    per_kind = {kind: recall(kind) for kind in ("date", "amount", "name")}
    return {
        "reported": len(found),
        "planted_found": len(hits),
        "precision": round(len(hits) / len(found), 4) if found else None,
        "recall": round(len(hits) / len(truth), 4),
        "recall_per_kind": per_kind,
    }


def run_planted(scifact: Path, args: argparse.Namespace) -> dict[str, Any]:
    path = args.work / "planted.kvdb"
    copy_vault(scifact, path)
    records = args.work / "planted.jsonl"
    planted = plant(args.eval_dir / "scifact" / "corpus.jsonl", args.planted, args.seed, records)
    with KnowledgeBase.open(path, create=False) as kb:
        started = time.perf_counter()
        kb.import_records(records)
        kb.build_dense_keys()
        keyed_s = time.perf_counter() - started
        kb.confusable_pairs()
        report, times = timed(kb.confusable_pairs, args.repeats)
        ext = kb.values.external_ids()
        result = score(report, ext, planted)
        # Do the tells and the suggested tag name what was edited?
        told = tagged = 0
        truth = {frozenset((i["original"], c)): i for c, i in planted.items()}

        def members(p: Any) -> frozenset[str]:
            return frozenset((ext[p.a.value_id], ext[p.b.value_id]))

        for p in report.pairs:
            info = truth.get(members(p))
            if info is None:
                continue
            tells = {t.text.rstrip("%") for t in (*p.tells_a, *p.tells_b)}
            expected = info["expected"].split()
            told += all(token in tells for token in expected)
            tag = p.suggested_tag.tag.rpartition("::")[2].rstrip("%") if p.suggested_tag else ""
            tagged += tag.lower() in {token.lower() for token in expected}
        found = max(1, result["planted_found"])
        result.update(
            {
                "values": report.checked,
                "planted": len(planted),
                "kinds": {
                    k: sum(1 for i in planted.values() if i["kind"] == k)
                    for k in ("date", "amount", "name")
                },  # fmt: skip
                "copies_imported_and_keyed_s": round(keyed_s, 1),
                "seconds": summary(times),
                # Tells include every edited token the other document lacks (the old one, the
                # new one, or both), and the suggested tag is one of them.
                "tells_name_the_edited_tokens": round(told / found, 4),
                "suggested_tag_is_an_edited_token": round(tagged / found, 4),
                "closest_false_alarms": [
                    {
                        "a": ext[p.a.value_id],
                        "b": ext[p.b.value_id],
                        "dense": p.dense_similarity,
                        "lexical": round(p.lexical_similarity, 4),
                    }
                    for p in report.pairs
                    if members(p) not in truth
                ][:5],
                "missed": [
                    {"copy": c, **i}
                    for c, i in planted.items()
                    if frozenset((i["original"], c)) not in {members(p) for p in report.pairs}
                ][:10],
            }
        )
        # Words only (no meaning keys at all): the hashed screen, then the same exact check.
        kb._keys.active_key_set = lambda space="dense": None  # type: ignore[method-assign]
        words_only, fallback_times = timed(kb.confusable_pairs, 1)
        result["words_only"] = {
            **score(words_only, ext, planted),
            "seconds": summary(fallback_times),
        }
        del kb._keys.active_key_set  # back to the class's method
        result["sweep"] = [
            {
                "min_dense": d,
                "min_lexical": w,
                **score(kb.confusable_pairs(min_dense=d, min_lexical=w), ext, planted),
            }
            for d, w in SWEEP
        ]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[1]
    parser.add_argument("--eval-dir", type=Path, default=here.parent / "shared" / "eval")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kvdesk-bench-confusable"))
    parser.add_argument("--from-vault", type=Path, default=Path("/tmp/kvdesk-bench/scifact.kvdb"))
    parser.add_argument("--planted", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    scifact, built_s = scifact_vault(args)
    results = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "thresholds": {"dense": MIN_DENSE, "lexical": MIN_LEXICAL},
        "scifact_build_s": built_s,
        "scifact": run_scifact(scifact, args.repeats, args.seed),
        "planted": run_planted(scifact, args),
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    s, p = results["scifact"], results["planted"]
    print(
        f"SciFact {s['values']} values: {s['pairs']} pairs in {s['seconds']['median_s']} s"
        f" (median of {args.repeats}); planted {p['planted']}: precision {p['precision']},"
        f" recall {p['recall']}, {p['seconds']['median_s']} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
