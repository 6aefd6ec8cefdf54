"""Semi-automatic tagging: ranked tag suggestions with a calibrated confidence and evidence.

Four kinds of evidence are combined for each candidate tag of a document:

* **neighbours**: the document's mean passage vector (dense keys) finds its nearest documents
  that carry accepted (or rejected) tags; each votes for its tags, weighted by similarity;
* **prototype**: the cosine to the mean vector of the tag's accepted documents;
* **terms**: words over-represented in the tag's accepted documents (smoothed log-odds against
  the whole vault, Bernoulli-naive-Bayes style, positive evidence only);
* **rules**: a manager's explicit rule (any/all words, phrase, regex, fuzzy) for the tag.

Everything is held in memory as running sums, so an accept or a reject changes the next
suggestion at once: no retraining. The only fitted part is a logistic combination of the
evidence features (a handful of weights) and the auto-apply threshold, fitted on curated
documents only (those with accepted tags), with each document left out of its own evidence.
A rejected tag is never proposed again for that document.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kvdesk.core.errors import Cancelled, KvdeskError, NotFoundError
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.progress import CancelToken, Progress, ProgressSink, no_progress
from kvdesk.core.tags.rules import RuleProblem, RuleTimeout, TagRule, load_rules
from kvdesk.core.vault.vault import normalise_tag, now_iso

log = logging.getLogger(__name__)

NEIGHBOURS = 25  # tagged neighbours consulted per document
PROTO_CANDIDATES = 30  # tags proposed by prototype similarity before scoring
LEX_CANDIDATES = 30  # tags proposed by distinctive terms before scoring
RULE_CONFIDENCE = 0.9  # a matching rule makes a suggestion at least this confident
SHRINK = 2.0  # pseudo-documents pulling a tag's term rate towards the vault's rate
FIT_SAMPLE = 600  # curated documents used to fit the calibration
MIN_FIT_POSITIVES = 20  # below this, fixed default weights are used
SETTING_KEY = "tagging.calibration"
PROBLEMS_KEY = "tagging.rule_problems"  # rules that timed out: {rule id: problem}, latest wins
FEATURES = ("knn", "knn_max", "proto", "proto_gap", "lex", "lex_gap", "lknn", "lknn_max", "prior")
# Weights used before there is enough curated data to fit (features standardised as-is).
_DEFAULT_WEIGHTS = (3.0, 1.0, 2.0, 2.0, 0.6, 0.6, 2.0, 1.0, 0.3)
_DEFAULT_BIAS = -3.0
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


@dataclass(frozen=True)
class Suggestion:
    """A proposed tag with its calibrated confidence (0-1) and human-readable evidence."""

    tag: str
    confidence: float
    evidence: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "confidence": round(self.confidence, 4),
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True)
class Calibration:
    """Logistic weights over standardised evidence features, plus the auto-apply threshold."""

    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    threshold: float
    curated: int  # curated documents when it was fitted
    fitted: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": list(self.weights),
            "bias": self.bias,
            "mean": list(self.mean),
            "scale": list(self.scale),
            "threshold": self.threshold,
            "curated": self.curated,
            "fitted": self.fitted,
            "features": list(FEATURES),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        if data.get("features") != list(FEATURES):
            raise ValueError("calibration for other features")
        return cls(
            weights=tuple(float(x) for x in data["weights"]),
            bias=float(data["bias"]),
            mean=tuple(float(x) for x in data["mean"]),
            scale=tuple(float(x) for x in data["scale"]),
            threshold=float(data["threshold"]),
            curated=int(data["curated"]),
            fitted=bool(data["fitted"]),
        )

    @classmethod
    def default(cls) -> Calibration:
        n = len(FEATURES)
        return cls(_DEFAULT_WEIGHTS, _DEFAULT_BIAS, (0.0,) * n, (1.0,) * n, 0.5, 0, False)

    def probability(self, x: np.ndarray) -> np.ndarray:
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        logit = z @ np.asarray(self.weights) + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30))))


@dataclass(frozen=True)
class TagInfo:
    """A tag with its description, colour and how many documents hold it in each state."""

    name: str
    description: str
    color: str
    accepted: int
    suggested: int
    rejected: int
    rules: tuple[str, ...] = ()
    problems: tuple[RuleProblem, ...] = ()  # rules that do not compile or ran out of time

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "color": self.color,
            "accepted": self.accepted,
            "suggested": self.suggested,
            "rejected": self.rejected,
            "rules": list(self.rules),
            "problems": [p.to_json() for p in self.problems],
        }


@dataclass(frozen=True)
class TagEvalReport:
    """The tag-suggestion protocol's figures on held-out documents."""

    held_out: int
    curated: int
    p_at_3: float
    r_at_5: float
    f1: float
    suggest_ms_p50: float
    threshold: float
    fit_seconds: float
    seed: int
    calibration_fitted: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "held_out": self.held_out,
            "p@3": round(self.p_at_3, 4),
            "r@5": round(self.r_at_5, 4),
            "f1": round(self.f1, 4),
            "suggest_ms_p50": round(self.suggest_ms_p50, 2),
            "curated": self.curated,
            "threshold": round(self.threshold, 4),
            "fit_seconds": round(self.fit_seconds, 2),
            "seed": self.seed,
            **self.extra,
        }


