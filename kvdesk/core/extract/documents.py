"""Handlers for the binary formats run in the worker: PDF (pypdf opens, checks and repairs it and
reads its metadata; PDFium reads the text), DOCX (python-docx, after zip-bomb checks) and PNG/JPEG
images (Pillow, with a little EXIF)."""

from __future__ import annotations

import io
import logging
import re
import threading
import unicodedata
import warnings
import zipfile
from typing import Any

from kvdesk.core.errors import ExtractionError
from kvdesk.core.extract.decode import normalise
from kvdesk.core.extract.limits import Deadline, Limits, Result
from kvdesk.core.extract.sniff import PNG_MAGIC

# Zip members bigger than this must not be compressed better than _MAX_ZIP_RATIO : 1.
# Real DOCX XML compresses 5-30x; deflate tops out near 1000x, which is what bombs use.
_ZIP_RATIO_MIN_BYTES = 1024 * 1024
_MAX_ZIP_RATIO = 200
_MAX_ZIP_MEMBERS = 10_000
_MAX_TABLE_NESTING = 32
# Pillow refuses images above this many pixels (a 100 MP photo still decodes in ~300 MB).
_MAX_IMAGE_PIXELS = 100_000_000
_CJK = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff01-\uff60\uff66-\uff9f"
_CJK_WRAP = re.compile(f"(?<=[{_CJK}])\n(?=[{_CJK}])")
# PDFium is not thread-safe; in-process extraction may be called from several threads.
_PDFIUM_LOCK = threading.Lock()


# -- PDF -------------------------------------------------------------------------------------


def extract_pdf(data: bytes, filename: str, limits: Limits, deadline: Deadline) -> Result:
    pypdf_log = logging.getLogger("pypdf")
    if pypdf_log.level == logging.NOTSET:  # damaged files are reported by us, not logged
        pypdf_log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            reader, pages = _open_pdf(data)
            repaired = False
            opened = data
        except ExtractionError:
            raise
        except (RecursionError, MemoryError):
            raise
        except Exception as exc:  # pypdf could not find its way in; try to rebuild
            try:
                opened = _repair_pdf(data)
                reader, pages = _open_pdf(opened)
                repaired = True
            except ExtractionError:
                raise
            except (RecursionError, MemoryError):
                raise
            except Exception:
                raise ExtractionError(f"damaged or truncated PDF ({exc})") from None
        read = _pdfium_texts(opened, deadline)
        if read is None or not read[0]:  # PDFium could not read what pypdf could open
            read = _pypdf_texts(pages, deadline)
        texts, failed = read
        if not texts:
            raise ExtractionError("damaged PDF (no page text could be read)")
        meta: dict[str, object] = {"pages": len(pages)}
        if failed:
            meta["pages_failed"] = failed
        if repaired:
            meta["repaired"] = True
        if reader.is_encrypted:
            meta["encrypted"] = True
        title = ""
        try:
            info = reader.metadata
        except Exception:
            info = None
        if info is not None:
            title = _pdf_str(info.title)
            for key, value in (
                ("author", info.author),
                ("subject", info.subject),
                ("creator", info.creator),
                ("producer", info.producer),
            ):
                text_value = _pdf_str(value)
                if text_value:
                    meta[key] = text_value
    # PDFium joins a word hyphenated at a line end and marks the join with U+FFFE.
    text = "\n\n".join(_CJK_WRAP.sub("", normalise(t).replace("\ufffe", "")).strip() for t in texts)
    meta["has_text"] = bool(text.strip())
    return title, text.strip(), meta


def _pdfium_texts(data: bytes, deadline: Deadline) -> tuple[list[str], int] | None:
    """Each page's text and the number of pages that failed; None when PDFium cannot open the
    file at all.

    PDFium, not pypdf, reads the text: LaTeX (XeLaTeX, dvipdfmx) writes no space characters but
    moves inside TJ arrays, and pypdf takes the width of code 0x20 of a subset Identity-H font
    for the width of a space, so it glued a third of the lines of Debian's manuals into
    ``differencescanbecolloquiallysummarizedas`` (bench/bench_pdf_text.py)."""
    import pypdfium2 as pdfium

    with _PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(data)  # owner-only protection opens with ""
        except pdfium.PdfiumError:
            return None
        texts: list[str] = []
        failed = 0
        try:
            for index in range(len(document)):
                deadline.check()
                try:
                    page = document[index]
                    try:
                        textpage = page.get_textpage()
                        try:
                            texts.append(textpage.get_text_range())
                        finally:
                            textpage.close()
                    finally:
                        page.close()
                except pdfium.PdfiumError:  # one broken page must not cost the rest
                    failed += 1
        finally:
            document.close()
    return texts, failed


