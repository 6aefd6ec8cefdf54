"""`extract()` and the handlers for text-like formats: plain text, CSV, Markdown, JSON, HTML.

PDF, DOCX and image handlers live in `documents`; `_HANDLERS` maps every media type to one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from kvdesk.core.errors import ExtractionError
from kvdesk.core.extract.decode import decode_text, normalise
from kvdesk.core.extract.documents import extract_docx, extract_image, extract_pdf
from kvdesk.core.extract.limits import Deadline, Extracted, Limits, Result, format_size
from kvdesk.core.extract.sniff import DOCX_TYPE, kind_of, media_type_for, mismatch_reason, stem_of

_SENTINEL = "\ue000"  # private-use char marking block boundaries while flattening HTML
_HTML_DROP = ["script", "style", "noscript", "template"]
_HTML_BLOCKS = (
    "address,article,aside,blockquote,br,caption,dd,details,dialog,div,dl,dt,fieldset,"
    "figcaption,figure,footer,form,h1,h2,h3,h4,h5,h6,header,hr,legend,li,main,nav,ol,p,"
    "section,summary,table,tbody,thead,tfoot,tr,td,th,ul"
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
# Only the line is matched here; its closing "#"s and blanks are trimmed by _md_heading_text,
# because a regex that trims them itself backtracks quadratically on long runs of blanks.
_MD_HEADING = re.compile(r"^ {0,3}#[ \t]+([^\n]*)", re.M)

_Handler = Callable[[bytes, str, Limits, Deadline], Result]


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
        kind = kind_of(filename)
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        raise ExtractionError(f"damaged or unreadable {kind} ({reason})") from None


def _extract(data: bytes, filename: str, limits: Limits) -> Extracted:
    if len(data) > limits.max_file_bytes:
        raise ExtractionError(
            f"file is too large ({format_size(len(data))}; "
            f"the limit is {format_size(limits.max_file_bytes)})"
        )
    media_type = media_type_for(filename, data[:4096])
    if media_type is None:
        raise ExtractionError(mismatch_reason(filename, data[:4096]))
    deadline = Deadline(limits.max_seconds)
    handler = _HANDLERS[media_type]
    title, text, metadata = handler(data, filename, limits, deadline)
    # In-process formats have no worker to kill: a file that blew the budget still fails.
    deadline.check()
    text = normalise(text)
    if len(text) > limits.max_text_chars:
        metadata["truncated"] = True
        metadata["original_chars"] = len(text)
        text = text[: limits.max_text_chars]
    else:
        metadata["truncated"] = False
    title = " ".join(normalise(title).split())[:500] or stem_of(filename)
    return Extracted(media_type=media_type, title=title, text=text, metadata=metadata)


def _plain(data: bytes, filename: str, limits: Limits, deadline: Deadline) -> Result:
    text, encoding = decode_text(data)
    deadline.check()
    return "", text, {"encoding": encoding}


def _markdown(data: bytes, filename: str, limits: Limits, deadline: Deadline) -> Result:
    text, encoding = decode_text(data)
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


def _json(data: bytes, filename: str, limits: Limits, deadline: Deadline) -> Result:
    text, encoding = decode_text(data)
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


def _html(data: bytes, filename: str, limits: Limits, deadline: Deadline) -> Result:
    from selectolax.lexbor import LexborHTMLParser

    declared_match = _META_CHARSET.search(data[:4096])
    declared = declared_match.group(1).decode("ascii").lower() if declared_match else None
    if declared is not None and declared.startswith("utf-16"):
        declared = None  # a byte-oriented <meta> cannot really be UTF-16 (HTML spec: use UTF-8)
    source, encoding = decode_text(data, declared)
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


_HANDLERS: dict[str, _Handler] = {
    "text/plain": _plain,
    "text/csv": _plain,
    "text/markdown": _markdown,
    "application/json": _json,
    "text/html": _html,
    "application/pdf": extract_pdf,
    DOCX_TYPE: extract_docx,
    "image/png": extract_image,
    "image/jpeg": extract_image,
}
