"""Document text extraction that treats every file as hostile.

`extract()` turns the bytes of one file into plain text, a title and JSON-safe metadata, and
reports every failure as an `ExtractionError` with a plain-words reason. `Extractor` runs the
risky parsers (PDF, DOCX, HTML, images) in a reusable child process so that a parser that hangs
or crashes costs one file, not the whole import.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import multiprocessing
import os
import re
import threading
import time
import unicodedata
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from kvdesk.core.errors import ExtractionError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Extracted",
    "ExtractionError",
    "Extractor",
    "Limits",
    "extract",
    "format_size",
    "media_type_for",
    "mismatch_reason",
]


@dataclass(frozen=True)
class Limits:
    """Bounds on what one file may cost; hostile files hit these instead of exhausting us."""

    max_file_bytes: int = 256 * 1024 * 1024
    max_decompressed_bytes: int = 512 * 1024 * 1024
    max_seconds: float = 60.0
    max_text_chars: int = 20_000_000
    # JSONL records files are streamed; each line is also bounded by max_file_bytes.
    max_records_file_bytes: int = 16 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class Extracted:
    """What the vault stores next to the original bytes."""

    media_type: str
    title: str
    text: str
    metadata: dict[str, object] = field(default_factory=dict)


DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

_SUFFIX_TYPES: dict[str, str] = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    ".docx": DOCX_TYPE,
    ".csv": "text/csv",
    ".json": "application/json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_SUFFIX_TYPES)

# Cheap, safe formats: decoded in the calling process even when an Extractor is used.
_IN_PROCESS_TYPES = frozenset({"text/plain", "text/markdown", "text/csv", "application/json"})
_TEXT_TYPES = _IN_PROCESS_TYPES | {"text/html"}

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .doc, or an encrypted OOXML file

_KIND = {
    "text/plain": "text file",
    "text/markdown": "Markdown file",
    "text/csv": "CSV file",
    "application/json": "JSON file",
    "text/html": "HTML file",
    "application/pdf": "PDF",
    DOCX_TYPE: "Word document",
    "image/png": "PNG image",
    "image/jpeg": "JPEG image",
}

# Zip members bigger than this must not be compressed better than _MAX_ZIP_RATIO : 1.
# Real DOCX XML compresses 5-30x; deflate tops out near 1000x, which is what bombs use.
_ZIP_RATIO_MIN_BYTES = 1024 * 1024
_MAX_ZIP_RATIO = 200
_MAX_ZIP_MEMBERS = 10_000
_MAX_TABLE_NESTING = 32
# Pillow refuses images above this many pixels (a 100 MP photo still decodes in ~300 MB).
_MAX_IMAGE_PIXELS = 100_000_000
# A text file is binary when more than this share of its characters are control characters.
_MAX_CONTROL_SHARE = 0.05
_MAX_NUL_SHARE = 0.10

_SENTINEL = "\ue000"  # private-use char marking block boundaries while flattening HTML
_HTML_DROP = ["script", "style", "noscript", "template"]
_HTML_BLOCKS = (
    "address,article,aside,blockquote,br,caption,dd,details,dialog,div,dl,dt,fieldset,"
    "figcaption,figure,footer,form,h1,h2,h3,h4,h5,h6,header,hr,legend,li,main,nav,ol,p,"
    "section,summary,table,tbody,thead,tfoot,tr,td,th,ul"
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_CJK = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff01-\uff60\uff66-\uff9f"
_CJK_WRAP = re.compile(f"(?<=[{_CJK}])\n(?=[{_CJK}])")
# Only the line is matched here; its closing "#"s and blanks are trimmed by _md_heading_text,
# because a regex that trims them itself backtracks quadratically on long runs of blanks.
_MD_HEADING = re.compile(r"^ {0,3}#[ \t]+([^\n]*)", re.M)
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27)) + b"\x7f"
_CONTROL_CHARS = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")


# --------------------------------------------------------------------------------------------
# Media types


def _basename(filename: str) -> str:
    return re.split(r"[\\/]", filename)[-1]


def _suffix(filename: str) -> str:
    name = _basename(filename)
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def _stem(filename: str) -> str:
    name = _basename(filename)
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name


def _sniff_binary(head: bytes) -> str | None:
    """The supported binary media type the magic bytes announce, if any."""
    if head.startswith(_PNG_MAGIC):
        return "image/png"
    if head.startswith(_JPEG_MAGIC):
        return "image/jpeg"
    if b"%PDF-" in head[:1024]:  # the spec tolerates junk before the header
        return "application/pdf"
    if head.startswith(_ZIP_MAGIC):
        return DOCX_TYPE
    return None


def media_type_for(filename: str, head: bytes) -> str | None:
    """Media type from the suffix, verified against magic bytes (head = first 4 KiB).

    None means not supported: an unknown suffix, or a binary suffix whose content is not that
    format. A PNG named .jpg (or the reverse) gets its real type. Text suffixes are not
    rejected here; `extract()` says "binary content in a text file" with a clearer reason.
    """
    by_suffix = _SUFFIX_TYPES.get(_suffix(filename))
    if by_suffix is None or by_suffix in _TEXT_TYPES:
        return by_suffix
    sniffed = _sniff_binary(head)
    if sniffed == by_suffix:
        return by_suffix
    if by_suffix.startswith("image/") and sniffed is not None and sniffed.startswith("image/"):
        return sniffed
    return None


# --------------------------------------------------------------------------------------------
# In-process extraction


class _Deadline:
    """Cooperative time check between pages; the worker kill is the hard bound."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise ExtractionError(f"took longer than {self.seconds:g} s")


