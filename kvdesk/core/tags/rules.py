"""Tag rules as Paperless-ngx offers them: any word, all words, exact phrase, regex, fuzzy.

A rule is a manager's explicit statement ("anything mentioning 'invoice' is finance"), so a match
is strong evidence of its own. Rules are checked when compiled: a bad regular expression is a
:class:`KvdeskError` with the reason, never a crash later. Obviously dangerous shapes (nested
unbounded quantifiers such as ``(a+)+``, back references) are refused when a rule is created,
but no heuristic catches every catastrophic pattern (``(a|aa)+$`` looks harmless), so the real
guard is a time limit: regular expressions run on the ``regex`` module with ``timeout=``. A rule
that runs out of time raises :class:`RuleTimeout`; the suggester logs it, records it as a rule
problem (shown by ``kvdesk tags list``) and skips the rule for that document. A stored rule that
no longer compiles is reported the same way (:func:`load_rules` collects :class:`RuleProblem`),
never silently dropped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import regex

from kvdesk.core.errors import KvdeskError
from kvdesk.core.tags.store import TagStore

log = logging.getLogger(__name__)


class RuleKind(StrEnum):
    """How a rule's pattern is matched (the strings stored in ``tag_rule.kind``)."""

    ANY = "any"  # any of the words
    ALL = "all"  # all of the words
    PHRASE = "phrase"  # the words in this order
    REGEX = "regex"  # a regular expression (with a time limit)
    FUZZY = "fuzzy"  # approximately, as Paperless-ngx does


RULE_KINDS = tuple(k.value for k in RuleKind)
MAX_PATTERN_CHARS = 300
MAX_SCAN_CHARS = 20_000  # rules look at the start of a document: title and first pages
FUZZY_THRESHOLD = 90.0  # rapidfuzz partial_ratio, as Paperless-ngx uses
MATCH_TIMEOUT = 0.05  # seconds one regular-expression rule may spend on one document

_WORD = re.compile(r"\w+", re.UNICODE)
# A group that itself holds an unbounded quantifier, then quantified again: (a+)+, (a|b*)*, ...
_NESTED = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*(?:[+*]|\{\d*,\d*\})")
_BACKREF = re.compile(r"\\[1-9]")


class RuleTimeout(KvdeskError):
    """A regular-expression rule ran past :data:`MATCH_TIMEOUT` on one document."""


