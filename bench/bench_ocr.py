"""OCR speed and character accuracy on degraded A4 scans, English (SciFact) and Japanese (JaQuAD).

Usage:
    python bench/bench_ocr.py [--pages 5] [--variants t1 t2 t1-detfull t1-det960 t1-batch6]
        [--out bench/results/ocr.json]

Pages are A4 at 150 dpi (1240 x 1754), text 22 px high (10.5 pt), laid out the way a printed
abstract is: a bold title, then paragraphs wrapped to a 1020 px column. English is SciFact
(title + abstract, the next abstract continuing on the page); Japanese is JaQuAD passages of 200
characters or more, set in Noto Serif CJK JP and Noto Sans CJK JP (Debian ``fonts-noto-cjk``)
on alternate pages, or in kvdesk's subset font on passages it fully covers when those are not
installed (``font`` in the JSON says which). Each page is then scanned badly: turned grey,
rotated by up to +-1.5 degrees, given gaussian noise (sigma 10) and saved as JPEG quality 50.
The degradation is seeded (``--seed``), so runs compare.

Each variant runs in its own process through kvdesk's path (``ocr_document`` on the JPEG
bytes), so memory and thread settings do not leak between them:

* ``t1`` / ``t2``: kvdesk's defaults (detection on the page scaled to 1280 px, one line per
  recognition run) with one or two ONNX Runtime threads;
* ``t1-detfull``: detection at rapidocr's size (the whole 1240 x 1754 page);
* ``t1-det960``: detection on the page scaled to 960 px;
* ``t1-batch6``: one thread, recognising 6 lines per ONNX run (rapidocr's default) instead of 1.

Scores: ``accuracy`` = 1 - CER (Levenshtein distance / reference length, rapidfuzz), after NFKC
(full-width and half-width forms are one character to search) with whitespace collapsed
(English) or removed (Japanese, where OCR and the layout disagree on where spaces go);
``raw_accuracy`` without NFKC. ``confusions`` lists the commonest substitutions. Speed is
seconds per page (median) and pages/s over all pages; ``load_s`` is the model load; ``rss_mb``
is the process's memory after loading and its peak after reading.

``pdf``: the first variant also reads the English pages as one image-only PDF (Pillow's PDF
writer), rendered back at 150 dpi: the import path for scanned PDFs.
``rec_models``: the recognition models the rapidocr wheel ships, and whether rapidocr's
``Rec.lang_type`` (ch, japan, en) changes what the PP-OCRv6 model reads.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from rapidfuzz.distance import Levenshtein  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"
WIDTH, HEIGHT, MARGIN = 1240, 1754, 110
BODY_PX, TITLE_PX, LEADING = 22, 28, 1.55
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
NOTO = Path("/usr/share/fonts/opentype/noto")
SUBSET = ROOT / "kvdesk" / "resources" / "fonts" / "KvdeskNotoSansJP-Subset.otf"
VARIANTS: dict[str, dict[str, Any]] = {
    "t1": {"threads": 1},  # kvdesk's defaults
    "t2": {"threads": 2},
    "t1-detfull": {"threads": 1, "detect_side": None},  # rapidocr's detection size
    "t1-det960": {"threads": 1, "detect_side": 960},
    "t1-batch6": {"threads": 1},  # rapidocr's own recognition batch of 6 lines
}
REC_BATCH = {"t1-batch6": 6}


# -- pages ------------------------------------------------------------------------------------


def _font(path: Path, size: int, index: int = 0) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size, index=index)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, cjk: bool) -> list[str]:
    lines: list[str] = []
    for para in text.split("\n"):
        para = para.strip()
        if not para:
            continue
        if not cjk:
            current = ""
            for word in para.split():
                trial = f"{current} {word}".strip()
                if current and font.getlength(trial) > width:
                    lines.append(current)
                    current = word
                else:
                    current = trial
            if current:
                lines.append(current)
            continue
        current = ""
        for ch in para:
            if current and font.getlength(current + ch) > width:
                lines.append(current)
                current = ""
            current += ch
        if current:
            lines.append(current)
    return lines


def _page(
    items: list[tuple[str, str]],
    body: ImageFont.FreeTypeFont,
    title: ImageFont.FreeTypeFont,
    cjk: bool,
) -> tuple[Image.Image, list[str], int]:
    """A page filled with (title, text) items; its lines, and how many items it used."""
    img = Image.new("L", (WIDTH, HEIGHT), 255)
    draw = ImageDraw.Draw(img)
    y, lines, used = MARGIN, [], 0
    column = WIDTH - 2 * MARGIN
    for head, text in items:
        blocks = [(title, _wrap(head, title, column, cjk)), (body, _wrap(text, body, column, cjk))]
        for font, block in blocks:
            step = int(font.size * LEADING)
            for line in block:
                if y + step > HEIGHT - MARGIN:
                    return img, lines, used + 1
                draw.text((MARGIN, y), line, font=font, fill=0)
                lines.append(line)
                y += step
            y += step // 2
        used += 1
    return img, lines, used


def _scan(img: Image.Image, rng: random.Random) -> bytes:
    """Grey, tilted by up to 1.5 degrees, noisy, JPEG quality 50."""
    tilted = img.rotate(
        rng.uniform(-1.5, 1.5), resample=Image.Resampling.BICUBIC, fillcolor=255, expand=False
    )
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0.0, 10.0, (HEIGHT, WIDTH))
    pixels = np.clip(np.asarray(tilted, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, "JPEG", quality=50)
    return out.getvalue()


def _ja_fonts() -> tuple[list[tuple[Path, int]], str]:
    serif, sans = NOTO / "NotoSerifCJK-Regular.ttc", NOTO / "NotoSansCJK-Regular.ttc"
    if serif.exists() and sans.exists():
        return [(serif, 0), (sans, 0)], "Noto Serif CJK JP / Noto Sans CJK JP (fonts-noto-cjk)"
    return [(SUBSET, 0)], "kvdesk Noto Sans JP subset (passages it fully covers)"


def _covers(font: ImageFont.FreeTypeFont, text: str) -> bool:
    notdef = bytes(font.getmask("\ue000"))
    return all(ch.isspace() or bytes(font.getmask(ch)) != notdef for ch in set(text))


def make_pages(n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    sci = [json.loads(x) for x in (EVAL / "scifact" / "corpus.jsonl").open(encoding="utf-8")]
    rng.shuffle(sci)
    ja = [json.loads(x) for x in (EVAL / "jaquad-mteb" / "corpus.jsonl").open(encoding="utf-8")]
    ja = [d for d in ja if len(d["text"]) >= 200]
    rng.shuffle(ja)
    fonts, font_note = _ja_fonts()
    if fonts[0][0] == SUBSET:
        probe = _font(SUBSET, BODY_PX)
        ja = [d for d in ja if _covers(probe, d["title"] + d["text"])]
    en_body, en_title = (
        _font(DEJAVU / "DejaVuSerif.ttf", BODY_PX),
        _font(DEJAVU / "DejaVuSerif-Bold.ttf", TITLE_PX),
    )
    pages: dict[str, Any] = {"en": [], "ja": [], "ja_font": font_note}
    start = 0
    for _ in range(n):
        items = [(d["title"], d["text"]) for d in sci[start : start + 8]]
        img, lines, used = _page(items, en_body, en_title, cjk=False)
        start += used
        pages["en"].append({"jpeg": _scan(img, rng), "lines": lines})
    start = 0
    for i in range(n):
        path, index = fonts[i % len(fonts)]
        body, title = _font(path, BODY_PX, index), _font(path, TITLE_PX, index)
        items = [(d["title"], d["text"]) for d in ja[start : start + 8]]
        img, lines, used = _page(items, body, title, cjk=True)
        start += used
        pages["ja"].append({"jpeg": _scan(img, rng), "lines": lines})
    return pages


# -- scoring -----------------------------------------------------------------------------------


def _norm(text: str, lang: str, nfkc: bool = True) -> str:
    if nfkc:
        text = unicodedata.normalize("NFKC", text)
    return "".join(text.split()) if lang == "ja" else " ".join(text.split())


def accuracy(ref: str, hyp: str) -> float:
    return max(0.0, 1.0 - Levenshtein.distance(ref, hyp) / max(1, len(ref)))


def confusions(pairs: list[tuple[str, str]], top: int = 12) -> list[list[object]]:
    counts: Counter[tuple[str, str]] = Counter()
    for ref, hyp in pairs:
        for op in Levenshtein.editops(ref, hyp):
            if op.tag == "replace":
                counts[(ref[op.src_pos], hyp[op.dest_pos])] += 1
    return [[f"{a}->{b}", c] for (a, b), c in counts.most_common(top)]


# -- one variant (runs in a child process) ----------------------------------------------------


def _cpu() -> float:
    """CPU seconds of this process, all threads (the machine may be shared: wall time drifts)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def run_variant(name: str, folder: Path, with_pdf: bool) -> dict[str, Any]:
    import kvdesk.core.extract.ocr as ocr_module
    from kvdesk.core.extract.ocr import OcrEngine, ocr_document

    pages = json.loads((folder / "pages.json").read_text(encoding="utf-8"))
    if name in REC_BATCH:
        ocr_module._CPU_REC_BATCH = REC_BATCH[name]
    engine = OcrEngine(**VARIANTS[name])
    started = time.perf_counter()
    engine.load()
    out: dict[str, Any] = {
        "engine": engine.name,
        "provider": engine.provider,
        "load_s": round(time.perf_counter() - started, 2),
        "rss_mb_loaded": _rss_mb("VmRSS"),
    }
    for lang in ("en", "ja"):
        seconds, cpu, scores, raw, pairs = [], [], [], [], []
        for i, lines in enumerate(pages[lang]):
            data = (folder / f"{lang}{i}.jpg").read_bytes()
            t0, c0 = time.perf_counter(), _cpu()
            (page,) = ocr_document(data, "image/jpeg", engine=engine, max_pages=1)
            seconds.append(time.perf_counter() - t0)
            cpu.append(_cpu() - c0)
            ref, hyp = _norm("\n".join(lines), lang), _norm(page.text, lang)
            scores.append(accuracy(ref, hyp))
            raw.append(
                accuracy(_norm("\n".join(lines), lang, False), _norm(page.text, lang, False))
            )
            pairs.append((ref, hyp))
        out[lang] = {
            "pages": len(seconds),
            "s_per_page_median": round(statistics.median(seconds), 2),
            "cpu_s_per_page_median": round(statistics.median(cpu), 2),
            "pages_per_s": round(len(seconds) / sum(seconds), 3),
            "accuracy_median": round(statistics.median(scores), 4),
            "accuracy_min": round(min(scores), 4),
            "raw_accuracy_median": round(statistics.median(raw), 4),
            "confusions": confusions(pairs),
        }
    if with_pdf:
        images = [Image.open(folder / f"en{i}.jpg") for i in range(len(pages["en"]))]
        buf = io.BytesIO()
        images[0].save(buf, "PDF", resolution=150.0, save_all=True, append_images=images[1:])
        t0 = time.perf_counter()
        read = ocr_document(buf.getvalue(), "application/pdf", engine=engine, max_pages=100)
        elapsed = time.perf_counter() - t0
        scores = [
            accuracy(_norm("\n".join(lines), "en"), _norm(p.text, "en"))
            for lines, p in zip(pages["en"], read, strict=True)
        ]
        out["pdf"] = {
            "pages": len(read),
            "pages_per_s": round(len(read) / elapsed, 3),
            "accuracy_median": round(statistics.median(scores), 4),
        }
    out["rss_mb_peak"] = _rss_mb("VmHWM")
    return out