def extract(data: bytes, filename: str, limits: Limits = Limits()) -> Extracted:  # noqa: B008
    """Extract in-process. Raises ExtractionError with a clear human message, nothing else."""
    try:
        return _extract(data, filename, limits)
    except ExtractionError:
        raise
    except RecursionError:
        raise ExtractionError("the file is nested too deeply to read") from None
    except MemoryError:
        raise ExtractionError("not enough memory to read the file") from None
    except Exception as exc:  # any library failure on hostile input becomes a clear message
        kind = _KIND.get(_SUFFIX_TYPES.get(_suffix(filename), ""), "file")
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        raise ExtractionError(f"damaged or unreadable {kind} ({reason})") from None


def format_size(n: int) -> str:
    """A size in words, for reasons and limits: MiB for files, KiB or bytes for small limits."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"


def _extract(data: bytes, filename: str, limits: Limits) -> Extracted:
    if len(data) > limits.max_file_bytes:
        raise ExtractionError(
            f"file is too large ({format_size(len(data))}; "
            f"the limit is {format_size(limits.max_file_bytes)})"
        )
    suffix = _suffix(filename)
    media_type = media_type_for(filename, data[:4096])
    if media_type is None:
        raise ExtractionError(_mismatch_reason(suffix, data[:4096]))
    deadline = _Deadline(limits.max_seconds)
    handler = _HANDLERS[media_type]
    title, text, metadata = handler(data, filename, limits, deadline)
    # In-process formats have no worker to kill: a file that blew the budget still fails.
    deadline.check()
    text = _normalise(text)
    if len(text) > limits.max_text_chars:
        metadata["truncated"] = True
        metadata["original_chars"] = len(text)
        text = text[: limits.max_text_chars]
    else:
        metadata["truncated"] = False
    title = " ".join(_normalise(title).split())[:500] or _stem(filename)
    return Extracted(media_type=media_type, title=title, text=text, metadata=metadata)


def mismatch_reason(filename: str, head: bytes) -> str:
    """Why a file whose `media_type_for` is None cannot be read, in plain words."""
    return _mismatch_reason(_suffix(filename), head)


def _mismatch_reason(suffix: str, head: bytes) -> str:
    expected = _SUFFIX_TYPES.get(suffix)
    if expected is None:
        return f"unsupported file type ({suffix or 'no extension'})"
    if not head:
        return f"empty file (expected a {_KIND[expected]})"
    if expected == DOCX_TYPE and head.startswith(_OLE_MAGIC):
        return "encrypted or legacy Word document (not a .docx zip archive)"
    found = _content_kind(head)
    if found is not None:
        return (
            f"the content is {found}, not a {_KIND[expected]}"
            f" (the extension {suffix} does not match)"
        )
    return f"the content is not a {_KIND[expected]} (the extension {suffix} does not match)"


def _content_kind(head: bytes) -> str | None:
    """A few words for what the first bytes really are, when that is recognisable."""
    if head.startswith(_OLE_MAGIC):
        return "an OLE compound file (a legacy or encrypted Office document)"
    sniffed = _sniff_binary(head)
    if sniffed == DOCX_TYPE:
        return "a zip archive"
    if sniffed is not None:
        return f"a {_KIND[sniffed]}"
    start = head[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if start.startswith((b"<!doctype html", b"<html")) or b"<html" in start or b"<body" in start:
        return "HTML"
    return None


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\x00", "") if "\x00" in text else text


# -- text decoding ---------------------------------------------------------------------------


def _decode_text(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode bytes of a text file; returns (text, encoding). Raises on binary content."""
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return _check_not_binary(data.decode(encoding)), encoding
            except UnicodeDecodeError:
                raise ExtractionError("binary content in a text file") from None
    if not data:
        return "", "utf-8"
    bom_less_16 = _utf16_without_bom(data)
    if bom_less_16 is not None:
        return bom_less_16
    nuls = data.count(0)
    if nuls > len(data) * _MAX_NUL_SHARE:
        raise ExtractionError("binary content in a text file")
    if nuls:
        data = data.replace(b"\x00", b"")
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if controls > len(data) * _MAX_CONTROL_SHARE:
        raise ExtractionError("binary content in a text file")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if declared:
        try:
            return _check_not_binary(data.decode(declared)), declared
        except (LookupError, UnicodeDecodeError):
            pass
    # Mostly valid UTF-8 with a few damaged bytes is still UTF-8; guessing would garble it.
    lenient = data.decode("utf-8", errors="replace")
    replaced = lenient.count("\ufffd")
    damaged = replaced - data.count(b"\xef\xbf\xbd")
    multibyte = len(lenient) - len(lenient.encode("ascii", "ignore")) - replaced
    if multibyte >= 4 * damaged:
        return lenient, "utf-8 (damaged bytes replaced)"
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or best.encoding is None:
        raise ExtractionError("binary content in a text file (no text encoding fits)")
    if best.encoding in _WESTERN_LOOKALIKES and _reads_as_western(data):
        # charset-normalizer labels short French/German/Spanish text cp1250 ("naďve"); when
        # every non-ASCII byte is a common Western accented letter in cp1252, that is the answer.
        return _check_not_binary(data.decode("cp1252")), "cp1252"
    return _check_not_binary(data.decode(best.encoding, errors="replace")), best.encoding


