"""What context keys of short documents cost at import: records imported with this tree's
kvdesk and, beside it in the same run, another tree's (say the code before them).

Usage:
    python bench/bench_quotes_import.py [--against TREE] [--rounds 2] [--eval-dir ../shared/eval]

Collections, each imported into a fresh vault per round (values and lexical keys):
- scifact: SciFact's 5,183 abstracts (no short documents);
- jaquad: JaQuAD's 3,014 documents (1,844 of them short answer strings);
- shorts: 3,000 SciFact abstracts, three 3-word excerpts of each as short documents (common
  phrases: the hard case, quoted by many documents) and 6,000 short notes quoted nowhere
  (18,000 records, seeded).

Each import runs in a fresh process; trees alternate within a round. Prints seconds per import
(median over rounds) and the ratio of this tree to the other.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from kvdesk.core.knowledge_base import KnowledgeBase
started = time.perf_counter()
with KnowledgeBase.open(Path(sys.argv[3]) / "v.kvdb") as kb:
    kb.import_records(sys.argv[2])
print(time.perf_counter() - started)
"""


def shorts_records(eval_dir: Path, path: Path, seed: int = 1) -> Path:
    rng = random.Random(seed)
    lines = (eval_dir / "scifact" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    rows = []
    for i, line in enumerate(lines[:3000]):
        doc = json.loads(line)
        rows.append({"_id": f"L{i}", "title": doc["title"], "text": doc["text"]})
        words = doc["text"].split()
        for j in range(3):
            if len(words) > 6:
                k = rng.randrange(len(words) - 3)
                rows.append(
                    {"_id": f"S{i}-{j}", "title": doc["title"], "text": " ".join(words[k : k + 3])}
                )
    for j in range(6000):
        rows.append({"_id": f"N{j}", "title": "", "text": f"note {j} room {rng.randrange(999)}"})
    rng.shuffle(rows)
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


def timed_import(tree: Path, records: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="kvdesk-qi-") as folder:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(tree), str(records), folder],
            capture_output=True,
            text=True,
            check=True,
        )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, default=None, help="another kvdesk tree")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--eval-dir", type=Path, default=HERE.parents[1] / "shared" / "eval")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kvdesk-qi-records-"))
    collections = {
        "scifact": args.eval_dir / "scifact" / "corpus.jsonl",
        "jaquad": args.eval_dir / "jaquad-mteb" / "corpus.jsonl",
        "shorts": shorts_records(args.eval_dir, work / "shorts.jsonl"),
    }
    trees = {"this": HERE.parent}
    if args.against is not None:
        trees["other"] = args.against.resolve()
    results: dict[str, dict[str, float]] = {}
    for name, records in collections.items():
        times: dict[str, list[float]] = {t: [] for t in trees}
        for round_ in range(args.rounds):
            order = list(trees) if round_ % 2 == 0 else list(trees)[::-1]
            for tree in order:
                times[tree].append(timed_import(trees[tree], records))
        row = {t: round(statistics.median(v), 2) for t, v in times.items()}
        if "other" in row:
            row["ratio_this_over_other"] = round(row["this"] / row["other"], 2)
        results[name] = row
        print(name, row, file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
