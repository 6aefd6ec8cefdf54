"""OCR with the real engine on images and PDFs drawn at test time, English and Japanese."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

from kvdesk.core.errors import Cancelled, ExtractionError
from kvdesk.core.extract.ocr import (
    OcrEngine,
    OcrPage,
    OcrWord,
    fix_kana_lookalikes,
    model_paths,
    ocr_document,
    page_count,
    pages_of,
    pdf_pages_without_text,
)
from kvdesk.core.progress import CancelToken, Progress
from tests.images import png_header_only

ROOT = Path(__file__).resolve().parents[2]
JP_FONT = ROOT / "kvdesk" / "resources" / "fonts" / "KvdeskNotoSansJP-Subset.otf"
Box = tuple[int, int, int, int]

EN_LINES = ["Invoice 2024-0815", "quick brown fox", "jumps over the dog"]
# Common words the shipped subset font covers; no カ, which the model confuses with 力.
JA_LINES = ["東京都の天気", "会議は午後三時", "ひらがなとテスト"]


def _font(size: int, cjk: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans for English where installed (most Linux), else the shipped font (has ASCII)."""
    if not cjk:
        try:
            return ImageFont.truetype("DejaVuSans.ttf", size)
        except OSError:
            pass
    return ImageFont.truetype(str(JP_FONT), size)


def draw_lines(
    lines: list[str], *, cjk: bool = False, size: int = 30, width: int = 520
) -> tuple[Image.Image, dict[str, Box]]:
    """White page, black text; returns the image and the drawn box of each word (or CJK char)."""
    font = _font(size, cjk)
    step = int(size * 1.8)
    img = Image.new("RGB", (width, 40 + step * len(lines)), "white")
    draw = ImageDraw.Draw(img)
    boxes: dict[str, Box] = {}
    for row, line in enumerate(lines):
        x, y = 24.0, 20 + row * step
        draw.text((x, y), line, font=font, fill="black")
        start = 0
        for unit in list(line) if cjk else line.split(" "):
            start = line.index(unit, start)
            if unit.strip():
                left = x + font.getlength(line[:start])
                x0, y0, x1, y1 = draw.textbbox((left, y), unit, font=font)
                boxes[unit] = (int(x0), int(y0), int(x1), int(y1))
            start += len(unit)
    return img, boxes


def accuracy(expected: str, got: str) -> float:
    """1 - character error rate, after NFKC and with whitespace ignored."""
    ref = "".join(unicodedata.normalize("NFKC", expected).split())
    hyp = "".join(unicodedata.normalize("NFKC", got).split())
    return 1.0 - Levenshtein.distance(ref, hyp) / max(1, len(ref))


def overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / max(1, smaller)


def word(page: OcrPage, text: str) -> OcrWord:
    found = [w for w in page.words if w.text == text]
    assert found, f"{text!r} not among {[w.text for w in page.words]}"
    return found[0]


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()




@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return OcrEngine(threads=1)


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the network fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# -- the engine ---------------------------------------------------------------------------