_WESTERN_LOOKALIKES = frozenset(
    {
        "cp1250",
        "iso8859_2",
        "cp1257",
        "iso8859_13",
        "iso8859_4",
        "cp1254",
        "iso8859_9",
        "mac_latin2",
        "cp852",
        "iso8859_15",
        "latin_1",
        "iso8859_1",
    }
)
_WESTERN_LETTERS = frozenset(
    "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝœŒ€«»°–—’‘“”…"
)


def _reads_as_western(data: bytes) -> bool:
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return all(ch in _WESTERN_LETTERS for ch in text if ord(ch) > 127)


def _utf16_without_bom(data: bytes) -> tuple[str, str] | None:
    """UTF-16 text without a BOM shows NULs in every other byte (for Latin text)."""
    sample = data[:65536]
    if len(sample) < 4 or len(sample) % 2:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    if odd > 0.6 * half and even < 0.05 * half:
        encoding = "utf-16-le"
    elif even > 0.6 * half and odd < 0.05 * half:
        encoding = "utf-16-be"
    else:
        return None
    try:
        return _check_not_binary(data.decode(encoding)), encoding
    except UnicodeDecodeError:
        return None


def _check_not_binary(text: str) -> str:
    sample = text[:1_000_000]
    if len(_CONTROL_CHARS.findall(sample)) > len(sample) * _MAX_CONTROL_SHARE:
        raise ExtractionError("binary content in a text file")
    return text


