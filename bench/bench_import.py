"""Import benchmark: records and a generated folder of mixed formats, values + lexical keys.

Usage:
    python bench/bench_import.py [--records ../shared/eval/scifact/corpus.jsonl]
        [--files 600] [--repeat 3] [--work /tmp/kvdesk-bench-import]

Reports, as medians over ``--repeat`` fresh vaults:
- records import rate (documents/s) and the vault's size against the raw bytes imported;
- file import rate on a folder of .txt/.md/.html/.csv/.json/.docx/.pdf/.png files generated here
  (PDFs with reportlab, .docx with python-docx: both in the ``test`` extra);
- a re-import of the unchanged folder (the incremental path: no file is read again).
Dense keys are not included (they have their own benchmark: bench_retrieval.py).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kvdesk.core.knowledge_base import KnowledgeBase  # noqa: E402


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def vault_bytes(vault: Path) -> int:
    files = [vault, Path(str(vault) + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists())


def make_mixed_folder(root: Path, n: int, corpus: list[dict[str, str]]) -> None:
    import docx
    from PIL import Image
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    root.mkdir(parents=True)
    kinds = ["txt", "md", "html", "csv", "json", "docx", "pdf", "png"]
    for i in range(n):
        doc = corpus[i % len(corpus)]
        title, text = doc["title"], doc["text"]
        kind = kinds[i % len(kinds)]
        path = root / f"sub{i % 7}" / f"doc{i:05}.{kind}"
        path.parent.mkdir(exist_ok=True)
        if kind == "txt":
            path.write_text(f"{title}\n\n{text}")
        elif kind == "md":
            path.write_text(f"# {title}\n\n{text}\n")
        elif kind == "html":
            path.write_text(
                f"<html><head><title>{title}</title></head><body><p>{text}</p></body></html>"
            )
        elif kind == "csv":
            path.write_text("id,title\n" + f'{i},"{title.replace(chr(34), "")}"\n')
        elif kind == "json":
            path.write_text(json.dumps({"title": title, "text": text}))
        elif kind == "docx":
            d = docx.Document()
            d.core_properties.title = title
            d.add_heading(title, 1)
            d.add_paragraph(text)
            d.save(str(path))
        elif kind == "pdf":
            c = canvas.Canvas(str(path), pagesize=A4)
            c.setTitle(title)
            y = 800
            for start in range(0, min(len(text), 2400), 90):
                c.drawString(40, y, text[start : start + 90])
                y -= 14
            c.save()
        else:
            buf = io.BytesIO()
            Image.new("RGB", (64, 48), (i % 255, 80, 160)).save(buf, "PNG")
            path.write_bytes(buf.getvalue())


def main() -> int:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--records", type=Path, default=here.parent / "shared/eval/scifact/corpus.jsonl"
    )
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kvdesk-bench-import"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    corpus = [json.loads(line) for line in args.records.read_text().splitlines() if line.strip()]
    folder = args.work / "mixed"
    make_mixed_folder(folder, args.files, corpus)

    rec_rates, rec_ratio, key_ratio, file_rates, reimport_rates = [], [], [], [], []
    for round_ in range(args.repeat):
        vault = args.work / f"records{round_}.kvdb"
        with KnowledgeBase.open(vault) as kb:
            t0 = time.perf_counter()
            report = kb.import_records(args.records)
            elapsed = time.perf_counter() - t0
        rec_rates.append(len(report.imported) / elapsed)
        keys = vault.with_name(vault.name + ".keys")
        rec_ratio.append(vault_bytes(vault) / args.records.stat().st_size)
        key_ratio.append(folder_size(keys) / args.records.stat().st_size)

        vault = args.work / f"files{round_}.kvdb"
        with KnowledgeBase.open(vault) as kb:
            t0 = time.perf_counter()
            report = kb.import_paths([folder])
            elapsed = time.perf_counter() - t0
            file_rates.append(len(report.imported) / elapsed)
            assert not report.failed, report.failed[:3]
            t0 = time.perf_counter()
            again = kb.import_paths([folder])
            reimport_rates.append(len(again.unchanged) / (time.perf_counter() - t0))

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "records_file": str(args.records),
        "records": len(corpus),
        "records_docs_per_s_median": round(statistics.median(rec_rates), 1),
        "records_docs_per_s_all": [round(r, 1) for r in rec_rates],
        "vault_bytes_over_raw_bytes": round(statistics.median(rec_ratio), 2),
        "lexical_keys_bytes_over_raw_bytes": round(statistics.median(key_ratio), 2),
        "files": args.files,
        "files_raw_mib": round(folder_size(folder) / 2**20, 2),
        "files_docs_per_s_median": round(statistics.median(file_rates), 1),
        "files_docs_per_s_all": [round(r, 1) for r in file_rates],
        "unchanged_reimport_files_per_s_median": round(statistics.median(reimport_rates), 1),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
