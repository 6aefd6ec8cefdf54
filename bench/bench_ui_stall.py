"""Longest GUI event-loop stall while the app imports SciFact records in the background.

A 5 ms QTimer runs on the GUI thread while the main window imports the corpus through its own
task runner (the writer thread); the gaps between ticks, minus the interval, are the stalls a
user would feel. Prints max and p99 stall and the import rate.

With ``--scans N`` it imports N SciFact abstracts rendered as scanned A4 pages (150 dpi, tilted,
noisy JPEG, as bench/bench_scans.py makes them) instead, and measures the stalls while the app
OCRs them and keys their text in the background (OCR runs in its own process).

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_ui_stall.py \
        [--corpus /work/shared/eval/scifact/corpus.jsonl] [--limit N] [--dense] [--scans N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

DEFAULT_CORPUS = (
    Path(__file__).resolve().parents[2] / "shared" / "eval" / "scifact" / "corpus.jsonl"
)
TICK_MS = 5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--limit", type=int, default=0, help="only the first N records")
    ap.add_argument("--dense", action="store_true", help="also build dense keys afterwards")
    ap.add_argument("--scans", type=int, default=0, help="import N scanned pages instead")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kvdesk-bench-ui-"))
    os.environ["KVDESK_HOME"] = str(work)
    corpus = args.corpus
    if args.limit:
        corpus = work / "records.jsonl"
        with args.corpus.open("rb") as src, corpus.open("wb") as dst:
            for i, line in enumerate(src):
                if i >= args.limit:
                    break
                dst.write(line)

    scans = work / "scans"
    if args.scans:
        args.dense = True  # OCR runs as the first stage of the background key build
        scans.mkdir()
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import json
        import random

        from bench_scans import DEJAVU, render_doc, scan_jpeg

        rng = random.Random(14)
        face = (DEJAVU / "DejaVuSerif.ttf", DEJAVU / "DejaVuSerif-Bold.ttf", 0)
        with args.corpus.open(encoding="utf-8") as src:
            for n, line in enumerate(src):
                if n >= args.scans:
                    break
                doc = json.loads(line)
                img, _, _ = render_doc(doc["title"], doc["text"], face, cjk=False)
                (scans / f"scan-{doc['_id']}.jpg").write_bytes(scan_jpeg(img, rng))

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from kvdesk.core.knowledge_base import KnowledgeBase
    from kvdesk.ui.main_window import MainWindow

    app = QApplication(sys.argv[:1])  # noqa: F841 - must outlive the window
    window = MainWindow(
        KnowledgeBase.open(work / "vault.kvdb"), offer_samples=False, auto_dense=args.dense
    )
    window.resize(1280, 800)
    window.show()
    window.wait_idle()

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QEventLoop()
    results: dict[str, object] = {}

    def finished(report: object) -> None:
        results["report"] = report
        results["t_import"] = time.perf_counter()
        if not args.dense:
            loop.quit()

    window.importFinished.connect(finished)
    timer.start()
    started = time.perf_counter()
    if args.scans:
        window.import_paths([scans])
    else:
        window.import_records(str(corpus))
    if args.dense:
        QTimer.singleShot(0, lambda: None)

        def check() -> None:
            task = window.last_dense_task
            if "report" in results and task is not None and task.done:
                loop.quit()

        poll = QTimer()
        poll.timeout.connect(check)
        poll.start(50)
    loop.exec()
    timer.stop()
    ended = time.perf_counter()
    report = results.get("report")
    imported = len(getattr(report, "imported", [])) + len(getattr(report, "updated", []))
    gaps = sorted((b - a) * 1000 - TICK_MS for a, b in zip(ticks, ticks[1:], strict=False))
    p99 = gaps[int(0.99 * (len(gaps) - 1))] if gaps else 0.0
    t_import = float(results.get("t_import", ended)) - started  # type: ignore[arg-type]
    what = f"{args.scans} scanned pages" if args.scans else str(corpus)
    print(
        f"records: {what} ({imported} imported in {t_import:.1f} s,"
        f" {imported / max(t_import, 1e-9):.0f} docs/s)"
    )
    if args.scans:
        pages = window.session.kb.scans_pending()
        print(
            f"OCR and keys built in the background; total {ended - started:.1f} s,"
            f" {pages} pages still unread"
        )
    elif args.dense:
        print(f"dense keys built too; total {ended - started:.1f} s")
    print(f"event-loop ticks: {len(ticks)} (every {TICK_MS} ms)")
    print(f"max stall: {max(gaps, default=0.0):.1f} ms   p99 stall: {p99:.1f} ms")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
