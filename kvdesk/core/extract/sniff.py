"""What a file is: media types from suffixes checked against magic bytes, in plain words.

Three kinds of names are read by content rather than by suffix: names with no extension and the
usual documentation files (``README``, ``copyright``, ``NEWS``, ``changelog.Debian``...), and
man-page names (``ls.1``): text is imported, a man page's roff is recognised, binary content is
refused with what it is. A ``.gz`` file is its inner name's format, compressed (``ls.1.gz``).
"""

from __future__ import annotations

import re

from kvdesk.core.errors import ExtractionError
from kvdesk.core.extract.decode import GZIP_MAGIC, looks_like_text, peek_gunzip

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

_SUFFIX_TYPES: dict[str, str] = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".rst": "text/x-rst",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    ".docx": DOCX_TYPE,
    ".csv": "text/csv",
    ".json": "application/json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".webp": "image/webp",
}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_SUFFIX_TYPES)

# A gzip file is inflated in the worker (bounded there), then read as its inner name's format.
GZIP_TYPE = "application/gzip"
TROFF_TYPE = "text/troff"  # man pages (RFC 4263)

# Cheap, safe formats: decoded in the calling process even when an Extractor is used.
IN_PROCESS_TYPES = frozenset(
    {"text/plain", "text/markdown", "text/x-rst", TROFF_TYPE, "text/csv", "application/json"}
)
_TEXT_TYPES = IN_PROCESS_TYPES | {"text/html"}

# Documentation files named by convention rather than by extension (README.Debian, NEWS).
_DOC_NAMES = frozenset(
    {
        "readme", "copyright", "copying", "license", "licence", "news", "changelog", "changes",
        "todo", "install", "authors", "thanks", "credits", "history", "bugs", "notice",
        "contributors", "faq", "hacking", "maintainers",
    }
)  # fmt: skip
_MAN_SUFFIX = re.compile(r"\.(?:[1-9][a-z0-9]{0,8}|man)$", re.IGNORECASE)
_ROFF_START = re.compile(rb"^(?:\.(?:TH|Dd|Dt|SH|so|de|ig)\b|[.']\\\")", re.MULTILINE)
_ELF_MAGIC = b"\x7fELF"

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
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
    "image/tiff": "TIFF image",
    "image/webp": "WebP image",
    "text/x-rst": "reStructuredText file",
    TROFF_TYPE: "man page",
    GZIP_TYPE: "gzip-compressed file",
}


def _basename(filename: str) -> str:
    return re.split(r"[\\/]", filename)[-1]


def _suffix(filename: str) -> str:
    name = _basename(filename)
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def inner_name(filename: str) -> str:
    """The name of what a ``.gz`` file holds (``ls.1.gz`` → ``ls.1``); other names unchanged."""
    name = _basename(filename)
    return name[:-3] if _suffix(name) == ".gz" and len(name) > 3 else name


def _read_by_content(filename: str) -> bool:
    """Names whose content decides: no extension, README.Debian-like names, man pages."""
    name = _basename(filename)
    if name.startswith("."):
        return False
    if _suffix(name) == "" or _MAN_SUFFIX.search(name):
        return True
    return name.split(".", 1)[0].lower() in _DOC_NAMES


def is_supported_name(filename: str) -> bool:
    """Whether a file of this name may be imported (its content is checked later)."""
    suffix = _suffix(filename)
    if suffix == ".gz":
        inner = inner_name(filename)
        return _suffix(inner) != ".gz" and _plain_name_supported(inner)
    return _plain_name_supported(filename)


def reads_by_content(filename: str) -> bool:
    """Whether the first bytes, not the name, decide if a file is imported: no telling
    extension (README, ls.1) or a .gz file (what it holds)."""
    if _suffix(filename) == ".gz":
        return True
    return _suffix(filename) not in _SUFFIX_TYPES and _read_by_content(filename)


def _plain_name_supported(filename: str) -> bool:
    return _suffix(filename) in _SUFFIX_TYPES or _read_by_content(filename)


def stem_of(filename: str) -> str:
    """The file name without folders, ``.gz`` and a known suffix (the fallback title)."""
    name = inner_name(filename)
    dot = name.rfind(".")
    if dot > 0 and (_suffix(name) in _SUFFIX_TYPES or _MAN_SUFFIX.search(name)):
        return name[:dot]
    return name


def kind_of(filename: str) -> str:
    """What the suffix promises, in words ("PDF", "Word document"); "file" when unsupported."""
    if _suffix(filename) == ".gz":
        return _KIND[GZIP_TYPE]
    if _suffix(filename) not in _SUFFIX_TYPES and _read_by_content(filename):
        return "text file"
    return _KIND.get(_SUFFIX_TYPES.get(_suffix(filename), ""), "file")


