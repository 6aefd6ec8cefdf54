"""The search box syntax: words, "phrases", -exclusions and tag:/type:/before:/after: filters.

A query is first cleaned (:func:`clean_query`): lone surrogates (undecodable bytes from a
terminal's argv) become spaces, control characters are dropped, and anything past
:data:`MAX_QUERY_CHARS` (2,000) characters is cut off, so parsing stays linear and fast.
"""

from __future__ import annotations

import datetime
import functools
import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "CJK_CHAR_CLASS",
    "MAX_QUERY_CHARS",
    "ParsedQuery",
    "clean_query",
    "has_cjk",
    "parse_query",
]

# Longer queries are cut here: nobody types more, and pasted documents should not cost seconds.
MAX_QUERY_CHARS = 2000

# Han (with extensions and compatibility ideographs), kana, Hangul and the iteration marks.
# Punctuation such as 、。「」 is deliberately left out: it separates runs.
CJK_CHAR_CLASS = (
    "\u3005-\u3007\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\uff66-\uff9f\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
    "\U00020000-\U0003134f"
)
_OPEN_QUOTES = {'"': '"', "\u201c": "\u201d", "\u201d": "\u201d", "\u201e": "\u201c"}
_CLOSE_QUOTES = {'"', "\u201d", "\u201c"}
_FILTER_KEYS = ("tag", "type", "before", "after")
_DATE_RE = re.compile(r"^(\d{4})(?:[-/.](\d{1,2})(?:[-/.](\d{1,2}))?)?$")


@dataclass(frozen=True)
class ParsedQuery:
    """A search box string split into what each key space needs.

    Attributes:
        text: free text without filters or exclusions (what the dense model embeds);
            phrase words are kept, without their quotes.
        terms: bare words, in order.
        phrases: quoted phrases, without quotes.
        tags: ``tag:NAME`` filters (all must hold); names may contain ``::``.
        types: ``type:X`` filters (any may hold); short names like ``pdf`` or ``image``.
        before: only values updated before this day (exclusive).
        after: only values updated on or after this day (inclusive, as in Gmail).
        excluded: ``-word`` or ``-"some phrase"``; values containing them are dropped.
    """

    text: str
    terms: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    before: datetime.date | None = None
    after: datetime.date | None = None
    excluded: tuple[str, ...] = ()

    @property
    def has_filters(self) -> bool:
        """Whether any tag/type/date filter is set."""
        return bool(self.tags or self.types or self.before or self.after)


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds Chinese, Japanese or Korean characters (they need n-gram keys)."""
    return not text.isascii() and _cjk_re().search(text) is not None


@functools.cache
def _cjk_re() -> re.Pattern[str]:
    """Compiled on first use (a few ms: every process would pay it at start-up otherwise)."""
    return re.compile(f"[{CJK_CHAR_CLASS}]")


def _parse_date(value: str) -> datetime.date | None:
    """Read ``YYYY-MM-DD`` (also ``YYYY-MM`` and ``YYYY``: the first day); None when invalid."""
    m = _DATE_RE.match(value)
    if m is None:
        return None
    try:
        return datetime.date(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1))
    except ValueError:
        return None


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def clean_query(raw: object) -> str:
    """The query as kvdesk searches it: valid Unicode, no control characters, length-capped.

    Lone surrogates (what Python makes of undecodable argv bytes) become spaces, other control
    characters (Unicode category ``Cc`` except whitespace, and ``Cs``) are dropped, and the text
    is cut at :data:`MAX_QUERY_CHARS` characters.
    """
    text = raw if isinstance(raw, str) else str(raw)
    text = _SURROGATE_RE.sub(" ", text)
    if any(unicodedata.category(ch) == "Cc" and not ch.isspace() for ch in text):
        text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc")
    return text[:MAX_QUERY_CHARS]


def _next_close_table(raw: str) -> list[int]:
    """``table[i]``: index of the first closing quote at or after ``i`` (-1: none). O(n)."""
    table = [-1] * (len(raw) + 1)
    nxt = -1
    for j in range(len(raw) - 1, -1, -1):
        if raw[j] in _CLOSE_QUOTES:
            nxt = j
        table[j] = nxt
    return table


def parse_query(raw: str) -> ParsedQuery:
    """Split a search box string into its parts; never raises.

    Anything that does not parse (an unbalanced quote, ``tag:`` with no name, a bad date, an
    unknown ``key:``) degrades to plain words, so a typo never turns into an error message.
    The text is cleaned first (:func:`clean_query`); parsing is linear in its length.
    """
    raw = clean_query(raw)
    next_close = _next_close_table(raw)

    text_parts: list[str] = []
    terms: list[str] = []
    phrases: list[str] = []
    tags: list[str] = []
    types: list[str] = []
    excluded: list[str] = []
    before: datetime.date | None = None
    after: datetime.date | None = None

    def add_word(word: str, negated: bool) -> None:
        if not word:
            return
        if negated:
            excluded.append(word)
        else:
            terms.append(word)
            text_parts.append(word)

    i, n = 0, len(raw)
    while i < n:
        if raw[i].isspace():
            i += 1
            continue
        negated = False
        if raw[i] == "-" and i + 1 < n and not raw[i + 1].isspace():
            negated = True
            i += 1
        if raw[i] in _OPEN_QUOTES:
            close = next_close[i + 1]
            if close == -1:  # unbalanced: the quote is just noise
                i += 1
                if negated and i < n and not raw[i].isspace():
                    j = i
                    while j < n and not raw[j].isspace():
                        j += 1
                    add_word(raw[i:j], True)
                    i = j
                continue
            phrase = " ".join(raw[i + 1 : close].split())
            i = close + 1
            if not phrase:
                continue
            if negated:
                excluded.append(phrase)
            elif " " in phrase or (len(phrase) > 1 and has_cjk(phrase)):
                # CJK is written without spaces: a quoted run is a phrase, not one word.
                phrases.append(phrase)
                text_parts.append(phrase)
            else:  # a quoted single word is just a word
                add_word(phrase, False)
            continue
        j = i
        while j < n and not raw[j].isspace():
            if raw[j] in _OPEN_QUOTES and j > i and raw[j - 1] == ":":
                break
            j += 1
        word = raw[i:j]
        key, sep, value = word.partition(":")
        key = key.lower()
        if sep and key in _FILTER_KEYS and not negated:
            if not value and j < n and raw[j] in _OPEN_QUOTES:
                close = next_close[j + 1]
                if close != -1:
                    value = " ".join(raw[j + 1 : close].split())
                    j = close + 1
            if value and key == "tag":
                tags.append(value)
                i = j
                continue
            if value and key == "type":
                types.append(value.lower())
                i = j
                continue
            day = _parse_date(value) if value else None
            if day is not None and key == "before":
                before = day if before is None else min(before, day)
                i = j
                continue
            if day is not None and key == "after":
                after = day if after is None else max(after, day)
                i = j
                continue
        add_word(word, negated)
        i = j

    return ParsedQuery(
        text=" ".join(text_parts),
        terms=tuple(terms),
        phrases=tuple(phrases),
        tags=tuple(tags),
        types=tuple(types),
        before=before,
        after=after,
        excluded=tuple(excluded),
    )
