"""Matched words as a person reads them: grouped by word, fields named as the user knows them.

The index scores a Japanese word by its dictionary form *and* its character bigrams, and an
English word once per field; listing every part (``ネッ(title_cjk)``, ``ja_words``) buries the
explanation. Here each dictionary word gathers the bigrams inside it, bigrams left over are
joined into the runs they came from, and an English word's title and body parts are one row.
The sums are kept exact: a group adds exactly what its parts add.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

#: Index fields by the names a user knows.
FIELD_NAMES = {
    "title": "title",
    "title_cjk": "title",
    "body": "text",
    "body_cjk": "text",
    "ja_words": "text",
    "tags": "tags",
    "path": "file name",
    "identifier": "id",
    "ext_id": "id",
    "context": "where quoted",  # the words around this value's quotes in others (quotes.py)
    "context_cjk": "where quoted",
}
_CJK_FIELDS = ("title_cjk", "body_cjk", "context_cjk")


class TermPart(Protocol):
    @property
    def field(self) -> str: ...

    @property
    def term(self) -> str: ...

    @property
    def bm25(self) -> float: ...

    @property
    def score(self) -> float: ...


@dataclass(frozen=True)
class TermGroup:
    """One matched word: where it matched (user-facing names) and what it adds, in total."""

    word: str
    where: tuple[str, ...]
    bm25: float
    score: float
    parts: tuple[TermPart, ...]

    @property
    def detail(self) -> str:
        """The parts in one line (for a tooltip or ``--explain``)."""
        return ", ".join(f"{p.term} ({FIELD_NAMES.get(p.field, p.field)})" for p in self.parts)


def group_terms(terms: Sequence[TermPart]) -> list[TermGroup]:
    """Group the matched index terms of one hit into words, largest contribution first."""
    words = [t for t in terms if t.field == "ja_words"]
    bigrams = [t for t in terms if t.field in _CJK_FIELDS]
    others = [t for t in terms if t.field != "ja_words" and t.field not in _CJK_FIELDS]
    groups: list[tuple[str, list[TermPart]]] = []
    used: set[int] = set()
    for word in sorted(words, key=lambda t: -len(t.term)):
        members: list[TermPart] = [word]
        for i, gram in enumerate(bigrams):
            if i not in used and gram.term in word.term:
                members.append(gram)
                used.add(i)
        groups.append((word.term, members))
    for run in _runs([g for i, g in enumerate(bigrams) if i not in used]):
        groups.append((_joined(run), run))
    by_label: dict[str, list[TermPart]] = {}
    for t in others:
        by_label.setdefault(t.term, []).append(t)
    groups.extend(by_label.items())
    merged: dict[str, list[TermPart]] = {}
    for label, members in groups:  # the same word in the title and in the text: one row
        merged.setdefault(label, []).extend(members)
    out = [
        TermGroup(
            word=label,
            where=tuple(dict.fromkeys(FIELD_NAMES.get(p.field, p.field) for p in members)),
            bm25=sum(p.bm25 for p in members),
            score=sum(p.score for p in members),
            parts=tuple(members),
        )
        for label, members in merged.items()
    ]
    out.sort(key=lambda g: (-g.score, g.word))
    return out


def _runs(grams: list[TermPart]) -> list[list[TermPart]]:
    """Bigrams chained by overlap (ネッ, ット, トワ → ネットワ), in the order they came."""
    runs: list[list[TermPart]] = []
    for gram in grams:
        for run in runs:
            tail = run[-1].term
            if len(tail) == 2 and len(gram.term) == 2 and tail[1] == gram.term[0]:
                run.append(gram)
                break
            if gram.term == tail:  # the same bigram in the other field
                run.append(gram)
                break
        else:
            runs.append([gram])
    return runs


def _joined(run: list[TermPart]) -> str:
    text = run[0].term
    for gram in run[1:]:
        if gram.term != text[-len(gram.term) :]:
            text += gram.term[1:] if len(gram.term) == 2 else gram.term
    return text