def tokens(text: str) -> set[str]:
    """Lower-cased words of at least two letters, minus English function words (``_STOP``)."""
    return {t for t in _TOKEN.findall(text.lower()) if t not in _STOP}


@dataclass
class _Candidate:
    knn: float = 0.0
    knn_max: float = 0.0
    proto: float = 0.0
    lex: float = 0.0
    lknn: float = 0.0
    lknn_max: float = 0.0
    neighbours: list[tuple[int, float]] = field(default_factory=list)
    terms: list[tuple[float, str]] = field(default_factory=list)
    rule: str = ""


class TagSuggester:
    """Suggests tags for documents of one knowledge base; accepts and rejects learn at once.

    Build it once and keep it (loading the vault's tags, terms and vectors costs about a second
    per 10k documents); it is thread-safe, writes go through ``kb.set_tag``.
    """

    def __init__(self, kb: KnowledgeBase, *, use_dense: bool = True) -> None:
        self.kb = kb
        self.use_dense = use_dense
        self._lock = threading.RLock()
        self._loaded = False
        self._calibration: Calibration | None = None
        self.rule_problems: list[RuleProblem] = []  # found while loading or matching
        self._unsaved_problems: dict[int, RuleProblem] = {}

    # -- state ----------------------------------------------------------------------------------

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            conn = self.kb.vault.conn
            self._ident: dict[int, tuple[str, str]] = {}
            self._doc_terms: dict[int, tuple[int, ...]] = {}
            self._doc_words: dict[int, frozenset[str]] = {}
            self._vocab: dict[str, int] = {}
            self._term_docs: dict[int, list[int]] = {}
            self._norms: dict[int, float] = {}
            self._words: list[str] = []
            df: Counter[int] = Counter()
            for vid, ident, title, text in conn.execute(
                "SELECT v.id, v.identifier, v.title, ver.text FROM value v JOIN version ver"
                " ON ver.value_id = v.id AND ver.version = v.current_version"
            ):
                self._ident[vid] = (ident, title)
                self._index_terms(vid, f"{title}\n{text}", df)
            self._df = df
            self._n_docs = len(self._ident)
            self._tag_names: list[str] = []
            self._tag_ids: dict[str, int] = {}
            self._tag_n: list[int] = []
            self._postings: dict[int, dict[int, int]] = {}  # term -> tag -> accepted docs
            self._accepted: dict[int, set[int]] = {}
            self._rejected: dict[int, set[int]] = {}
            self._tag_docs: dict[int, set[int]] = {}
            self._docvec: dict[int, np.ndarray] = {}
            self._matrix: Any = None
            self._dim = 0
            if self.use_dense and self.kb.keys.active_key_set() is not None:
                matrix = self.kb.keys.matrix()
                if matrix.value_count():
                    self._matrix = matrix
                    self._dim = int(matrix.dim)
            self._proto_sum = np.zeros((16, max(self._dim, 1)), dtype=np.float64)
            for name in [r[0] for r in conn.execute("SELECT name FROM tag ORDER BY id")]:
                self._tag(name)
            for vid, name, state in conn.execute(
                "SELECT vt.value_id, t.name, vt.state FROM value_tag vt"
                " JOIN tag t ON t.id = vt.tag_id WHERE vt.state != 'suggested'"
            ):
                if vid in self._ident:
                    self._apply(vid, self._tag(name), state)
            self._rules = self._load_rules()
            self._loaded = True

    def _index_terms(self, vid: int, text: str, df: Counter[int]) -> None:
        words = tokens(text)
        ids = []
        for w in words:
            tid = self._vocab.get(w)
            if tid is None:
                tid = self._vocab[w] = len(self._words)
                self._words.append(w)
            ids.append(tid)
        self._doc_terms[vid] = tuple(ids)
        self._doc_words[vid] = frozenset(words)
        df.update(ids)
        for tid in ids:
            self._term_docs.setdefault(tid, []).append(vid)

    def _tag(self, name: str) -> int:
        key = name.lower()
        idx = self._tag_ids.get(key)
        if idx is None:
            idx = self._tag_ids[key] = len(self._tag_names)
            self._tag_names.append(name)
            self._tag_n.append(0)
            self._tag_docs[idx] = set()
            if idx >= len(self._proto_sum):
                grown = np.zeros((2 * len(self._proto_sum), self._proto_sum.shape[1]))
                grown[: len(self._proto_sum)] = self._proto_sum
                self._proto_sum = grown
        return idx

    def _vector(self, vid: int) -> np.ndarray | None:
        """The document's mean passage vector, normalised (None without dense keys)."""
        if self._matrix is None:
            return None
        vec = self._docvec.get(vid)
        if vec is None:
            rows = self._matrix.value_vectors(vid)
            if len(rows) == 0:
                return None
            mean = rows.mean(axis=0).astype(np.float64)
            norm = float(np.linalg.norm(mean))
            vec = mean / norm if norm > 0 else mean
            self._docvec[vid] = vec
        return vec

    def _apply(self, vid: int, tag: int, state: str) -> None:
        """Move (vid, tag) into ``state`` ('accepted', 'rejected' or 'none'), updating sums."""
        was_accepted = tag in self._accepted.get(vid, ())
        if was_accepted and state != "accepted":
            self._accepted[vid].discard(tag)
            self._count(vid, tag, -1)
        if state != "rejected":
            self._rejected.get(vid, set()).discard(tag)
        if state == "accepted" and not was_accepted:
            self._accepted.setdefault(vid, set()).add(tag)
            self._count(vid, tag, +1)
        elif state == "rejected":
            self._rejected.setdefault(vid, set()).add(tag)

    def _count(self, vid: int, tag: int, sign: int) -> None:
        self._tag_n[tag] += sign
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

    def _refresh_doc(self, vid: int) -> None:
        """Load a document imported after this suggester was built."""
        if vid in self._ident:
            return
        row = self.kb.vault.conn.execute(
            "SELECT v.identifier, v.title, ver.text FROM value v JOIN version ver"
            " ON ver.value_id = v.id AND ver.version = v.current_version WHERE v.id = ?",
            (vid,),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no document with id {vid}")
        self._ident[vid] = (row[0], row[1])
        self._index_terms(vid, f"{row[1]}\n{row[2]}", self._df)
        self._n_docs += 1

    # -- evidence -------------------------------------------------------------------------------

    def _candidates(self, vid: int, *, leave_out: bool) -> dict[int, _Candidate]:
        """Evidence for each candidate tag; ``leave_out`` removes the document's own tags."""
        own = self._accepted.get(vid, set()) if leave_out else set()
        cands: dict[int, _Candidate] = {}
        n_tags = len(self._tag_names)
        vec = self._vector(vid)
        if vec is not None and n_tags:
            allowed = set(self._accepted) | set(self._rejected)
            allowed.discard(vid)
            hits = self._matrix.search(vec, NEIGHBOURS, allowed=allowed) if allowed else []
            total = sum(max(h.score, 0.0) ** 4 for h in hits) or 1.0
            for h in hits:
                w = max(h.score, 0.0) ** 4 / total
                for t in self._accepted.get(h.value_id, ()):
                    c = cands.setdefault(t, _Candidate())
                    c.knn += w
                    c.knn_max = max(c.knn_max, h.score)
                    c.neighbours.append((h.value_id, h.score))
                for t in self._rejected.get(h.value_id, ()):
                    cands.setdefault(t, _Candidate()).knn -= w
            sums = self._proto_sum[:n_tags].copy()
            counts = np.asarray(self._tag_n, dtype=np.float64)
            for t in own:
                sums[t] -= vec
                counts[t] -= 1
            norms = np.linalg.norm(sums, axis=1)
            protos = np.where(norms > 0, (sums @ vec) / np.maximum(norms, 1e-12), 0.0)
            protos[counts <= 0] = 0.0
            for t in np.argsort(-protos)[:PROTO_CANDIDATES]:
                if protos[t] > 0:
                    cands.setdefault(int(t), _Candidate())
            self._protos = protos
        else:
            self._protos = np.zeros(n_tags)
        lexical_neighbours = self._lexical_neighbours(vid)
        total = sum(sim for _o, sim in lexical_neighbours) or 1.0
        for other, sim in lexical_neighbours:
            for t in self._accepted.get(other, ()):
                c = cands.setdefault(t, _Candidate())
                c.lknn += sim / total
                c.lknn_max = max(c.lknn_max, sim)
                if vec is None:
                    c.neighbours.append((other, sim))
            for t in self._rejected.get(other, ()):
                cands.setdefault(t, _Candidate()).lknn -= sim / total
        lex = self._lexical(vid, own)
        for t, _score in sorted(lex.items(), key=lambda kv: -kv[1][0])[:LEX_CANDIDATES]:
            cands.setdefault(t, _Candidate())
        for t, c in cands.items():
            c.proto = float(self._protos[t]) if t < len(self._protos) else 0.0
            if t in lex:
                c.lex, c.terms = lex[t]
        words = self._doc_words.get(vid, frozenset())
        if self._rules:
            text = ""
            for rule in self._rules:
                if rule.kind in ("regex", "phrase", "fuzzy") and not text:
                    ident, title = self._ident[vid]
                    text = f"{title}\n{self.kb.vault.text(vid)}"
                try:
                    fired = rule.matches(text, words)
                except RuleTimeout as exc:
                    self._rule_timed_out(rule, vid, str(exc))
                    continue  # skipped for this document only
                if fired:
                    c = cands.setdefault(self._tag(rule.tag), _Candidate())
                    c.rule = rule.describe()
        return cands

    def _load_rules(self) -> list[TagRule]:
        problems: list[RuleProblem] = []
        rules = load_rules(self.kb.vault.conn, problems)
        self.rule_problems = [p for p in self.rule_problems if p.problem.startswith("timed out")]
        self.rule_problems += problems
        return rules

    def _rule_timed_out(self, rule: TagRule, vid: int, message: str) -> None:
        ident = self._ident.get(vid, (f"#{vid}", ""))[0]
        log.warning("%s (document %s)", message, ident)
        problem = RuleProblem(
            rule.tag, rule.kind, rule.pattern, f"timed out on document {ident}", rule.rule_id
        )
        self.rule_problems = [p for p in self.rule_problems if p.rule_id != rule.rule_id]
        self.rule_problems.append(problem)
        if rule.rule_id is not None:
            self._unsaved_problems[rule.rule_id] = problem

    def save_rule_problems(self) -> None:
        """Store rule time-outs in the vault (``tags list`` shows them); best effort."""
        with self._lock:
            pending, self._unsaved_problems = self._unsaved_problems, {}
        if not pending:
            return
        try:
            with self.kb.vault.transaction() as tx:
                row = tx.execute(
                    "SELECT value FROM setting WHERE key = ?", (PROBLEMS_KEY,)
                ).fetchone()
                stored = _parse_problems(row[0] if row else None)
                stored.update({str(k): p.to_json() for k, p in pending.items()})
                tx.execute(
                    "INSERT INTO setting(key, value) VALUES (?, ?) ON CONFLICT(key)"
                    " DO UPDATE SET value = excluded.value",
                    (PROBLEMS_KEY, json.dumps(stored)),
                )
        except KvdeskError:
            with self._lock:  # a busy vault: keep them for the next save
                self._unsaved_problems = {**pending, **self._unsaved_problems}

    def _idf(self, term: int) -> float:
        return math.log((self._n_docs + 1.0) / (self._df[term] + 0.5))

    def _norm(self, vid: int) -> float:
        norm = self._norms.get(vid)
        if norm is None:
            norm = math.sqrt(sum(self._idf(t) ** 2 for t in self._doc_terms.get(vid, ()))) or 1.0
            self._norms[vid] = norm
        return norm

    def _lexical_neighbours(self, vid: int) -> list[tuple[int, float]]:
        """Nearest documents with accepted tags by idf-weighted term overlap (cosine)."""
        terms = self._doc_terms.get(vid, ())
        if not terms or not self._accepted:
            return []
        limit = max(50, self._n_docs // 20)  # very common words say little and cost most
        acc: dict[int, float] = {}
        for term in terms:
            docs = self._term_docs.get(term, ())
            if len(docs) > limit:
                continue
            w = self._idf(term) ** 2
            for other in docs:
                acc[other] = acc.get(other, 0.0) + w
        acc.pop(vid, None)
        tagged = [(o, s) for o, s in acc.items() if o in self._accepted or o in self._rejected]
        best = sorted(tagged, key=lambda kv: -kv[1])[: NEIGHBOURS * 3]
        norm = self._norm(vid)
        sims = sorted(((o, s / (norm * self._norm(o))) for o, s in best), key=lambda kv: -kv[1])
        return sims[:NEIGHBOURS]

    def _lexical(self, vid: int, own: set[int]) -> dict[int, tuple[float, list[tuple[float, str]]]]:
        """Positive smoothed log-odds of the document's terms for every tag that has them."""
        terms = self._doc_terms.get(vid, ())
        if not terms:
            return {}
        n_docs = max(self._n_docs, 1)
        tag_n = self._tag_n
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
                    if c >= 2:
                        best.setdefault(t, []).append((w * c, self._words[term]))
        norm = 1.0 / math.sqrt(len(terms))
        return {t: (s * norm, best.get(t, [])) for t, s in scores.items()}

    def _features(self, cands: dict[int, _Candidate]) -> tuple[list[int], np.ndarray]:
        tags = list(cands)
        if not tags:
            return [], np.zeros((0, len(FEATURES)))
        top_proto = float(self._protos.max()) if len(self._protos) else 0.0
        top_lex = max(c.lex for c in cands.values())
        n_tagged = max(len(self._accepted), 1)
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
                math.log((max(self._tag_n[t], 0) + 1.0) / (n_tagged + 1.0)),
            )
            for t, c in cands.items()
        ]
        return tags, np.asarray(rows, dtype=np.float64)

    # -- calibration ----------------------------------------------------------------------------

    @property
    def calibration(self) -> Calibration:
        with self._lock:
            if self._calibration is None:
                self._calibration = self._stored_calibration() or self.fit()
            return self._calibration

    @property
    def threshold(self) -> float:
        """Confidence from which a suggestion counts as auto-applicable (chosen on curated)."""
        return self.calibration.threshold

    def _stored_calibration(self) -> Calibration | None:
        self._load()
        row = self.kb.vault.conn.execute(
            "SELECT value FROM setting WHERE key = ?", (SETTING_KEY,)
        ).fetchone()
        if row is None:
            return None
        try:
            cal = Calibration.from_json(json.loads(row[0]))
        except (ValueError, KeyError, TypeError):
            return None
        curated = len(self._accepted)
        if abs(curated - cal.curated) > 0.25 * max(cal.curated, 1):
            return None  # the curated part has grown or shrunk a lot: refit
        return cal

    def fit(self, *, seed: int = 0, save: bool = True) -> Calibration:
        """Fit the logistic weights and the threshold on curated documents (leave-one-out)."""
        self._load()
        with self._lock:
            curated = sorted(v for v, tags in self._accepted.items() if tags)
            rng = random.Random(seed)
            sample = rng.sample(curated, min(FIT_SAMPLE, len(curated)))
            xs: list[np.ndarray] = []
            ys: list[np.ndarray] = []
            groups: list[np.ndarray] = []
            for i, vid in enumerate(sample):
                tags, x = self._features(self._candidates(vid, leave_out=True))
                if not tags:
                    continue
                truth = self._accepted[vid]
                xs.append(x)
                ys.append(np.asarray([t in truth for t in tags], dtype=np.float64))
                groups.append(np.full(len(tags), i))
            positives = sum(float(y.sum()) for y in ys)
            if positives < MIN_FIT_POSITIVES:
                cal = Calibration.default()
                cal = Calibration(
                    cal.weights, cal.bias, cal.mean, cal.scale, cal.threshold, len(curated), False
                )
            else:
                x_all = np.vstack(xs)
                y_all = np.concatenate(ys)
                g_all = np.concatenate(groups)
                split = int(len(sample) * 2 / 3)
                train = g_all < split
                cal = _fit_logistic(x_all[train], y_all[train], len(curated))
                held = ~train if (~train).any() else train
                n_true = sum(len(self._accepted[v]) for v in sample[split:]) or int(
                    y_all[held].sum()
                )
                threshold = _best_threshold(cal.probability(x_all[held]), y_all[held], n_true)
                cal = Calibration(
                    cal.weights, cal.bias, cal.mean, cal.scale, threshold, len(curated), True
                )
            self._calibration = cal
        if self._unsaved_problems:
            self.save_rule_problems()
        if save:
            try:
                with self.kb.vault.transaction() as tx:
                    tx.execute(
                        "INSERT INTO setting(key, value) VALUES (?, ?) ON CONFLICT(key)"
                        " DO UPDATE SET value = excluded.value",
                        (SETTING_KEY, json.dumps(cal.to_json())),
                    )
            except KvdeskError:
                pass  # a busy vault only means the next process fits again
        return cal

    # -- suggesting -----------------------------------------------------------------------------

    def suggest(self, value_id: int, k: int = 5) -> list[Suggestion]:
        """The ``k`` most confident new tags for a document, best first, with their evidence."""
        if k < 1:
            raise KvdeskError("ask for at least one suggestion (k >= 1)")
        try:
            return self._suggest(value_id, k)
        finally:
            if self._unsaved_problems:
                self.save_rule_problems()

    def _suggest(self, value_id: int, k: int) -> list[Suggestion]:
        self._load()
        cal = self.calibration
        with self._lock:
            self._refresh_doc(value_id)
            cands = self._candidates(value_id, leave_out=False)
            skip = self._accepted.get(value_id, set()) | self._rejected.get(value_id, set())
            for t in list(cands):
                if t in skip or (self._tag_n[t] <= 0 and not cands[t].rule):
                    del cands[t]  # rejected, already there, or no accepted document left
            tags, x = self._features(cands)
            if not tags:
                return []
            probs = cal.probability(x)
            out: list[Suggestion] = []
            for t, p in zip(tags, probs, strict=True):
                c = cands[t]
                conf = float(p)
                if c.rule:
                    conf = max(conf, RULE_CONFIDENCE)
                out.append(Suggestion(self._tag_names[t], conf, self._evidence(c)))
            out.sort(key=lambda s: (-s.confidence, s.tag))
            return out[:k]

    def suggest_many(self, value_ids: Iterable[int], k: int = 5) -> dict[int, list[Suggestion]]:
        return {vid: self.suggest(vid, k) for vid in value_ids}

    def untagged(self) -> list[int]:
        """Documents without any accepted tag."""
        self._load()
        return sorted(v for v in self._ident if not self._accepted.get(v))

    def _evidence(self, c: _Candidate) -> tuple[str, ...]:
        ev: list[str] = []
        if c.rule:
            ev.append(c.rule)
        if c.neighbours:
            parts = []
            for vid, score in sorted(c.neighbours, key=lambda n: -n[1])[:2]:
                ident, title = self._ident.get(vid, (f"#{vid}", ""))
                short = title if len(title) <= 60 else title[:57] + "…"
                parts.append(f"{ident} “{short}” ({score:.2f})")
            more = len(c.neighbours) - len(parts)
            tail = f" (+{more} more)" if more > 0 else ""
            ev.append("similar to " + " and ".join(parts) + tail)
        if c.proto > 0:
            ev.append(f"close to the tag's documents ({c.proto:.2f})")
        if c.terms:
            words = [w for _s, w in sorted(c.terms, reverse=True)[:4]]
            ev.append("terms: " + ", ".join(words))
        return tuple(ev)

    # -- curation -------------------------------------------------------------------------------

    def accept(self, value_id: int, tag: str, actor: str = "") -> None:
        """Accept a tag: stored, keyed for search, and learnt from at once."""
        self._set(value_id, tag, "accepted", actor)

    def reject(self, value_id: int, tag: str, actor: str = "") -> None:
        """Reject a tag: never proposed again for this document; a negative vote for others."""
        self._set(value_id, tag, "rejected", actor)

    def _set(self, value_id: int, tag: str, state: str, actor: str) -> None:
        name = normalise_tag(tag)
        self.kb.set_tag(value_id, name, state, actor)
        if self._loaded:
            with self._lock:
                self._refresh_doc(value_id)
                stored = self.kb.vault.conn.execute(
                    "SELECT name FROM tag WHERE name = ?", (name,)
                ).fetchone()
                self._apply(value_id, self._tag(str(stored[0]) if stored else name), state)

    def restore(self, value_id: int, tag: str, previous: TagState | str | None) -> None:
        """Undo: put (document, tag) back exactly as ``previous`` (see :func:`restore_tag_state`),
        and learn from it at once like an accept or reject."""
        restore_tag_state(self.kb, value_id, tag, previous)
        if self._loaded:
            state = previous.state if isinstance(previous, TagState) else previous
            with self._lock:
                self._refresh_doc(value_id)
                stored = self.kb.vault.conn.execute(
                    "SELECT name FROM tag WHERE name = ?", (normalise_tag(tag),)
                ).fetchone()
                name = str(stored[0]) if stored else normalise_tag(tag)
                # 'suggested' and no row both mean "not decided" to the in-memory sums
                learnt = state if state in ("accepted", "rejected") else "none"
                self._apply(value_id, self._tag(name), learnt)

    def record_suggestions(
        self, value_id: int, suggestions: Sequence[Suggestion], actor: str = "kvdesk"
    ) -> None:
        """Store suggestions as 'suggested' (for a review queue); accepted/rejected stay."""
        vault = self.kb.vault
        with vault.transaction() as tx:
            for s in suggestions:
                tag_id = vault.tag_id(tx, s.tag)
                tx.execute(
                    "INSERT INTO value_tag(value_id, tag_id, state, actor, at) VALUES"
                    " (?, ?, 'suggested', ?, ?) ON CONFLICT(value_id, tag_id) DO NOTHING",
                    (value_id, tag_id, actor, now_iso()),
                )

    def add_rule(self, tag: str, kind: str, pattern: str) -> TagRule:
        """Store a rule for a tag (checked first: a bad regex raises KvdeskError)."""
        name = normalise_tag(tag)
        rule = TagRule.compile(name, kind, pattern)
        vault = self.kb.vault
        with vault.transaction() as tx:
            tag_id = vault.tag_id(tx, name)
            tx.execute(
                "INSERT OR IGNORE INTO tag_rule(tag_id, kind, pattern, created_at)"
                " VALUES (?, ?, ?, ?)",
                (tag_id, kind, pattern, now_iso()),
            )
        if self._loaded:
            with self._lock:
                self._tag(name)
                self._rules = self._load_rules()
        return rule


