"""The example queries of the "real documents, real questions" issue, on Debian's own manuals.

Usage:
    python bench/bench_examples.py DOCS_DIR [--work /tmp/kvdesk-examples]

DOCS_DIR: e.g. the debian-reference package unpacked (``apt-get download debian-reference-en
debian-reference-ja`` then ``dpkg-deb -x``: HTML chapters, PDFs, text). Two small PNG icons named
``home.png`` and ``network.png`` are added (a value whose only text is its file name). Prints,
for each query, the mode, whether it is confident, and the top hits with weight and matched
words as the explanation groups them.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from kvdesk.core.knowledge_base import KnowledgeBase  # noqa: E402
from kvdesk.core.search.terms import group_terms  # noqa: E402

QUERIES = [
    ("how do I put a package on hold", "hybrid"),
    ("how many vacation days do I get", "hybrid"),
    ("purple elephant lasagna recipe", "hybrid"),
    ("network", "dense"),
    ("type:pdf colloquially", "hybrid"),
    ("ネットワーク設定", "lexical"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("docs", type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/kvdesk-examples"))
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    icons = args.work / "icons"
    icons.mkdir()
    for name in ("home", "network"):
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), "navy").save(buf, format="PNG")
        (icons / f"{name}.png").write_bytes(buf.getvalue())
    with KnowledgeBase.open(args.work / "examples.kvdb") as kb:
        report = kb.import_paths([args.docs, icons])
        print(f"imported {len(report.imported)}, skipped {len(report.skipped)}")
        kb.build_dense_keys()
        for query, mode in QUERIES:
            result = kb.search(query, k=3, mode=mode)
            print(f"\n{query!r} ({mode}): confident={result.confident}")
            for hit in result.hits:
                words = ""
                if hit.explanation.lexical is not None:
                    groups = group_terms(hit.explanation.lexical.terms)
                    words = ", ".join(f"{g.word} {g.score:.3f}" for g in groups[:6])
                print(
                    f"  {hit.title[:60]!r} score {hit.score:.3f} weight {hit.weight:.0%}  {words}"
                )


if __name__ == "__main__":
    main()
