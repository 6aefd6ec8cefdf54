"""OCR of scans and photos: text, word boxes and reading order for images and image-only PDF pages.

The engine is rapidocr with the PP-OCRv6 models its wheel ships: text detection, one
multilingual recognition model that reads Japanese and English (rapidocr's ``lang_type`` does
not change it: ch, japan and en give identical output, bench/bench_ocr.py), and a 0/180 degree
classifier, used here to turn upside-down pages. Nothing is downloaded: the three model paths
are given explicitly (rapidocr only downloads when it has to look a model up) and their sha256
is checked when they load.

Loading takes seconds, so `OcrEngine()` is cheap and the models load on the first page. Every
`OcrPage` carries `engine.name`, so a later rekey can tell which pages to redo with another engine.

One story in four parts: the engine (loading, sizes, upside-down pages), words and boxes from
rapidocr's output (and the kana it confuses), reading order (an XY cut on the straightened
page), and the pages of a file (Pillow and PDFium under kvdesk's limits).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from kvdesk.core.errors import ExtractionError, KvdeskError
from kvdesk.core.extract.documents import _MAX_IMAGE_PIXELS, _PDFIUM_LOCK
from kvdesk.core.progress import CancelToken, Progress, ProgressSink
from kvdesk.core.scans.media import IMAGE_FORMATS, PDF_TYPE
from kvdesk.core.scans.text import CJK as _CJK

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

#: Longest side an image is read at. rapidocr's own limit is also 2000 px; resizing here, with
#: Pillow's Lanczos filter, keeps a 24 MP photo from being copied whole into OpenCV and maps
#: boxes back exactly. An A4 page at 150 dpi (1240 x 1754) is read as it is.
DEFAULT_MAX_SIDE = 2000
#: Longest side text detection sees. On A4 scans at 150 dpi (text down to 6.7 pt) detection at
#: 1280 px read as well as at full size (1240 x 1754) and the page took 17-25% less CPU and
#: 30% less peak memory (bench/bench_ocr.py); 960 px lost lines of small Japanese print.
DEFAULT_DETECT_SIDE = 1280
#: Non-space characters below which a PDF page's text layer counts as empty (a page number,
#: a scanner's stamp).
MIN_TEXT_CHARS = 16
#: A page whose images cover this share of it and that has fewer than `SCAN_TEXT_CHARS`
#: characters of text is a scan with a little text added on top (a header, a Bates number).
SCAN_IMAGE_COVER = 0.5
SCAN_TEXT_CHARS = 200

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
# The models in the rapidocr 3.10.0 wheel, with the sha256 its default_models.yaml lists.
_MODELS = {
    "det": (
        "PP-OCRv6_det_small.onnx",
        "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
    ),
    "cls": (
        "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    ),
    "rec": (
        "PP-OCRv6_rec_small.onnx",
        "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
    ),
}
_MODEL_LABEL = "PP-OCRv6-small"
_DETECT_MIN_SIDE = 736  # rapidocr's detection size: shorter side scaled up to this
_DETECT_MAX_SIDE = 4000  # ... but the longer side of a strip not beyond this
_MAX_ASPECT = 8  # rapidocr's width_height_ratio
_VOTE_LINES = 12  # longest lines that vote on whether a page is upside down
# Text lines recognised per ONNX run on CPU. rapidocr's 6 pads every line of a batch to the
# widest: an A4 page took 9.8-10.6 CPU-s at 6 and 7.8-8.7 at 1, and peaked 200-300 MB higher.
_CPU_REC_BATCH = 1
# RapidOCR keeps the switches of its last call: every call names all of them.
_READ = {"use_det": True, "use_cls": False, "use_rec": True, "return_word_box": True}
_DETECT = {"use_det": True, "use_cls": False, "use_rec": False, "return_word_box": False}
_HIRA_TO_KATA = {"へ": "ヘ", "べ": "ベ", "ぺ": "ペ"}
_KANJI_TO_KATA = {
    "力": "カ",
    "口": "ロ",
    "工": "エ",
    "二": "ニ",
    "一": "ー",
    "夕": "タ",
    "卜": "ト",
}
_LOOKALIKE = re.compile(f"[{''.join(_HIRA_TO_KATA)}{''.join(_KANJI_TO_KATA)}ー]")


@dataclass(frozen=True)
class OcrWord:
    """One word read from a page: a run of Latin letters or digits, or one CJK character.

    ``box`` is (x0, y0, x1, y1) in the pixels of the page as read (after EXIF orientation).
    """

    text: str
    box: tuple[int, int, int, int]
    confidence: float


@dataclass(frozen=True)
class OcrPage:
    """What OCR read from one page (1-based ``number``); ``text`` is in reading order."""

    number: int
    width: int
    height: int
    words: tuple[OcrWord, ...]
    text: str
    engine: str


# --------------------------------------------------------------------------------------------
# The engine


class OcrEngine:
    """rapidocr on ONNX Runtime, loaded on first use; one page at a time per engine.

    Args:
        threads: ONNX Runtime intra-op threads; None lets it use every core. On a 2-core
            machine two threads were no faster than one (bench/bench_ocr.py), and one leaves
            the other core to the UI.
        prefer_gpu: try ONNX Runtime's CUDA provider; it is used only when a session really
            loads on it (``provider`` says which one did).
        max_side: longest side, in pixels, an image is read at.
        detect_side: text detection sees a large image with its longest side scaled down to
            this many pixels (never its shorter side below 736); a small image is scaled up
            to 736 on its shorter side, rapidocr's rule, which None keeps for all images.
    """

    def __init__(
        self,
        *,
        threads: int | None = 1,
        prefer_gpu: bool = False,
        max_side: int = DEFAULT_MAX_SIDE,
        detect_side: int | None = DEFAULT_DETECT_SIDE,
    ) -> None:
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1")
        if max_side < 64:
            raise ValueError("max_side must be at least 64 pixels")
        self.threads = threads
        self.prefer_gpu = prefer_gpu
        self.max_side = max_side
        self.detect_side = detect_side
        self._ocr: Any = None
        self._provider: str | None = None
        self._load_seconds: float | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """What read the pages, e.g. ``rapidocr-3.10.0/PP-OCRv6-small``; stored with each page."""
        suffix = "" if self.max_side == DEFAULT_MAX_SIDE else f"@{self.max_side}px"
        if self.detect_side != DEFAULT_DETECT_SIDE:
            suffix += f"/det{self.detect_side or 'full'}"
        return f"rapidocr-{_rapidocr_version()}/{_MODEL_LABEL}{suffix}"

    @property
    def loaded(self) -> bool:
        return self._ocr is not None

    @property
    def provider(self) -> str | None:
        """The execution provider the models run on, once loaded (CUDA or CPU)."""
        return self._provider

    @property
    def load_seconds(self) -> float | None:
        return self._load_seconds

    def load(self) -> None:
        """Load the models now (they otherwise load on the first page)."""
        with self._lock:
            self._ensure_loaded()

    def read_image(self, img: Image.Image, page_number: int = 1) -> OcrPage:
        """OCR one image; boxes are in its pixels after EXIF orientation."""
        page, scale, (width, height) = _prepare(img, self.max_side)
        array = _to_bgr(page)
        del page
        seen_h, seen_w = array.shape[:2]
        with self._lock:
            ocr = self._ensure_loaded()
            ocr.text_det.limit_type, ocr.text_det.limit_side_len = _detect_limit(
                seen_w, seen_h, self.detect_side
            )
            # rapidocr's per-line 0/180 classifier squeezes a whole line into 192 x 48 pixels
            # and flipped 2 of 42 lines of a noisy A4 scan into garbage; the page is turned as
            # a whole instead, when most of its lines say so.
            result = ocr(array, **_READ)
            turned = _upside_down(ocr, array, result)
            if turned:
                result = ocr(array[::-1, ::-1].copy(), **_READ)
        to_page = _ToPage(scale, width, height, turned, seen_w, seen_h)
        lines = _read_lines(result, to_page)
        return _assemble(lines, page_number, width, height, self.name, turned)

    def _ensure_loaded(self) -> Any:
        if self._ocr is None:
            started = time.perf_counter()
            self._ocr, self._provider = _load_rapidocr(self.threads, self.prefer_gpu, self.max_side)
            self._load_seconds = time.perf_counter() - started
        return self._ocr


@functools.cache
def _rapidocr_version() -> str:
    try:
        return metadata.version("rapidocr")
    except metadata.PackageNotFoundError:
        return "missing"


def _detect_limit(width: int, height: int, detect_side: int | None) -> tuple[str, int]:
    """rapidocr's detection size rule for one image: ("min", n) scales the shorter side up to
    n, ("max", n) the longer side down to n."""
    short, long = sorted((max(1, width), max(1, height)))
    if short < _DETECT_MIN_SIDE:
        # Scaled up, but a strip (a receipt, one line of text) not beyond _DETECT_MAX_SIDE.
        if long * _DETECT_MIN_SIDE / short > _DETECT_MAX_SIDE:
            return "min", max(1, short * _DETECT_MAX_SIDE // long)
        return "min", _DETECT_MIN_SIDE
    if detect_side is None or long <= detect_side:
        return "min", _DETECT_MIN_SIDE
    return "max", max(detect_side, math.ceil(long * _DETECT_MIN_SIDE / short))


def model_paths() -> dict[str, Path]:
    """The wheel's det, cls and rec model files (found without importing rapidocr)."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        raise KvdeskError("OCR is not available: the rapidocr package is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return {role: folder / filename for role, (filename, _) in _MODELS.items()}


