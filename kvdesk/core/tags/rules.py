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
import sqlite3
from dataclasses import dataclass
from typing import Any

import regex

from kvdesk.core.errors import KvdeskError

log = logging.getLogger(__name__)

RULE_KINDS = ("any", "all", "phrase", "regex", "fuzzy")
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
    kind: str
    pattern: str
    _regex: Any = None  # a compiled ``regex`` (kind regex) or ``re`` (kind phrase) pattern
    _words: tuple[str, ...] = ()
    rule_id: int | None = None

    @classmethod
    def compile(cls, tag: str, kind: str, pattern: str, rule_id: int | None = None) -> TagRule:
        """Check and compile a rule; raises :class:`KvdeskError` saying what is wrong."""
        if kind not in RULE_KINDS:
            raise KvdeskError(f"unknown rule kind {kind!r}; use one of {', '.join(RULE_KINDS)}")
        if not pattern.strip():
            raise KvdeskError("a rule needs a non-empty pattern")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise KvdeskError(f"rule pattern is longer than {MAX_PATTERN_CHARS} characters")
        words = tuple(w.lower() for w in _WORD.findall(pattern))
        compiled: Any = None
        if kind == "regex":
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
        elif kind in ("any", "all"):
            if not words:
                raise KvdeskError(f"rule pattern {pattern!r} holds no words")
        elif kind == "phrase":
            compiled = re.compile(
                r"(?<!\w)" + r"\s+".join(re.escape(w) for w in pattern.split()) + r"(?!\w)",
                re.IGNORECASE,
            )
        return cls(
            tag=tag, kind=kind, pattern=pattern, _regex=compiled, _words=words, rule_id=rule_id
        )

    def describe(self) -> str:
        if self.kind == "regex":
            return f"rule: regex /{self.pattern}/"
        if self.kind == "phrase":
            return f"rule: phrase “{self.pattern}”"
        return f"rule: {self.kind} {self.pattern!r}"

    def matches(self, text: str, words: frozenset[str] | None = None) -> bool:
        """Whether the rule fires on ``text`` (its start); ``words`` may pass the word set.

        Raises :class:`RuleTimeout` when a regular expression runs past ``MATCH_TIMEOUT``.
        """
        text = text[:MAX_SCAN_CHARS]
        if self.kind in ("any", "all"):
            have = words if words is not None else frozenset(_WORD.findall(text.lower()))
            hits = [w in have for w in self._words]
            return any(hits) if self.kind == "any" else all(hits)
        if self.kind == "fuzzy":
            from rapidfuzz import fuzz

            needle = " ".join(self.pattern.lower().split())
            hay = " ".join(text.lower().split())
            return bool(fuzz.partial_ratio(needle, hay) >= FUZZY_THRESHOLD)
        assert self._regex is not None
        if self.kind == "phrase":
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


def load_rules(
    conn: sqlite3.Connection, problems: list[RuleProblem] | None = None
) -> list[TagRule]:
    """Every stored rule, compiled. A stored rule that no longer compiles is logged and added to
    ``problems`` (when given) with the reason, never silently dropped."""
    rules: list[TagRule] = []
    for rule_id, tag, kind, pattern in conn.execute(
        "SELECT r.id, t.name, r.kind, r.pattern FROM tag_rule r JOIN tag t ON t.id = r.tag_id"
        " ORDER BY r.id"
    ):
        try:
            rules.append(TagRule.compile(tag, kind, pattern, rule_id=int(rule_id)))
        except KvdeskError as exc:
            log.warning("tag rule %s of %r is not used: %s", rule_id, tag, exc)
            if problems is not None:
                problems.append(RuleProblem(tag, kind, pattern, str(exc), int(rule_id)))
    return rules
