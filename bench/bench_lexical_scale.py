"""Lexical search latency on a 100,000-document vault: the path the CLI and the app call.

Usage:
    python bench/bench_lexical_scale.py [--vault /tmp/kvdesk-lex100k/vault.kvdesk]
        [--docs 100000] [--queries 240] [--profile] [--against TREE]

``--against TREE`` times another kvdesk tree (say ``git archive HEAD kvdesk | tar -x -C TREE``,
the code before a change) beside this one, query by query in alternating order, so that the
ratio comes from one run on a noisy machine; it also counts answers that differ.

The vault is built once (records import, lexical keys only, no dense keys) from synthetic but
realistic text: sentences of SciFact abstracts and Debian package descriptions
(``../shared/eval``), recombined with a seeded random generator; an existing vault at the path is
reused. Queries are drawn (seeded) from SciFact's queries, single words and quoted two-word
phrases of the corpus, and timed one by one through ``KnowledgeBase.search(q, mode="lexical")``
with explanations and snippets of the 10 hits shown, as ``kvdesk search --mode lexical`` runs
it. Latency is warm: wall time in the process after the vault's files have been read once
(bench_scale drops the page cache before this runs) and one warm-up pass over 20 queries; the
CPU time of the searching thread is reported beside it (``cpu_*``: on a busy shared machine it
stays close to what the wall time would be on a quiet one).

``measure(vault_path)`` returns the figures as a dict (bench/bench_scale.py calls it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's kvdesk

from kvdesk.core.knowledge_base import KnowledgeBase  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"
SCIFACT = EVAL / "scifact"
DEBTAGS = EVAL / "debtags" / "corpus.jsonl"
DEFAULT_VAULT = Path(tempfile.gettempdir()) / "kvdesk-lex100k" / "vault.kvdesk"
DEFAULT_DOCS = 100_000
SEED = 16
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")
_WORD_RE = re.compile(r"[A-Za-z][a-z]{3,}")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _sentences() -> tuple[list[str], list[str], list[list[str]]]:
    """Sentences, titles and tag sets of the two corpora (deduplicated, in file order)."""
    sentences: list[str] = []
    titles: list[str] = []
    tag_sets: list[list[str]] = []
    for path in (SCIFACT / "corpus.jsonl", DEBTAGS):
        for row in _read_jsonl(path):
            titles.append(str(row.get("title") or ""))
            if row.get("tags"):
                tag_sets.append(list(row["tags"]))
            for s in _SENTENCE_RE.split(" ".join(str(row.get("text", "")).split())):
                if 20 <= len(s) <= 400:
                    sentences.append(s)
    return list(dict.fromkeys(sentences)), [t for t in titles if t], tag_sets


def write_records(path: Path, n: int, seed: int = SEED) -> None:
    """``n`` records of 3–10 recombined sentences each, a third of them tagged."""
    sentences, titles, tag_sets = _sentences()
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            record: dict[str, Any] = {
                "_id": f"syn-{i:06d}",
                "title": rng.choice(titles),
                "text": " ".join(rng.choices(sentences, k=rng.randint(3, 10))),
            }
            if rng.random() < 0.33:
                record["tags"] = rng.choice(tag_sets)
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def build_vault(vault_path: Path, n: int = DEFAULT_DOCS) -> float:
    """Import ``n`` synthetic records (lexical keys only); returns the import's seconds."""
    records = vault_path.parent / f"records-{n}.jsonl"
    if not records.exists():
        write_records(records, n)
    started = time.perf_counter()
    with KnowledgeBase.open(vault_path) as kb:
        kb.import_records(records)
    return time.perf_counter() - started


def queries(n: int = 240, seed: int = SEED) -> list[str]:
    """Half SciFact queries, a quarter single words, a quarter quoted two-word phrases."""
    rng = random.Random(seed)
    scifact = [str(q["text"]) for q in _read_jsonl(SCIFACT / "queries.jsonl")]
    sentences, _titles, _tags = _sentences()
    words: list[str] = []
    phrases: list[str] = []
    for s in rng.sample(sentences, 4000):
        found = _WORD_RE.findall(s)
        if found:
            words.append(rng.choice(found).lower())
        if len(found) >= 2:
            k = rng.randrange(len(found) - 1)
            phrases.append(f'"{found[k].lower()} {found[k + 1].lower()}"')
    n_sci, n_word = n // 2, n // 4
    return (
        rng.sample(scifact, n_sci)
        + rng.sample(list(dict.fromkeys(words)), n_word)
        + rng.sample(list(dict.fromkeys(phrases)), n - n_sci - n_word)
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _read_once(vault: Path) -> None:
    """Read the vault's files (database and key folder) into the page cache."""
    files = [vault, *(p for p in Path(f"{vault}.keys").rglob("*") if p.is_file())]
    for file in files:
        with file.open("rb") as f:
            while f.read(1 << 22):
                pass


def measure(vault_path: Path | None = None, n_queries: int = 240) -> dict[str, Any]:
    """p50/p95 ms of lexical searches (10 hits, explained) on the vault, built when missing."""
    path = Path(vault_path) if vault_path is not None else DEFAULT_VAULT
    built_s = None
    if not path.exists():
        built_s = build_vault(path)
    qs = queries(n_queries)
    times: list[float] = []
    cpu: list[float] = []  # this thread's CPU time: what a quiet machine's wall would be
    _read_once(path)
    with KnowledgeBase.open(path, create=False) as kb:
        docs = kb.values.count()
        for q in qs[:20]:  # warm-up: analyzers, first reader
            kb.search(q, mode="lexical")
        by_kind: dict[str, list[float]] = {"scifact": [], "word": [], "phrase": []}
        half, quarter = n_queries // 2, n_queries // 4
        for i, q in enumerate(qs):
            started, cpu_started = time.perf_counter(), time.thread_time()
            kb.search(q, mode="lexical")
            ms = (time.perf_counter() - started) * 1000
            times.append(ms)
            cpu.append((time.thread_time() - cpu_started) * 1000)
            kind = "scifact" if i < half else "word" if i < half + quarter else "phrase"
            by_kind[kind].append(ms)
    return {
        "vault": str(path),
        "documents": docs,
        "import_s": None if built_s is None else round(built_s, 1),
        "queries": len(times),
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(_percentile(times, 0.95), 2),
        "mean_ms": round(statistics.fmean(times), 2),
        "cpu_p50_ms": round(statistics.median(cpu), 2),
        "cpu_p95_ms": round(_percentile(cpu, 0.95), 2),
        "p50_ms_by_kind": {k: round(statistics.median(v), 2) for k, v in by_kind.items()},
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
    }


def profile(vault_path: Path, n_queries: int = 240) -> None:
    """cProfile of the timed loop, top functions by cumulative time on stderr."""
    import cProfile
    import pstats

    qs = queries(n_queries)
    with KnowledgeBase.open(vault_path, create=False) as kb:
        for q in qs[:20]:
            kb.search(q, mode="lexical")
        prof = cProfile.Profile()
        prof.enable()
        for q in qs:
            kb.search(q, mode="lexical")
        prof.disable()
    pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)