def rec_models(folder: Path) -> dict[str, Any]:
    """Which rec models the wheel ships, and whether Rec.lang_type changes the output."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    from rapidocr import LangRec, RapidOCR

    from kvdesk.core.extract.ocr import model_paths

    paths = model_paths()
    shipped = sorted(p.name for p in paths["rec"].parent.glob("*.onnx"))
    img = Image.open(folder / "ja0.jpg").convert("RGB")
    crop = np.ascontiguousarray(np.asarray(img.crop((0, 0, WIDTH, 600)))[:, :, ::-1])
    texts = {}
    for lang in ("ch", "japan", "en"):
        ocr = RapidOCR(
            params={
                "Global.log_level": "error",
                "Det.model_path": str(paths["det"]),
                "Cls.model_path": str(paths["cls"]),
                "Rec.model_path": str(paths["rec"]),
                "Rec.lang_type": LangRec(lang),
                "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            }
        )
        texts[lang] = "\n".join(ocr(crop).txts or ())
    return {
        "onnx_files_in_wheel": shipped,
        "rec_candidates": [n for n in shipped if "_rec_" in n],
        "lang_type_changes_output": len(set(texts.values())) > 1,
        "chars_read": len(texts["japan"]),
    }


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=5, help="A4 pages per language")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ocr.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--pdf", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        if args.worker == "rec_models":
            print(json.dumps(rec_models(args.folder)))
        else:
            print(json.dumps(run_variant(args.worker, args.folder, args.pdf)))
        return

    t0 = time.perf_counter()
    pages = make_pages(args.pages, args.seed)
    result: dict[str, Any] = {
        "machine": f"{os.cpu_count()} CPU cores",
        "load_average_before": round(os.getloadavg()[0], 2),
        "page": f"A4 {WIDTH}x{HEIGHT} px (150 dpi), text {BODY_PX} px, JPEG q50",
        "ja_font": pages["ja_font"],
        "variants": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        listing: dict[str, list[list[str]]] = {"en": [], "ja": []}
        for lang in ("en", "ja"):
            for i, page in enumerate(pages[lang]):
                (folder / f"{lang}{i}.jpg").write_bytes(page["jpeg"])
                listing[lang].append(page["lines"])
        (folder / "pages.json").write_text(json.dumps(listing, ensure_ascii=False), "utf-8")
        print(f"pages made in {time.perf_counter() - t0:.1f} s; font: {pages['ja_font']}")
        env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1"}
        for n, name in enumerate(args.variants):
            cmd = [sys.executable, __file__, "--worker", name, "--folder", str(folder)]
            if n == 0:
                cmd.append("--pdf")
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            result["variants"][name] = row
            print(_summary(name, row))
        done = subprocess.run(
            [sys.executable, __file__, "--worker", "rec_models", "--folder", str(folder)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        result["rec_models"] = json.loads(done.stdout.strip().splitlines()[-1])
        print("rec models:", result["rec_models"])
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s)")


def _summary(name: str, row: dict[str, Any]) -> str:
    parts = [f"{name}: load {row['load_s']} s, RSS {row['rss_mb_loaded']}/{row['rss_mb_peak']} MB"]
    for lang in ("en", "ja"):
        r = row[lang]
        parts.append(
            f"  {lang}: {r['s_per_page_median']} s/page ({r['pages_per_s']} pages/s, "
            f"{r['cpu_s_per_page_median']} CPU-s/page), "
            f"accuracy median {r['accuracy_median']} (min {r['accuracy_min']}, "
            f"raw {r['raw_accuracy_median']}); confusions {r['confusions'][:6]}"
        )
    if "pdf" in row:
        parts.append(f"  pdf: {row['pdf']}")
    return "\n".join(parts)


if __name__ == "__main__":
    main()