def _parse_problems(text: str | None) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def rule_problems(kb: KnowledgeBase) -> list[RuleProblem]:
    """Stored rules that do not compile, and rules that timed out on some document."""
    conn = kb.vault.conn
    problems: list[RuleProblem] = []
    rules = load_rules(conn, problems)
    live = {r.rule_id: r for r in rules}
    row = conn.execute("SELECT value FROM setting WHERE key = ?", (PROBLEMS_KEY,)).fetchone()
    for key, item in sorted(_parse_problems(row[0] if row else None).items()):
        rule = live.get(int(key)) if key.isdigit() else None
        if rule is None or not isinstance(item, dict):
            continue  # the rule was removed (or changed) since
        problems.append(
            RuleProblem(
                rule.tag, rule.kind, rule.pattern, str(item.get("problem", "")), rule.rule_id
            )
        )
    return problems


TAG_STATES = ("accepted", "suggested", "rejected")


@dataclass(frozen=True)
class TagState:
    """One document-tag row as stored: its state and who set it when."""

    state: str  # accepted | suggested | rejected
    actor: str
    at: str


def tag_state(kb: KnowledgeBase, value_id: int, tag: str) -> TagState | None:
    """The stored state of (document, tag), or None when the document does not carry it at all.
    Take this snapshot before a change to be able to undo it with :func:`restore_tag_state`."""
    row = kb.vault.conn.execute(
        "SELECT vt.state, vt.actor, vt.at FROM value_tag vt JOIN tag t ON t.id = vt.tag_id"
        " WHERE vt.value_id = ? AND t.name = ?",
        (value_id, normalise_tag(tag)),
    ).fetchone()
    return None if row is None else TagState(str(row[0]), str(row[1]), str(row[2]))


