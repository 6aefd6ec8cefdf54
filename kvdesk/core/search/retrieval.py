"""Hybrid retrieval: candidates from each key space, fused into one score that explains itself.

The read-out is a weighted sum over key spaces, so every hit's score is the exact sum of its
per-space contributions, and the lexical contribution is the exact sum of its BM25 term parts:

    score = w_lex * bm25 / max_bm25        (each term's BM25 part scales by the same factor)
          + w_dense * max(0, cosine)       (the value's best passage)
          + w_tag * matched tags

``max_bm25`` is the best BM25 score among the lexical candidates. Cosines are used as they are:
on SciFact this beat min-max and z-score normalisation of the dense scores on the tuning half of
the queries (bench/bench_retrieval.py; held-out figures in the README).

A hit's **weight** is how much of kvdesk's belief goes to it: a softmax (temperature
``FusionParams.temperature``, 0.05 in score units) over the whole candidate pool plus one
"none of these" option scored ``FusionParams.null_score``. It depends on the candidates, not on
how many hits are shown, and the CLI and the app show the same number. A search is
**confident** when an absolute signal backs the top hit (a good cosine, or the query's content
words really found in it); without one, the "none" option weighs at least as much as the top
hit, so a bar never says more than 50% under a "no confident match" banner. (Several equally
good documents share the weight under a confident banner: each is a match.)

Longer than most modules: gathering, fusion and the explanation of every score are one
computation (a hit's explanation must add up to its score), kept in one file.
"""

from __future__ import annotations

import html
import re
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from kvdesk.core.keys.japanese import japanese_words
from kvdesk.core.keys.lexical import LexicalHit, cjk_grams, media_types_for
from kvdesk.core.keys.manager import KeyManager, KeySet
from kvdesk.core.keys.vectors import DenseHit
from kvdesk.core.search.identifiers import IdentifierMatch, query_identifiers, verify
from kvdesk.core.search.query import ParsedQuery, clean_query, has_cjk, parse_query
from kvdesk.core.search.stopwords import is_function_word
from kvdesk.core.tags.store import TagStore
from kvdesk.core.vault.vault import Vault

MODES = ("hybrid", "lexical", "dense")


@dataclass(frozen=True)
class FusionParams:
    """Fusion settings. Defaults were tuned on one seeded half of SciFact's test queries only."""

    lexical_weight: float = 0.4
    dense_weight: float = 0.6
    tag_weight: float = 0.3
    # A verified identifier (an invoice number the query names) outranks any amount of words
    # and meaning: set, not tuned.
    identifier_weight: float = 2.0
    candidates: int = 100
    cjk_lexical_weight: float = 0.75  # English-only default model: CJK queries lean on bigrams
    temperature: float = 0.05  # softmax temperature of the weights, in fused-score units
    null_score: float = 0.35  # the "none of these" option's score in the weights
    confident_cosine: float = 0.35
    confident_coverage: float = 0.6


@dataclass(frozen=True)
class TermContribution:
    field: str
    term: str
    bm25: float
    score: float


@dataclass(frozen=True)
class QuotedIn:
    """A document that quotes a short hit: its words around the quote are that hit's keys."""

    value_id: int
    identifier: str = ""
    title: str = ""


@dataclass(frozen=True)
class LexicalExplanation:
    score: float
    bm25: float
    terms: tuple[TermContribution, ...]
    quoted_in: tuple[QuotedIn, ...] = ()  # when words around its quotes matched (quotes.py)


@dataclass(frozen=True)
class DenseExplanation:
    value_id: int
    score: float
    cosine: float
    passage_index: int
    passage_rank: int | None
    start: int
    end: int
    passage_text: str


@dataclass(frozen=True)
class TagExplanation:
    score: float
    tags: tuple[str, ...]


@dataclass(frozen=True)
class IdentifierExplanation:
    score: float
    matches: tuple[IdentifierMatch, ...]


@dataclass(frozen=True)
class LearnedEvidence:
    """What the learned keys (:mod:`kvdesk.core.keys.learned`) hold for one value and query:
    searches that once found it, as meaning (their vectors) and as words (their BM25)."""

    value_id: int
    similarity: float | None  # best cosine between the query and a learned search
    bm25: float  # the learned searches' words (lexical mode)
    searches: int  # how many learned searches found this value
    queries: tuple[str, ...]  # those this reader may see, nearest first
    hidden: int  # learned searches of other users that are not shown
    words: tuple[str, ...] = ()  # query words found in the learned searches
    coverage: float = 0.0  # share of the query's words in the value's closest learned search