def _checked_model_paths() -> dict[str, Path]:
    paths = model_paths()
    for role, path in paths.items():
        expected = _MODELS[role][1]
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise KvdeskError(
                f"OCR model missing from the rapidocr wheel: {path} ({exc})"
            ) from None
        if digest != expected:
            raise KvdeskError(
                f"OCR model {path.name} is not the one rapidocr 3.10.0 ships (sha256 {digest})"
            )
    return paths


def _load_rapidocr(threads: int | None, prefer_gpu: bool, max_side: int) -> tuple[Any, str]:
    """A RapidOCR with all three sessions created, and the provider they really run on."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    paths = _checked_model_paths()
    use_cuda = False
    if prefer_gpu:
        # The probe loads a tiny model the way dense keys do (CUDA libraries preloaded, failed
        # loads silenced): onnxruntime-gpu lists CUDA even on machines without a GPU.
        from kvdesk.core.keys.dense import probe_providers

        use_cuda = probe_providers(prefer_gpu=True).provider == _CUDA
    from rapidocr import RapidOCR

    params: dict[str, Any] = {
        "Global.log_level": "error",  # "text detection result is empty" on a blank page
        "Global.max_side_len": max_side,
        "Det.model_path": str(paths["det"]),
        "Cls.model_path": str(paths["cls"]),
        "Rec.model_path": str(paths["rec"]),
        "EngineConfig.onnxruntime.use_cuda": use_cuda,
        # EXHAUSTIVE (rapidocr's default) benchmarks cuDNN kernels again for every new line
        # width the recogniser sees.
        "EngineConfig.onnxruntime.cuda_ep_cfg.cudnn_conv_algo_search": "HEURISTIC",
    }
    if not use_cuda:
        params["Rec.rec_batch_num"] = _CPU_REC_BATCH
    if threads is not None:
        # rapidocr applies a thread count only when it is within 1..os.cpu_count().
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = min(threads, os.cpu_count() or 1)
        params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
    try:
        ocr = RapidOCR(params=params)
        # rapidocr creates its sessions on first use; create them now so that loading costs
        # are paid here and the provider each one got can be read back.
        sessions = [
            ocr._load_det_model().session.session,
            ocr._load_cls_model().session.session,
            ocr._load_rec_model().session.session,
        ]
    except KvdeskError:
        raise
    except Exception as exc:
        raise KvdeskError(f"OCR engine could not load: {exc}") from exc
    used = {session.get_providers()[0] for session in sessions}
    provider = _CUDA if used == {_CUDA} else _CPU
    return ocr, provider


# --------------------------------------------------------------------------------------------
# Images in, boxes out


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # broken EXIF: read the pixels as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _prepare(img: Image.Image, max_side: int) -> tuple[Image.Image, float, tuple[int, int]]:
    """An upright RGB copy at most ``max_side`` pixels long, the scale it was reduced by, and
    the upright size before that."""
    from PIL import Image, ImageOps

    page = img
    if _orientation(img) != 1:
        try:
            page = ImageOps.exif_transpose(img)
        except Exception:  # broken EXIF: read the pixels as stored
            page = img
    page = _to_rgb(page)
    size = page.size
    longest = max(size)
    scale = 1.0
    if longest > max_side:
        scale = max_side / longest
        reduced = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        page = page.resize(reduced, Image.Resampling.LANCZOS, reducing_gap=3.0)
    # rapidocr pads a strip wider than 8:1 to a square-ish image and then scales it up: a
    # 20000 x 10 image grew to 60000 x 15000 pixels and the process was killed for memory.
    # Padding here (white, right or below, so boxes keep their place) keeps it at 8:1.
    width, height = page.size
    if max(width, height) > _MAX_ASPECT * min(width, height):
        padded = Image.new(
            "RGB", (max(width, height // _MAX_ASPECT), max(height, width // _MAX_ASPECT)), "white"
        )
        padded.paste(page, (0, 0))
        page = padded
    return page, scale, size


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with transparency over white (black text on a transparent PNG stays readable) and
    16-bit or float scans stretched to 8 bits instead of clipped."""
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "F") or mode.startswith("I;16"):
        import numpy as np

        values = np.asarray(img, dtype=np.float32)
        low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
        span = high - low if high > low else 1.0
        grey = ((values - low) * (255.0 / span)).clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _to_bgr(img: Image.Image) -> np.ndarray:
    import numpy as np

    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8)[:, :, ::-1])