def _pypdf_texts(pages: list[Any], deadline: Deadline) -> tuple[list[str], int]:
    texts: list[str] = []
    failed = 0
    for page in pages:
        deadline.check()
        try:
            texts.append(page.extract_text() or "")
        except (RecursionError, MemoryError):
            raise
        except Exception:  # one broken page must not cost the rest of the document
            failed += 1
    return texts, failed


def _open_pdf(data: bytes) -> tuple[Any, list[Any]]:
    import pypdf
    from pypdf.errors import DependencyError

    reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")  # owner-only protection still allows reading
        except DependencyError:
            raise ExtractionError(
                "encrypted PDF (password protected; its cipher cannot be opened here)"
            ) from None
        if not opened:
            raise ExtractionError("encrypted PDF (password protected)")
    pages = list(reader.pages)
    if not pages:
        raise ExtractionError("damaged or truncated PDF (no pages could be read)")
    return reader, pages


_PDF_OBJ = re.compile(rb"(?m)^\s*(\d{1,7})\s+\d{1,5}\s+obj\b")


def _repair_pdf(data: bytes) -> bytes:
    """Truncated PDFs lose the xref table and trailer at the end: cut back to the last whole
    object and append a trailer pointing nowhere, so pypdf rebuilds the xref by scanning."""
    end = data.rfind(b"endobj")
    body = data[: end + len(b"endobj")] if end > 0 else data
    numbers = [int(m.group(1)) for m in _PDF_OBJ.finditer(body)]
    size = max(numbers, default=0) + 1
    return body + b"\ntrailer\n<< /Size %d >>\nstartxref\n0\n%%%%EOF\n" % size


def _pdf_str(value: object) -> str:
    return str(value).strip()[:1000] if isinstance(value, str) else ""


# -- DOCX ------------------------------------------------------------------------------------


