"""Japanese words for the lexical keys: dictionary base forms from lindera's IPADIC analyzer.

Character bigrams find everything but cannot tell 京都 from 東京都; dictionary words can. On
JaQuAD (2,048 queries, lexical keys only, ``bench/bench_ja_words.py``, seed 7), bigrams alone
gave nDCG@10 0.605 on the held-out half and bigrams plus IPADIC base forms at weight 3 gave 0.628
(the tuning half is flat from 2 to 6: 0.632-0.633). Particles, auxiliary verbs, symbols
and fillers are dropped: they match everything and carry no meaning.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("kvdesk.keys")

_DROP_POS = frozenset({"助詞", "助動詞", "記号", "フィラー"})
_lock = threading.Lock()
_tokenizer: Any = None
_unavailable = False


def _get_tokenizer() -> Any:
    global _tokenizer, _unavailable
    with _lock:
        if _tokenizer is None and not _unavailable:
            try:
                from lindera import TokenizerBuilder

                builder = TokenizerBuilder().set_mode("normal")
                _tokenizer = builder.set_dictionary("embedded://ipadic").build()
            except Exception as exc:  # noqa: BLE001 - a missing analyzer leaves bigrams only
                _unavailable = True
                log.warning("Japanese word analyzer unavailable (%s); using bigrams only", exc)
        return _tokenizer


def available() -> bool:
    return _get_tokenizer() is not None


def japanese_words(text: str) -> list[str]:
    """Lowercased base forms of the content words in ``text`` (in order, repeats kept)."""
    tokenizer = _get_tokenizer()
    if tokenizer is None or not text:
        return []
    words: list[str] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        for token in tokenizer.tokenize(line):
            surface = token.surface.strip().lower()
            if not surface:
                continue
            details = token.details or []
            pos = details[0] if details else ""
            if pos in _DROP_POS:
                continue
            base = details[6] if len(details) > 6 and details[6] != "*" else surface
            if pos == "名詞" and base == surface and not any(ch.isalnum() for ch in surface):
                continue  # unknown symbol runs the dictionary calls nouns
            words.append(base.lower())
    return words