@dataclass(frozen=True)
class _Line:
    """One detected text run: its text, its box in page pixels, and its words."""

    text: str
    box: tuple[int, int, int, int]
    confidence: float
    words: tuple[OcrWord, ...]
    starts: tuple[int, ...]  # where each word starts in ``text``
    quad: tuple[tuple[float, float], ...]  # the detected (perhaps tilted) box, page pixels


@dataclass(frozen=True)
class _ToPage:
    """Maps points of the image OCR saw back to the page's pixels."""

    scale: float
    width: int
    height: int
    turned: bool = False  # OCR saw the image turned by 180 degrees
    seen_w: int = 0
    seen_h: int = 0

    def points(self, points: Any) -> tuple[tuple[float, float], ...]:
        """A quadrilateral's corners in page pixels."""
        corners = [(float(p[0]), float(p[1])) for p in points]
        if self.turned:
            corners = [(self.seen_w - x, self.seen_h - y) for x, y in corners]
        return tuple((x / self.scale, y / self.scale) for x, y in corners)

    def box(self, points: Any) -> tuple[int, int, int, int]:
        """The axis-aligned box around a quadrilateral, in page pixels."""
        corners = self.points(points)
        xs, ys = [x for x, _ in corners], [y for _, y in corners]
        x0 = min(max(0, math.floor(min(xs))), self.width)
        y0 = min(max(0, math.floor(min(ys))), self.height)
        x1 = min(max(x0, math.ceil(max(xs))), self.width)
        y1 = min(max(y0, math.ceil(max(ys))), self.height)
        return x0, y0, x1, y1


