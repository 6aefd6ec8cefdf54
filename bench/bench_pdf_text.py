"""PDF text extractors compared on word boundaries and speed, English and Japanese.

Usage:
    pip install pdfminer.six   # optional: the comparison only, not a kvdesk dependency
    python bench/bench_pdf_text.py [--real DIR_OR_PDF ...] [--speed-pages 60] [--repeat 3]
        [--out bench/results/pdf_text.json]

LaTeX (pdfTeX, dvipdfmx) writes no space characters: an inter-word space is a move inside a
TJ array (``[(differences)-333(can)-333(be)]TJ``). An extractor that does not turn such moves
into spaces glues the words of a line together, and no search finds them.

Two kinds of input:

* generated: PDFs built the way XeLaTeX/dvipdfmx write them (a Type0 font, Identity-H glyph
  codes with a ToUnicode map, a subset without a space glyph whose code 0x20 is a wide letter;
  one TJ array per line), the true words known exactly: ``latex`` (word gaps of 0.22-0.33 em,
  kerning inside words) and ``tight`` (gaps of 0.16-0.20 em, a squeezed justified line);
  Japanese: Japanese runs and Latin words in one line, and a sentence wrapped mid-word.
  The font is what makes pypdf glue: it takes the width of code 0x20 for the space width.
* real: each PDF given with ``--real`` whose plain-text twin (``NAME.txt.gz`` or ``NAME.txt``
  beside it, e.g. Debian's ``debian-reference-en``/``-ja`` packages: ``apt-get download``, then
  ``dpkg-deb -x``) is the reference for the words.

Scores, per extractor and input:

* ``word_recall``: share of the known word tokens (``[A-Za-z0-9]+``, case folded, counted with
  multiplicity) that come out as whole tokens;
* ``glued``: share of the extracted tokens that are not known words but two or more known
  words run together (``differencescanbe``);
* ``cjk_recall`` (Japanese): share of the known CJK bigrams (generated: of the CJK runs) that
  come out intact, after kvdesk's joining of lines wrapped inside Japanese text;
* ``pages_per_s``: pages per second on the first ``--speed-pages`` pages, median of
  ``--repeat`` runs.

``kvdesk`` is the product's own path (``kvdesk.core.extract.extract``) on the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import json
import random
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kvdesk.core.extract import extract  # noqa: E402
from kvdesk.core.extract.documents import _CJK, _CJK_WRAP  # noqa: E402

WORD = re.compile(r"[A-Za-z0-9]+")
CJK_RUN = re.compile(f"[{_CJK}]+")

EN = (
    "From the user's perspective, the differences can be colloquially summarized as follows. "
    "Wayland is a same-host graphical communication protocol: new, simpler and faster, with no "
    "setuid root binary. The X Window System is a network-capable protocol: traditional, "
    "complex and slower, with a setuid root binary. Please check the freedesktop site for how "
    "the Wayland architecture is different from the X Window architecture. Packages are "
    "installed with apt, which resolves dependencies and downloads archives from a mirror. "
    "A package on hold is never upgraded until the hold is released by the administrator. "
    "Quarterly reports list revenue for every region, and the travel policy explains how many "
    "vacation days an employee gets in the first year. Office workers type whole questions "
    "into the search box and expect the words on the page to be found exactly as written. "
    "Typography with tight kerning moves each glyph by a fraction of an em instead of writing "
    "a space character, which is why careful extraction matters for every search engine."
)
JA_LINES = [
    ("GNOME", "デスクトップで使用されうる", "GUI", "通信プロトコルについて説明します。"),
    ("Wayland", "は同一ホスト用の新しい通信プロトコルで、", "setuid", "root", "が不要です。"),
    ("X Window System", "はネットワーク越しに使える伝統的なプロトコルです。"),
    ("Debian", "のパッケージは", "apt", "でインストールし、依存関係は自動で解決されます。"),
    ("日本語の検索エンジンは文書を探すための道具であり、行の途中で折り返された文も一つの文として",),
    ("扱われなければなりません。", "PDF", "の文字の間隔は狭いことがあります。"),
]


# -- generated PDFs ------------------------------------------------------------------------


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line] if line else lines


def identity_h_pdf(
    pages: list[list[list[str]]], gaps: tuple[float, float], kern: bool, seed: int
) -> bytes:
    """Pages of lines of words, as XeLaTeX/dvipdfmx write them: a Type0 font with Identity-H
    encoding (glyph ids, a ToUnicode map, no space glyph in the subset, code 0x20 a wide letter)
    and one TJ array per line whose word gaps are moves of ``gaps`` thousandths of an em."""
    from pypdf import PdfWriter
    from pypdf.generic import (
        ArrayObject,
        DecodedStreamObject,
        DictionaryObject,
        NameObject,
        NumberObject,
        TextStringObject,
    )
    from reportlab.pdfbase.pdfmetrics import stringWidth

    rng = random.Random(seed)
    chars = sorted({ch for page in pages for line in page for word in line for ch in word})
    gids = {ch: 3 + i for i, ch in enumerate(chars)}
    wide = max(chars, key=lambda ch: (ord(ch) < 0x2000, stringWidth(ch, "Times-Roman", 1)))
    at_32 = next((ch for ch, g in gids.items() if g == 32), None)
    if at_32 is not None:
        gids[at_32] = gids[wide]
    gids[wide] = 32  # code 0x20 is a wide letter, as in a real subset

    def width(ch: str) -> int:
        return 1000 if ord(ch) > 0x2000 else round(stringWidth(ch, "Times-Roman", 1000))

    n = NameObject
    cmap = DecodedStreamObject()
    cmap.set_data(
        "\n".join(
            [
                "/CIDInit /ProcSet findresource begin 12 dict begin begincmap",
                "/CMapName /Adobe-Identity-UCS def /CMapType 2 def",
                "1 begincodespacerange <0000> <FFFF> endcodespacerange",
                f"{len(gids)} beginbfchar",
                *(f"<{g:04X}> <{ch.encode('utf-16-be').hex()}>" for ch, g in gids.items()),
                "endbfchar endcmap CMapName currentdict /CMap defineresource pop end end",
            ]
        ).encode()
    )
    widths = ArrayObject()
    for ch, g in sorted(gids.items(), key=lambda item: item[1]):
        widths += [NumberObject(g), ArrayObject([NumberObject(width(ch))])]
    writer = PdfWriter()
    descriptor = DictionaryObject(
        {
            n("/Type"): n("/FontDescriptor"),
            n("/FontName"): n("/KVDESK+Serif"),
            n("/Flags"): NumberObject(32),
            n("/FontBBox"): ArrayObject([NumberObject(v) for v in (-168, -218, 1000, 898)]),
            n("/ItalicAngle"): NumberObject(0),
            n("/Ascent"): NumberObject(891),
            n("/Descent"): NumberObject(-216),
            n("/CapHeight"): NumberObject(662),
            n("/StemV"): NumberObject(80),
        }
    )
    system = {"/Registry": "Adobe", "/Ordering": "Identity"}
    cid_font = DictionaryObject(
        {
            n("/Type"): n("/Font"),
            n("/Subtype"): n("/CIDFontType2"),
            n("/BaseFont"): n("/KVDESK+Serif"),
            n("/CIDSystemInfo"): DictionaryObject(
                {n(k): TextStringObject(v) for k, v in system.items()}
                | {n("/Supplement"): NumberObject(0)}
            ),
            n("/FontDescriptor"): writer._add_object(descriptor),
            n("/DW"): NumberObject(1000),
            n("/W"): widths,
            n("/CIDToGIDMap"): n("/Identity"),
        }
    )
    font = writer._add_object(
        DictionaryObject(
            {
                n("/Type"): n("/Font"),
                n("/Subtype"): n("/Type0"),
                n("/BaseFont"): n("/KVDESK+Serif"),
                n("/Encoding"): n("/Identity-H"),
                n("/DescendantFonts"): ArrayObject([writer._add_object(cid_font)]),
                n("/ToUnicode"): writer._add_object(cmap),
            }
        )
    )
    for lines in pages:
        page = writer.add_blank_page(595, 842)
        ops = ["BT", "/F1 10 Tf", "13 TL", "72 770 Td"]
        for line in lines:
            parts: list[str] = []
            for i, word in enumerate(line):
                if i:
                    parts.append(f"{-rng.uniform(*gaps):.0f}")
                pieces = [word]
                if kern and len(word) > 3:  # pair kerning inside a word (LaTeX's "Wa", "fo")
                    cut = rng.randrange(1, len(word))
                    pieces = [word[:cut], word[cut:]]
                hexed = ["<" + "".join(f"{gids[ch]:04X}" for ch in p) + ">" for p in pieces]
                parts.append(f" {rng.choice((15, 30, 55))} ".join(hexed))
            ops += ["[" + " ".join(parts) + "] TJ", "T*"]
        ops.append("ET")
        content = DecodedStreamObject()
        content.set_data("\n".join(ops).encode())
        page[n("/Contents")] = writer._add_object(content)
        page[n("/Resources")] = DictionaryObject({n("/Font"): DictionaryObject({n("/F1"): font})})
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def generated_en(style: str, pages: int = 3) -> tuple[bytes, str]:
    lines = [line.split() for line in _wrap(EN, 78)]
    gaps = (222.0, 333.0) if style == "latex" else (160.0, 200.0)
    data = identity_h_pdf([lines] * pages, gaps, kern=style == "latex", seed=1)
    return data, "\n".join(" ".join(line) for line in lines * pages)


def generated_ja(pages: int = 3) -> tuple[bytes, str]:
    lines = [[w for chunk in chunks for w in chunk.split()] for chunks in JA_LINES]
    data = identity_h_pdf([lines] * pages, (200.0, 300.0), kern=False, seed=2)
    return data, "\n".join(" ".join(line) for line in lines * pages)


# -- extractors ----------------------------------------------------------------------------


def ex_pypdf(data: bytes, limit: int | None) -> list[str]:
    import pypdf

    pages = pypdf.PdfReader(io.BytesIO(data), strict=False).pages[:limit]
    return [p.extract_text() or "" for p in pages]


def ex_pypdf_layout(data: bytes, limit: int | None) -> list[str]:
    import pypdf

    pages = pypdf.PdfReader(io.BytesIO(data), strict=False).pages[:limit]
    return [p.extract_text(extraction_mode="layout") or "" for p in pages]


def ex_pdfium(data: bytes, limit: int | None) -> list[str]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(data)
    out = []
    try:
        for i in range(min(len(doc), limit or len(doc))):
            page = doc[i]
            textpage = page.get_textpage()
            out.append(textpage.get_text_range())
            textpage.close()
            page.close()
    finally:
        doc.close()
    return out


def ex_pdfminer(data: bytes, limit: int | None) -> list[str]:
    from pdfminer.high_level import extract_text

    numbers = range(limit) if limit else None
    return extract_text(io.BytesIO(data), page_numbers=numbers).split("\x0c")


def ex_kvdesk(data: bytes, limit: int | None) -> list[str]:
    from kvdesk.core.extract import Limits

    text = extract(data, "bench.pdf", Limits()).text
    return text.split("\n\n")


EXTRACTORS: dict[str, Callable[[bytes, int | None], list[str]]] = {
    "pypdf (plain)": ex_pypdf,
    "pypdf (layout)": ex_pypdf_layout,
    "pdfminer.six": ex_pdfminer,
    "pypdfium2": ex_pdfium,
    "kvdesk": ex_kvdesk,
}


# -- scoring -------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    return [t.casefold() for t in WORD.findall(text)]


def _is_glued(token: str, vocab: set[str]) -> bool:
    """True when token is two or more known words run together (known words of 2+ letters,
    plus 'a' and 'i')."""
    n = len(token)
    best = [0] + [-1] * n  # best[i]: most words ending at i (-1: unreachable)
    for end in range(1, n + 1):
        for start in range(max(0, end - 30), end):
            piece = token[start:end]
            if best[start] >= 0 and piece in vocab and (len(piece) > 1 or piece in "ai"):
                best[end] = max(best[end], best[start] + 1)
    return best[n] >= 2


def score(text: str, truth: str, cjk_runs: bool) -> dict[str, float]:
    text = _CJK_WRAP.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    truth_tokens = Counter(_tokens(truth))
    got = Counter(_tokens(text))
    vocab = set(truth_tokens)
    hits = sum(min(n, got[w]) for w, n in truth_tokens.items())
    recall = hits / max(1, sum(truth_tokens.values()))
    unknown = [(w, n) for w, n in got.items() if w not in vocab]
    glued = sum(n for w, n in unknown if _is_glued(w, vocab)) / max(1, sum(got.values()))
    out = {"word_recall": round(recall, 4), "glued": round(glued, 4)}
    if CJK_RUN.search(truth):
        if cjk_runs:  # generated: each known run must come out whole
            runs = CJK_RUN.findall(truth)
            out["cjk_recall"] = round(sum(r in text for r in runs) / len(runs), 4)
        else:
            want = Counter(b for r in CJK_RUN.findall(truth) for b in _bigrams(r))
            have = Counter(b for r in CJK_RUN.findall(text) for b in _bigrams(r))
            hit = sum(min(n, have[b]) for b, n in want.items())
            out["cjk_recall"] = round(hit / max(1, sum(want.values())), 4)
    return out


def _bigrams(run: str) -> list[str]:
    return [run[i : i + 2] for i in range(len(run) - 1)]


def _pages(data: bytes) -> int:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(data)
    try:
        return len(doc)
    finally:
        doc.close()


def _real_inputs(paths: list[Path]) -> list[tuple[str, bytes, str]]:
    found: list[tuple[str, bytes, str]] = []
    for path in paths:
        for pdf in sorted(path.rglob("*.pdf")) if path.is_dir() else [path]:
            stem = pdf.with_suffix("")
            twins = (Path(f"{stem}.txt.gz"), Path(f"{stem}.txt"))
            twin = next((p for p in twins if p.exists()), None)
            if twin is None:
                print(f"skipped {pdf}: no {stem.name}.txt(.gz) beside it", file=sys.stderr)
                continue
            raw = twin.read_bytes()
            raw = gzip.decompress(raw) if twin.suffix == ".gz" else raw
            truth = raw.decode("utf-8", "replace")
            found.append((pdf.name, pdf.read_bytes(), truth))
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, nargs="*", default=[])
    ap.add_argument("--speed-pages", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="extractor names to run (default: all)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    inputs: list[tuple[str, bytes, str, bool]] = []
    for style in ("latex", "tight"):
        data, truth = generated_en(style)
        inputs.append((f"generated en/{style}", data, truth, True))
    data, truth = generated_ja()
    inputs.append(("generated ja/mixed", data, truth, True))
    inputs += [(f"real {name}", d, t, False) for name, d, t in _real_inputs(args.real)]

    extractors = {k: v for k, v in EXTRACTORS.items() if not args.only or k in args.only}
    if importlib.util.find_spec("pdfminer") is None:
        print("pdfminer.six is not installed (pip install pdfminer.six): skipped", file=sys.stderr)
        extractors.pop("pdfminer.six", None)
    rows = []
    for label, data, truth, generated in inputs:
        n_pages = _pages(data)
        for name, fn in extractors.items():
            text = "\n\n".join(fn(data, None))
            row: dict[str, object] = {"input": label, "pages": n_pages, "extractor": name}
            row.update(score(text, truth, cjk_runs=generated))
            limit = min(n_pages, args.speed_pages)
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                fn(data, limit if name != "kvdesk" else None)
                times.append(time.perf_counter() - start)
            speed_pages = limit if name != "kvdesk" else n_pages
            row["pages_per_s"] = round(speed_pages / statistics.median(times), 1)
            rows.append(row)
            print(
                f"{label:38s} {name:15s} recall {row['word_recall']:.3f}  glued "
                f"{row['glued']:.3f}  cjk {row.get('cjk_recall', '-')!s:6s}  "
                f"{row['pages_per_s']:7.1f} pages/s",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
