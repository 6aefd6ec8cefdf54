"""Context keys for short values: the words around the places where other values quote them.

A value of a few words (a name, an answer, a code, a clipped phrase) gives BM25 almost nothing to
match: "南方慰問団" or "Room 204" says nothing about what it is. Where the same words appear
verbatim inside longer values of the vault, the text around them says what they are about, and
that text becomes a key of the short value (its ``context`` fields). The short value itself is
never touched; the context is derived like every key and rebuilt when the vault changes.

Measured on JaQuAD (half of its relevant documents are short answer strings quoted in a passage):
``bench/bench_multilingual.py --parts quotes``. Values with nothing quoted are unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from kvdesk.core.vault.records import KeySource

#: A value whose key text has at most this many characters gets context keys.
SHORT_CHARS = 40
#: Characters taken on each side of a quote.
WINDOW_CHARS = 60
#: Characters a window may grow by to end on a whole word.
WORD_SLACK = 20
#: Short values whose hosts are read from the vault in one go.
HOSTS_READ_TOGETHER = 500
#: At most this many quoting values lend their context (same title first).
MAX_HOSTS = 3


@dataclass(frozen=True)
class QuoteHost:
    """A longer value that may quote a short one: what its keys are built from."""

    value_id: int
    title: str
    text: str


@dataclass(frozen=True)
class Context:
    """The context keys of one short value: the text around its quotes, and where from."""

    text: str
    hosts: tuple[int, ...]

    @property
    def fingerprint(self) -> int:
        """A 63-bit fingerprint (0 for no context), stored beside the keys to spot changes."""
        if not self.text:
            return 0
        digest = hashlib.blake2b(self.text.encode("utf-8"), digest_size=8).digest()
        return (int.from_bytes(digest, "big") >> 1) or 1


NO_CONTEXT = Context("", ())


def quotable(text: str) -> str | None:
    """The text to look for when ``text`` is short enough to be quoted, else None."""
    if len(text) > 4 * SHORT_CHARS:
        return None  # quick for long texts (whitespace runs count as one space below)
    stripped = " ".join(text.split())
    if len(stripped) < 2 or len(stripped) > SHORT_CHARS:
        return None
    if not any(ch.isalnum() for ch in stripped):
        return None
    return stripped


def context_for(
    short_text: str, title: str, hosts: Sequence[QuoteHost], *, exclude: int | None = None
) -> Context:
    """The context of a short value from the ``hosts`` that quote it.

    Hosts are tried with the same title first (a passage of the same source document), then in
    the order given (the caller passes the index's best matches first). Whitespace runs count
    as one space, so a quote broken over two lines still counts.
    """
    needle = quotable(short_text)
    if needle is None:
        return NO_CONTEXT
    ordered = sorted(
        (h for h in hosts if h.value_id != exclude),
        key=lambda h: h.title.strip() != title.strip(),  # stable: keeps the given order within
    )
    pieces: list[str] = []
    used: list[int] = []
    for host in ordered:
        flat = host.text
        if needle not in flat:  # flattened only when needed: most hosts are read as stored
            flat = " ".join(flat.split())
        if len(flat) <= len(needle):
            continue  # a value does not lend context to its own equal
        at = flat.find(needle)
        if at < 0:
            continue
        start, end = _word_edges(flat, at - WINDOW_CHARS, at + len(needle) + WINDOW_CHARS)
        before = flat[start:at]
        after = flat[at + len(needle) : end]
        pieces.append(f"{before} … {after}".strip())
        used.append(host.value_id)
        if len(used) == MAX_HOSTS:
            break
    if not used:
        return NO_CONTEXT
    return Context("\n".join(pieces), tuple(used))


def _word_edges(text: str, start: int, end: int) -> tuple[int, int]:
    """``start``/``end`` (clipped to ``text``) moved out to whole words: a window must not
    cut "soldiers" into "sold". Scripts without spaces (Japanese) are cut where they fall,
    at most ``WORD_SLACK`` characters further out."""
    start, end = max(0, start), min(len(text), end)
    space = text.rfind(" ", max(0, start - WORD_SLACK), start + 1) if start > 0 else 0
    if space >= 0:
        start = space
    space = text.find(" ", end, end + WORD_SLACK) if end < len(text) else len(text)
    if space >= 0:
        end = space
    return start, end


class QuoteKeeper:
    """Which values are short, and the context each one has now (per process, in memory).

    The first :meth:`refresh` looks at every short value; later ones only at what changed
    since: a short value itself, or a longer value that quotes one or used to.
    """

    def __init__(self) -> None:
        self._shorts: dict[int, tuple[str, str]] | None = None  # id -> (title, needle)
        self._contexts: dict[int, Context] = {}
        self._changed: set[int] = set()
        self._read: dict[int, KeySource] = {}  # changed values whose key text was at hand
        self._everything = False  # the next refresh looks at every short value
        self._automaton: Any = None  # see _finder; None whenever the short values change

    def context(self, value_id: int) -> Context:
        return self._contexts.get(value_id, NO_CONTEXT)

    def note(self, value_ids: Collection[int], read: Sequence[KeySource] = ()) -> None:
        """Values written or removed since the last refresh; ``read``: their key sources when
        the caller has them at hand (saves reading them again)."""
        self._changed.update(value_ids)
        for src in read:
            self._read[src.value_id] = src

    @property
    def due(self) -> bool:
        return self._everything or bool(self._changed)

    def forget(self) -> None:
        """Look at every short value next time (the index was rebuilt, or a refresh failed)."""
        self._everything = True

    def _finder(self) -> Any:
        """An Aho-Corasick automaton of every short value's text (rebuilt when they change):
        one pass over a document finds all it quotes."""
        if self._automaton is None:
            import ahocorasick

            automaton = ahocorasick.Automaton()
            by_needle: dict[str, set[int]] = {}
            for value_id, (_title, needle) in (self._shorts or {}).items():
                by_needle.setdefault(needle, set()).add(value_id)
            for needle, ids in by_needle.items():
                automaton.add_word(needle, frozenset(ids))
            automaton.make_automaton()
            self._automaton = automaton
        return self._automaton

    def refresh(
        self,
        *,
        text_lengths: Callable[[], dict[int, int]],
        sources: Callable[[Sequence[int]], list[KeySource]],
        holders: Callable[[str, str], list[int]],
        indexed: Callable[[], dict[int, int]],
        quoting_from: Callable[[Collection[int]], set[int]],
    ) -> list[int]:
        """Recompute the contexts that may have changed; the ids whose indexed context differs.

        ``holders`` lists values that may quote a text (those of a title first, then best
        first), ``indexed`` gives the context fingerprint each indexed value holds now, and
        ``quoting_from`` the values whose indexed context came from given values.
        """
        changed, self._changed = self._changed, set()
        read, self._read = self._read, {}
        everything, self._everything = self._everything, False
        if self._shorts is None or everything:
            self._shorts = {}
            self._automaton = None
            # Whitespace runs count as one: look past the limit (as quotable does).
            maybe = [v for v, n in text_lengths().items() if n <= 4 * SHORT_CHARS]
            for src in sources(maybe):
                needle = quotable(src.text)
                if needle is not None:
                    self._shorts[src.value_id] = (src.title, needle)
        if everything:
            targets = set(self._shorts)
        else:
            unread = sorted(v for v in changed if v not in read)
            present = {v: src for v, src in read.items() if v in changed}
            present.update((src.value_id, src) for src in sources(unread))
            targets = set()
            longer = []
            for value_id in changed:
                now = present.get(value_id)
                needle = None if now is None else quotable(now.text)
                if now is not None and needle is not None:
                    if self._shorts.get(value_id) != (now.title, needle):
                        self._shorts[value_id] = (now.title, needle)
                        self._automaton = None
                    targets.add(value_id)
                else:
                    if self._shorts.pop(value_id, None) is not None:
                        self._automaton = None
                    self._contexts.pop(value_id, None)
                    if now is not None:
                        longer.append(now.text)
            if longer and self._shorts:
                finder = self._finder()
                for text in longer:  # a new or edited value quotes them
                    for _end, quoted in finder.iter(" ".join(text.split())):
                        targets.update(quoted)
            # Those whose context came from a value that changed or went.
            targets |= {v for v in quoting_from(changed) if v in self._shorts}
        if not targets:
            return []
        ordered = sorted(targets)
        for start in range(0, len(ordered), HOSTS_READ_TOGETHER):
            # The hosts of many short values at once: they share most (one read each).
            chunk = ordered[start : start + HOSTS_READ_TOGETHER]
            wanted = {v: holders(self._shorts[v][1], self._shorts[v][0]) for v in chunk}
            union = sorted({h for hosts in wanted.values() for h in hosts})
            read_hosts = {
                src.value_id: QuoteHost(src.value_id, src.title, src.text) for src in sources(union)
            }
            for short_id, candidates in wanted.items():
                title, needle = self._shorts[short_id]
                hosts = [read_hosts[h] for h in candidates if h in read_hosts]
                self._contexts[short_id] = context_for(needle, title, hosts, exclude=short_id)
        held = indexed()
        return sorted(v for v in targets if v in held and held[v] != self.context(v).fingerprint)