def _upside_down(ocr: Any, array: np.ndarray, result: Any) -> bool:
    """Whether most text lines of the page read upside down, by rapidocr's 0/180 classifier.

    The classifier sees windows four line-heights wide (its input is 192 x 48), from the start
    and the middle of the longest lines, not whole lines squeezed to that size.
    """
    import numpy as np
    from rapidocr.utils.process_img import get_rotate_crop_image

    boxes = getattr(result, "boxes", None)
    if boxes is None or len(boxes) == 0:
        # Nothing read: perhaps because it is upside down. Find the lines without reading them.
        boxes = getattr(ocr(array, **_DETECT), "boxes", None)
        if boxes is None or len(boxes) == 0:
            return False
    quads = [np.asarray(b, dtype=np.float32) for b in boxes]
    quads.sort(key=lambda q: -float(np.linalg.norm(q[1] - q[0])))
    windows = []
    for quad in quads[:_VOTE_LINES]:
        crop = get_rotate_crop_image(array, quad.copy())
        height, width = crop.shape[:2]
        step = 4 * max(1, height)
        windows.append(crop[:, :step])
        if width >= 2 * step:
            middle = (width - step) // 2
            windows.append(crop[:, middle : middle + step])
    labels = ocr.text_cls(windows).cls_res
    turned = sum(1 for label, score in labels if "180" in label and score >= 0.9)
    return turned * 2 > len(labels)


def _read_lines(result: Any, to_page: _ToPage) -> list[_Line]:
    boxes = getattr(result, "boxes", None)
    txts = getattr(result, "txts", None)
    scores = getattr(result, "scores", None)
    if boxes is None or txts is None or scores is None:
        return []  # nothing detected, or nothing recognised
    word_results = list(getattr(result, "word_results", None) or ())
    lines: list[_Line] = []
    next_words = 0
    for points, text, score in zip(boxes, txts, scores, strict=False):
        text = " ".join(str(text).split())
        if not text:
            continue
        box = to_page.box(points)
        # rapidocr drops a line's word list when it is empty, so the lists are matched to
        # lines by their text rather than by position.
        words: tuple[OcrWord, ...] | None = None
        if next_words < len(word_results):
            words = _words(text, word_results[next_words], to_page)
            if words is not None:
                next_words += 1
        fixed = fix_kana_lookalikes(text)
        starts: tuple[int, ...]
        if words is None:
            words, starts = (OcrWord(fixed, box, float(score)),), (0,)
        else:  # one character for another: the words keep their places
            spans = _token_spans(fixed)
            words = tuple(
                OcrWord(fixed[a:b], w.box, w.confidence)
                for w, (a, b) in zip(words, spans, strict=True)
            )
            starts = tuple(a for a, _ in spans)
        lines.append(_Line(fixed, box, float(score), words, starts, to_page.points(points)))
    return lines


def fix_kana_lookalikes(text: str) -> str:
    """Undo the recogniser's mix-ups of characters that look alike, where context decides.

    On 5 degraded A4 pages of JaQuAD (bench/bench_ocr.py) 12 of 17 character errors were of
    this kind: hiragana へ/べ for katakana ヘ/ベ in エリザベス and 「ヘダ」, and the long-vowel
    mark ー for the kanji 一 in の一員. Only unambiguous contexts are changed: a hiragana
    へ/べ/ぺ that starts or continues a katakana word (never after kanji or hiragana, where it
    is the particle: 東京へバスで), a kanji between two katakana (データ read as デ一タ), and
    ー that follows no katakana but comes before a kanji.
    """
    if not _LOOKALIKE.search(text):
        return text
    chars = list(text)
    for i, ch in enumerate(chars):
        before = chars[i - 1] if i > 0 else ""
        after = text[i + 1] if i + 1 < len(text) else ""
        if ch in _HIRA_TO_KATA:
            if _is_kata(after) and (_is_kata(before) or not _is_letter(before)):
                chars[i] = _HIRA_TO_KATA[ch]
        elif ch in _KANJI_TO_KATA:
            if _is_kata(before) and (_is_kata(after) or (ch == "一" and not _is_letter(after))):
                chars[i] = _KANJI_TO_KATA[ch]
        elif ch == "ー" and not _is_kata(before) and _is_kanji(after):
            chars[i] = "一"
    return "".join(chars)