def restore_tag_state(
    kb: KnowledgeBase, value_id: int, tag: str, previous: TagState | str | None
) -> None:
    """Put (document, tag) back to ``previous``: a :class:`TagState` snapshot (restored exactly,
    actor and time included), a state name ('accepted', 'suggested', 'rejected'; actor and time
    become now), or None / 'none' (no row at all). The document's tag and lexical keys follow.

    This is what a review queue's undo needs: ``kb.remove_tag`` would lose a stored
    'suggested' state. A :class:`TagSuggester` in use should be told through
    :meth:`TagSuggester.restore` instead, so its in-memory evidence follows too.
    """
    if isinstance(previous, str) and previous == "none":
        previous = None
    if isinstance(previous, str) and previous not in TAG_STATES:
        raise KvdeskError(
            f"a tag state is one of {', '.join(TAG_STATES)} or none, not {previous!r}"
        )
    if isinstance(previous, TagState) and previous.state not in TAG_STATES:
        raise KvdeskError(f"a tag state is one of {', '.join(TAG_STATES)}, not {previous.state!r}")
    vault = kb.vault
    kb.vault.get(value_id)  # NotFoundError for a document that is not in the vault
    with vault.transaction() as tx:
        if previous is None:
            tag_id = vault.tag_id(tx, tag, create=False)
            if tag_id is not None:
                tx.execute(
                    "DELETE FROM value_tag WHERE value_id = ? AND tag_id = ?", (value_id, tag_id)
                )
        elif isinstance(previous, TagState):
            tag_id = vault.tag_id(tx, tag)
            tx.execute(
                "INSERT INTO value_tag(value_id, tag_id, state, actor, at) VALUES (?,?,?,?,?)"
                " ON CONFLICT(value_id, tag_id) DO UPDATE SET state = excluded.state,"
                " actor = excluded.actor, at = excluded.at",
                (value_id, tag_id, previous.state, previous.actor, previous.at),
            )
        else:
            vault.set_tag_state(tx, value_id, tag, previous, "")
    kb.keys.value_changed(value_id)
    kb.keys.flush()


