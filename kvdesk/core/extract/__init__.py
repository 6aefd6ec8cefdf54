"""Document text extraction that treats every file as hostile.

`extract()` turns the bytes of one file into plain text, a title and JSON-safe metadata, and
reports every failure as an `ExtractionError` with a plain-words reason. `Extractor` runs the
risky parsers (PDF, DOCX, HTML, images) in a reusable child process so that a parser that hangs
or crashes costs one file, not the whole import.

Modules: `sniff` (what a file is), `decode` (bytes of text files to text), `formats` (`extract()`
and the text-like formats), `documents` (PDF, DOCX, images), `sandbox` (the worker process),
`limits` (the values they share).
"""

from __future__ import annotations

from kvdesk.core.errors import ExtractionError
from kvdesk.core.extract.formats import extract
from kvdesk.core.extract.limits import Extracted, Limits, format_size
from kvdesk.core.extract.sandbox import Extractor
from kvdesk.core.extract.sniff import (
    DOCX_TYPE,
    SUPPORTED_SUFFIXES,
    media_type_for,
    mismatch_reason,
)

__all__ = [
    "DOCX_TYPE",
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