_Result = tuple[str, str, dict[str, object]]
_Handler = Callable[[bytes, str, Limits, _Deadline], _Result]


def _plain(data: bytes, filename: str, limits: Limits, deadline: _Deadline) -> _Result:
    text, encoding = _decode_text(data)
    deadline.check()
    return "", text, {"encoding": encoding}


def _markdown(data: bytes, filename: str, limits: Limits, deadline: _Deadline) -> _Result:
    text, encoding = _decode_text(data)
    deadline.check()
    title = ""
    for match in _MD_HEADING.finditer(text, 0, 1_000_000):
        title = _md_heading_text(match.group(1))
        if title:
            break
        deadline.check()
    return title, text, {"encoding": encoding}


def _md_heading_text(line: str) -> str:
    """An ATX heading's text without its optional closing sequence (``# Title ##``)."""
    text = line.rstrip(" \t")
    without_closing = text.rstrip("#")
    if without_closing != text and (not without_closing or without_closing[-1] in " \t"):
        text = without_closing
    return text.strip(" \t")


def _json(data: bytes, filename: str, limits: Limits, deadline: _Deadline) -> _Result:
    text, encoding = _decode_text(data)
    deadline.check()
    meta: dict[str, object] = {"encoding": encoding}
    try:
        values: list[Any] = [json.loads(text)]
    except RecursionError:
        raise ExtractionError("JSON is nested too deeply to read") from None
    except ValueError as exc:
        values = _json_lines(text, exc)
        meta["json_lines"] = True
    deadline.check()
    return "", _json_text(values), meta


def _json_lines(text: str, first_error: ValueError) -> list[Any]:
    """Accept JSON Lines saved as .json; otherwise report the original parse error."""
    lines = [line for line in text.split("\n") if line.strip()]
    try:
        if len(lines) < 2:
            raise ValueError
        return [json.loads(line) for line in lines]
    except RecursionError:
        raise ExtractionError("JSON is nested too deeply to read") from None
    except ValueError:
        raise ExtractionError(f"invalid JSON ({first_error})") from None


