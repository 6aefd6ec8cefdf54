"""Semi-automatic tagging: ranked tag suggestions with a calibrated confidence and evidence.

Evidence for each candidate tag of a document comes from :mod:`kvdesk.core.tags.index`
(tagged neighbours, the tag's prototype vector, distinctive terms) and from a manager's
explicit **rules** (any/all words, phrase, regex, fuzzy: :mod:`kvdesk.core.tags.rules`).

Everything is held in memory as running sums, so an accept or a reject changes the next
suggestion at once: no retraining. The only fitted part is a logistic combination of the
evidence features (a handful of weights) and the auto-apply threshold
(:mod:`kvdesk.core.tags.calibration`), fitted on curated documents only (those with accepted
tags), with each document left out of its own evidence. A rejected tag is never proposed again
for that document. Writes go through the :class:`~kvdesk.core.tags.manager.TagManager`, so
keys follow every change.

Confidence knows what it does not know: a tag learnt from few documents is scaled down by its
number of examples (``Calibration.trust``) and says so ("only 3 examples of this tag"); dense
similarity counts only above what is usual for the document's language; a rule match is as
confident as the rule's history: the share of its past matches people accepted, with a prior
(:data:`RULE_PRIOR_ACCEPTED`, :data:`RULE_PRIOR_REJECTED`) while there is little history. Each
suggestion's ``reason`` says in words why its confidence is what it is.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kvdesk.core.errors import KvdeskError, NotFoundError
from kvdesk.core.tags.calibration import (
    FIT_SAMPLE,
    Calibration,
    Example,
    fit_calibration,
    save_calibration,
    stored_calibration,
)
from kvdesk.core.tags.index import LANGUAGE_NAMES, Candidate, EvidenceIndex
from kvdesk.core.tags.rules import RuleKind, RuleProblem, RuleTimeout, TagRule
from kvdesk.core.tags.store import TagRow, TagState, normalise_tag

if TYPE_CHECKING:
    from kvdesk.core.keys.manager import KeyManager
    from kvdesk.core.tags.manager import TagManager

log = logging.getLogger(__name__)

# A rule's match is as confident as the share of its past matches that were accepted, starting
# from this prior (as if it had this many accepted and rejected matches): 0.6 with no history.
RULE_PRIOR_ACCEPTED = 1.5
RULE_PRIOR_REJECTED = 1.0
FEW_EXAMPLES = 10  # below this many examples a suggestion's reason says "only N examples"
_TEXT_RULES = (RuleKind.REGEX, RuleKind.PHRASE, RuleKind.FUZZY)  # need the text, not words
_BATCH = 500  # documents read at a time while loading


@dataclass(frozen=True)
class Suggestion:
    """A proposed tag with its calibrated confidence (0-1) and human-readable evidence."""

    tag: str
    confidence: float
    evidence: tuple[str, ...]
    reason: str = ""  # why the confidence is what it is ("only 3 examples of this tag; ...")

    def to_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "confidence": round(self.confidence, 4),
            "evidence": list(self.evidence),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RuleHistory:
    """How a rule's matches were decided: documents it matches that carry its tag accepted,
    and that carry it rejected."""

    accepted: int
    rejected: int

    @property
    def confidence(self) -> float:
        """The share of matches accepted, with the prior (0.6 with no history)."""
        a = self.accepted + RULE_PRIOR_ACCEPTED
        return a / (a + self.rejected + RULE_PRIOR_REJECTED)

    def describe(self) -> str:
        decided = self.accepted + self.rejected
        if not decided:
            return "the rule has no accepted or rejected matches yet"
        return f"{self.accepted} of the rule's {decided} decided matches were accepted"


class TagSuggester:
    """Suggests tags for documents of one vault; accepts and rejects learn at once.

    Get one from ``kb.tags.suggester()`` and keep it (loading the vault's tags, terms and
    vectors costs about a second per 10k documents); it is thread-safe, and its writes go
    through the tag manager (keys follow).
    """

    def __init__(
        self, tags: TagManager, *, keys: KeyManager | None = None, use_dense: bool = True
    ) -> None:
        self.tags = tags
        self.use_dense = use_dense
        self._keys = keys
        self._lock = threading.RLock()
        self._index: EvidenceIndex | None = None
        self._rules: list[TagRule] = []
        self._calibration: Calibration | None = None
        self.rule_problems: list[RuleProblem] = []  # found while loading or matching
        self._unsaved_problems: dict[int, RuleProblem] = {}
        self._rule_history: dict[tuple[str, str, str], RuleHistory] = {}

    # -- state ----------------------------------------------------------------------------------

    def load(self) -> EvidenceIndex:
        """Read the vault's documents, tags, rules (and dense vectors) once; the index."""
        with self._lock:
            if self._index is not None:
                return self._index
            matrix = None
            keys = self._keys
            if self.use_dense and keys is not None and keys.active_key_set() is not None:
                candidate = keys.matrix()
                if candidate.value_count():
                    matrix = candidate
            index = EvidenceIndex(matrix)
            values = self.tags.values
            ids = sorted(values.current_versions())
            for start in range(0, len(ids), _BATCH):
                for src in values.key_sources(ids[start : start + _BATCH]):
                    index.add_document(src.value_id, src.identifier, src.title, src.text)
            store = self.tags.store
            for name in store.names(in_creation_order=True):
                index.tag(name)
            for vid, name, state in store.rows(decided_only=True):
                if vid in index.ident:
                    index.apply(vid, index.tag(name), state)
            self._rules = self._load_rules()
            self._index = index
            return index

    @property
    def dense(self) -> bool:
        """Whether dense keys are used (known once loaded)."""
        return self._index is not None and self._index.matrix is not None

    def _refresh_doc(self, index: EvidenceIndex, vid: int) -> None:
        """Load a document imported after this suggester was built."""
        if vid in index.ident:
            return
        found = self.tags.values.key_sources([vid])
        if not found:
            raise NotFoundError(f"no document with id {vid}")
        src = found[0]
        index.add_document(vid, src.identifier, src.title, src.text)

    def _candidates(
        self, index: EvidenceIndex, vid: int, *, leave_out: bool
    ) -> tuple[dict[int, Candidate], dict[int, RuleHistory]]:
        """The index's evidence for each candidate tag, plus the rules that fire (for each tag
        with a firing rule, the history of its most trusted one)."""
        cands = index.candidates(vid, leave_out=leave_out)
        fired: dict[int, RuleHistory] = {}
        for rule in self._rules:
            if not self._fires(index, rule, vid):
                continue
            t = index.tag(rule.tag)
            history = self._history(index, rule)
            if t not in fired or history.confidence > fired[t].confidence:
                fired[t] = history
                cands.setdefault(t, Candidate()).rule = rule.describe()
        return cands, fired

    def _fires(self, index: EvidenceIndex, rule: TagRule, vid: int) -> bool:
        words = index.doc_words.get(vid, frozenset())
        text = ""
        if rule.kind in _TEXT_RULES:
            _ident, title = index.ident[vid]
            text = f"{title}\n{self.tags.values.text(vid)}"
        try:
            return rule.matches(text, words)
        except RuleTimeout as exc:
            self._rule_timed_out(index, rule, vid, str(exc))
            return False  # skipped for this document only

    def _history(self, index: EvidenceIndex, rule: TagRule) -> RuleHistory:
        """How the rule's matches among documents with its tag decided were decided (cached
        until that tag is accepted or rejected somewhere)."""
        key = (rule.tag.lower(), rule.kind.value, rule.pattern)
        known = self._rule_history.get(key)
        if known is not None:
            return known
        t = index.tag(rule.tag)
        accepted = sum(
            1 for v, tags in index.accepted.items() if t in tags and self._fires(index, rule, v)
        )
        rejected = sum(
            1 for v, tags in index.rejected.items() if t in tags and self._fires(index, rule, v)
        )
        history = self._rule_history[key] = RuleHistory(accepted, rejected)
        return history

    # -- rule problems --------------------------------------------------------------------------

    def _load_rules(self) -> list[TagRule]:
        self._rule_history.clear()
        problems: list[RuleProblem] = []
        rules = self.tags.rules(problems)
        self.rule_problems = [p for p in self.rule_problems if p.problem.startswith("timed out")]
        self.rule_problems += problems
        return rules

    def _rule_timed_out(self, index: EvidenceIndex, rule: TagRule, vid: int, message: str) -> None:
        ident = index.ident.get(vid, (f"#{vid}", ""))[0]
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
            self.tags.record_rule_problems(pending)
        except KvdeskError:
            with self._lock:  # a busy vault: keep them for the next save
                self._unsaved_problems = {**pending, **self._unsaved_problems}

    # -- calibration ----------------------------------------------------------------------------

    @property
    def calibration(self) -> Calibration:
        with self._lock:
            if self._calibration is None:
                curated = len(self.load().accepted)
                stored = stored_calibration(self.tags.settings, curated)
                self._calibration = stored or self.fit()
            return self._calibration

    @property
    def threshold(self) -> float:
        """Confidence from which a suggestion counts as auto-applicable (chosen on curated)."""
        return self.calibration.threshold

    def fit(self, *, seed: int = 0, save: bool = True) -> Calibration:
        """Fit the logistic weights and the threshold on curated documents (leave-one-out)."""
        index = self.load()
        with self._lock:
            curated = sorted(v for v, tags in index.accepted.items() if tags)
            rng = random.Random(seed)
            sample = rng.sample(curated, min(FIT_SAMPLE, len(curated)))
            examples: list[Example] = []
            for i, vid in enumerate(sample):
                cands, _fired = self._candidates(index, vid, leave_out=True)
                tags, x = index.features(cands)
                if not tags:
                    continue
                truth = index.accepted[vid]
                y = np.asarray([t in truth for t in tags], dtype=np.float64)
                n = np.asarray([index.examples(t, truth) for t in tags], dtype=np.float64)
                examples.append(Example(i, x, y, n))
            true_counts = [len(index.accepted[v]) for v in sample]
            cal = fit_calibration(examples, true_counts, len(curated))
            self._calibration = cal
        if self._unsaved_problems:
            self.save_rule_problems()
        if save:
            save_calibration(self.tags.settings, cal)
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
        index = self.load()
        cal = self.calibration
        with self._lock:
            self._refresh_doc(index, value_id)
            cands, fired = self._candidates(index, value_id, leave_out=False)
            skip = index.accepted.get(value_id, set()) | index.rejected.get(value_id, set())
            for t in list(cands):
                if t in skip or (index.tag_n[t] <= 0 and not cands[t].rule):
                    del cands[t]  # rejected, already there, or no accepted document left
            tags, x = index.features(cands)
            if not tags:
                return []
            n = np.asarray([index.examples(t) for t in tags], dtype=np.float64)
            probs = cal.probability(x, n)
            out: list[Suggestion] = []
            for t, p, n_t in zip(tags, probs, n, strict=True):
                c = cands[t]
                conf = float(p)
                history = fired.get(t)
                if history is not None:
                    conf = max(conf, history.confidence)
                reason = _reason(index, value_id, c, int(n_t), history)
                out.append(Suggestion(index.tag_names[t], conf, _evidence(index, c), reason))
            out.sort(key=lambda s: (-s.confidence, s.tag))
            return out[:k]

    def suggest_many(self, value_ids: Iterable[int], k: int = 5) -> dict[int, list[Suggestion]]:
        return {vid: self.suggest(vid, k) for vid in value_ids}

    def untagged(self) -> list[int]:
        """Documents without any accepted tag."""
        index = self.load()
        with self._lock:
            return sorted(v for v in index.ident if not index.accepted.get(v))

    # -- curation -------------------------------------------------------------------------------

    def accept(self, value_id: int, tag: str, actor: str = "") -> None:
        """Accept a tag: stored, keyed for search, and learnt from at once."""
        self._set(value_id, tag, TagState.ACCEPTED, actor)

    def reject(self, value_id: int, tag: str, actor: str = "") -> None:
        """Reject a tag: never proposed again for this document; a negative vote for others."""
        self._set(value_id, tag, TagState.REJECTED, actor)

    def _set(self, value_id: int, tag: str, state: TagState, actor: str) -> None:
        name = normalise_tag(tag)
        self.tags.set_state(value_id, name, state, actor)
        self._learn(value_id, name, state)

    def restore(self, value_id: int, tag: str, previous: TagRow | str | None) -> None:
        """Undo: put (document, tag) back exactly as ``previous`` (see ``TagManager.restore``),
        and learn from it at once like an accept or reject."""
        self.tags.restore(value_id, tag, previous)
        state = previous.state if isinstance(previous, TagRow) else previous
        # 'suggested' and no row both mean "not decided" to the in-memory sums
        learnt = state if state in (TagState.ACCEPTED, TagState.REJECTED) else "none"
        self._learn(value_id, normalise_tag(tag), learnt)

    def _learn(self, value_id: int, name: str, state: str) -> None:
        with self._lock:
            index = self._index
            if index is None:
                return  # not loaded yet: loading reads the stored state
            self._refresh_doc(index, value_id)
            stored = self.tags.store.stored_name(name)
            index.apply(value_id, index.tag(stored or name), state)
            for key in [k for k in self._rule_history if k[0] == name.lower()]:
                del self._rule_history[key]  # that tag's rules have a new history

    def record_suggestions(
        self, value_id: int, suggestions: Sequence[Suggestion], actor: str = "kvdesk"
    ) -> set[int]:
        """Store suggestions as 'suggested' (for a review queue); accepted/rejected stay."""
        return self.tags.record_suggestions(value_id, [s.tag for s in suggestions], actor)

    def add_rule(self, tag: str, kind: str, pattern: str) -> TagRule:
        """Store a rule for a tag (checked first: a bad regex raises KvdeskError)."""
        rule = self.tags.add_rule(tag, kind, pattern)
        with self._lock:
            if self._index is not None:
                self._index.tag(rule.tag)
                self._rules = self._load_rules()
        return rule