def _check_zip(data: bytes, limits: Limits, kind: str) -> None:
    """Refuse zip bombs from the central directory, before any member is inflated.

    zipfile stops at each member's declared size (and fails the CRC), so the declared sizes
    are what a parser can ever receive.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ExtractionError(f"damaged or truncated {kind} ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > _MAX_ZIP_MEMBERS:
            raise ExtractionError(f"{kind} has too many parts ({len(infos)}); refused")
        total = 0
        for info in infos:
            if info.flag_bits & 0x1:
                raise ExtractionError(f"encrypted {kind} (password protected)")
            total += info.file_size
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > _ZIP_RATIO_MIN_BYTES and ratio > _MAX_ZIP_RATIO:
                raise ExtractionError(
                    f"{kind} looks like a zip bomb: part {info.filename!r} expands "
                    f"{ratio:.0f} times (to {info.file_size / 2**20:.0f} MiB); refused"
                )
        if total > limits.max_decompressed_bytes:
            raise ExtractionError(
                f"{kind} looks like a zip bomb: it expands to {total / 2**20:.0f} MiB "
                f"(the limit is {limits.max_decompressed_bytes / 2**20:.0f} MiB); refused"
            )
        if "word/document.xml" not in archive.namelist() and not any(
            n.endswith("document.xml") for n in archive.namelist()
        ):
            raise ExtractionError("not a Word document (a zip archive without document.xml)")


def extract_docx(data: bytes, filename: str, limits: Limits, deadline: Deadline) -> Result:
    _check_zip(data, limits, "Word document")
    import docx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            document = docx.Document(io.BytesIO(data))
        except (KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ExtractionError(f"damaged Word document ({exc})") from None
        lines: list[str] = []
        tables = 0
        for block in document.iter_inner_content():
            deadline.check()
            tables += _docx_block(block, lines, 0)
        props = document.core_properties
        meta: dict[str, object] = {"paragraphs_and_rows": len(lines), "tables": tables}
        for key in ("author", "subject", "keywords", "last_modified_by", "category"):
            value = getattr(props, key, None)
            if isinstance(value, str) and value.strip():
                meta[key] = value.strip()[:1000]
        for key in ("created", "modified"):
            stamp = getattr(props, key, None)
            if stamp is not None and hasattr(stamp, "isoformat"):
                meta[key] = stamp.isoformat()
        title = props.title if isinstance(props.title, str) else ""
    return title, "\n".join(lines), meta


def _docx_block(block: object, lines: list[str], depth: int) -> int:
    """Append a paragraph's text or a table's rows (cells tab-separated); returns tables seen."""
    from docx.table import Table

    if not isinstance(block, Table):
        text = getattr(block, "text", "")
        if text.strip():
            lines.append(text)
        return 0
    if depth >= _MAX_TABLE_NESTING:
        raise ExtractionError("Word document has tables nested too deeply")
    tables = 1
    for row in block.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell is reported once per grid column
                continue
            seen.add(id(cell._tc))
            inner: list[str] = []
            for child in cell.iter_inner_content():
                tables += _docx_block(child, inner, depth + 1)
            cells.append(" ".join(" ".join(inner).split()))
        if any(cells):
            lines.append("\t".join(cells))
    return tables


# -- images ----------------------------------------------------------------------------------

_EXIF_TAGS = {271: "Make", 272: "Model", 274: "Orientation", 305: "Software", 306: "DateTime"}
_EXIF_SUB_TAGS = {36867: "DateTimeOriginal", 42036: "LensModel"}


def extract_image(data: bytes, filename: str, limits: Limits, deadline: Deadline) -> Result:
    from PIL import Image, UnidentifiedImageError

    if data.startswith(PNG_MAGIC):
        expected = "PNG"
    elif data.startswith((b"II*\x00", b"MM\x00*")):
        expected = "TIFF"
    elif data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        expected = "WEBP"
    else:
        expected = "JPEG"
    Image.MAX_IMAGE_PIXELS = _MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            if expected in ("PNG", "JPEG"):
                with Image.open(io.BytesIO(data), formats=[expected]) as probe:
                    probe.verify()  # PNG: chunk CRCs; cheap structural check
            with Image.open(io.BytesIO(data), formats=[expected]) as img:
                meta: dict[str, object] = {
                    "width": img.width,
                    "height": img.height,
                    "format": img.format or expected,
                    "mode": img.mode,
                }
                frames = getattr(img, "n_frames", 1)
                if isinstance(frames, int) and frames > 1:
                    meta["frames"] = frames
                exif = _exif(img)
                if exif:
                    meta["exif"] = exif
                if expected == "JPEG":
                    img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()  # decodes: truncated or corrupt pixel data fails here
                meta["phash"] = _perceptual_hash(img)
                if isinstance(frames, int) and frames > 1:
                    # A multi-page TIFF: every page must decode (OCR reads them all).
                    for index in range(1, min(frames, 10_000)):
                        img.seek(index)
                        img.load()
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise ExtractionError(
                f"image is too large (over {_MAX_IMAGE_PIXELS // 1_000_000} million pixels; "
                "possibly a decompression bomb)"
            ) from None
        except UnidentifiedImageError:
            raise ExtractionError(f"damaged {expected} image (cannot be identified)") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ExtractionError(f"damaged or truncated {expected} image ({exc})") from None
    return "", "", meta


def _perceptual_hash(img: Any) -> str:
    """64-bit DCT hash of the first page: a page scanned twice differs in a few bits."""
    import imagehash

    try:
        return str(imagehash.phash(img.convert("L")))
    except Exception:  # noqa: BLE001 - a hash is a nicety; never lose the image for it
        return ""


def _exif(img: Any) -> dict[str, str]:
    try:
        exif = img.getexif()
        out = {name: exif.get(tag) for tag, name in _EXIF_TAGS.items()}
        sub = exif.get_ifd(0x8769)
        out.update({name: sub.get(tag) for tag, name in _EXIF_SUB_TAGS.items()})
    except Exception:  # broken EXIF is not worth losing the image for
        return {}
    return {k: _exif_str(v) for k, v in out.items() if v is not None and _exif_str(v)}


def _exif_str(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = "".join(ch for ch in str(value) if unicodedata.category(ch) != "Cc")
    return text.strip()[:200]