def _json_text(values: list[Any]) -> str:
    """Keys and scalar values, one per line ('key: value'), walked without recursion."""
    out: list[str] = []
    stack: list[tuple[str | None, Any]] = [(None, v) for v in reversed(values)]
    while stack:
        key, value = stack.pop()
        prefix = f"{key}: " if key is not None else ""
        if isinstance(value, dict):
            if key is not None:
                out.append(f"{key}:")
            stack.extend((str(k), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            if key is not None:
                out.append(f"{key}:")
            stack.extend((None, v) for v in reversed(value))
        elif value is None:
            out.append(prefix + "null")
        elif isinstance(value, bool):
            out.append(prefix + ("true" if value else "false"))
        else:
            out.append(prefix + str(value))
    return "\n".join(out)


# -- HTML ------------------------------------------------------------------------------------


def _html(data: bytes, filename: str, limits: Limits, deadline: _Deadline) -> _Result:
    from selectolax.lexbor import LexborHTMLParser

    declared_match = _META_CHARSET.search(data[:4096])
    declared = declared_match.group(1).decode("ascii").lower() if declared_match else None
    if declared is not None and declared.startswith("utf-16"):
        declared = None  # a byte-oriented <meta> cannot really be UTF-16 (HTML spec: use UTF-8)
    source, encoding = _decode_text(data, declared)
    tree = LexborHTMLParser(source)  # a parser only: nothing is fetched, no script runs
    tree.strip_tags(_HTML_DROP)
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node is not None else ""
    meta: dict[str, object] = {"encoding": encoding}
    for name in ("author", "description", "keywords"):
        node = tree.css_first(f'meta[name="{name}"]')
        content = node.attributes.get("content") if node is not None else None
        if content:
            meta[name] = content[:1000]
    html_node = tree.css_first("html")
    lang = html_node.attributes.get("lang") if html_node is not None else None
    if lang:
        meta["lang"] = lang[:35]
    body = tree.body
    if body is None:
        return title, "", meta
    for pre in body.css("pre"):
        pre.replace_with(
            _SENTINEL + pre.text(deep=True, strip=False).replace("\n", _SENTINEL) + _SENTINEL
        )
    for node in body.css(_HTML_BLOCKS):
        node.insert_before(_SENTINEL)
        node.insert_after(_SENTINEL)
    raw = body.text(deep=True, separator="", strip=False)
    lines = (" ".join(part.split()) for part in raw.split(_SENTINEL))
    return title, "\n".join(line for line in lines if line), meta


# -- PDF -------------------------------------------------------------------------------------


def _pdf(data: bytes, filename: str, limits: Limits, deadline: _Deadline) -> _Result:
    pypdf_log = logging.getLogger("pypdf")
    if pypdf_log.level == logging.NOTSET:  # damaged files are reported by us, not logged
        pypdf_log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            reader, pages = _open_pdf(data)
            repaired = False
        except ExtractionError:
            raise
        except (RecursionError, MemoryError):
            raise
        except Exception as exc:  # pypdf could not find its way in; try to rebuild
            try:
                reader, pages = _open_pdf(_repair_pdf(data))
                repaired = True
            except ExtractionError:
                raise
            except (RecursionError, MemoryError):
                raise
            except Exception:
                raise ExtractionError(f"damaged or truncated PDF ({exc})") from None
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
        if failed == len(pages):
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
    text = "\n\n".join(_CJK_WRAP.sub("", _normalise(t)).strip() for t in texts)
    meta["has_text"] = bool(text.strip())
    return title, text.strip(), meta


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


def _docx(data: bytes, filename: str, limits: Limits, deadline: _Deadline) -> _Result:
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


def _image(data: bytes, filename: str, limits: Limits, deadline: _Deadline) -> _Result:
    from PIL import Image, UnidentifiedImageError

    expected = "PNG" if data.startswith(_PNG_MAGIC) else "JPEG"
    Image.MAX_IMAGE_PIXELS = _MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
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


_HANDLERS: dict[str, _Handler] = {
    "text/plain": _plain,
    "text/csv": _plain,
    "text/markdown": _markdown,
    "application/json": _json,
    "text/html": _html,
    "application/pdf": _pdf,
    DOCX_TYPE: _docx,
    "image/png": _image,
    "image/jpeg": _image,
}


# --------------------------------------------------------------------------------------------
# Worker process

_STARTUP_SECONDS = 60.0


def _worker_main(conn: Connection) -> None:
    """Child loop: import the parsers once, then extract one request at a time."""
    import docx  # noqa: F401  (warm imports so each file pays only for parsing)
    import pypdf  # noqa: F401
    from PIL import Image  # noqa: F401
    from selectolax.lexbor import LexborHTMLParser  # noqa: F401

    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # parent went away: exit instead of lingering
            return
        if request is None:
            return
        data, filename, limits, debug_sleep, debug_crash = request
        if debug_sleep:
            time.sleep(debug_sleep)
        if debug_crash:
            os._exit(70)  # test seam: die mid-file the way a segfaulting parser would
        try:
            reply: tuple[str, object] = ("ok", extract(data, filename, limits))
        except ExtractionError as exc:
            reply = ("error", str(exc))
        except BaseException as exc:  # extract() should not let these through; be safe
            reply = ("error", f"extraction failed ({type(exc).__name__})")
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


class Extractor:
    """Runs extract() in a reusable child process, bounded by limits.max_seconds.

    On timeout or crash the worker is killed (and reaped) and a fresh one starts on the next
    call. Text, Markdown, CSV and JSON are extracted in the calling process. Calls are
    serialised by a lock, so one Extractor may be shared between threads.
    """

    def __init__(self, limits: Limits = Limits()) -> None:  # noqa: B008
        self.limits = limits
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._closed = False
        # Test seams: the worker sleeps this long before extracting / exits abruptly instead.
        self._debug_sleep = 0.0
        self._debug_crash = False

    def __enter__(self) -> Extractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def extract(self, data: bytes, filename: str) -> Extracted:
        """Extract one file; raises ExtractionError only."""
        media_type = media_type_for(filename, data[:4096])
        if media_type is None or media_type in _IN_PROCESS_TYPES:
            return extract(data, filename, self.limits)
        if len(data) > self.limits.max_file_bytes:
            return extract(data, filename, self.limits)  # raises the size error, no transfer
        with self._lock:
            if self._closed:
                raise ExtractionError("the extractor has been closed")
            return self._run(data, filename)

    def close(self) -> None:
        """Stop the worker and reap it; safe to call twice."""
        with self._lock:
            self._closed = True
            self._stop(graceful=True)

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id while one runs (for diagnostics and tests)."""
        return self._proc.pid if self._proc is not None else None

    def _run(self, data: bytes, filename: str) -> Extracted:
        request = (data, filename, self.limits, self._debug_sleep, self._debug_crash)
        conn = self._ensure_worker()
        resend = False
        try:
            conn.send(request)
        except (OSError, ValueError):  # the idle worker had died: the file is not to blame
            self._stop(graceful=False)
            conn = self._ensure_worker()
            resend = True
        try:
            if resend:
                conn.send(request)
            ready = conn.poll(self.limits.max_seconds)
        except (OSError, EOFError, ValueError):
            self._stop(graceful=False)
            raise ExtractionError("the extractor process stopped unexpectedly") from None
        if not ready:
            self._stop(graceful=False)
            raise ExtractionError(f"took longer than {self.limits.max_seconds:g} s")
        try:
            status, payload = conn.recv()
        except (OSError, EOFError):
            code = self._stop(graceful=False)
            raise ExtractionError(
                f"the extractor process crashed while reading the file (exit code {code})"
            ) from None
        if status == "ok" and isinstance(payload, Extracted):
            return payload
        raise ExtractionError(str(payload))

    def _ensure_worker(self) -> Connection:
        if self._proc is not None and self._conn is not None and self._proc.is_alive():
            return self._conn
        self._stop(graceful=False)
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main, args=(child,), name="kvdesk-extract", daemon=True
        )
        try:
            proc.start()
        except Exception as exc:
            parent.close()
            child.close()
            raise ExtractionError(f"could not start the extractor process ({exc})") from None
        child.close()
        self._proc, self._conn = proc, parent
        try:
            started = parent.poll(_STARTUP_SECONDS) and parent.recv() == ("ready", None)
        except (OSError, EOFError):
            started = False
        if not started:
            self._stop(graceful=False)
            raise ExtractionError("the extractor process failed to start")
        return parent

    def _stop(self, graceful: bool) -> int | None:
        """Ends the worker (politely if asked), always joins it so no zombie remains."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            if graceful and proc is not None and proc.is_alive():
                try:
                    conn.send(None)
                except (OSError, ValueError):
                    pass
            conn.close()
        if proc is None:
            return None
        if graceful:
            proc.join(2.0)
        if proc.is_alive():
            proc.kill()
        proc.join(5.0)
        code = proc.exitcode
        if code is not None:
            proc.close()
        return code