def _reason(
    index: EvidenceIndex, vid: int, c: Candidate, examples: int, history: RuleHistory | None
) -> str:
    """Why a suggestion is as confident as it is, in words."""
    parts: list[str] = []
    if examples <= 0:
        parts.append("no accepted examples of this tag yet")
    elif examples < FEW_EXAMPLES:
        noun = "example" if examples == 1 else "examples"
        parts.append(f"only {examples} {noun} of this tag: confidence is held down")
    else:
        parts.append(f"learnt from {examples} examples of this tag")
    if history is not None:
        parts.append(f"rule: {history.describe()}")
    if c.raw_max > 0 and c.knn_max <= 0 and index.matrix is not None:
        lang = index.language.get(vid, "other")
        base = index.baseline(lang)
        parts.append(
            f"its tagged neighbours ({c.raw_max:.2f}) are no closer than"
            f" {LANGUAGE_NAMES.get(lang, lang)} documents usually are ({base.mean:.2f}):"
            " no similarity evidence"
        )
    return "; ".join(parts)


def _evidence(index: EvidenceIndex, c: Candidate) -> tuple[str, ...]:
    ev: list[str] = []
    if c.rule:
        ev.append(c.rule)
    if c.neighbours:
        parts = []
        for vid, score in sorted(c.neighbours, key=lambda n: -n[1])[:2]:
            ident, title = index.ident.get(vid, (f"#{vid}", ""))
            short = title if len(title) <= 60 else title[:57] + "…"
            parts.append(f"{ident} “{short}” ({score:.2f})")
        more = len(c.neighbours) - len(parts)
        tail = f" (+{more} more)" if more > 0 else ""
        ev.append("similar to " + " and ".join(parts) + tail)
    if c.proto > 0:
        ev.append(f"close to the tag's documents ({c.proto_raw:.2f})")
    if c.terms:
        words = [w for _s, w in sorted(c.terms, reverse=True)[:4]]
        ev.append("terms: " + ", ".join(words))
    return tuple(ev)