def test_creating_an_engine_loads_nothing() -> None:
    code = (
        "import sys\n"
        "from kvdesk.core.extract.ocr import OcrEngine\n"
        "e = OcrEngine()\n"
        "print(e.loaded, e.provider, 'rapidocr' in sys.modules, 'onnxruntime' in sys.modules)\n"
        "print(e.name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    flags, name = done.stdout.splitlines()
    assert flags == "False None False False"
    assert name == "rapidocr-3.10.0/PP-OCRv6-small"
    assert OcrEngine(detect_side=None).name == "rapidocr-3.10.0/PP-OCRv6-small/detfull"
    assert all(path.is_file() for path in model_paths().values())


def test_models_load_on_first_read_from_the_wheel_without_network(no_network: None) -> None:
    fresh = OcrEngine(threads=1)
    assert not fresh.loaded
    img, _ = draw_lines(["offline read"])
    page = fresh.read_image(img)
    assert fresh.loaded and fresh.provider == "CPUExecutionProvider"
    assert fresh.load_seconds is not None and fresh.load_seconds > 0
    assert page.text == "offline read"
    assert page.engine == fresh.name


def test_gpu_only_where_it_really_loads(capfd: pytest.CaptureFixture[str]) -> None:
    from kvdesk.core.keys.dense import probe_providers

    gpu = OcrEngine(prefer_gpu=True)
    gpu.load()
    # onnxruntime-gpu lists CUDA even without a GPU: the provider must be the one that loaded.
    assert gpu.provider == probe_providers(prefer_gpu=True).provider
    assert "CUDA" not in capfd.readouterr().err  # a failed CUDA load is not printed


# -- reading images ------------------------------------------------------------------------


def test_english_words_and_their_boxes(engine: OcrEngine) -> None:
    img, drawn = draw_lines(EN_LINES)
    page = engine.read_image(img, page_number=3)
    assert (page.number, page.width, page.height) == (3, img.width, img.height)
    assert page.text.split("\n") == EN_LINES
    for text, box in drawn.items():
        found = word(page, text)
        assert overlap(found.box, box) > 0.8, (text, found.box, box)
        assert 0.9 < found.confidence <= 1.0


def test_japanese_characters_and_their_boxes(engine: OcrEngine) -> None:
    img, drawn = draw_lines(JA_LINES, cjk=True)
    page = engine.read_image(img)
    assert accuracy("\n".join(JA_LINES), page.text) >= 0.95
    assert len(page.text.split("\n")) == len(JA_LINES)
    for char in "東京都会議午後":
        assert overlap(word(page, char).box, drawn[char]) > 0.6, char


def test_mixed_japanese_and_english_line_keeps_its_spaces(engine: OcrEngine) -> None:
    img, _ = draw_lines(["東京 Tokyo 2024年"], cjk=True, width=420)
    page = engine.read_image(img)
    assert accuracy("東京 Tokyo 2024年", page.text) == 1.0
    assert [w.text for w in page.words] == ["東", "京", "Tokyo", "2024", "年"]


def test_two_columns_are_read_one_after_the_other(engine: OcrEngine) -> None:
    font = _font(26)
    img = Image.new("RGB", (640, 250), "white")
    draw = ImageDraw.Draw(img)
    draw.text((24, 16), "Two columns", font=font, fill="black")
    for row, (left, right) in enumerate([("left one", "right one"), ("left two", "right two")]):
        draw.text((24, 110 + row * 46), left, font=font, fill="black")
        draw.text((360, 110 + row * 46), right, font=font, fill="black")
    page = engine.read_image(img)
    assert page.text == "Two columns\nleft one\nleft two\nright one\nright two"


def test_tilted_and_jpeg_degraded_images_are_read(engine: OcrEngine) -> None:
    img, _ = draw_lines(EN_LINES)
    tilted = img.rotate(3, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white")
    assert accuracy("".join(EN_LINES), engine.read_image(tilted).text) >= 0.95

    ja, _ = draw_lines(JA_LINES, cjk=True, size=26)
    pixels = np.asarray(ja.convert("L"), dtype=np.float32)
    noisy = pixels + np.random.default_rng(5).normal(0.0, 18.0, pixels.shape)
    grey = Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "L")
    (page,) = ocr_document(
        encode(grey, "JPEG", quality=30), "image/jpeg", engine=engine, max_pages=1
    )
    assert accuracy("".join(JA_LINES), page.text) >= 0.9


def test_upside_down_page_is_turned_and_boxes_stay_in_its_pixels(engine: OcrEngine) -> None:
    img, drawn = draw_lines(EN_LINES)
    page = engine.read_image(img.rotate(180))
    assert page.text.split("\n") == EN_LINES
    x0, y0, x1, y1 = drawn["Invoice"]
    turned = (img.width - x1, img.height - y1, img.width - x0, img.height - y0)
    assert overlap(word(page, "Invoice").box, turned) > 0.8


def test_exif_orientation_and_transparency(engine: OcrEngine) -> None:
    img, drawn = draw_lines(["sideways photo"], width=360)
    stored = img.transpose(Image.Transpose.ROTATE_90)  # a camera held on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to show"
    (page,) = ocr_document(
        encode(stored, "JPEG", quality=95, exif=exif.tobytes()),
        "image/jpeg",
        engine=engine,
        max_pages=1,
    )
    assert (page.width, page.height) == img.size
    assert page.text == "sideways photo"
    assert overlap(word(page, "photo").box, drawn["photo"]) > 0.8

    # Black text on a transparent background must not turn black on black.
    clear = Image.new("RGBA", img.size, (0, 0, 0, 0))
    clear.putalpha(Image.eval(img.convert("L"), lambda v: 255 - v))
    (page,) = ocr_document(encode(clear, "PNG"), "image/png", engine=engine, max_pages=1)
    assert page.text == "sideways photo"


def test_strips_are_read_without_blowing_up(engine: OcrEngine) -> None:
    banner = Image.new("RGB", (1900, 44), "white")
    line = "a banner: the quick brown fox jumps over the lazy dog again and again"
    ImageDraw.Draw(banner).text((10, 6), line, font=_font(26), fill="black")
    assert engine.read_image(banner).text == line
    # rapidocr alone pads and scales a 20000 x 10 strip to 60000 x 15000 pixels (killed for
    # memory); here it is a blank page like any other.
    page = engine.read_image(Image.new("L", (20000, 10), 0))
    assert (page.width, page.height, page.text) == (20000, 10, "")


def test_huge_images_are_read_small_and_boxes_mapped_back() -> None:
    small = OcrEngine(threads=1, max_side=400)
    assert small.name.endswith("@400px")
    img, drawn = draw_lines(["scaled down"], size=60, width=820)
    page = small.read_image(img)
    assert page.text == "scaled down"
    assert page.width == img.width
    assert overlap(word(page, "down").box, drawn["down"]) > 0.8


def test_kana_lookalikes_are_fixed_only_where_context_decides() -> None:
    # What the recogniser wrote on the bench's JaQuAD scans, and what was printed.
    for read, printed in [
        ("エリザべス", "エリザベス"),
        ("「へダ」", "「ヘダ」"),
        ("のー員", "の一員"),
        ("デ一タ", "データ"),
        ("サーバ一。", "サーバー。"),
    ]:
        assert fix_kana_lookalikes(read) == printed
    # Particles, counters and kanji words that look the same stay as they are.
    for text in ["東京へバスで", "どこへバスで", "ホテルへ行く", "ページ一覧", "3カ月", "数カ所"]:
        assert fix_kana_lookalikes(text) == text


# -- files: pages and documents ------------------------------------------------------------


def test_multi_page_tiff_gives_one_page_per_frame(engine: OcrEngine) -> None:
    frames = [draw_lines([text], width=300)[0] for text in ("first page", "second page")]
    frames.append(draw_lines(["third page"], width=300)[0].convert("1"))  # a fax-style frame
    tiff = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    assert page_count(tiff, "image/tiff") == 3
    assert [p.size for p in pages_of(tiff, "image/tiff", max_pages=10)] == [f.size for f in frames]
    assert len(list(pages_of(tiff, "image/tiff", max_pages=2))) == 2

    seen: list[Progress] = []
    pages = ocr_document(tiff, "image/tiff", engine=engine, max_pages=2, progress=seen.append)
    assert [(p.number, p.text) for p in pages] == [(1, "first page"), (2, "second page")]
    assert [(p.done, p.total) for p in seen] == [(0, 2), (1, 2), (2, 2)]
    third = list(pages_of(tiff, "image/tiff", max_pages=1, pages=[3]))
    assert engine.read_image(third[0]).text == "third page"


def test_webp_page(engine: OcrEngine) -> None:
    img, _ = draw_lines(["webp image"], width=300)
    (page,) = ocr_document(
        encode(img, "WEBP", quality=80), "image/webp", engine=engine, max_pages=1
    )
    assert page.text == "webp image"


def test_image_only_pdf_is_read(engine: OcrEngine) -> None:
    img, _ = draw_lines(EN_LINES)
    pdf = encode(img, "PDF", resolution=100.0)
    assert pdf_pages_without_text(pdf) == [1]
    (rendered,) = pages_of(pdf, "application/pdf", max_pages=1, dpi=100)
    assert abs(rendered.width - img.width) <= 1 and abs(rendered.height - img.height) <= 1
    (page,) = ocr_document(pdf, "application/pdf", engine=engine, max_pages=5, dpi=100)
    assert page.number == 1 and page.text.split("\n") == EN_LINES


def test_mixed_pdf_is_read_only_where_it_has_no_text(engine: OcrEngine) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    scan, _ = draw_lines(["scanned page two"], width=460)
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    pdf.drawString(72, 760, "A page with a real text layer, long enough to count as text.")
    pdf.showPage()
    pdf.drawImage(ImageReader(scan), 72, 600, width=scan.width, height=scan.height)
    pdf.showPage()  # a full-page scan with a short header stamped on top
    pdf.drawImage(ImageReader(scan), 0, 0, width=A4[0], height=A4[1])
    pdf.drawString(72, 820, "Downloaded from the archive on 2024-05-01")
    pdf.showPage()
    pdf.drawString(72, 760, "Only text on this last page, and enough of it as well.")
    pdf.save()
    data = out.getvalue()

    assert pdf_pages_without_text(data) == [2, 3]
    assert pdf_pages_without_text(data, limit=1) == [2]
    pages = ocr_document(data, "application/pdf", engine=engine, max_pages=1, dpi=72)
    assert [(p.number, p.text) for p in pages] == [(2, "scanned page two")]

    text_only = io.BytesIO()
    pdf = canvas.Canvas(text_only, pagesize=A4)
    pdf.drawString(72, 760, "Nothing here needs OCR: the words are in the text layer.")
    pdf.save()
    assert pdf_pages_without_text(text_only.getvalue()) == []
    assert ocr_document(text_only.getvalue(), "application/pdf", engine=engine, max_pages=9) == []


# -- hostile and broken input --------------------------------------------------------------


def test_damaged_truncated_and_oversized_files_fail_clearly() -> None:
    img, _ = draw_lines(["cut short"], width=300)
    png = encode(img, "PNG")
    with pytest.raises(ExtractionError, match="truncated PNG"):
        list(pages_of(png[: len(png) // 2], "image/png", max_pages=1))
    jpeg = encode(img, "JPEG")
    with pytest.raises(ExtractionError, match="JPEG"):
        list(pages_of(jpeg[: len(jpeg) // 2], "image/jpeg", max_pages=1))
    for side in (40_000, 12_000):  # over twice Pillow's limit (an error), and just over it
        with pytest.raises(ExtractionError, match="image is too large"):
            list(pages_of(png_header_only(side, side), "image/png", max_pages=1))
    with pytest.raises(ExtractionError, match="cannot be identified"):
        list(pages_of(b"not an image at all", "image/png", max_pages=1))
    with pytest.raises(ExtractionError, match="PDF"):
        pdf_pages_without_text(b"%PDF-1.7\n garbage")
    with pytest.raises(ExtractionError, match="PDF"):
        list(pages_of(b"%PDF-1.7\n garbage", "application/pdf", max_pages=1))
    with pytest.raises(ExtractionError, match="cannot read image/gif"):
        list(pages_of(png, "image/gif", max_pages=1))


def test_deadline_and_cancel_are_checked_between_pages(engine: OcrEngine) -> None:
    frames = [draw_lines([text], width=300)[0] for text in ("one", "two")]
    tiff = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    seen: list[Progress] = []
    with pytest.raises(ExtractionError, match=r"OCR took longer than 0\.05 s"):
        ocr_document(
            tiff, "image/tiff", engine=engine, max_pages=5, deadline_s=0.05, progress=seen.append
        )
    assert [p.current for p in seen] == ["page 1"]  # page 1 was read, page 2 never started

    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        ocr_document(tiff, "image/tiff", engine=engine, max_pages=5, cancel=token)


def test_blank_page_reads_as_empty_and_the_next_page_is_read(engine: OcrEngine) -> None:
    page = engine.read_image(Image.new("L", (300, 200), 255))
    assert page.words == () and page.text == ""
    # The blank page made the engine look for lines without reading them: that must not stick.
    # (Detection also returns two boxes here, "next" and "t page": the "t" is read once.)
    page = engine.read_image(draw_lines(["next page"], width=300)[0])
    assert page.text == "next page"
    assert [w.text for w in page.words] == ["next", "page"]
