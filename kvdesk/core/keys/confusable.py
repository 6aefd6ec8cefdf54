"""Confusable documents: pairs of different values whose keys collide, and what tells them apart.

Two values are *confusable* when both their meaning keys and their word keys nearly coincide: an
invoice and its corrected copy, a contract and next year's renewal. A search then ranks them
side by side and the user cannot tell which one is wanted. Values are never touched; what this
module offers is the evidence (dates, identifiers, numbers and words only one of them holds) and
a tag that one member could carry so the two become discriminable.

How pairs are found without comparing every pair in Python:

1. Dense: each value's passage vectors are averaged and normalised into one vector per value;
   blocks of rows are multiplied by the whole matrix (numpy), and only entries at or above
   ``min_dense`` are kept (at most ``neighbours`` per row). SciFact (5,183 values, 384 dims):
   2.0 s for the whole search (median of 3, two shared cores), under 1 s of it the products;
   0.4 s when only 200 values are asked about, as the pilot report asks
   (bench/bench_confusable.py).
2. Values with no current dense keys (not built yet, or no text) are compared by a hashed
   word-profile vector instead (the same blocked product; signed feature hashing to
   ``HASH_DIM`` dims, whose noise is why its floor sits ``HASH_MARGIN`` below ``min_lexical``).
   With no meaning keys at all, SciFact takes 5 s this way (every value's words are read).
3. Every candidate is then checked exactly on its *lexical profile*: the stemmed words the
   lexical keys index (``english_keys``; character bigrams for CJK text), function words left
   out, weighted 1 + log(tf), compared by cosine. Only pairs with ``min_lexical`` or more stay.

Thresholds were read off SciFact, which holds no planted copies: its closest different
abstracts reach dense 0.94 but their word profiles at most 0.75, while a copy with a changed
date, amount or name keeps its words above 0.9 (its meaning keys may drop to 0.83 when a name
is most of a short text). bench/bench_confusable.py measures both.

Exact duplicates (the same bytes) never get this far: import stores them once.
"""

from __future__ import annotations

import functools
import math
import re
import time
import zlib
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kvdesk.core.errors import KvdeskError
from kvdesk.core.keys.japanese import japanese_words
from kvdesk.core.keys.lexical import cjk_grams, english_keys
from kvdesk.core.keys.manager import KeyManager
from kvdesk.core.progress import CancelToken, Progress, ProgressSink, no_progress
from kvdesk.core.search.identifiers import extract as extract_identifiers
from kvdesk.core.search.query import has_cjk
from kvdesk.core.search.stopwords import FUNCTION_WORDS, is_function_word
from kvdesk.core.tags.store import TagStore
from kvdesk.core.vault.records import KeySource

#: Meaning keys at least this close (cosine of the values' mean passage vectors): a wide
#: screen, the word profiles decide. SciFact's nearest different abstracts: median 0.68, 99th
#: percentile 0.88, maximum 0.94; a short letter whose addressee's name changed: 0.83.
MIN_DENSE = 0.80
#: Word profiles at least this close (cosine, 1 + log tf, function words out). SciFact's 406
#: pairs above MIN_DENSE: at most 0.75; planted edited copies: above 0.9.
MIN_LEXICAL = 0.80
NEIGHBOURS = 5  # candidates kept per value: a value with more look-alikes shows its closest
#: Hashed word profiles: cosines scatter by about 1/sqrt(HASH_DIM) = 0.044 around the exact
#: ones, so the screen's floor sits 3.4 of those below ``min_lexical``. 512 dims halve the
#: screen's time against 1024 (words only, SciFact: bench/bench_confusable.py).
HASH_DIM = 512
HASH_MARGIN = 0.15
BLOCK_BYTES = 64 * 1024 * 1024  # one block of similarities at most (float32)
TELLS = 8  # distinguishing terms shown per member

_WORD = re.compile(r"[^\W_]{2,}")  # letters and digits; a token with no letter is a number
_TOKEN = re.compile(r"[^\W_]+")  # what tantivy's simple tokenizer splits text into
_NUMBER = re.compile(r"(?<![\w.,])[-+]?\d+(?:[.,]\d+)*%?(?![\w])")
_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|20\d\d)(?!\d)")
_ISO_DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}$")

