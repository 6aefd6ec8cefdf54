"""The in-memory evidence behind tag suggestions: terms, tagged neighbours, tag prototypes.

Four kinds of evidence are combined for each candidate tag of a document (the fourth, rules,
is the suggester's):

* **neighbours**: the document's mean passage vector (dense keys) finds its nearest documents
  that carry accepted (or rejected) tags; each votes for its tags, weighted by similarity;
  without dense keys, idf-weighted term overlap finds lexical neighbours the same way;
* **prototype**: the cosine to the mean vector of the tag's accepted documents;
* **terms**: words over-represented in the tag's accepted documents (smoothed log-odds against
  the whole vault, Bernoulli-naive-Bayes style, positive evidence only).

Dense similarity is **relative to the document's language** (:class:`LanguageBaseline`): an
embedding model puts all documents of one language (Japanese text under an English model, say)
close together, so a cosine of 0.7 among documents that are all about 0.7 alike is no evidence.
A neighbour counts by how far its cosine lies above the mean pairwise cosine of the language
(``(cos - mean) / (1 - mean)``, 0 at or below it), and a prototype by how far it lies above
what a tag of that many random documents of the language would reach. Evidence terms shown to
people must be discriminative: in at least :data:`MIN_TERM_DOCS` of the tag's documents and a
fifth of them, with a lift of :data:`MIN_TERM_LIFT` over the other documents (:meth:`EvidenceIndex.
_lexical`), so a word that two of three examples happen to share is not "evidence".

Everything is held as running sums, so an accept or a reject changes the next suggestion at
once: no retraining. Not thread-safe on its own: the suggester guards it with its lock.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from kvdesk.core.keys.vectors import VectorMatrix
from kvdesk.core.tags.calibration import FEATURES

NEIGHBOURS = 25  # tagged neighbours consulted per document
PROTO_CANDIDATES = 30  # tags proposed by prototype similarity before scoring
LEX_CANDIDATES = 30  # tags proposed by distinctive terms before scoring
SHRINK = 2.0  # pseudo-documents pulling a tag's term rate towards the vault's rate
MIN_TERM_DOCS = 3  # an evidence term is in at least this many of the tag's documents ...
MIN_TERM_SHARE = 0.2  # ... and in at least this share of them ...
MIN_TERM_LIFT = 3.0  # ... and that share is this many times its share in the other documents
MAX_TERM_CHARS = 24  # longer "words" are unsegmented runs (Japanese sentences), not terms
BASELINE_SAMPLE = 300  # documents per language sampled for the mean pairwise cosine
REL_FLOOR = 0.3  # neighbour votes are shares of at least this (relative) similarity's weight
MIN_REL = 0.03  # relative similarity below this is within noise of the baseline: none
_TOKEN = re.compile(r"[^\W\d_][\w+#.-]*[\w+#]|[^\W\d_]{2,}", re.UNICODE)
# English function words (articles, pronouns, determiners, prepositions, conjunctions, auxiliary
# and modal verbs, common adverbs, contractions), grouped so a missing one is easy to spot. They
# carry no topic, so they are neither tag evidence ("terms: of, in, to") nor neighbour overlap.
_FUNCTION_WORDS = """
an the this that these those such same other others another each every either neither both
all any some no none nor one ones own several few many much more most less least enough
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his
himself she her hers herself it its itself they them their theirs themselves who whom whose
which what whatever whichever whoever whomever whether someone somebody something anyone
anybody anything everyone everybody everything nobody nothing noone
about above across after afterwards against along alongside amid amidst among amongst around
as at before behind below beneath beside besides between beyond by despite down during except
for from in inside into like near of off on onto out outside over past per since than through
throughout thru till to toward towards under underneath unlike until unto up upon via with
within without
and but or so yet because although though while whereas unless if then else also too either
however therefore thus hence moreover furthermore nevertheless nonetheless otherwise meanwhile
instead indeed rather whereby wherein whereupon thereby therein thereafter hereby herein
am is are was were be been being do does did doing done have has had having can could may
might must shall should will would ought need dare get gets got getting let lets
not very just only even still already again ever never always often sometimes usually almost
quite perhaps maybe here there where when why how whenever wherever now once soon later ago
yes ok okay etc eg ie vs
don doesn didn isn aren wasn weren hasn haven hadn won wouldn shouldn couldn can't cannot
cant mustn needn ll ve re
"""
_STOP = frozenset(
    _FUNCTION_WORDS.split()
    + "also use used using user users two via".split()  # frequent in package descriptions
)


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_LETTER = re.compile(r"[^\W\d_]")
LANGUAGE_NAMES = {"cjk": "Chinese/Japanese/Korean", "other": "alphabetic"}


def language_of(text: str) -> str:
    """A coarse language class for similarity baselines: 'cjk' when at least a fifth of the
    letters (first 4,000 characters) are Chinese, Japanese or Korean, else 'other'."""
    sample = text[:4000]
    letters = len(_LETTER.findall(sample))
    if not letters:
        return "other"
    return "cjk" if len(_CJK.findall(sample)) >= 0.2 * letters else "other"


def relative(score: float, mean: float) -> float:
    """A cosine relative to a baseline ``mean``: 0 at or below it, 1 for identical vectors."""
    rel = (score - mean) / max(1.0 - mean, 1e-6)
    return rel if rel >= MIN_REL else 0.0


def proto_baseline(mean: float, n: int) -> float:
    """The cosine a typical document reaches with the normalised mean of ``n`` random documents
    whose pairwise cosine is ``mean`` (what a prototype gives without any topic in common)."""
    if mean <= 0 or n <= 0:
        return max(mean, 0.0)
    return min(mean / math.sqrt(mean + (1.0 - mean) / n), 0.999)


@dataclass(frozen=True)
class LanguageBaseline:
    """How similar the documents of one language usually are (dense vectors)."""

    language: str
    mean: float  # mean pairwise cosine of a sample of the language's documents
    p90: float  # its 90th percentile
    sample: int  # documents sampled
    docs: int  # documents of the language when measured


def tokens(text: str) -> set[str]:
    """Lower-cased words of at least two letters, minus English function words (``_STOP``)."""
    return {t for t in _TOKEN.findall(text.lower()) if t not in _STOP}


@dataclass
class Candidate:
    """The evidence for one candidate tag of one document."""

    knn: float = 0.0
    knn_max: float = 0.0
    proto: float = 0.0
    lex: float = 0.0
    lknn: float = 0.0
    lknn_max: float = 0.0
    neighbours: list[tuple[int, float]] = field(default_factory=list)  # (document, cosine)
    terms: list[tuple[float, str]] = field(default_factory=list)
    rule: str = ""
    raw_max: float = 0.0  # the best neighbour's plain cosine (before the language baseline)
    proto_raw: float = 0.0  # the plain prototype cosine


class EvidenceIndex:
    """Documents' terms and vectors, and per-tag running sums over accepted documents.

    Tags are numbered in the order they are first seen (``tag``); documents are value ids.
    """

    def __init__(self, matrix: VectorMatrix | None = None) -> None:
        self.matrix = matrix  # the active dense key set's vectors, or None (lexical only)
        self.dim = int(matrix.dim) if matrix is not None else 0
        self.ident: dict[int, tuple[str, str]] = {}  # value id -> (identifier, title)
        self.doc_words: dict[int, frozenset[str]] = {}
        self.language: dict[int, str] = {}  # value id -> language class (``language_of``)
        self._baselines: dict[str, LanguageBaseline] = {}
        self.tag_names: list[str] = []
        self.tag_n: list[int] = []  # accepted documents per tag
        self.accepted: dict[int, set[int]] = {}  # value id -> tags
        self.rejected: dict[int, set[int]] = {}
        self._doc_terms: dict[int, tuple[int, ...]] = {}
        self._vocab: dict[str, int] = {}
        self._words: list[str] = []
        self._term_docs: dict[int, list[int]] = {}
        self._df: Counter[int] = Counter()
        self._norms: dict[int, float] = {}
        self._tag_ids: dict[str, int] = {}
        self._postings: dict[int, dict[int, int]] = {}  # term -> tag -> accepted docs
        self._tag_docs: dict[int, set[int]] = {}
        self._docvec: dict[int, np.ndarray] = {}
        self._proto_sum = np.zeros((16, max(self.dim, 1)), dtype=np.float64)
        self._protos = np.zeros(0)
        self._protos_raw = np.zeros(0)

    @property
    def n_docs(self) -> int:
        return len(self.ident)

    # -- building -------------------------------------------------------------------------------

    def add_document(self, vid: int, identifier: str, title: str, text: str) -> None:
        """Index a document's terms (once: a known document is left as it is)."""
        if vid in self.ident:
            return
        self.ident[vid] = (identifier, title)
        self.language[vid] = language_of(f"{title}\n{text}")
        words = tokens(f"{title}\n{text}")
        ids = []
        for w in words:
            tid = self._vocab.get(w)
            if tid is None:
                tid = self._vocab[w] = len(self._words)
                self._words.append(w)
            ids.append(tid)
        self._doc_terms[vid] = tuple(ids)
        self.doc_words[vid] = frozenset(words)
        self._df.update(ids)
        for tid in ids:
            self._term_docs.setdefault(tid, []).append(vid)

    def tag(self, name: str) -> int:
        """The number of tag ``name`` (case-insensitive), added if new."""
        key = name.lower()
        idx = self._tag_ids.get(key)
        if idx is None:
            idx = self._tag_ids[key] = len(self.tag_names)
            self.tag_names.append(name)
            self.tag_n.append(0)
            self._tag_docs[idx] = set()
            if idx >= len(self._proto_sum):
                grown = np.zeros((2 * len(self._proto_sum), self._proto_sum.shape[1]))
                grown[: len(self._proto_sum)] = self._proto_sum
                self._proto_sum = grown
        return idx

    def apply(self, vid: int, tag: int, state: str) -> None:
        """Move (vid, tag) into ``state`` ('accepted', 'rejected' or 'none'), updating sums."""
        was_accepted = tag in self.accepted.get(vid, ())
        if was_accepted and state != "accepted":
            self.accepted[vid].discard(tag)
            self._count(vid, tag, -1)
        if state != "rejected":
            self.rejected.get(vid, set()).discard(tag)
        if state == "accepted" and not was_accepted:
            self.accepted.setdefault(vid, set()).add(tag)
            self._count(vid, tag, +1)
        elif state == "rejected":
            self.rejected.setdefault(vid, set()).add(tag)

    def _count(self, vid: int, tag: int, sign: int) -> None:
        self.tag_n[tag] += sign
        docs = self._tag_docs[tag]
        if sign > 0:
            docs.add(vid)
        else:
            docs.discard(vid)
        for term in self._doc_terms.get(vid, ()):
            post = self._postings.setdefault(term, {})
            post[tag] = post.get(tag, 0) + sign
            if post[tag] <= 0:
                del post[tag]
        vec = self._vector(vid)
        if vec is not None:
            self._proto_sum[tag] += sign * vec

    def _vector(self, vid: int) -> np.ndarray | None:
        """The document's mean passage vector, normalised (None without dense keys)."""
        if self.matrix is None:
            return None
        vec = self._docvec.get(vid)
        if vec is None:
            rows = self.matrix.value_vectors(vid)
            if len(rows) == 0:
                return None
            mean = rows.mean(axis=0).astype(np.float64)
            norm = float(np.linalg.norm(mean))
            vec = mean / norm if norm > 0 else mean
            self._docvec[vid] = vec
        return vec

    def baseline(self, language: str) -> LanguageBaseline:
        """The mean (and 90th percentile) pairwise cosine of the language's documents, from an
        evenly spread sample of :data:`BASELINE_SAMPLE`; measured again once the language has
        half as many documents again as when it was measured."""
        docs = sorted(v for v, lang in self.language.items() if lang == language)
        known = self._baselines.get(language)
        if known is not None and len(docs) <= 1.5 * known.docs:
            return known
        step = max(1, len(docs) // BASELINE_SAMPLE)
        sample = (self._vector(d) for d in docs[::step][:BASELINE_SAMPLE])
        vecs = [v for v in sample if v is not None]
        mean = p90 = 0.0
        if len(vecs) >= 2:
            m = np.vstack(vecs)
            sims = (m @ m.T)[np.triu_indices(len(vecs), k=1)]
            mean, p90 = float(sims.mean()), float(np.percentile(sims, 90))
        found = LanguageBaseline(language, max(mean, 0.0), p90, len(vecs), len(docs))
        self._baselines[language] = found
        return found

    # -- evidence -------------------------------------------------------------------------------

    def candidates(self, vid: int, *, leave_out: bool) -> dict[int, Candidate]:
        """Evidence for each candidate tag; ``leave_out`` removes the document's own tags."""
        own = self.accepted.get(vid, set()) if leave_out else set()
        cands: dict[int, Candidate] = {}
        raw_max: dict[int, float] = {}  # best plain neighbour cosine per tag
        n_tags = len(self.tag_names)
        vec = self._vector(vid)
        if vec is not None and n_tags and self.matrix is not None:
            allowed = set(self.accepted) | set(self.rejected)
            allowed.discard(vid)
            hits = self.matrix.search(vec, NEIGHBOURS, allowed=allowed) if allowed else []
            base = self.baseline(self.language.get(vid, "other")).mean
            rel = [relative(h.score, base) for h in hits]
            total = sum(r**4 for r in rel) + REL_FLOOR**4
            for h, r in zip(hits, rel, strict=True):
                for t in self.accepted.get(h.value_id, ()):
                    raw_max[t] = max(raw_max.get(t, 0.0), h.score)
                    if r <= 0:
                        continue  # no closer than documents of this language usually are
                    c = cands.setdefault(t, Candidate())
                    c.knn += r**4 / total
                    c.knn_max = max(c.knn_max, r)
                    c.neighbours.append((h.value_id, h.score))
                for t in self.rejected.get(h.value_id, ()):
                    if r > 0:
                        cands.setdefault(t, Candidate()).knn -= r**4 / total
            sums = self._proto_sum[:n_tags].copy()
            counts = np.asarray(self.tag_n, dtype=np.float64)
            for t in own:
                sums[t] -= vec
                counts[t] -= 1
            norms = np.linalg.norm(sums, axis=1)
            raw = np.where(norms > 0, (sums @ vec) / np.maximum(norms, 1e-12), 0.0)
            raw[counts <= 0] = 0.0
            # relative to what a tag of that many random documents of the language would reach
            expect = np.asarray([proto_baseline(base, int(n)) for n in counts])
            protos = (raw - expect) / np.maximum(1.0 - expect, 1e-6)
            protos[protos < MIN_REL] = 0.0
            for t in np.argsort(-protos)[:PROTO_CANDIDATES]:
                if protos[t] > 0:
                    cands.setdefault(int(t), Candidate())
            self._protos = protos
            self._protos_raw = raw
        else:
            self._protos = np.zeros(n_tags)
            self._protos_raw = self._protos
        lexical_neighbours = self._lexical_neighbours(vid)
        total = sum(sim for _o, sim in lexical_neighbours) + REL_FLOOR
        for other, sim in lexical_neighbours:
            for t in self.accepted.get(other, ()):
                c = cands.setdefault(t, Candidate())
                c.lknn += sim / total
                c.lknn_max = max(c.lknn_max, sim)
                if vec is None:
                    c.neighbours.append((other, sim))
            for t in self.rejected.get(other, ()):
                cands.setdefault(t, Candidate()).lknn -= sim / total
        lex = self._lexical(vid, own)
        for t, _score in sorted(lex.items(), key=lambda kv: -kv[1][0])[:LEX_CANDIDATES]:
            cands.setdefault(t, Candidate())
        for t, c in cands.items():
            c.proto = float(self._protos[t]) if t < len(self._protos) else 0.0
            c.proto_raw = float(self._protos_raw[t]) if t < len(self._protos_raw) else 0.0
            c.raw_max = raw_max.get(t, 0.0)
            if t in lex:
                c.lex, c.terms = lex[t]
        return cands

    def _idf(self, term: int) -> float:
        return math.log((self.n_docs + 1.0) / (self._df[term] + 0.5))

    def _norm(self, vid: int) -> float:
        norm = self._norms.get(vid)
        if norm is None:
            norm = math.sqrt(sum(self._idf(t) ** 2 for t in self._doc_terms.get(vid, ()))) or 1.0
            self._norms[vid] = norm
        return norm

    def _lexical_neighbours(self, vid: int) -> list[tuple[int, float]]:
        """Nearest documents with accepted tags by idf-weighted term overlap (cosine)."""
        terms = self._doc_terms.get(vid, ())
        if not terms or not self.accepted:
            return []
        limit = max(50, self.n_docs // 20)  # very common words say little and cost most
        acc: dict[int, float] = {}
        for term in terms:
            docs = self._term_docs.get(term, ())
            if len(docs) > limit:
                continue
            w = self._idf(term) ** 2
            for other in docs:
                acc[other] = acc.get(other, 0.0) + w
        acc.pop(vid, None)
        tagged = [(o, s) for o, s in acc.items() if o in self.accepted or o in self.rejected]
        best = sorted(tagged, key=lambda kv: -kv[1])[: NEIGHBOURS * 3]
        norm = self._norm(vid)
        sims = sorted(((o, s / (norm * self._norm(o))) for o, s in best), key=lambda kv: -kv[1])
        return sims[:NEIGHBOURS]

    def _lexical(self, vid: int, own: set[int]) -> dict[int, tuple[float, list[tuple[float, str]]]]:
        """Positive smoothed log-odds of the document's terms for every tag that has them."""
        terms = self._doc_terms.get(vid, ())
        if not terms:
            return {}
        n_docs = max(self.n_docs, 1)
        tag_n = self.tag_n
        scores: dict[int, float] = {}
        best: dict[int, list[tuple[float, str]]] = {}
        for term in terms:
            post = self._postings.get(term)
            if not post:
                continue
            q = (self._df[term] + 1.0) / (n_docs + 2.0)
            log_q = math.log(q)
            mq = SHRINK * q
            for t, c in post.items():
                n = tag_n[t]
                if t in own:
                    c, n = c - 1, n - 1
                    if c <= 0:
                        continue
                w = math.log((c + mq) / (n + SHRINK)) - log_q
                if w > 0:
                    scores[t] = scores.get(t, 0.0) + w
                    if self._shown_term(term, c, n):
                        best.setdefault(t, []).append((w * c, self._words[term]))
        norm = 1.0 / math.sqrt(len(terms))
        return {t: (s * norm, best.get(t, [])) for t, s in scores.items()}

    def _shown_term(self, term: int, c: int, n: int) -> bool:
        """Whether a term may be shown as evidence for a tag it occurs in ``c`` of ``n``
        documents of: discriminative for the tag against the rest of the vault, not chance."""
        if c < MIN_TERM_DOCS or c < MIN_TERM_SHARE * n or n <= 0:
            return False
        rest = (self._df[term] - c + 1.0) / (self.n_docs - n + 2.0)  # smoothed, outside the tag
        if (c / n) < MIN_TERM_LIFT * rest:
            return False
        word = self._words[term]
        return len(word) <= MAX_TERM_CHARS

    def examples(self, tag: int, own: set[int] | None = None) -> int:
        """Accepted documents of a tag, less the document's own (left-out) tags."""
        n = max(self.tag_n[tag], 0)
        return n - 1 if own and tag in own and n > 0 else n

    def features(self, cands: dict[int, Candidate]) -> tuple[list[int], np.ndarray]:
        """The calibration's feature rows (``FEATURES``) of the candidates, in their order.

        Uses the prototype scores of the latest :meth:`candidates` call (same document).
        """
        tags = list(cands)
        if not tags:
            return [], np.zeros((0, len(FEATURES)))
        top_proto = float(self._protos.max()) if len(self._protos) else 0.0
        top_lex = max(c.lex for c in cands.values())
        n_tagged = max(len(self.accepted), 1)
        rows = [
            (
                c.knn,
                c.knn_max,
                c.proto,
                c.proto - top_proto,
                c.lex,
                c.lex - top_lex,
                c.lknn,
                c.lknn_max,
                math.log((max(self.tag_n[t], 0) + 1.0) / (n_tagged + 1.0)),
            )
            for t, c in cands.items()
        ]
        return tags, np.asarray(rows, dtype=np.float64)