@dataclass(frozen=True)
class RuleProblem:
    """A stored rule that could not be used: it no longer compiles, or it ran out of time."""

    tag: str
    kind: str
    pattern: str
    problem: str
    rule_id: int | None = None

    def describe(self) -> str:
        return f"problem: {self.kind} /{self.pattern}/: {self.problem}"

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "tag": self.tag,
            "kind": self.kind,
            "pattern": self.pattern,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class TagRule:
    """One rule of one tag, compiled and checked."""

    tag: str
    kind: RuleKind
    pattern: str
    _regex: Any = None  # a compiled ``regex`` (kind regex) or ``re`` (kind phrase) pattern
    _words: tuple[str, ...] = ()
    rule_id: int | None = None

    @classmethod
    def compile(cls, tag: str, kind: str, pattern: str, rule_id: int | None = None) -> TagRule:
        """Check and compile a rule; raises :class:`KvdeskError` saying what is wrong."""
        if kind not in RULE_KINDS:
            raise KvdeskError(f"unknown rule kind {kind!r}; use one of {', '.join(RULE_KINDS)}")
        how = RuleKind(kind)
        if not pattern.strip():
            raise KvdeskError("a rule needs a non-empty pattern")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise KvdeskError(f"rule pattern is longer than {MAX_PATTERN_CHARS} characters")
        words = tuple(w.lower() for w in _WORD.findall(pattern))
        compiled: Any = None
        if how is RuleKind.REGEX:
            if _NESTED.search(pattern) or _BACKREF.search(pattern):
                raise KvdeskError(
                    f"regular expression /{pattern}/ is refused: nested repetition or back"
                    " references can take exponential time; simplify it"
                )
            try:
                compiled = regex.compile(pattern, regex.IGNORECASE | regex.V0)
            except (regex.error, ValueError, OverflowError) as exc:
                raise KvdeskError(f"bad regular expression /{pattern}/: {exc}") from None
            for probe in _probes(pattern):
                try:
                    compiled.search(probe, timeout=MATCH_TIMEOUT)
                except TimeoutError:
                    raise KvdeskError(
                        f"regular expression /{pattern}/ is refused: it takes more than"
                        f" {MATCH_TIMEOUT * 1000:.0f} ms on a {len(probe)}-character test text"
                        " (catastrophic backtracking); simplify it"
                    ) from None
        elif how in (RuleKind.ANY, RuleKind.ALL):
            if not words:
                raise KvdeskError(f"rule pattern {pattern!r} holds no words")
        elif how is RuleKind.PHRASE:
            compiled = re.compile(
                r"(?<!\w)" + r"\s+".join(re.escape(w) for w in pattern.split()) + r"(?!\w)",
                re.IGNORECASE,
            )
        return cls(
            tag=tag, kind=how, pattern=pattern, _regex=compiled, _words=words, rule_id=rule_id
        )

    def describe(self) -> str:
        if self.kind is RuleKind.REGEX:
            return f"rule: regex /{self.pattern}/"
        if self.kind is RuleKind.PHRASE:
            return f"rule: phrase “{self.pattern}”"
        return f"rule: {self.kind} {self.pattern!r}"

    def matches(self, text: str, words: frozenset[str] | None = None) -> bool:
        """Whether the rule fires on ``text`` (its start); ``words`` may pass the word set.

        Raises :class:`RuleTimeout` when a regular expression runs past ``MATCH_TIMEOUT``.
        """
        text = text[:MAX_SCAN_CHARS]
        if self.kind in (RuleKind.ANY, RuleKind.ALL):
            have = words if words is not None else frozenset(_WORD.findall(text.lower()))
            hits = [w in have for w in self._words]
            return any(hits) if self.kind is RuleKind.ANY else all(hits)
        if self.kind is RuleKind.FUZZY:
            from rapidfuzz import fuzz

            needle = " ".join(self.pattern.lower().split())
            hay = " ".join(text.lower().split())
            return bool(fuzz.partial_ratio(needle, hay) >= FUZZY_THRESHOLD)
        assert self._regex is not None
        if self.kind is RuleKind.PHRASE:
            return self._regex.search(text) is not None  # escaped words: linear time
        try:
            return self._regex.search(text, timeout=MATCH_TIMEOUT) is not None
        except TimeoutError:
            raise RuleTimeout(
                f"regular expression /{self.pattern}/ of tag {self.tag!r} ran past"
                f" {MATCH_TIMEOUT * 1000:.0f} ms and was skipped"
            ) from None


def _probes(pattern: str) -> list[str]:
    """Short texts that make backtracking-prone patterns blow up: runs of the characters the
    pattern mentions (and of spaces), ended by a character that cannot complete a match."""
    chars = sorted({c for c in pattern.lower() if c.isalnum()})[:12]
    return [c * 40 + "\x00" for c in (" ", "a", *chars)]


def load_rules(store: TagStore, problems: list[RuleProblem] | None = None) -> list[TagRule]:
    """Every stored rule, compiled. A stored rule that no longer compiles is logged and added to
    ``problems`` (when given) with the reason, never silently dropped."""
    rules: list[TagRule] = []
    for stored in store.rules():
        try:
            rules.append(
                TagRule.compile(stored.tag, stored.kind, stored.pattern, rule_id=stored.rule_id)
            )
        except KvdeskError as exc:
            log.warning("tag rule %s of %r is not used: %s", stored.rule_id, stored.tag, exc)
            if problems is not None:
                problems.append(
                    RuleProblem(stored.tag, stored.kind, stored.pattern, str(exc), stored.rule_id)
                )
    return rules
