"""Where a query's words are in a text: the spans the viewer marks.

Latin words match by the index's own English analyzer (so "policies" marks "policy"), CJK terms
and phrases literally; the GUI asks here instead of rebuilding the analyzer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from kvdesk.core.keys.lexical import english_keys
from kvdesk.core.search.query import has_cjk
from kvdesk.core.search.stopwords import content_words

MAX_HIGHLIGHTS = 500
_WORD_RE = re.compile(r"[^\W_]+")  # tantivy's simple tokenizer: runs of alphanumerics


def term_spans(
    text: str, terms: Iterable[str], limit: int = MAX_HIGHLIGHTS
) -> list[tuple[int, int]]:
    """Character spans of ``text`` to mark for the query ``terms``, in text order.

    Latin words match by stem (every word of ``text`` whose stem is a term's stem); CJK terms
    and phrases match literally, case-insensitively. Overlapping spans are merged.
    """
    wanted: set[str] = set()
    literal: set[str] = set()
    terms = list(terms)
    words = [t for t in terms if not t.startswith('"')]
    content = content_words(words)  # no "a" or "how" lit up, unless that is all there is
    if len(content) < len(words):
        terms = [t for t in terms if t.startswith('"') or t in content]
    for raw in terms:
        term = raw.strip('"').strip()
        if not term:
            continue
        if has_cjk(term) or " " in term:
            literal.add(term.lower())
        for word in _WORD_RE.findall(term):
            if not has_cjk(word):
                wanted.update(english_keys(word))
    spans: list[tuple[int, int]] = []
    if wanted:
        cache: dict[str, bool] = {}
        for m in _WORD_RE.finditer(text):
            word = m.group().lower()
            if has_cjk(word):
                continue
            hit = cache.get(word)
            if hit is None:
                hit = cache[word] = bool(set(english_keys(word)) & wanted)
            if hit:
                spans.append(m.span())
    lowered = text.lower() if literal else ""
    for term in literal:
        start = lowered.find(term)
        while start >= 0 and len(spans) < limit * 4:
            spans.append((start, start + len(term)))
            start = lowered.find(term, start + len(term))
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged[:limit]