@dataclass(frozen=True)
class LearnedWeights:
    """How much learned keys weigh; each learned key set carries its own, tuned on the pairs it
    learned from (never on test queries)."""

    meaning: float = 0.8  # share for a learned search as close as a paraphrase (cosine 1)
    threshold: float = 0.6  # cosines at or below count nothing: not the same question
    words: float = 0.5  # lexical mode: BM25 of the learned words, in BM25 units
    coverage: float = 0.0  # ... counted only when a learned search holds this share of the words


class LearnedSource(Protocol):
    """The active learned key set as retrieval sees it."""

    @property
    def weights(self) -> LearnedWeights: ...

    def match(
        self, text: str, vector: np.ndarray | None, *, words: bool
    ) -> dict[int, LearnedEvidence]: ...


@dataclass(frozen=True)
class LearnedExplanation:
    """The learned keys' share: "learned from 3 searches that found this: ..."."""

    score: float
    similarity: float | None
    bm25: float
    searches: int
    queries: tuple[str, ...]
    hidden: int
    words: tuple[str, ...] = ()

    def describe(self) -> str:
        shown = ", ".join(f"'{q}'" for q in self.queries[:3])
        more = self.searches - min(3, len(self.queries))
        tail = f", and {more} more" if more > 0 and shown else ""
        plural = "search" if self.searches == 1 else "searches"
        if not shown:
            return f"learned from {self.searches} {plural} that found this (by other users)"
        return f"learned from {self.searches} {plural} that found this: {shown}{tail}"