# How much a kind of distinguishing mark tells: dates and identifiers first, words last.
_TELL_ORDER = {"date": 0, "code": 1, "email": 2, "iban": 2, "phone": 2, "number": 3, "name": 4,
               "term": 5}  # fmt: skip
# Which kind makes the better tag: a year or a date, then a code, a name, a word, a number.
_TAG_ORDER = {"year": 0, "date": 1, "code": 2, "name": 3, "term": 4, "number": 5, "other": 6}


@dataclass(frozen=True)
class Member:
    """One value of a pair, as listed."""

    value_id: int
    identifier: str
    title: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.identifier, "title": self.title}


@dataclass(frozen=True)
class Tell:
    """Something only one member holds: an identifier, a date, a number, a name or a word."""

    text: str
    kind: str  # date, code, email, iban, phone, number, name, term


@dataclass(frozen=True)
class SuggestedTag:
    """A tag that one member could carry so a search can tell the two apart."""

    member: str  # "a" or "b"
    value_id: int
    identifier: str
    tag: str
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"for": self.member, "id": self.identifier, "tag": self.tag, "why": self.why}


@dataclass(frozen=True)
class ConfusablePair:
    """Two different values whose keys collide, with the evidence that separates them."""

    a: Member  # the older value (lower id)
    b: Member
    dense_similarity: float | None  # None: one of them has no current dense keys
    lexical_similarity: float
    tells_a: tuple[Tell, ...]
    tells_b: tuple[Tell, ...]
    suggested_tag: SuggestedTag | None  # None: nothing to suggest, or already told apart
    tagged_apart: tuple[str, ...] = ()  # accepted tags only one member holds

    @property
    def value_ids(self) -> tuple[int, int]:
        return (self.a.value_id, self.b.value_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "dense_similarity": _round(self.dense_similarity),
            "lexical_similarity": _round(self.lexical_similarity),
            "tells_apart": {
                "a": [t.text for t in self.tells_a],
                "b": [t.text for t in self.tells_b],
            },
            "suggested_tag": None if self.suggested_tag is None else self.suggested_tag.to_json(),
            "tagged_apart": list(self.tagged_apart),
        }


@dataclass(frozen=True)
class ConfusableReport:
    """The pairs found (closest first) and what was compared to find them."""

    pairs: tuple[ConfusablePair, ...]
    checked: int  # values compared
    dense_keyed: int  # of them, with current dense keys (the others: word profiles only)
    min_dense: float
    min_lexical: float
    seconds: float
    candidates: int = 0  # pairs that passed the first (dense or hashed) screen
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "pairs": [p.to_json() for p in self.pairs],
            "checked": self.checked,
            "dense_keyed": self.dense_keyed,
            "thresholds": {"dense": self.min_dense, "lexical": self.min_lexical},
            "candidates": self.candidates,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# -- lexical profiles ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def _word_keys(word: str) -> tuple[str, ...]:
    return tuple(english_keys(word))


def lexical_profile(title: str, text: str) -> Counter[str]:
    """The word keys of a value, with counts: each token as the English fields index it
    (lowercased, folded, stemmed), function words left out by their written form (by stem,
    ``several`` would take ``severe`` with it), and character bigrams of CJK text.

    Tokens are counted first and each distinct one is stemmed once (kept in a cache)."""
    whole = f"{title}\n{text}"
    profile: Counter[str] = Counter()
    known = _TOKEN_KEYS.get
    for token, count in Counter(_TOKEN.findall(whole)).items():
        key = known(token)
        if key is None:
            key = _token_key(token)
        if key:
            profile[key] += count
    if has_cjk(whole):
        profile.update(cjk_grams(whole))
    return profile


_TOKEN_KEYS: dict[str, str] = {}  # written token -> its key ("": none); a plain dict is the
_TOKEN_KEYS_MAX = 500_000  # cheapest lookup in the loop above (lru_cache doubled its cost)


def _token_key(token: str) -> str:
    """The key a written token adds to a profile: none for a function word (an all-capitals
    word, US or IT, is an acronym) or a CJK run (it gets bigrams)."""
    key = ""
    if not has_cjk(token) and not (
        token.lower() in FUNCTION_WORDS and not (len(token) >= 2 and token.isupper())
    ):
        keys = _word_keys(token.lower())  # one token of the simple tokenizer: one key at most
        key = keys[0] if keys else ""
    if len(_TOKEN_KEYS) >= _TOKEN_KEYS_MAX:
        _TOKEN_KEYS.clear()
    _TOKEN_KEYS[token] = key
    return key