def _sniff_binary(head: bytes) -> str | None:
    """The supported binary media type the magic bytes announce, if any."""
    if head.startswith(PNG_MAGIC):
        return "image/png"
    if head.startswith(_JPEG_MAGIC):
        return "image/jpeg"
    if head.startswith(_TIFF_MAGICS):
        return "image/tiff"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
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
    Names read by content (``README``, ``ls.1``) are text, a man page, or a supported
    binary format by its magic bytes; a ``.gz`` file must hold what its inner name promises.
    """
    if _suffix(filename) == ".gz":
        return GZIP_TYPE if _gzip_inner_type(filename, head) is not None else None
    by_suffix = _SUFFIX_TYPES.get(_suffix(filename))
    if by_suffix is None:
        return _type_by_content(filename, head) if _read_by_content(filename) else None
    if by_suffix in _TEXT_TYPES:
        return by_suffix
    sniffed = _sniff_binary(head)
    if sniffed == by_suffix:
        return by_suffix
    if by_suffix.startswith("image/") and sniffed is not None and sniffed.startswith("image/"):
        return sniffed
    return None


def _gzip_inner_type(filename: str, head: bytes) -> str | None:
    """What a .gz file holds, judged from the start of its inflated content (None: refused)."""
    if not head.startswith(GZIP_MAGIC) or not is_supported_name(filename):
        return None
    try:
        inner_head = peek_gunzip(head)
    except ExtractionError:
        return None
    inner = inner_name(filename)
    if not inner_head:  # nothing inflated from the first bytes yet: the extraction decides
        return _SUFFIX_TYPES.get(_suffix(inner), "text/plain")
    return media_type_for(inner, inner_head)


def _type_by_content(filename: str, head: bytes) -> str | None:
    sniffed = _sniff_binary(head)
    # A zip is not necessarily a .docx, and a README may quote "%PDF-" on its first page.
    if (sniffed or "").startswith("image/") or head.startswith(b"%PDF-"):
        return sniffed
    if not looks_like_text(head):
        return None
    if _MAN_SUFFIX.search(_basename(filename)) and _ROFF_START.search(head[:4096]):
        return TROFF_TYPE
    if _content_kind(head) == "HTML":
        return "text/html"
    return "text/plain"


def mismatch_reason(filename: str, head: bytes) -> str:
    """Why a file whose `media_type_for` is None cannot be read, in plain words."""
    suffix = _suffix(filename)
    if suffix == ".gz":
        return _gzip_reason(filename, head)
    expected = _SUFFIX_TYPES.get(suffix)
    if expected is None:
        if _read_by_content(filename):
            return _not_text_reason(filename, head)
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


def _not_text_reason(filename: str, head: bytes) -> str:
    if not head:
        return "empty file"
    found = _content_kind(head) or "binary data"
    why = "no extension" if not _suffix(filename) else f"the name {_basename(filename)!r}"
    return f"not a text file: the content is {found} ({why}, so the content decides)"


def _gzip_reason(filename: str, head: bytes) -> str:
    inner = inner_name(filename)
    if not is_supported_name(filename):
        return f"unsupported file type ({_suffix(inner) or 'no extension'} inside .gz)"
    if not head:
        return "empty file (expected gzip-compressed data)"
    if not head.startswith(GZIP_MAGIC):
        found = _content_kind(head)
        what = f"the content is {found}" if found else "the content is not gzip data"
        return f"{what} (the extension .gz does not match)"
    try:
        inner_head = peek_gunzip(head)
    except ExtractionError as exc:
        return str(exc)
    return f"gzip-compressed file: {mismatch_reason(inner, inner_head)}"


def _content_kind(head: bytes) -> str | None:
    """A few words for what the first bytes really are, when that is recognisable."""
    if head.startswith(_OLE_MAGIC):
        return "an OLE compound file (a legacy or encrypted Office document)"
    if head.startswith(_ELF_MAGIC):
        return "an executable program (ELF)"
    if head.startswith(GZIP_MAGIC):
        return "gzip-compressed data"
    sniffed = _sniff_binary(head)
    if sniffed == DOCX_TYPE:
        return "a zip archive"
    if sniffed is not None:
        return f"a {_KIND[sniffed]}"
    start = head[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if start.startswith((b"<!doctype html", b"<html")) or b"<html" in start or b"<body" in start:
        return "HTML"
    return None