def _is_kata(ch: str) -> bool:
    """A katakana letter or the long-vowel mark (not ヶ/ヵ, which count things: 3ヶ月)."""
    return bool(ch) and ("\u30a1" <= ch <= "\u30fa" or ch == "\u30fc") and ch not in "ヵヶ"


def _is_kanji(ch: str) -> bool:
    return bool(ch) and "\u4e00" <= ch <= "\u9fff"


def _is_letter(ch: str) -> bool:
    """A Japanese letter: kana or kanji (not punctuation, brackets, digits or Latin)."""
    return bool(ch) and ("\u3041" <= ch <= "\u30ff" or _is_kanji(ch))


def _words(text: str, items: Any, to_page: _ToPage) -> tuple[OcrWord, ...] | None:
    """Words of one line from rapidocr's word results, or None when they do not fit its text.

    rapidocr gives a box per word for Latin text and a box per character when a line holds
    CJK; here a word is a run without spaces in Latin script, and each CJK character alone.
    """
    chars: list[tuple[str, tuple[int, int, int, int], float]] = []
    try:
        for item_text, item_score, points in items:
            box = to_page.box(points)
            chars.extend((ch, box, float(item_score)) for ch in str(item_text) if not ch.isspace())
    except (TypeError, ValueError):
        return None
    if "".join(ch for ch, _, _ in chars) != "".join(text.split()):
        return None
    words: list[OcrWord] = []
    index = 0
    for a, b in _token_spans(text):
        part = chars[index : index + b - a]
        index += b - a
        words.append(
            OcrWord(
                text[a:b],
                (
                    min(b[0] for _, b, _ in part),
                    min(b[1] for _, b, _ in part),
                    max(b[2] for _, b, _ in part),
                    max(b[3] for _, b, _ in part),
                ),
                min(s for _, _, s in part),
            )
        )
    return tuple(words)


def _token_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each run without spaces, with every CJK character on its own."""
    spans: list[tuple[int, int]] = []
    start = -1
    for i, ch in enumerate(text):
        if ch.isspace() or _CJK.match(ch):
            if start >= 0:
                spans.append((start, i))
                start = -1
            if not ch.isspace():
                spans.append((i, i + 1))
        elif start < 0:
            start = i
    if start >= 0:
        spans.append((start, len(text)))
    return spans


# --------------------------------------------------------------------------------------------
# Reading order


def _reading_order(boxes: Sequence[tuple[int, int, int, int]]) -> list[list[int]]:
    """Text lines (indices into ``boxes``, left to right) in reading order.

    A recursive XY cut: the page splits at horizontal gaps at least a line high (paragraphs,
    a title), then at vertical gaps wider than 1.5 lines (columns), down to blocks whose boxes
    are grouped into lines. Two-column papers are read column by column; tables too.
    """
    if not boxes:
        return []
    heights = sorted(b[3] - b[1] for b in boxes)
    line_height = max(1, heights[len(heights) // 2])
    lines: list[list[int]] = []
    _cut(list(range(len(boxes))), boxes, line_height, lines, horizontal=True, depth=0)
    return lines


def _cut(
    indices: list[int],
    boxes: Sequence[tuple[int, int, int, int]],
    line_height: int,
    out: list[list[int]],
    *,
    horizontal: bool,
    depth: int,
) -> None:
    for along_y in (horizontal, not horizontal):
        parts = _split(indices, boxes, along_y, line_height if along_y else 1.5 * line_height)
        if len(parts) > 1 and depth < 64:
            for part in parts:
                _cut(part, boxes, line_height, out, horizontal=not along_y, depth=depth + 1)
            return
    out.extend(_group_lines(indices, boxes))


def _split(
    indices: list[int], boxes: Sequence[tuple[int, int, int, int]], along_y: bool, gap: float
) -> list[list[int]]:
    """Split at every gap of at least ``gap`` pixels in the boxes' projection on one axis."""
    lo, hi = (1, 3) if along_y else (0, 2)
    ordered = sorted(indices, key=lambda i: boxes[i][lo])
    parts: list[list[int]] = [[ordered[0]]]
    reach = boxes[ordered[0]][hi]
    for i in ordered[1:]:
        if boxes[i][lo] - reach >= gap:
            parts.append([i])
        else:
            parts[-1].append(i)
        reach = max(reach, boxes[i][hi])
    return parts