def _weights(profile: Mapping[str, int]) -> dict[str, float]:
    return {term: 1.0 + math.log(count) for term, count in profile.items()}


def profile_similarity(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Cosine of two lexical profiles weighted 1 + log(tf); 0 when either is empty."""
    wa, wb = _weights(a), _weights(b)
    if len(wb) < len(wa):
        wa, wb = wb, wa
    dot = sum(w * wb.get(t, 0.0) for t, w in wa.items())
    norm = math.sqrt(sum(w * w for w in wa.values()) * sum(w * w for w in wb.values()))
    return dot / norm if norm else 0.0


def hashed_profiles(profiles: Sequence[Mapping[str, int]]) -> np.ndarray:
    """Signed feature-hashed, normalised profile vectors [n, HASH_DIM] (float32).

    Each distinct term is hashed once (crc32: stable across runs, unlike ``hash``); the
    weights are summed into their buckets by numpy."""
    vocabulary: dict[str, int] = {}
    term_ids: list[int] = []
    counts: list[int] = []
    lengths: list[int] = []
    for profile in profiles:
        term_ids.extend(vocabulary.setdefault(t, len(vocabulary)) for t in profile)
        counts.extend(profile.values())
        lengths.append(len(profile))
    hashes = np.fromiter(
        (zlib.crc32(t.encode("utf-8")) for t in vocabulary), dtype=np.int64, count=len(vocabulary)
    )
    ids = np.asarray(term_ids, dtype=np.int64)
    rows = np.repeat(np.arange(len(profiles)), lengths)
    signs = np.where((hashes[ids] >> 31) & 1, 1.0, -1.0)
    weights = (1.0 + np.log(np.asarray(counts, dtype=np.float64))) * signs
    out = np.zeros((len(profiles), HASH_DIM), dtype=np.float32)
    np.add.at(out, (rows, hashes[ids] % HASH_DIM), weights.astype(np.float32))
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


# -- the blocked screen -------------------------------------------------------------------------


def close_neighbours(
    vectors: np.ndarray,
    rows: np.ndarray,
    floor: float,
    neighbours: int = NEIGHBOURS,
    *,
    cancel: CancelToken | None = None,
) -> dict[tuple[int, int], float]:
    """Pairs (i < j) of row indices of ``vectors`` (normalised) whose cosine is ``floor`` or
    more, for every i in ``rows`` against all rows, at most ``neighbours`` per row."""
    n = len(vectors)
    found: dict[tuple[int, int], float] = {}
    if n < 2 or len(rows) == 0:
        return found
    block = max(16, BLOCK_BYTES // (4 * n))
    for start in range(0, len(rows), block):
        if cancel is not None:
            cancel.raise_if_cancelled()
        chunk = rows[start : start + block]
        sims = vectors[chunk] @ vectors.T
        sims[np.arange(len(chunk)), chunk] = -np.inf  # a value is not its own look-alike
        hit_rows, hit_cols = np.nonzero(sims >= floor)
        if len(hit_rows) == 0:
            continue
        scores = sims[hit_rows, hit_cols]
        order = np.lexsort((-scores, hit_rows))  # by row, best first
        hit_rows, hit_cols, scores = hit_rows[order], hit_cols[order], scores[order]
        first = np.searchsorted(hit_rows, hit_rows, side="left")
        keep = (np.arange(len(hit_rows)) - first) < neighbours
        for r, c, s in zip(hit_rows[keep], hit_cols[keep], scores[keep], strict=True):
            i, j = int(chunk[r]), int(c)
            key = (i, j) if i < j else (j, i)
            if float(s) > found.get(key, -np.inf):
                found[key] = float(s)
    return found


def value_vectors(keys: KeyManager) -> tuple[list[int], np.ndarray]:
    """Values with current dense keys in the active key set, and one normalised vector each
    (the mean of its passages). Never creates a key set: none active means none keyed."""
    key_set = keys.active_key_set()
    if key_set is None:
        return [], np.zeros((0, 0), dtype=np.float32)
    matrix = keys.matrix(key_set)
    stale = set(keys.missing_dense(key_set))  # newer version than its keys: words only
    ids: list[int] = []
    rows: list[np.ndarray] = []
    for value_id in matrix.value_ids():
        if value_id in stale:
            continue
        passages = matrix.value_vectors(value_id)
        if len(passages):
            ids.append(value_id)
            rows.append(passages.mean(axis=0))
    if not rows:
        return [], np.zeros((0, matrix.dim), dtype=np.float32)
    vectors = np.stack(rows).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return ids, vectors


# -- what tells two values apart ----------------------------------------------------------------


def _identifiers(text: str) -> dict[str, Tell]:
    """Canonical form → the identifier as written (dates, codes, e-mails, IBANs, phones)."""
    return {i.canonical: Tell(i.raw, i.kind) for i in extract_identifiers(text, limit=200)}


def _numbers(text: str, identifiers: Iterable[Tell]) -> dict[str, Tell]:
    """Numbers and amounts not part of an identifier (2,832.93, 15%, 40)."""
    for ident in identifiers:
        text = text.replace(ident.text, " ")
    out: dict[str, Tell] = {}
    for m in _NUMBER.finditer(text):
        raw = m.group().rstrip(".,")
        out.setdefault(raw.lstrip("+"), Tell(raw, "number"))
    return out


def _opens_sentence(text: str, start: int) -> bool:
    before = text[max(0, start - 8) : start].rstrip(" \t\"'([")
    return not before or before[-1] in ".!?:;\n"


def _words(text: str, other_keys: Collection[str]) -> list[Tell]:
    """Words of ``text`` whose keys the other value lacks, most frequent first; a word always
    written with a capital (a name) is marked so."""
    counts: Counter[str] = Counter()
    forms: dict[str, str] = {}
    capital: dict[str, bool] = {}
    inside: set[str] = set()  # words seen capitalised inside a sentence, not only opening one
    for m in _WORD.finditer(text):
        word = m.group()
        if has_cjk(word) or is_function_word(word) or not any(c.isalpha() for c in word):
            continue
        folded = word.lower()
        keys = _word_keys(folded)
        if not keys or any(k in other_keys for k in keys):
            continue
        counts[folded] += 1
        forms.setdefault(folded, word)
        capital[folded] = capital.get(folded, True) and word[:1].isupper()
        if not _opens_sentence(text, m.start()):
            inside.add(folded)
    codes = {w for w in counts if any(c.isdigit() for c in w)}  # p53, 5S, HCC1954
    names = {w for w in counts if capital[w] and w in inside} - codes
    ranked = sorted(counts, key=lambda w: (-counts[w], w not in codes, w not in names))
    kinds = {w: "code" if w in codes else "name" if w in names else "term" for w in ranked}
    return [Tell(forms[w], kinds[w]) for w in ranked]


def _japanese_words(text: str, other: str) -> list[Tell]:
    if not has_cjk(text):
        return []
    mine = Counter(w for w in japanese_words(text) if has_cjk(w))
    theirs = set(japanese_words(other))
    return [Tell(w, "term") for w, _ in mine.most_common() if w not in theirs]


@dataclass(frozen=True)
class _Side:
    source: KeySource
    text: str
    identifiers: dict[str, Tell]
    numbers: dict[str, Tell]
    profile: Counter[str]


def _side(source: KeySource, profile: Counter[str]) -> _Side:
    text = f"{source.title}\n{source.text}"
    identifiers = _identifiers(text)
    return _Side(source, text, identifiers, _numbers(text, identifiers.values()), profile)


def tells_apart(mine: _Side, theirs: _Side, limit: int = TELLS) -> tuple[Tell, ...]:
    """What ``mine`` holds and ``theirs`` does not, most telling first."""
    tells = [t for c, t in mine.identifiers.items() if c not in theirs.identifiers]
    shown = {t.text for t in tells}
    tells += [t for n, t in mine.numbers.items() if n not in theirs.numbers and t.text not in shown]
    tells.sort(key=lambda t: _TELL_ORDER.get(t.kind, 9))
    tells += _words(mine.text, theirs.profile)
    tells += _japanese_words(mine.text, theirs.text)
    out: list[Tell] = []
    seen: set[str] = set()
    for tell in tells:
        key = tell.text.casefold()
        if key not in seen:
            seen.add(key)
            out.append(tell)
    return tuple(out[:limit])


# -- the suggested tag --------------------------------------------------------------------------


def _years(tells: Iterable[Tell]) -> set[str]:
    return {y for t in tells if t.kind in ("date", "number") for y in _YEAR.findall(t.text)}


def tag_shape(text: str) -> str:
    """What a tag (leaf) looks like: year, date, number, code or word."""
    if re.fullmatch(r"(1[89]|20)\d\d", text):
        return "year"
    if _ISO_DATE.match(text):
        return "date"
    if re.fullmatch(r"[\d.,%+-]+", text):
        return "number"
    if any(c.isdigit() for c in text):
        return "code"
    return "word"


def phrase_like(candidate: str, existing: Sequence[str]) -> str:
    """``candidate`` phrased like the vault's tags: a year, date, number or code under the
    parent the vault files that shape under (``year::2024`` when ``year::2023`` exists; a word
    is never filed under a parent merely because its tags are words too), and in the vault's
    letter case."""
    shape = tag_shape(candidate)
    parents: Counter[str] = Counter()
    leaves: list[str] = []
    for tag in existing:
        parent, _, leaf = tag.rpartition("::")
        leaves.append(leaf)
        if parent and shape != "word" and tag_shape(leaf) == shape:
            parents[parent] += 1
    lettered = [leaf for leaf in leaves if any(c.isalpha() for c in leaf)]
    if lettered and shape in ("word", "code"):
        lower = sum(1 for leaf in lettered if leaf == leaf.lower())
        if lower * 5 >= len(lettered) * 4:  # four in five tags are lower case: so is this one
            candidate = candidate.lower()
    if parents:
        return f"{parents.most_common(1)[0][0]}::{candidate}"
    return candidate


def _tag_candidates(mine: tuple[Tell, ...], theirs: tuple[Tell, ...]) -> list[tuple[str, str]]:
    """(tag text, shape kind) this member could carry, best first."""
    out: list[tuple[str, str]] = []
    other_years = _years(theirs)
    for year in sorted(_years(mine) - other_years):
        out.append((year, "year"))
    for tell in mine:
        if tell.kind == "date":
            out.append((tell.text, "date"))
        elif tell.kind == "code":
            out.append((tell.text, "code"))
        elif tell.kind in ("name", "term"):
            out.append((tell.text, tell.kind))
        elif tell.kind == "number" and not _YEAR.fullmatch(tell.text):
            out.append((tell.text, "number"))
        elif tell.kind in ("phone", "iban", "email"):
            out.append((tell.text, "other"))
    out.sort(key=lambda c: _TAG_ORDER[c[1]])
    return out


def suggest_tag(
    a: Member,
    b: Member,
    tells_a: tuple[Tell, ...],
    tells_b: tuple[Tell, ...],
    existing: Sequence[str],
    held: Mapping[int, Collection[str]],
) -> SuggestedTag | None:
    """The tag one member could carry: its most telling mark (a year, a date, a code, a name, a
    word), phrased like the vault's tags, and carried by neither member yet (a pair whose
    members already differ by an accepted tag gets none: it is told apart). Of two equally
    telling marks, the newer value (b, often the edited copy) gets the tag."""
    options: list[tuple[int, int, str, str, str]] = []
    for order, (member, mine, theirs) in enumerate(
        (("b", tells_b, tells_a), ("a", tells_a, tells_b))
    ):
        for text, kind in _tag_candidates(mine, theirs):
            options.append((_TAG_ORDER[kind], order, member, text, kind))
    options.sort(key=lambda o: (o[0], o[1]))
    carried = {t.casefold() for v in (a, b) for t in held.get(v.value_id, ())}
    for _rank, _order, member, text, kind in options:
        tag = phrase_like(text, existing)
        if tag.casefold() in carried or not tag.strip():
            continue
        target, other = (a, b) if member == "a" else (b, a)
        why = f"{kind} {text} is in {target.identifier} and not in {other.identifier}"
        return SuggestedTag(member, target.value_id, target.identifier, tag, why)
    return None


# -- the search ---------------------------------------------------------------------------------


def find_confusable(
    keys: KeyManager,
    *,
    min_dense: float = MIN_DENSE,
    min_lexical: float = MIN_LEXICAL,
    neighbours: int = NEIGHBOURS,
    among: Collection[int] | None = None,
    existing_tags: Sequence[str] = (),
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> ConfusableReport:
    """Pairs of different values whose dense keys and lexical profiles both nearly coincide.

    Args:
        among: only pairs with at least one member in these values (the pilot report asks
            about the documents failed sessions showed); None: every value.
        existing_tags: the vault's tag names, so the suggested tag reads like them.
    """
    if not (0.0 < min_dense <= 1.0 and 0.0 < min_lexical <= 1.0):
        raise KvdeskError(
            f"similarity thresholds must lie in (0, 1], not {min_dense} and {min_lexical}"
        )
    started = time.perf_counter()
    cancel = cancel or CancelToken()
    current = keys.vault.values.current_versions()
    wanted = set(current) if among is None else set(among) & set(current)
    progress(Progress("confusable: meaning keys", 0, 3))
    dense_ids, vectors = value_vectors(keys)
    row_of = {v: i for i, v in enumerate(dense_ids)}
    rows = np.array(sorted(row_of[v] for v in wanted if v in row_of), dtype=np.int64)
    dense_pairs = close_neighbours(vectors, rows, min_dense, neighbours, cancel=cancel)
    candidates: dict[tuple[int, int], float | None] = {}
    for (i, j), score in dense_pairs.items():
        va, vb = dense_ids[i], dense_ids[j]
        candidates[(min(va, vb), max(va, vb))] = score

    progress(Progress("confusable: word keys", 1, 3))
    profiles: dict[int, Counter[str]] = {}
    sources: dict[int, KeySource] = {}

    def load(value_ids: Iterable[int]) -> None:
        missing = sorted(set(value_ids) - set(sources))
        for start in range(0, len(missing), 500):
            cancel.raise_if_cancelled()
            for src in keys.key_sources(missing[start : start + 500]):
                sources[src.value_id] = src
                profiles[src.value_id] = lexical_profile(src.title, src.text)

    unkeyed = sorted(v for v in wanted if v not in row_of)
    notes: list[str] = []
    if unkeyed:
        # Some values have no meaning keys (yet): compare their word profiles with everyone's.
        everyone = sorted(current)
        load(everyone)
        hashed = hashed_profiles([profiles[v] for v in everyone])
        index = {v: i for i, v in enumerate(everyone)}
        lex_rows = np.array([index[v] for v in unkeyed], dtype=np.int64)
        floor = max(0.0, min_lexical - HASH_MARGIN)
        for (i, j), _score in close_neighbours(
            hashed, lex_rows, floor, neighbours, cancel=cancel
        ).items():
            va, vb = everyone[i], everyone[j]
            key = (min(va, vb), max(va, vb))
            candidates.setdefault(key, None)
        some = "1 value has" if len(unkeyed) == 1 else f"{len(unkeyed)} values have"
        notes.append(f"{some} no current meaning keys: compared by their words only")

    load(v for pair in candidates for v in pair)
    kept: list[tuple[int, int, float | None, float]] = []
    for (va, vb), dense in candidates.items():
        lexical = profile_similarity(profiles[va], profiles[vb])
        if lexical >= min_lexical:
            kept.append((va, vb, dense, lexical))
    kept.sort(key=lambda p: (-(p[2] if p[2] is not None else p[3]), -p[3], p[0], p[1]))

    progress(Progress("confusable: what tells them apart", 2, 3))
    held = TagStore(keys.vault).accepted_tags({v for p in kept for v in p[:2]})
    sides: dict[int, _Side] = {}
    pairs: list[ConfusablePair] = []
    for va, vb, dense, lexical in kept:
        cancel.raise_if_cancelled()
        for v in (va, vb):
            if v not in sides:
                sides[v] = _side(sources[v], profiles[v])
        a = Member(va, sources[va].identifier, sources[va].title)
        b = Member(vb, sources[vb].identifier, sources[vb].title)
        ta, tb = tells_apart(sides[va], sides[vb]), tells_apart(sides[vb], sides[va])
        apart = tuple(sorted(set(held.get(va, ())) ^ set(held.get(vb, ())), key=str.casefold))
        tag = None if apart else suggest_tag(a, b, ta, tb, existing_tags, held)
        pairs.append(ConfusablePair(a, b, dense, lexical, ta, tb, tag, apart))
    progress(Progress("confusable: done", 3, 3))
    return ConfusableReport(
        pairs=tuple(pairs),
        checked=len(wanted),
        dense_keyed=sum(1 for v in wanted if v in row_of),
        min_dense=min_dense,
        min_lexical=min_lexical,
        seconds=time.perf_counter() - started,
        candidates=len(candidates),
        notes=tuple(notes),
    )
