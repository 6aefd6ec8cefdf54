"""Tag rules as Paperless-ngx offers them: any word, all words, exact phrase, regex, fuzzy.

A rule is a manager's explicit statement ("anything mentioning 'invoice' is finance"), so a match
is strong evidence of its own. Rules are checked when compiled: a bad regular expression is a
:class:`KvdeskError` with the reason, never a crash later. Python's ``re`` has no timeout, so
catastrophic patterns are kept out by limits: the pattern length, nested unbounded quantifiers
such as ``(a+)+`` (the classic exponential backtracking shape), and the length of text a rule
scans.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from kvdesk.core.errors import KvdeskError

RULE_KINDS = ("any", "all", "phrase", "regex", "fuzzy")
MAX_PATTERN_CHARS = 300
MAX_SCAN_CHARS = 20_000  # rules look at the start of a document: title and first pages
FUZZY_THRESHOLD = 90.0  # rapidfuzz partial_ratio, as Paperless-ngx uses

_WORD = re.compile(r"\w+", re.UNICODE)
# A group that itself holds an unbounded quantifier, then quantified again: (a+)+, (a|b*)*, ...
_NESTED = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*(?:[+*]|\{\d*,\d*\})")
_BACKREF = re.compile(r"\\[1-9]")


@dataclass(frozen=True)
class TagRule:
    """One rule of one tag, compiled and checked."""

    tag: str
    kind: str
    pattern: str
    _regex: re.Pattern[str] | None = None
    _words: tuple[str, ...] = ()

    @classmethod
    def compile(cls, tag: str, kind: str, pattern: str) -> TagRule:
        """Check and compile a rule; raises :class:`KvdeskError` saying what is wrong."""
        if kind not in RULE_KINDS:
            raise KvdeskError(f"unknown rule kind {kind!r}; use one of {', '.join(RULE_KINDS)}")
        if not pattern.strip():
            raise KvdeskError("a rule needs a non-empty pattern")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise KvdeskError(f"rule pattern is longer than {MAX_PATTERN_CHARS} characters")
        words = tuple(w.lower() for w in _WORD.findall(pattern))
        regex: re.Pattern[str] | None = None
        if kind == "regex":
            if _NESTED.search(pattern) or _BACKREF.search(pattern):
                raise KvdeskError(
                    f"regular expression /{pattern}/ is refused: nested repetition or back"
                    " references can take exponential time; simplify it"
                )
            try:
                regex = re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise KvdeskError(f"bad regular expression /{pattern}/: {exc}") from None
        elif kind in ("any", "all"):
            if not words:
                raise KvdeskError(f"rule pattern {pattern!r} holds no words")
        elif kind == "phrase":
            regex = re.compile(
                r"(?<!\w)" + r"\s+".join(re.escape(w) for w in pattern.split()) + r"(?!\w)",
                re.IGNORECASE,
            )
        return cls(tag=tag, kind=kind, pattern=pattern, _regex=regex, _words=words)

    def describe(self) -> str:
        if self.kind == "regex":
            return f"rule: regex /{self.pattern}/"
        if self.kind == "phrase":
            return f"rule: phrase “{self.pattern}”"
        return f"rule: {self.kind} {self.pattern!r}"

    def matches(self, text: str, words: frozenset[str] | None = None) -> bool:
        """Whether the rule fires on ``text`` (its start); ``words`` may pass the word set."""
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
        return self._regex.search(text) is not None


def load_rules(conn: sqlite3.Connection) -> list[TagRule]:
    """Every stored rule, compiled; a stored rule that no longer compiles is skipped."""
    rules: list[TagRule] = []
    for tag, kind, pattern in conn.execute(
        "SELECT t.name, r.kind, r.pattern FROM tag_rule r JOIN tag t ON t.id = r.tag_id"
        " ORDER BY r.id"
    ):
        try:
            rules.append(TagRule.compile(tag, kind, pattern))
        except KvdeskError:
            continue
    return rules