_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
MAX_DESCRIPTION_CHARS = 2000


def set_tag_info(
    kb: KnowledgeBase, tag: str, *, description: str | None = None, color: str | None = None
) -> TagInfo:
    """Set a tag's description and/or colour (``#RRGGBB``; "" clears either). The tag is
    created if it does not exist yet. Raises :class:`KvdeskError` for a malformed colour."""
    name = normalise_tag(tag)
    if color is not None:
        color = color.strip()
        if color and not _COLOR.fullmatch(color):
            raise KvdeskError(f"colour must look like #RRGGBB (six hex digits), not {color!r}")
        color = color.lower()
    if description is not None:
        description = " ".join(description.split())
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise KvdeskError(f"a tag description holds at most {MAX_DESCRIPTION_CHARS} characters")
    vault = kb.vault
    with vault.transaction() as tx:
        tag_id = vault.tag_id(tx, name)
        if description is not None:
            tx.execute("UPDATE tag SET description = ? WHERE id = ?", (description, tag_id))
        if color is not None:
            tx.execute("UPDATE tag SET color = ? WHERE id = ?", (color, tag_id))
    return next(t for t in list_tags(kb) if t.name.lower() == name.lower())


def list_tags(kb: KnowledgeBase) -> list[TagInfo]:
    """Every tag with its description, colour, per-state counts, rules and rule problems."""
    conn = kb.vault.conn
    rules: dict[str, list[str]] = {}
    problems: dict[str, list[RuleProblem]] = {}
    for rule in load_rules(conn):
        rules.setdefault(rule.tag, []).append(rule.describe())
    for problem in rule_problems(kb):
        problems.setdefault(problem.tag, []).append(problem)
    out = []
    for name, desc, color, acc, sug, rej in conn.execute(
        "SELECT t.name, t.description, t.color,"
        " count(CASE WHEN vt.state = 'accepted' THEN 1 END),"
        " count(CASE WHEN vt.state = 'suggested' THEN 1 END),"
        " count(CASE WHEN vt.state = 'rejected' THEN 1 END)"
        " FROM tag t LEFT JOIN value_tag vt ON vt.tag_id = t.id GROUP BY t.id ORDER BY t.name"
    ):
        out.append(
            TagInfo(
                name,
                desc,
                color,
                acc,
                sug,
                rej,
                tuple(rules.get(name, ())),
                tuple(problems.get(name, ())),
            )
        )
    return out


