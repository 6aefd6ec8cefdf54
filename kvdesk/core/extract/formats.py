"""`extract()` and the handlers for text-like formats: plain text, CSV, Markdown,
reStructuredText, man pages (roff), JSON, HTML; and gzip, inflated then read as its inner name.

PDF, DOCX and image handlers live in `documents`; `_HANDLERS` maps every media type to one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from kvdesk.core.errors import ExtractionError
from kvdesk.core.extract.decode import decode_text, gunzip, normalise
from kvdesk.core.extract.documents import extract_docx, extract_image, extract_pdf
from kvdesk.core.extract.limits import Deadline, Extracted, Limits, Result, format_size
from kvdesk.core.extract.sniff import (
    DOCX_TYPE,
    GZIP_TYPE,
    TROFF_TYPE,
    inner_name,
    kind_of,
    media_type_for,
    mismatch_reason,
    stem_of,
)

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
    compressed: dict[str, object] = {}
    if media_type == GZIP_TYPE:
        inflated = gunzip(data, limits.max_decompressed_bytes)
        deadline.check()
        compressed = {"compression": "gzip", "compressed_size": len(data)}
        data, filename = inflated, inner_name(filename)
        media_type = media_type_for(filename, data[:4096])
        if media_type is None or media_type == GZIP_TYPE:
            reason = mismatch_reason(filename, data[:4096])
            raise ExtractionError(f"gzip-compressed file: {reason}")
    handler = _HANDLERS[media_type]
    title, text, metadata = handler(data, filename, limits, deadline)
    metadata.update(compressed)
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


def _rst(data: bytes, filename: str, limits: Limits, deadline: Deadline) -> Result:
    """reStructuredText: the text as written; the title is the first underlined heading."""
    text, encoding = decode_text(data)
    deadline.check()
    return _rst_title(text[:1_000_000]), text, {"encoding": encoding}


_RST_ADORNMENT = re.compile(r"([!-/:-@\[-`{-~])\1+[ \t]*")


def _rst_title(text: str) -> str:
    """The first section title: a line of text underlined (maybe overlined too) by a run of
    one punctuation character at least as long as the text."""
    lines = text.split("\n", 2000)[:2000]
    for i in range(len(lines) - 1):
        line, under = lines[i].rstrip(), lines[i + 1].rstrip()
        words = line.strip()
        if (
            words
            and not _RST_ADORNMENT.fullmatch(line)
            and _RST_ADORNMENT.fullmatch(under)
            and len(under) >= len(words)
        ):
            return words
    return ""


def _roff(data: bytes, filename: str, limits: Limits, deadline: Deadline) -> Result:
    """A man page: roff requests and escapes removed, headings and paragraphs kept."""
    source, encoding = decode_text(data)
    deadline.check()
    title, text = roff_to_text(source, deadline)
    return title, text, {"encoding": encoding}


# Font and size changes, named characters and strings: the common roff escapes.
_ROFF_ESCAPE = re.compile(
    r"""\\(?:
        (?P<lit>[\\e])
      | \((?P<c2>..)
      | \[(?P<cn>[^\]\n]*)\]
      | \*(?:\((?P<s2>..)|\[(?P<sn>[^\]\n]*)\]|(?P<s1>.))
      | [fFgkmMnYV$](?:\(..|\[[^\]\n]*\]|.)
      | s[-+]?(?:\(\d\d|\[\d+\]|'\d+'|\d)
      | [hvwolLNDbxXSRZCA]'[^'\n]*'
      | (?P<sp>[ ~0])
      | [&|^c:%/,!)adprtuz{}]
      | (?P<other>.)
    )""",
    re.VERBOSE,
)
_ROFF_CHARS = {
    "em": "\u2014", "en": "\u2013", "hy": "-", "mi": "-", "bu": "\u2022", "aq": "'",
    "dq": '"', "lq": "\u201c", "rq": "\u201d", "oq": "\u2018", "cq": "\u2019", "co": "\u00a9",
    "rg": "\u00ae", "tm": "\u2122", "ga": "`", "ti": "~", "ha": "^", "rs": "\\", "sl": "/",
    "Tm": "\u2122", "R": "\u00ae", "dg": "\u2020", "->": "\u2192", "<-": "\u2190",
    "de": "\u00b0", "mu": "\u00d7", "pl": "+", "eq": "=", ">=": "\u2265", "<=": "\u2264",
}  # fmt: skip
# Macros whose arguments are words set in a font: .B, .I, and the alternating ones (.BR).
_ROFF_FONT = frozenset({"B", "I", "SM", "SB", "SY", "UR", "MT"})
_ROFF_ALTERNATING = frozenset({"BR", "RB", "BI", "IB", "IR", "RI"})
_ROFF_PARAGRAPH = frozenset({"PP", "LP", "P", "TP", "HP", "sp", "Pp", "Lp", "Bl", "El"})
_ROFF_HEADING = frozenset({"SH", "SS", "Sh", "Ss"})
# mdoc macros that may appear inside a line (".Fl a Ar file"): dropped as words.
_MDOC_CALLABLE = frozenset(
    "Ad Ao Ac Ap Aq Ar Bo Bc Bq Brq Bro Brc Cm Dl Do Dc Dq Dv Em Er Ev Fa Fl Fn Ft Ic Li Nm "
    "Ns Oo Oc Op Pa Pf Po Pc Pq Ql Qo Qc Qq So Sc Sq Sx Sy Tn Va Vt Xr Xo Xc".split()
)
_ROFF_CONTINUATION = re.compile(r"(?<!\\)((?:\\\\)*)\\\n")
_ROFF_NAME = re.compile(r"[^\s\\]*")
_ROFF_ARGS = re.compile(r'"((?:[^"]|"")*)"?|(\S+)')


def roff_to_text(source: str, deadline: Deadline | None = None) -> tuple[str, str]:
    """(title, text) of a man page: the NAME line is the title ("ls - list directory
    contents"), else the .TH name and section."""
    out: list[str] = []
    th_title = ""
    name_line = ""
    in_name = False
    in_definition = False  # inside .de/.ig, up to ".."
    open_blocks = 0  # conditional blocks "\{ ... \}" still open: their lines are skipped
    in_table_format = False
    source = _ROFF_CONTINUATION.sub(r"\1", source)  # a line ending in "\" goes on
    for number, raw in enumerate(source.split("\n")):
        if deadline is not None and number % 4096 == 0:
            deadline.check()
        if in_definition:
            in_definition = raw.rstrip() != ".."
            continue
        if open_blocks:
            open_blocks += raw.count("\\{") - raw.count("\\}")
            continue
        if in_table_format:
            in_table_format = not raw.rstrip().endswith(".")
            continue
        if not raw.startswith((".", "'")):
            line = _roff_inline(raw.replace("\t", " "))
            out.append(line)
            if in_name:
                name_line = f"{name_line} {line}"
            continue
        request = raw[1:].lstrip(" \t")
        macro = _ROFF_NAME.match(request).group()  # type: ignore[union-attr]
        rest = request[len(macro) :]
        if not macro:
            continue  # a comment (.\"), an empty request, or the end of a block (.\})
        args = [a if a is not None and a != "" else b for a, b in _ROFF_ARGS.findall(rest)]
        args = [a.replace('""', '"') for a in args]
        if macro in ("de", "de1", "am", "ig"):
            in_definition = True
        elif macro in ("if", "ie", "el"):
            open_blocks = max(0, rest.count("\\{") - rest.count("\\}"))
        elif macro == "TS":
            in_table_format = True
        elif macro == "TH" or macro == "Dt":
            th_title = f"{args[0]}({args[1]})" if len(args) > 1 else " ".join(args)
            th_title = _roff_inline(th_title)
        elif macro in _ROFF_HEADING:
            heading = _roff_inline(" ".join(args))
            in_name = heading.strip().upper() == "NAME"
            out.extend(["", heading])
        elif macro in _ROFF_PARAGRAPH:
            out.append("")
        elif macro == "IP":
            out.extend(["", _roff_inline(args[0])] if args else [""])
        elif macro in _ROFF_FONT:
            out.append(_roff_inline(" ".join(args)))
        elif macro in _ROFF_ALTERNATING:
            out.append(_roff_inline("".join(args)))
        elif macro == "OP":
            out.append("[" + _roff_inline(" ".join(args)) + "]")
        elif macro == "Nd":
            out.append("- " + _roff_inline(" ".join(args)))
        elif macro[:1].isupper() and len(macro) <= 3 and macro[1:].islower():
            words = [a for a in args if a not in _MDOC_CALLABLE]  # mdoc: the words only
            out.append(_roff_inline(" ".join(words)))
        else:
            continue  # layout requests (.br, .nf, .RS, .in, .ft...): no text
        if in_name and macro not in _ROFF_HEADING:
            name_line = f"{name_line} {out[-1]}"
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in out)).strip("\n")
    return " ".join(name_line.split()[:60]) or th_title, text


def _roff_inline(text: str) -> str:
    comment = re.search(r'(?<!\\)(?:\\\\)*\\"', text)
    if comment is not None:
        text = text[: comment.start()] + text[comment.start() : comment.end() - 2]
    return _ROFF_ESCAPE.sub(_roff_escape, text) if "\\" in text else text


def _roff_escape(match: re.Match[str]) -> str:
    if match.group("lit"):
        return "\\"
    name = match.group("c2") or match.group("cn") or match.group("s2") or match.group("sn")
    name = name or match.group("s1")
    if name is not None:
        return _ROFF_CHARS.get(name, "")
    if match.group("sp"):
        return " "
    other = match.group("other")
    return other if other is not None else ""


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
    "text/x-rst": _rst,
    TROFF_TYPE: _roff,
    "application/json": _json,
    "text/html": _html,
    "application/pdf": extract_pdf,
    DOCX_TYPE: extract_docx,
    "image/png": extract_image,
    "image/jpeg": extract_image,
    "image/tiff": extract_image,
    "image/webp": extract_image,
}