def _group_lines(indices: list[int], boxes: Sequence[tuple[int, int, int, int]]) -> list[list[int]]:
    """Boxes that overlap vertically by half the smaller height share a line."""
    lines: list[tuple[int, int, list[int]]] = []  # (top, bottom, members)
    for i in sorted(indices, key=lambda i: (boxes[i][1] + boxes[i][3], boxes[i][0])):
        x0, y0, x1, y1 = boxes[i]
        if lines:
            top, bottom, members = lines[-1]
            overlap = min(bottom, y1) - max(top, y0)
            if overlap >= 0.5 * max(1, min(bottom - top, y1 - y0)):
                members.append(i)
                lines[-1] = (min(top, y0), max(bottom, y1), members)
                continue
        lines.append((y0, y1, [i]))
    return [sorted(members, key=lambda i: boxes[i][0]) for _, _, members in lines]


def _join(left: str, right: str) -> str:
    """Two runs on one line: a space between them unless both sides are CJK."""
    if not left or not right:
        return left + right
    if _CJK.match(left[-1]) and _CJK.match(right[0]):
        return left + right
    return f"{left} {right}"


class _Frame:
    """The upright, straightened page the reading order is found on.

    Boxes stay in the image's pixels; ordering happens after turning an upside-down page and
    undoing its tilt, or the tilted boxes of a scan's close lines overlap (6.7 pt text tilted
    1.5 degrees lost a third of a page's lines before).
    """

    def __init__(self, lines: list[_Line], width: int, height: int, turned: bool) -> None:
        self.width, self.height, self.turned = width, height, turned
        self.cos, self.sin = 1.0, 0.0
        angles: list[float] = []
        for line in lines:
            corners = [self._upright(x, y) for x, y in line.quad]
            if len(corners) != 4:
                continue
            edges = [(corners[1], corners[0]), (corners[2], corners[1])]
            (bx, by), (ax, ay) = max(edges, key=lambda e: math.dist(*e))
            shortest = min(math.dist(*e) for e in edges)
            if math.dist((ax, ay), (bx, by)) >= 3 * max(shortest, 1.0):  # a long line of text
                angle = math.atan2(by - ay, bx - ax)
                angles.append((angle + math.pi / 2) % math.pi - math.pi / 2)
        if angles:
            angles.sort()
            tilt = angles[len(angles) // 2]
            if abs(tilt) < math.radians(20):
                self.cos, self.sin = math.cos(tilt), math.sin(tilt)

    def _upright(self, x: float, y: float) -> tuple[float, float]:
        return (self.width - x, self.height - y) if self.turned else (x, y)

    def point(self, x: float, y: float) -> tuple[float, float]:
        u, v = self._upright(x, y)
        return u * self.cos + v * self.sin, v * self.cos - u * self.sin

    def box(self, corners: Sequence[tuple[float, float]]) -> tuple[int, int, int, int]:
        points = [self.point(x, y) for x, y in corners]
        xs, ys = [x for x, _ in points], [y for _, y in points]
        return math.floor(min(xs)), math.floor(min(ys)), math.ceil(max(xs)), math.ceil(max(ys))

    def span(self, box: tuple[int, int, int, int]) -> tuple[float, float]:
        """A word's left and right along the straightened line."""
        middle, _ = self.point((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        half = (box[2] - box[0]) / 2
        return middle - half, middle + half


def _assemble(
    lines: list[_Line], number: int, width: int, height: int, engine: str, turned: bool
) -> OcrPage:
    frame = _Frame(lines, width, height, turned)
    boxes = [frame.box(line.quad) for line in lines]
    texts: list[str] = []
    words: list[OcrWord] = []
    for members in _reading_order(boxes):
        text, right = "", -math.inf
        for i in members:
            line = lines[i]
            # Detection sometimes returns two boxes that overlap on a word ("next" and
            # "t page" for "next page"): words whose middle was already passed are dropped.
            spans = [frame.span(w.box) for w in line.words]
            keep = 0
            while keep < len(spans) and (spans[keep][0] + spans[keep][1]) / 2 < right:
                keep += 1
            if keep == len(spans):
                continue
            text = _join(text, line.text[line.starts[keep] :])
            words.extend(line.words[keep:])
            right = max(right, max(b for _, b in spans[keep:]))
        texts.append(text)
    return OcrPage(number, width, height, tuple(words), "\n".join(texts), engine)


# --------------------------------------------------------------------------------------------
# Pages of a file


def pages_of(
    data: bytes,
    media_type: str,
    *,
    max_pages: int,
    dpi: int = 150,
    pages: Sequence[int] | None = None,
) -> Generator[Image.Image, None, None]:
    """The pages of a PNG, JPEG, TIFF (one per frame), WebP or PDF file as images.

    ``pages`` picks 1-based page numbers (all pages when None); at most ``max_pages`` are
    yielded, in the order given. PDF pages are rendered with PDFium at ``dpi`` (less when a
    huge page would exceed the pixel limit). Damaged, truncated or oversized input raises
    `ExtractionError`, also for a later page after earlier ones were yielded.
    """
    if max_pages < 1:
        return
    if media_type == PDF_TYPE:
        yield from _pdf_pages(data, max_pages=max_pages, dpi=dpi, pages=pages)
    elif media_type in IMAGE_FORMATS:
        yield from _image_pages(data, IMAGE_FORMATS[media_type], max_pages=max_pages, pages=pages)
    else:
        raise ExtractionError(f"OCR cannot read {media_type} files")


def page_count(data: bytes, media_type: str) -> int:
    """How many pages ``pages_of`` could yield: PDF pages, TIFF frames, else 1."""
    if media_type == PDF_TYPE:
        with _PDFIUM_LOCK:
            document = _open_pdf(data)
            try:
                return len(document)
            finally:
                document.close()
    if media_type == "image/tiff":
        with _open_image(data, "TIFF") as img:
            frames = getattr(img, "n_frames", 1)
            return frames if isinstance(frames, int) and frames > 0 else 1
    if media_type in IMAGE_FORMATS:
        return 1
    raise ExtractionError(f"OCR cannot read {media_type} files")


@contextmanager
def _open_image(data: bytes, fmt: str) -> Iterator[Any]:
    """``Image.open`` under the decompression-bomb limit, failures in plain words."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = _MAX_IMAGE_PIXELS  # as documents.extract_image sets it
    with _image_errors(fmt):
        img = Image.open(io.BytesIO(data), formats=[fmt])
    try:
        yield img
    finally:
        img.close()


@contextmanager
def _image_errors(fmt: str, page: int | None = None) -> Iterator[None]:
    """Pillow's errors, and its decompression-bomb warning, as `ExtractionError`."""
    from PIL import Image, UnidentifiedImageError

    what = f"{fmt} image" if page is None else f"page {page} of the {fmt} image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ExtractionError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ExtractionError(_too_large()) from None
    except UnidentifiedImageError:
        raise ExtractionError(f"damaged {what} (cannot be identified)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ExtractionError(f"damaged or truncated {what} ({exc})") from None


def _too_large() -> str:
    return (
        f"image is too large (over {_MAX_IMAGE_PIXELS // 1_000_000} million pixels; "
        "possibly a decompression bomb)"
    )


def _image_pages(
    data: bytes, fmt: str, *, max_pages: int, pages: Sequence[int] | None
) -> Iterator[Image.Image]:
    with _open_image(data, fmt) as img:
        frames = getattr(img, "n_frames", 1) if fmt == "TIFF" else 1  # WebP/PNG animations: 1
        frames = frames if isinstance(frames, int) and frames > 0 else 1
        wanted = list(pages) if pages is not None else list(range(1, frames + 1))
        for number in wanted[:max_pages]:
            if not 1 <= number <= frames:
                raise ExtractionError(f"the {fmt} image has no page {number}")
            with _image_errors(fmt, number if frames > 1 else None):
                if number > 1 or frames > 1:
                    img.seek(number - 1)
                # Pillow checks the pixel limit for the first frame only.
                if img.width * img.height > _MAX_IMAGE_PIXELS:
                    raise ExtractionError(_too_large())
                img.load()  # decodes: truncated or corrupt pixel data fails here
                page = img.copy()
            yield page


def _open_pdf(data: bytes) -> Any:
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(data)  # owner-only protection opens with ""
    except pdfium.PdfiumError as exc:
        raise ExtractionError(f"damaged, truncated or encrypted PDF ({exc})") from None


def _pdf_pages(
    data: bytes, *, max_pages: int, dpi: int, pages: Sequence[int] | None
) -> Iterator[Image.Image]:
    import pypdfium2 as pdfium

    # PDFium is not thread-safe: every call holds the lock documents.py uses, but the lock is
    # released between pages so that OCR (seconds a page) never blocks other PDF extraction.
    with _PDFIUM_LOCK:
        document = _open_pdf(data)
        count = len(document)
    try:
        wanted = list(pages) if pages is not None else list(range(1, count + 1))
        for number in wanted[:max_pages]:
            if not 1 <= number <= count:
                raise ExtractionError(f"the PDF has no page {number}")
            with _PDFIUM_LOCK:
                try:
                    page = document[number - 1]
                    try:
                        width, height = page.get_size()
                        scale = dpi / 72
                        pixels = width * scale * height * scale
                        if pixels > _MAX_IMAGE_PIXELS:  # a poster-sized page: render smaller
                            scale *= math.sqrt(_MAX_IMAGE_PIXELS / pixels)
                        bitmap = page.render(scale=scale, may_draw_forms=True)
                        try:
                            image = bitmap.to_pil().convert("RGB")  # a copy, not the buffer
                        finally:
                            bitmap.close()
                    finally:
                        page.close()
                except pdfium.PdfiumError as exc:
                    raise ExtractionError(
                        f"page {number} of the PDF cannot be drawn ({exc})"
                    ) from None
            yield image
    finally:
        with _PDFIUM_LOCK:
            document.close()


def pdf_pages_without_text(data: bytes, *, limit: int | None = None) -> list[int]:
    """1-based numbers of the PDF pages to OCR (the first ``limit`` of them): no text layer, or
    one that is nearly empty.

    A page counts when it has fewer than `MIN_TEXT_CHARS` non-space characters, or when images
    cover half of it and it has fewer than `SCAN_TEXT_CHARS` (a scan with a stamped header).
    A page whose text cannot be read counts too: rendering it is the only way left.
    """
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    wanted: list[int] = []
    with _PDFIUM_LOCK:
        document = _open_pdf(data)
        count = len(document)
    try:
        for index in range(count):
            if limit is not None and len(wanted) >= limit:
                break
            with _PDFIUM_LOCK:  # page by page: a long PDF must not hold up other threads
                try:
                    page = document[index]
                except pdfium.PdfiumError:
                    wanted.append(index + 1)
                    continue
                try:
                    chars = _text_chars(page)
                    if chars < MIN_TEXT_CHARS or (
                        chars < SCAN_TEXT_CHARS
                        and _image_cover(page, pdfium_c.FPDF_PAGEOBJ_IMAGE) >= SCAN_IMAGE_COVER
                    ):
                        wanted.append(index + 1)
                except pdfium.PdfiumError:
                    wanted.append(index + 1)
                finally:
                    page.close()
    finally:
        with _PDFIUM_LOCK:
            document.close()
    return wanted


def _text_chars(page: Any) -> int:
    textpage = page.get_textpage()
    try:
        text = textpage.get_text_range()
    finally:
        textpage.close()
    return sum(1 for ch in text if not ch.isspace() and ch not in "\ufffe\ufffd")


def _image_cover(page: Any, image_type: int) -> float:
    """The share of the page the largest image covers (0.0 to 1.0)."""
    width, height = page.get_size()
    area = max(width * height, 1.0)
    best = 0.0
    for obj in page.get_objects(filter=[image_type], max_depth=3):
        left, bottom, right, top = obj.get_bounds()
        covered = max(0.0, min(right, width) - max(left, 0.0)) * max(
            0.0, min(top, height) - max(bottom, 0.0)
        )
        best = max(best, covered / area)
    return best


# --------------------------------------------------------------------------------------------
# A whole document


def ocr_document(
    data: bytes,
    media_type: str,
    *,
    engine: OcrEngine,
    max_pages: int,
    dpi: int = 150,
    deadline_s: float | None = None,
    progress: ProgressSink | None = None,
    cancel: CancelToken | None = None,
    pages: Sequence[int] | None = None,
) -> list[OcrPage]:
    """OCR the pages of an image or PDF that need it, at most ``max_pages`` of them.

    A PDF's pages with a text layer are left out (`pdf_pages_without_text`), unless ``pages``
    names the 1-based pages to read (of a PDF or a TIFF). The deadline and the cancel token
    are checked between pages, so one page may overrun the deadline by its own OCR time
    (5-6 CPU-s for an A4 page at 150 dpi, bench/bench_ocr.py).
    """
    started = time.monotonic()
    if pages is not None:
        numbers = list(pages)[:max_pages]
    elif media_type == PDF_TYPE:
        numbers = pdf_pages_without_text(data, limit=max_pages)
    else:
        numbers = list(range(1, min(page_count(data, media_type), max_pages) + 1))
    out: list[OcrPage] = []
    images = pages_of(data, media_type, max_pages=max_pages, dpi=dpi, pages=numbers)
    try:
        for done, number in enumerate(numbers):
            _between_pages(started, deadline_s, cancel)
            if progress is not None:
                progress(Progress("ocr", done, len(numbers), f"page {number}"))
            image = next(images)
            if is_blank(image):  # nothing to read: skip the seconds detection would take
                out.append(OcrPage(number, image.width, image.height, (), "", engine.name))
                continue
            try:
                out.append(engine.read_image(image, page_number=number))
            except (KvdeskError, MemoryError, RecursionError):
                raise
            except Exception as exc:  # OpenCV or ONNX Runtime on a hostile image: this file
                raise ExtractionError(
                    f"OCR failed on page {number} ({type(exc).__name__}: {exc})"
                ) from None
    finally:
        images.close()
    if progress is not None:
        progress(Progress("ocr", len(numbers), len(numbers)))
    return out


#: A page whose 1/8-scale grey copy spans fewer levels than this is blank (paper, scanner
#: noise, a faint border): averaging 8 x 8 pixels keeps even 6 pt text far darker than that.
_BLANK_LEVELS = 24


def is_blank(image: Image.Image) -> bool:
    """Whether a page has nothing on it worth reading (a 30,000-page PDF of empty pages)."""
    grey = _to_rgb(image).convert("L")  # as OCR would see it: transparency over white
    factor = max(1, min(8, min(grey.size) // 16))
    low, high = cast("tuple[int, int]", grey.reduce(factor).getextrema())  # one band: a pair
    return high - low < _BLANK_LEVELS


def _between_pages(started: float, deadline_s: float | None, cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()
    if deadline_s is not None and time.monotonic() - started > deadline_s:
        raise ExtractionError(f"OCR took longer than {deadline_s:g} s")