def _fit_logistic(x: np.ndarray, y: np.ndarray, curated: int) -> Calibration:
    """Plain L2-regularised logistic regression by gradient descent on standardised features."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    w = np.zeros(z.shape[1])
    b = float(np.log((y.mean() + 1e-6) / (1 - y.mean() + 1e-6)))
    lr, l2 = 0.5, 1e-3
    for _ in range(500):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w + b, -30, 30)))
        err = p - y
        w -= lr * (z.T @ err / len(y) + l2 * w)
        b -= lr * float(err.mean())
    return Calibration(
        tuple(float(v) for v in w),
        b,
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
        0.5,
        curated,
        True,
    )


def _best_threshold(p: np.ndarray, y: np.ndarray, n_true: int) -> float:
    """The confidence threshold maximising micro-F1 on (curated) examples."""
    best, best_f1 = 0.5, -1.0
    for th in np.arange(0.05, 0.96, 0.01):
        pred = p >= th
        tp = float((pred & (y > 0)).sum())
        f1 = 2 * tp / max(float(pred.sum()) + n_true, 1.0)
        if f1 > best_f1:
            best, best_f1 = float(th), f1
    return round(best, 2)


# -- evaluation (the tag-suggestion protocol of shared/eval/README.md) ---------------------------


def split_corpus(
    rows: list[dict[str, Any]], seed: int = 7
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Shuffle with ``random.Random(seed)``: the first 80% are curated, the last 20% held out."""
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    cut = int(len(shuffled) * 0.8)
    return shuffled[:cut], shuffled[cut:]