@dataclass(frozen=True)
class Explanation:
    """Per key space contributions; they add up to the hit's score."""

    lexical: LexicalExplanation | None = None
    dense: DenseExplanation | None = None
    tags: TagExplanation | None = None
    identifiers: IdentifierExplanation | None = None
    learned: LearnedExplanation | None = None

    def contributions(self) -> dict[str, float]:
        parts: dict[str, float] = {}
        if self.identifiers is not None:
            parts["identifiers"] = self.identifiers.score
        if self.lexical is not None:
            parts["lexical"] = self.lexical.score
        if self.dense is not None:
            parts["dense"] = self.dense.score
        if self.tags is not None:
            parts["tags"] = self.tags.score
        if self.learned is not None:
            parts["learned"] = self.learned.score
        return parts

    def to_json(self, details: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.lexical is not None:
            lex: dict[str, Any] = {"score": round(self.lexical.score, 6)}
            if details:
                lex["bm25"] = round(self.lexical.bm25, 4)
                lex["terms"] = [
                    {
                        "field": t.field,
                        "term": t.term,
                        "bm25": round(t.bm25, 4),
                        "score": round(t.score, 6),
                    }
                    for t in self.lexical.terms
                ]
                if self.lexical.quoted_in:
                    lex["quoted_in"] = [
                        {"identifier": q.identifier, "title": q.title}
                        for q in self.lexical.quoted_in
                    ]
            out["lexical"] = lex
        if self.dense is not None:
            den: dict[str, Any] = {"score": round(self.dense.score, 6)}
            if details:
                den.update(
                    cosine=round(self.dense.cosine, 4),
                    passage=self.dense.passage_index,
                    passage_rank=self.dense.passage_rank,
                    start=self.dense.start,
                    end=self.dense.end,
                    text=self.dense.passage_text,
                )
            out["dense"] = den
        if self.tags is not None:
            tag: dict[str, Any] = {"score": round(self.tags.score, 6)}
            if details:
                tag["tags"] = list(self.tags.tags)
            out["tags"] = tag
        if self.identifiers is not None:
            ids: dict[str, Any] = {"score": round(self.identifiers.score, 6)}
            if details:
                ids["matches"] = [
                    {"query": m.query, "stored": m.stored, "kind": m.kind,
                     "corrections": m.corrections, "said": m.describe()}
                    for m in self.identifiers.matches
                ]  # fmt: skip
            out["identifiers"] = ids
        if self.learned is not None:
            learned: dict[str, Any] = {"score": round(self.learned.score, 6)}
            if details:
                learned.update(
                    similarity=None
                    if self.learned.similarity is None
                    else round(self.learned.similarity, 4),
                    bm25=round(self.learned.bm25, 4),
                    searches=self.learned.searches,
                    queries=list(self.learned.queries),
                    hidden=self.learned.hidden,
                    words=list(self.learned.words),
                    said=self.learned.describe(),
                )
            out["learned"] = learned
        return out


@dataclass(frozen=True)
class Hit:
    value_id: int
    identifier: str
    external_id: str | None
    title: str
    media_type: str
    score: float
    weight: float
    snippet_html: str
    explanation: Explanation
    tags: tuple[str, ...] = ()
    updated_at: str = ""
    source_path: str | None = None


@dataclass(frozen=True)
class SearchResult:
    query: str
    mode: str
    provider: str
    confident: bool
    ready: dict[str, bool]
    hits: tuple[Hit, ...]
    elapsed_ms: float
    parsed: ParsedQuery | None = field(default=None, compare=False)
    # Identifiers the query names that no document holds (said, never guessed).
    absent_identifiers: tuple[str, ...] = ()

    def to_json(self, explain: bool = False) -> dict[str, Any]:
        out = self._json(explain)
        if self.absent_identifiers:
            out["absent_identifiers"] = list(self.absent_identifiers)
        return out

    def _json(self, explain: bool) -> dict[str, Any]:
        return {
            "query": self.query,
            "mode": self.mode,
            "provider": self.provider,
            "confident": self.confident,
            "ready": self.ready,
            "elapsed_ms": round(self.elapsed_ms, 2),
            "hits": [
                {
                    "id": h.identifier,
                    "external_id": h.external_id,
                    "title": h.title,
                    "score": round(h.score, 6),
                    "weight": round(h.weight, 6),
                    "snippet": h.snippet_html,
                    "tags": list(h.tags),
                    "explanation": h.explanation.to_json(details=explain),
                }
                for h in self.hits
            ],
        }


@dataclass(frozen=True)
class _Ranked:
    value_id: int
    score: float
    explanation: Explanation
    snippet_html: str


@dataclass(frozen=True)
class _Shown:
    """The stored fields a hit shows (read for the hits shown only)."""

    identifier: str
    external_id: str | None
    title: str
    media_type: str
    tags: tuple[str, ...]
    updated_at: str
    source_path: str | None


@dataclass
class _Candidate:
    value_id: int
    lexical: LexicalHit | None = None
    dense: DenseHit | None = None
    cosine: float | None = None
    passage_index: int = 0
    tags: tuple[str, ...] = ()
    identifiers: tuple[IdentifierMatch, ...] = ()
    learned: LearnedEvidence | None = None


@dataclass
class Gathered:
    """Raw per-space evidence for one query, before fusion (lets benchmarks re-fuse cheaply)."""

    parsed: ParsedQuery
    mode: str
    candidates: dict[int, _Candidate] = field(default_factory=dict)
    ready: dict[str, bool] = field(
        default_factory=lambda: {"lexical": True, "dense": False, "tags": True}
    )
    provider: str = "none"
    dense_used: bool = False
    tag_matches: dict[int, tuple[str, ...]] = field(default_factory=dict)
    identifiers_named: tuple[str, ...] = ()  # identifiers the query names
    identifiers_absent: tuple[str, ...] = ()  # ... that no document holds
    only_identifiers: bool = False  # the query is nothing but identifiers
    learned_weights: LearnedWeights | None = None  # None: no learned key set took part
    cosine_floor: float = 0.0  # the dense model's cosine for unrelated texts (calibrated())


class Retriever:
    """Runs searches over a vault's key spaces. Thread-safe for concurrent readers."""

    def __init__(
        self,
        vault: Vault,
        keys: KeyManager,
        params: FusionParams | None = None,
        *,
        dense_key_set: KeySet | None = None,
        learned: Callable[[], LearnedSource | None] | None = None,
    ) -> None:
        self.vault = vault
        self.keys = keys
        self.params = params or FusionParams()
        self._dense_key_set = dense_key_set  # None: whichever key set is active
        self._learned = learned  # the active learned key set, if any (None: none)

    def _key_set(self) -> KeySet | None:
        return self._dense_key_set or self.keys.active_key_set()

    # -- public ---------------------------------------------------------------------------------

    def search(
        self, query: str, *, k: int = 10, mode: str = "hybrid", details: bool = True
    ) -> SearchResult:
        started = time.perf_counter()
        query = clean_query(query)  # valid, printable Unicode: JSON and the pilot log take it
        parsed = parse_query(query)
        # Rank without explanations (they cost ~1 ms a hit), then explain only the hits shown.
        gathered = self.gather(parsed, mode, max(self.params.candidates, k), details=False)
        pool = self.fuse(gathered, self.params)
        if parsed.terms or parsed.phrases:
            # A candidate that no key contributed to is not a hit (filters alone score 0).
            pool = [r for r in pool if r.score > 0]
        if gathered.only_identifiers and gathered.identifiers_named:
            # A query that is only identifiers is answered by identifiers only: a document
            # that merely shares some digits does not claim to hold the number.
            pool = [r for r in pool if r.explanation.identifiers is not None]
        ranked = pool[:k]
        if details and ranked:
            ranked = self._explain_lexical(parsed, gathered, ranked)
        believable = self._believable(ranked, parsed, gathered.cosine_floor)  # the top hit
        weights = self._weights(pool, gathered.mode, believable)
        hits = self._hits(ranked, weights[: len(ranked)], details)
        confident = believable and bool(hits)
        return SearchResult(
            query=query,
            mode=gathered.mode,
            provider=gathered.provider,
            confident=confident,
            ready=gathered.ready,
            hits=tuple(hits),
            elapsed_ms=(time.perf_counter() - started) * 1000,
            parsed=parsed,
            absent_identifiers=gathered.identifiers_absent,
        )

    def _explain_lexical(
        self, parsed: ParsedQuery, gathered: Gathered, ranked: list[_Ranked]
    ) -> list[_Ranked]:
        """Replace the shown hits' lexical parts by their exact term-by-term explanation."""
        if gathered.mode == "dense":
            return ranked
        shown = {r.value_id for r in ranked}
        detailed = {
            h.value_id: h
            for h in self.keys.lexical.search(
                parsed, limit=max(self.params.candidates, len(ranked)), detail_ids=shown
            )
            if h.value_id in shown
        }
        out = []
        for r in ranked:
            lex, hit = r.explanation.lexical, detailed.get(r.value_id)
            if lex is None or hit is None or lex.bm25 <= 0:
                out.append(r)
                continue
            exp = replace(r.explanation, lexical=_lexical_exp(hit, lex.score / lex.bm25))
            out.append(
                _Ranked(
                    r.value_id,
                    sum(exp.contributions().values()),
                    exp,
                    hit.snippet_html or r.snippet_html,
                )
            )
        return out

    def rank_ids(
        self, query: str, *, mode: str = "hybrid", k: int = 100
    ) -> list[tuple[int, float]]:
        """Ranked (value id, score) without snippets or explanations: for evaluation runs."""
        ranked, _ready, _provider = self._rank(parse_query(query), mode, k, details=False)
        return [(r.value_id, r.score) for r in ranked[:k]]

    # -- ranking --------------------------------------------------------------------------------

    def _rank(
        self, parsed: ParsedQuery, mode: str, k: int, details: bool
    ) -> tuple[list[_Ranked], dict[str, bool], str]:
        gathered = self.gather(parsed, mode, max(self.params.candidates, k), details)
        return self.fuse(gathered, self.params), gathered.ready, gathered.provider

    def gather(self, parsed: ParsedQuery, mode: str, depth: int, details: bool) -> Gathered:
        """Candidates from each key space with their raw evidence (BM25 parts, cosines)."""
        if mode not in MODES:
            mode = "hybrid"
        use_lex = mode in ("hybrid", "lexical")
        use_dense = mode in ("hybrid", "dense")
        g = Gathered(parsed=parsed, mode=mode)

        if use_lex:
            for hit in self.keys.lexical.search(parsed, limit=depth, details=details):
                g.candidates.setdefault(hit.value_id, _Candidate(hit.value_id)).lexical = hit
        if mode == "lexical":
            self._gather_learned(g, None)

        key_set = self._key_set()
        if key_set is not None:
            # Whatever the mode, say which key spaces are really ready, and on which provider
            # the key set's model runs (a lexical search does not load the model for this).
            g.ready["dense"] = self.keys.dense_status(key_set).ready
            g.provider = self.keys.provider_for(key_set)
        if use_dense:
            if key_set is not None and parsed.text.strip():
                embedder = self.keys.embedder_for(key_set)
                g.provider = embedder.provider_info.provider
                g.cosine_floor = embedder.spec.cosine_floor
                matrix = self.keys.matrix(key_set)
                if len(matrix):
                    query_vector = embedder.embed_query(parsed.text)
                    g.dense_used = True
                    self._gather_learned(g, query_vector)  # before cosines: its values get them
                    dense_hits = matrix.search(query_vector, depth, allowed=self._allowed(parsed))
                    for dh in dense_hits:
                        c = g.candidates.setdefault(dh.value_id, _Candidate(dh.value_id))
                        c.dense, c.cosine, c.passage_index = dh, dh.score, dh.passage_index
                    # Exact cosines for lexical-only candidates: every value's vectors are at
                    # hand (in RAM, or a few rows of the memory-mapped vector file).
                    unscored = [c for c in g.candidates.values() if c.cosine is None]
                    best = matrix.best_passages([c.value_id for c in unscored], query_vector)
                    for c, found in zip(unscored, best, strict=True):
                        if found is not None:
                            c.passage_index, c.cosine = found

        if use_lex:
            self._gather_identifiers(g)
        if mode == "hybrid":
            g.tag_matches = self._tag_matches(parsed)
            allowed = self._allowed(parsed)  # filters and -exclusions hold for tag keys too
            for value_id, tags in g.tag_matches.items():
                if allowed is None or value_id in allowed:
                    g.candidates.setdefault(value_id, _Candidate(value_id)).tags = tags
        if not g.candidates and parsed.has_filters and not parsed.text.strip():
            for vid in sorted(self._allowed(parsed) or ()):
                g.candidates[vid] = _Candidate(vid)
        return g

    def _gather_learned(self, g: Gathered, query_vector: np.ndarray | None) -> None:
        """Candidates found by learned keys: searches that found them before (meaning in
        hybrid and dense mode, words in lexical mode)."""
        source = self._learned() if self._learned is not None else None
        if source is None or not g.parsed.text.strip():
            return
        if query_vector is None and g.mode != "lexical":
            return
        found = source.match(g.parsed.text, query_vector, words=g.mode == "lexical")
        allowed = self._allowed(g.parsed) if found else None
        for value_id, evidence in found.items():
            if allowed is None or value_id in allowed:
                g.candidates.setdefault(value_id, _Candidate(value_id)).learned = evidence
        g.learned_weights = source.weights

    def _gather_identifiers(self, g: Gathered) -> None:
        """Candidates holding an identifier the query names, each match verified against
        the identifier as the document stores it (canonical forms only find candidates)."""
        named = query_identifiers(g.parsed.text)
        if not named:
            return
        g.identifiers_named = tuple(i.raw for i in named)
        rest = g.parsed.text
        for ident in named:
            rest = rest.replace(ident.raw, " ")
        g.only_identifiers = not re.search(r"\w", rest)
        holders = self.keys.lexical.identifier_holders([i.canonical for i in named])
        allowed = self._allowed(g.parsed)
        held: set[str] = set()
        for value_id, stored in holders.items():
            if allowed is not None and value_id not in allowed:
                continue
            matches = tuple(m for i in named if (m := verify(i, stored)) is not None)
            if matches:
                g.candidates.setdefault(value_id, _Candidate(value_id)).identifiers = matches
                held.update(m.query for m in matches)
        g.identifiers_absent = tuple(i.raw for i in named if i.raw not in held)

    def fuse(self, g: Gathered, p: FusionParams) -> list[_Ranked]:
        """One score per value: the weighted sum of each key space's normalised evidence."""
        lexical_weight, dense_weight = p.lexical_weight, p.dense_weight
        if has_cjk(g.parsed.text):
            lexical_weight, dense_weight = p.cjk_lexical_weight, 1.0 - p.cjk_lexical_weight
        max_bm25 = max((c.lexical.score for c in g.candidates.values() if c.lexical), default=0.0)
        lex_scale = lexical_weight / max_bm25 if max_bm25 > 0 else 0.0
        # In lexical mode scores are raw BM25: an identifier still outranks every word.
        id_unit = max_bm25 if g.mode == "lexical" and max_bm25 > 0 else 1.0
        ranked: list[_Ranked] = []
        for c in g.candidates.values():
            found = (
                IdentifierExplanation(
                    p.identifier_weight * id_unit * len(c.identifiers), c.identifiers
                )
                if c.identifiers
                else None
            )
            learned = _learned_exp(c.learned, g.learned_weights, g.mode)
            if g.mode == "lexical":
                exp = Explanation(
                    lexical=_lexical_exp(c.lexical, 1.0), identifiers=found, learned=learned
                )
            elif g.mode == "dense":
                exp = Explanation(dense=_dense_exp(c, c.cosine or 0.0), learned=learned)
            else:
                cosine = calibrated(c.cosine, g.cosine_floor) if c.cosine is not None else 0.0
                tag_score = p.tag_weight * len(c.tags) if c.tags else 0.0
                exp = Explanation(
                    lexical=_lexical_exp(c.lexical, lex_scale),
                    dense=_dense_exp(c, dense_weight * cosine) if g.dense_used else None,
                    tags=TagExplanation(tag_score, c.tags) if g.tag_matches else None,
                    identifiers=found,
                    learned=learned,
                )
            score = sum(exp.contributions().values())
            snippet = c.lexical.snippet_html if c.lexical is not None else ""
            ranked.append(_Ranked(c.value_id, score, exp, snippet))
        ranked.sort(key=lambda item: (-item.score, item.value_id))
        return ranked

    def _with_passage_text(self, exp: Explanation) -> Explanation:
        """Fill in the best passage's span and text (only for the hits actually shown)."""
        dense = exp.dense
        if dense is None:
            return exp
        key_set = self._key_set()
        if key_set is None:
            return exp
        span = self.keys.passage_span(key_set, dense.value_id, dense.passage_index)
        if span is None:
            return exp
        start, end = span
        text = self.vault.values.text(dense.value_id)[start:end]
        return replace(exp, dense=replace(dense, start=start, end=end, passage_text=text))

    def _allowed(self, parsed: ParsedQuery) -> set[int] | None:
        """Values that pass the query's filters (tags, type, dates, exclusions), or None."""
        if not (parsed.has_filters or parsed.excluded):
            return None
        tag_store = TagStore(self.vault)
        tagged: set[int] | None = None  # values holding every named tag (or one beneath it)
        for tag in parsed.tags:
            found = tag_store.tagged_values(tag, descendants=True)
            tagged = found if tagged is None else tagged & found
        types = [m for name in parsed.types for m in media_types_for(name)]
        if parsed.types and not types:
            return set()  # a type no document can have
        allowed = self.vault.values.filtered_ids(
            media_types=[m for m in types if not m.endswith("/*")],
            media_prefixes=[m[:-1] for m in types if m.endswith("/*")],
            before=parsed.before.isoformat() if parsed.before is not None else None,
            after=parsed.after.isoformat() if parsed.after is not None else None,
        )
        if tagged is not None:
            allowed &= tagged
        if parsed.excluded:
            # The same clauses the lexical search drops with, over every value (no cap).
            allowed -= self.keys.lexical.excluded_ids(parsed.excluded)
        return allowed

    def _tag_matches(self, parsed: ParsedQuery) -> dict[int, tuple[str, ...]]:
        """Accepted tags named in the query's words: those values get the tag key's share."""
        words = " " + " ".join(_WORD.findall(parsed.text.lower())) + " "
        if not words.strip():
            return {}
        tag_store = TagStore(self.vault)
        names = tag_store.names()
        matched = [name for name in names if any(f" {form} " in words for form in _tag_forms(name))]
        out: dict[int, list[str]] = {}
        for name in matched:
            for value_id in tag_store.tagged_values(name):
                out.setdefault(value_id, []).append(name)
        return {vid: tuple(sorted(tags)) for vid, tags in out.items()}

    # -- hits -----------------------------------------------------------------------------------

    def _weights(self, pool: list[_Ranked], mode: str, believable: bool) -> np.ndarray:
        """Softmax over the whole candidate pool plus a "none of these" option (see above)."""
        if not pool:
            return np.zeros(0)
        p = self.params
        scores = np.array([r.score for r in pool], dtype=np.float64)
        if mode == "lexical":  # BM25 is unbounded: the hybrid scale (best hit = w_lex)
            scores = p.lexical_weight * scores / max(scores[0], 1e-9)
        elif mode == "dense":  # cosines: the hybrid scale (w_dense * cosine)
            scores = p.dense_weight * scores
        null = p.null_score if believable else max(p.null_score, float(scores[0]))
        logits = np.append(scores, null) / p.temperature
        weights = np.exp(logits - logits.max())
        weights /= weights.sum()
        return weights[:-1]

    def _hits(self, ranked: list[_Ranked], weights: np.ndarray, details: bool) -> list[Hit]:
        if not ranked:
            return []
        hits = []
        quoting = [
            q.value_id
            for r in ranked
            if r.explanation.lexical is not None
            for q in r.explanation.lexical.quoted_in
        ]
        shown = self._shown_records([r.value_id for r in ranked] + quoting)
        for r, weight in zip(ranked, weights, strict=True):
            value_id, score = r.value_id, r.score
            exp = self._with_passage_text(r.explanation) if details else r.explanation
            if details and exp.lexical is not None and exp.lexical.quoted_in:
                exp = replace(exp, lexical=_named_quotes(exp.lexical, shown))
            record = shown.get(value_id) or self.vault.values.get(value_id)  # gone: NotFound
            snippet = r.snippet_html or self._snippet(value_id, exp, details)
            hits.append(
                Hit(
                    value_id=value_id,
                    identifier=record.identifier,
                    external_id=record.external_id,
                    title=record.title,
                    media_type=record.media_type,
                    score=score,
                    weight=float(weight),
                    snippet_html=snippet,
                    explanation=exp,
                    tags=record.tags,
                    updated_at=record.updated_at,
                    source_path=record.source_path,
                )
            )
        return hits

    def _shown_records(self, value_ids: list[int]) -> dict[int, _Shown]:
        """What the hits show of each value, in two queries for all of them (searches run per
        keystroke: ``values.get`` per hit also re-verifies each digest, 3 queries a hit)."""
        tags = TagStore(self.vault).accepted_tags(value_ids)
        return {
            src.value_id: _Shown(
                src.identifier,
                src.external_id,
                src.title,
                src.media_type,
                tags[src.value_id],
                src.updated_at,
                src.source_path,
            )
            for src in self.vault.values.key_sources(value_ids)
        }

    def _snippet(self, value_id: int, exp: Explanation, details: bool) -> str:
        if not details:
            return ""
        if exp.dense is not None and exp.dense.passage_text:
            return html.escape(_shorten(exp.dense.passage_text, 240))
        return html.escape(_shorten(self.vault.values.text(value_id), 240))

    def _believable(self, pool: list[_Ranked], parsed: ParsedQuery, floor: float = 0.0) -> bool:
        """Whether an absolute signal backs the top candidate (else it may weigh at most 50%)."""
        if not pool:
            return False
        words = [w.lower() for w in (*parsed.terms, *parsed.phrases)]
        wanted = [w for w in dict.fromkeys(words) if _is_content_word(w)]
        if words and not wanted:
            return False  # only stopwords and punctuation ("AND OR ("): nothing to be sure of
        top = pool[0].explanation
        p = self.params
        if top.identifiers is not None:
            return True  # a verified identifier is the surest key there is
        if top.dense is not None and calibrated(top.dense.cosine, floor) >= p.confident_cosine:
            return True
        if top.tags is not None and top.tags.tags:
            return True
        if top.learned is not None and top.learned.score > 0:
            return True  # a search this close found it before
        if top.lexical is not None and top.lexical.terms:
            if not wanted:
                return True
            found = {t.term.strip('"').lower() for t in top.lexical.terms}
            covered = sum(_coverage(w, found) for w in wanted)
            return covered / len(wanted) >= p.confident_coverage
        return False


def calibrated(cosine: float, floor: float) -> float:
    """A cosine read above the model's floor, 0..1: multilingual-e5 gives unrelated texts about
    0.7, so its raw cosines would barely move a fused score and would always look confident.
    Below the floor a trace of the cosine is kept (x 0.001), so those values stay hits, in
    order, behind every real match. With floor 0 (MiniLM) this is the cosine, clipped at 0."""
    if cosine <= 0.0:
        return 0.0
    return max(cosine * 1e-3, (cosine - floor) / (1.0 - floor))


_WORD = re.compile(r"\w+(?:::\w+)*", re.UNICODE)


def _is_content_word(word: str) -> bool:
    """Whether a query word can carry evidence: not punctuation only, not a stopword."""
    parts = _WORD.findall(word)
    return bool(parts) and not all(is_function_word(part) for part in parts)


def _coverage(word: str, found: set[str]) -> float:
    """How much of one query word the top hit's matched terms cover, 0..1.

    A Latin word is matched or not. A CJK word is never a single index term: it is matched
    by its character bigrams and dictionary words, so it counts by the larger share of those
    that matched (``大阪オフィス`` with 5 of 5 bigrams found counts fully).
    """
    if word in found or word.strip(string.punctuation) in found:
        return 1.0
    if not has_cjk(word):
        return 0.0
    shares = []
    grams = set(cjk_grams(word))
    if grams:
        shares.append(len(grams & found) / len(grams))
    ja = {w for w in japanese_words(word) if " " not in w}
    if ja:
        shares.append(len(ja & found) / len(ja))
    return max(shares, default=0.0)


def _tag_forms(name: str) -> Iterable[str]:
    lower = name.lower()
    yield " ".join(_WORD.findall(lower))
    if "::" in lower:
        yield " ".join(_WORD.findall(lower.rsplit("::", 1)[1]))


def _named_quotes(lexical: LexicalExplanation, shown: dict[int, Any]) -> LexicalExplanation:
    """The quoting documents with their identifiers and titles (those still in the vault)."""
    named = tuple(
        QuotedIn(q.value_id, shown[q.value_id].identifier, shown[q.value_id].title)
        for q in lexical.quoted_in
        if q.value_id in shown
    )
    return replace(lexical, quoted_in=named)


def _lexical_exp(hit: LexicalHit | None, scale: float) -> LexicalExplanation | None:
    if hit is None:
        return LexicalExplanation(0.0, 0.0, ())
    terms = tuple(TermContribution(t.field, t.term, t.score, t.score * scale) for t in hit.terms)
    score = sum(t.score for t in terms) if terms else hit.score * scale
    quoted = tuple(QuotedIn(v) for v in hit.quoted_in)
    return LexicalExplanation(score=score, bm25=hit.score, terms=terms, quoted_in=quoted)


def _learned_exp(
    evidence: LearnedEvidence | None, weights: LearnedWeights | None, mode: str
) -> LearnedExplanation | None:
    """The learned share: in lexical mode the learned words' BM25 (scaled like words appended
    to the value); else a learned search's cosine above the threshold, scaled to 0..weight."""
    if evidence is None or weights is None:
        return None
    if mode == "lexical":
        score = weights.words * evidence.bm25 if evidence.coverage >= weights.coverage else 0.0
    else:
        cosine = evidence.similarity if evidence.similarity is not None else 0.0
        span = max(1e-9, 1.0 - weights.threshold)
        score = weights.meaning * max(0.0, cosine - weights.threshold) / span
    if score <= 0:
        return None  # evidence too weak to count is not shown either
    return LearnedExplanation(
        score=score,
        similarity=evidence.similarity,
        bm25=evidence.bm25,
        searches=evidence.searches,
        queries=evidence.queries,
        hidden=evidence.hidden,
        words=evidence.words,
    )


def _dense_exp(c: _Candidate, score: float) -> DenseExplanation:
    return DenseExplanation(
        value_id=c.value_id,
        score=score,
        cosine=c.cosine if c.cosine is not None else 0.0,
        passage_index=c.passage_index,
        passage_rank=c.dense.passage_rank if c.dense is not None else None,
        start=0,
        end=0,
        passage_text="",
    )


def _shorten(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rsplit(" ", 1)[0] + "…"
