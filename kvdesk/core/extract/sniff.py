"""What a file is: media types from suffixes checked against magic bytes, in plain words."""

from __future__ import annotations

import re

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
IN_PROCESS_TYPES = frozenset({"text/plain", "text/markdown", "text/csv", "application/json"})
_TEXT_TYPES = IN_PROCESS_TYPES | {"text/html"}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
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


def _basename(filename: str) -> str:
    return re.split(r"[\\/]", filename)[-1]


def _suffix(filename: str) -> str:
    name = _basename(filename)
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def stem_of(filename: str) -> str:
    """The file name without folders and without its suffix (the fallback title)."""
    name = _basename(filename)
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name


def kind_of(filename: str) -> str:
    """What the suffix promises, in words ("PDF", "Word document"); "file" when unsupported."""
    return _KIND.get(_SUFFIX_TYPES.get(_suffix(filename), ""), "file")


def _sniff_binary(head: bytes) -> str | None:
    """The supported binary media type the magic bytes announce, if any."""
    if head.startswith(PNG_MAGIC):
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


def mismatch_reason(filename: str, head: bytes) -> str:
    """Why a file whose `media_type_for` is None cannot be read, in plain words."""
    suffix = _suffix(filename)
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