def read_corpus(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    rows.append(json.loads(line))
    except (OSError, ValueError) as exc:
        raise KvdeskError(f"cannot read tagged corpus {path}: {exc}") from exc
    return rows


def score_ranking(
    ranked: Sequence[Sequence[str]], truth: Sequence[set[str]], predicted: Sequence[set[str]]
) -> tuple[float, float, float]:
    """Mean p@3, mean r@5 and micro-F1 of the predicted sets (tag names compared lower-case)."""
    p3 = r5 = 0.0
    tp = n_pred = n_true = 0
    n = 0
    for rank, true, pred in zip(ranked, truth, predicted, strict=True):
        true_l = {t.lower() for t in true}
        if not true_l:
            continue
        n += 1
        low = [t.lower() for t in rank]
        p3 += len(set(low[:3]) & true_l) / 3
        r5 += len(set(low[:5]) & true_l) / len(true_l)
        pred_l = {t.lower() for t in pred}
        tp += len(pred_l & true_l)
        n_pred += len(pred_l)
        n_true += len(true_l)
    f1 = 2 * tp / max(n_pred + n_true, 1)
    return p3 / max(n, 1), r5 / max(n, 1), f1


def evaluate(
    kb: KnowledgeBase,
    corpus: str | Path,
    *,
    seed: int = 7,
    dense: bool = True,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> TagEvalReport:
    """Run the tag-suggestion protocol on a JSONL corpus (``_id``, ``title``, ``text``, ``tags``).

    Imports the corpus (incremental: a reused vault only adds what is missing), sets the curated
    80% to their tags and strips every tag from the held-out 20%, fits on the curated part, then
    ranks tags for each held-out document.
    """
    rows = read_corpus(corpus)
    curated, held = split_corpus(rows, seed)
    kb.import_records(corpus, progress=progress, cancel=cancel)
    if dense:
        kb.build_dense_keys(progress=progress, cancel=cancel)
    ids = {str(e): int(v) for v, e in kb.vault.conn.execute("SELECT id, external_id FROM value")}
    want: dict[int, set[str]] = {ids[str(r["_id"])]: set() for r in held}
    for r in curated:
        want[ids[str(r["_id"])]] = {normalise_tag(str(t)) for t in r.get("tags") or []}
    _reset_tags(kb, want, progress)
    suggester = TagSuggester(kb, use_dense=dense)
    t0 = time.perf_counter()
    suggester._load()
    cal = suggester.fit(save=False)
    fit_seconds = time.perf_counter() - t0
    ranked: list[list[str]] = []
    truth: list[set[str]] = []
    predicted: list[set[str]] = []
    latencies: list[float] = []
    for i, r in enumerate(held):
        if cancel is not None and cancel.cancelled:
            raise Cancelled("evaluation cancelled")
        vid = ids[str(r["_id"])]
        start = time.perf_counter()
        sugg = suggester.suggest(vid, k=10)
        latencies.append((time.perf_counter() - start) * 1000)
        ranked.append([s.tag for s in sugg])
        predicted.append({s.tag for s in sugg if s.confidence >= cal.threshold})
        truth.append({str(t) for t in r.get("tags") or []})
        if i % 200 == 0:
            progress(Progress("suggest", i, len(held)))
    p3, r5, f1 = score_ranking(ranked, truth, predicted)
    return TagEvalReport(
        held_out=len(held),
        curated=len(curated),
        p_at_3=p3,
        r_at_5=r5,
        f1=f1,
        suggest_ms_p50=float(np.percentile(latencies, 50)) if latencies else 0.0,
        threshold=cal.threshold,
        fit_seconds=fit_seconds,
        seed=seed,
        calibration_fitted=cal.fitted,
        extra={"dense": suggester._matrix is not None},
    )


def _reset_tags(kb: KnowledgeBase, want: dict[int, set[str]], progress: ProgressSink) -> None:
    """Make the given documents carry exactly the wanted accepted tags (and nothing else)."""
    vault = kb.vault
    have: dict[int, set[str]] = {v: set() for v in want}
    other: set[int] = set()
    for vid, name, state in vault.conn.execute(
        "SELECT vt.value_id, t.name, vt.state FROM value_tag vt JOIN tag t ON t.id = vt.tag_id"
    ):
        if vid in have:
            if state == "accepted":
                have[vid].add(name)
            else:
                other.add(vid)
    changed = [
        v
        for v in want
        if v in other or {t.lower() for t in have[v]} != {t.lower() for t in want[v]}
    ]
    if not changed:
        return
    with vault.transaction() as tx:
        for vid in changed:
            tx.execute("DELETE FROM value_tag WHERE value_id = ?", (vid,))
            for tag in sorted(want[vid]):
                vault.set_tag_state(tx, vid, tag, "accepted", actor="eval")
    kb.keys.open_writer()
    for i, vid in enumerate(changed):
        kb.keys.value_changed(vid)
        if i % 1000 == 0:
            progress(Progress("tag keys", i, len(changed)))
    kb.keys.flush()