# One kvdesk tree's searcher, fed queries on stdin (JSON lines), answering with the time taken
# and the JSON output of each search (to check that two trees give the same answers).
_WORKER = """
import json, sys, time
from kvdesk.core.knowledge_base import KnowledgeBase
kb = KnowledgeBase.open(sys.argv[1], create=False)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    started, cpu = time.perf_counter(), time.thread_time()
    result = kb.search(json.loads(line), mode="lexical")
    ms, cpu_ms = (time.perf_counter() - started) * 1000, (time.thread_time() - cpu) * 1000
    out = json.dumps(result.to_json(explain=True)["hits"], sort_keys=True)
    print(json.dumps({"ms": ms, "cpu_ms": cpu_ms, "out": out}), flush=True)
"""


def compare(vault_path: Path, against: Path, n_queries: int = 240) -> dict[str, Any]:
    """This tree against another kvdesk tree (a copy of the code before a change), query by
    query in alternating order, in two warm processes: medians and ratios from one run, and
    how many answers differ (hits, scores, explanations, snippets)."""
    import subprocess

    trees = {"this": ROOT, "against": against.resolve()}
    procs = {}
    for name, tree in trees.items():
        env = dict(os.environ, PYTHONPATH=str(tree), ORT_DISABLE_TELEMETRY="1")
        procs[name] = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(vault_path)],
            cwd=tempfile.gettempdir(),  # so that PYTHONPATH decides which kvdesk is imported
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(name: str, query: str) -> dict[str, Any]:
        proc = procs[name]
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(query) + "\n")
        proc.stdin.flush()
        return dict(json.loads(proc.stdout.readline()))

    for proc in procs.values():
        assert proc.stdout is not None
        if not proc.stdout.readline():
            raise RuntimeError("a search process did not start (see its error above)")
    qs = queries(n_queries)
    for q in qs[:20]:
        ask("this", q), ask("against", q)
    wall: dict[str, list[float]] = {name: [] for name in trees}
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    differ = 0
    for i, q in enumerate(qs):
        order = ("this", "against") if i % 2 else ("against", "this")
        answers = {name: ask(name, q) for name in order}
        for name, answer in answers.items():
            wall[name].append(answer["ms"])
            cpu[name].append(answer["cpu_ms"])
        differ += answers["this"]["out"] != answers["against"]["out"]
    for proc in procs.values():
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
    out: dict[str, Any] = {"queries": len(qs), "differing_answers": differ}
    for name in trees:
        out[name] = {
            "p50_ms": round(statistics.median(wall[name]), 2),
            "p95_ms": round(_percentile(wall[name], 0.95), 2),
            "cpu_p50_ms": round(statistics.median(cpu[name]), 2),
            "cpu_p95_ms": round(_percentile(cpu[name], 0.95), 2),
        }
    for key in ("p50_ms", "p95_ms", "cpu_p50_ms", "cpu_p95_ms"):
        out[f"speedup_{key[:-3]}"] = round(out["against"][key] / out["this"][key], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vault", type=Path, default=DEFAULT_VAULT)
    parser.add_argument("--docs", type=int, default=DEFAULT_DOCS, help="when building")
    parser.add_argument("--queries", type=int, default=240)
    parser.add_argument("--profile", action="store_true", help="cProfile instead of timing")
    parser.add_argument(
        "--against",
        type=Path,
        metavar="TREE",
        help="compare with the kvdesk package under TREE (e.g. a `git archive` of the commit"
        " before a change), query by query in one run",
    )
    args = parser.parse_args()
    if not args.vault.exists() and args.docs != DEFAULT_DOCS:
        build_vault(args.vault, args.docs)
    if args.profile:
        profile(args.vault, args.queries)
        return
    if args.against is not None:
        if not args.vault.exists():
            build_vault(args.vault)
        print(json.dumps(compare(args.vault, args.against, args.queries), indent=2))
        return
    print(json.dumps(measure(args.vault, args.queries), indent=2))


if __name__ == "__main__":
    main()
