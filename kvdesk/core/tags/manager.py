"""The tags of one vault, as the CLI and the GUI see them (``kb.tags``).

Reads: tag names, a value's tags and stored rows, descriptions and colours with per-state counts,
rules and their problems. Changes: accept, suggest, reject or remove a tag on a value, put a row
back exactly for an undo, describe or colour a tag, add or remove rules. Every change of a
value's tags returns the ids of the values it changed and passes them to ``on_change``; the
knowledge base turns that into key updates, so there is one path from a tag change to its keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kvdesk.core.db import Database
from kvdesk.core.errors import KvdeskError
from kvdesk.core.progress import Progress, ProgressSink, no_progress
from kvdesk.core.settings import SettingStore
from kvdesk.core.tags.rules import RuleProblem, TagRule, load_rules
from kvdesk.core.tags.store import TagRow, TagState, TagStore, TagSummary, normalise_tag
from kvdesk.core.vault.values import ValueStore

if TYPE_CHECKING:
    from kvdesk.core.keys.manager import KeyManager
    from kvdesk.core.tags.suggest import TagSuggester

PROBLEMS_KEY = "tagging.rule_problems"  # rules that timed out: {rule id: problem}, latest wins
MAX_DESCRIPTION_CHARS = 2000
KEY_BATCH = 1000  # values re-keyed per ``on_change`` call in bulk changes
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_STATES = ", ".join(TagState)

OnChange = Callable[[Collection[int]], None]


@dataclass(frozen=True)
class TagInfo(TagSummary):
    """A tag with its description, colour and how many documents hold it in each state
    (the stored :class:`TagSummary`), with its rules and their problems."""

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


def parse_state(text: str, *, none: bool = False) -> TagState:
    """A state name as typed ('accepted', 'suggested', 'rejected'), or a clear error (which
    mentions 'none' where that is allowed too)."""
    try:
        return TagState(text)
    except ValueError:
        also = " or none" if none else ""
        raise KvdeskError(f"a tag state is one of {_STATES}{also}, not {text!r}") from None


def _no_change(_value_ids: Collection[int]) -> None:
    pass


class TagManager:
    """Reads and changes the tags of one vault; key updates go through ``on_change``."""

    def __init__(
        self,
        db: Database,
        values: ValueStore,
        settings: SettingStore,
        *,
        keys: KeyManager | None = None,
        on_change: OnChange = _no_change,
    ) -> None:
        self.db = db
        self.values = values
        self.settings = settings
        self.store = TagStore(db)
        self._keys = keys  # only handed to suggesters (dense evidence)
        self._on_change = on_change

    # -- reading --------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every tag name, sorted."""
        return self.store.names()

    def of(self, value_id: int, state: str = TagState.ACCEPTED) -> tuple[str, ...]:
        """The tags a value holds in ``state`` (accepted by default), sorted."""
        return self.store.tags_of(value_id, parse_state(state))

    def row(self, value_id: int, tag: str) -> TagRow | None:
        """The stored row of (value, tag), or None when the value does not carry it at all.
        Take this snapshot before a change to be able to undo it with :meth:`restore`."""
        return self.store.row(value_id, tag)

    def infos(self) -> list[TagInfo]:
        """Every tag with its description, colour, per-state counts, rules and rule problems."""
        rules: dict[str, list[str]] = {}
        problems: dict[str, list[RuleProblem]] = {}
        for rule in self.rules():
            rules.setdefault(rule.tag, []).append(rule.describe())
        for problem in self.rule_problems():
            problems.setdefault(problem.tag, []).append(problem)
        return [
            TagInfo(
                s.name,
                s.description,
                s.color,
                s.accepted,
                s.suggested,
                s.rejected,
                tuple(rules.get(s.name, ())),
                tuple(problems.get(s.name, ())),
            )
            for s in self.store.summaries()
        ]

    def info(self, tag: str) -> TagInfo | None:
        name = normalise_tag(tag).lower()
        return next((t for t in self.infos() if t.name.lower() == name), None)

    def rules(self, problems: list[RuleProblem] | None = None) -> list[TagRule]:
        """Every stored rule, compiled; one that no longer compiles goes to ``problems``."""
        return load_rules(self.store, problems)

    def rule_problems(self) -> list[RuleProblem]:
        """Stored rules that do not compile, and rules that timed out on some document."""
        problems: list[RuleProblem] = []
        live = {r.rule_id: r for r in self.rules(problems)}
        for key, item in sorted(_parse_problems(self.settings.get(PROBLEMS_KEY)).items()):
            rule = live.get(int(key)) if key.isdigit() else None
            if rule is None or not isinstance(item, dict):
                continue  # the rule was removed (or changed) since
            problems.append(
                RuleProblem(
                    rule.tag, rule.kind, rule.pattern, str(item.get("problem", "")), rule.rule_id
                )
            )
        return problems

    # -- changing a value's tags ----------------------------------------------------------------

    def set_state(
        self, value_id: int, tag: str, state: str = TagState.ACCEPTED, actor: str = ""
    ) -> set[int]:
        """Accept, suggest or reject a tag on a value; its keys follow (``on_change``)."""
        checked = parse_state(state)
        with self.db.transaction() as tx:
            self.store.set_state(tx, value_id, tag, checked, actor)
        return self._changed({value_id})

    def accept(self, value_id: int, tag: str, actor: str = "") -> set[int]:
        return self.set_state(value_id, tag, TagState.ACCEPTED, actor)

    def suggest(self, value_id: int, tag: str, actor: str = "") -> set[int]:
        return self.set_state(value_id, tag, TagState.SUGGESTED, actor)

    def reject(self, value_id: int, tag: str, actor: str = "") -> set[int]:
        return self.set_state(value_id, tag, TagState.REJECTED, actor)

    def remove(self, value_id: int, tag: str) -> set[int]:
        """Take a tag off a value, whatever its state (no row left)."""
        with self.db.transaction() as tx:
            self.store.remove(tx, value_id, tag)
        return self._changed({value_id})

    def restore(self, value_id: int, tag: str, previous: TagRow | str | None) -> set[int]:
        """Put (document, tag) back to ``previous``: a :class:`TagRow` snapshot (restored exactly,
        actor and time included), a state name ('accepted', 'suggested', 'rejected'; actor and
        time become now), or None / 'none' (no row at all). The document's keys follow.

        This is what a review queue's undo needs: :meth:`remove` would lose a stored
        'suggested' state. A suggester in use should be told through its ``restore`` instead,
        so its in-memory evidence follows too.
        """
        if isinstance(previous, str) and previous == "none":
            previous = None
        if isinstance(previous, str):
            previous = TagRow(parse_state(previous, none=True), "", "")
        elif previous is not None:
            previous = TagRow(parse_state(previous.state), previous.actor, previous.at)
        self.values.get(value_id)  # NotFoundError for a document that is not in the vault
        with self.db.transaction() as tx:
            if previous is None:
                self.store.remove(tx, value_id, tag)
            else:
                at = previous.at or None
                self.store.set_state(tx, value_id, tag, previous.state, previous.actor, at)
        return self._changed({value_id})

    def record_suggestions(self, value_id: int, tags: Iterable[str], actor: str = "") -> set[int]:
        """Store tags as 'suggested' (for a review queue) where the value has no row for them;
        accepted and rejected rows stay. Returns the value when something was stored. Accepted
        tags do not change, so no keys do either (``on_change`` is not called)."""
        with self.db.transaction() as tx:
            added = [self.store.add_suggested(tx, value_id, t, actor) for t in tags]
        return {value_id} if any(added) else set()

    def replace_accepted(
        self,
        want: Mapping[int, Collection[str]],
        *,
        actor: str = "",
        progress: ProgressSink = no_progress,
    ) -> set[int]:
        """Make each value carry exactly the given accepted tags and no other row (one commit);
        keys follow in batches, with progress ("tag keys")."""
        with self.db.transaction() as tx:
            for value_id, tags in want.items():
                self.store.clear_value(tx, value_id)
                for tag in sorted(tags):
                    self.store.set_state(tx, value_id, tag, TagState.ACCEPTED, actor)
        ids = list(want)
        for start in range(0, len(ids), KEY_BATCH):
            progress(Progress("tag keys", start, len(ids)))
            self._on_change(ids[start : start + KEY_BATCH])
        return set(ids)

    def _changed(self, value_ids: set[int]) -> set[int]:
        self._on_change(value_ids)
        return value_ids

    # -- changing tags themselves ---------------------------------------------------------------

    def set_info(
        self, tag: str, *, description: str | None = None, color: str | None = None
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
                raise KvdeskError(
                    f"a tag description holds at most {MAX_DESCRIPTION_CHARS} characters"
                )
        with self.db.transaction() as tx:
            self.store.set_info(tx, name, description=description, color=color)
        info = self.info(name)
        assert info is not None
        return info

    def add_rule(self, tag: str, kind: str, pattern: str) -> TagRule:
        """Store a rule for a tag (checked first: a bad regex raises KvdeskError)."""
        name = normalise_tag(tag)
        rule = TagRule.compile(name, kind, pattern)
        with self.db.transaction() as tx:
            self.store.add_rule(tx, name, rule.kind, pattern)
        return rule

    def remove_rule(self, rule_id: int) -> bool:
        """Delete a stored rule; True when there was one."""
        with self.db.transaction() as tx:
            return self.store.remove_rule(tx, rule_id)

    def record_rule_problems(self, problems: Mapping[int, RuleProblem]) -> None:
        """Store rule problems (time-outs) by rule id, the latest per rule winning."""
        with self.db.transaction():
            stored = _parse_problems(self.settings.get(PROBLEMS_KEY))
            stored.update({str(k): p.to_json() for k, p in problems.items()})
            self.settings.set(PROBLEMS_KEY, json.dumps(stored))

    # -- suggestions ----------------------------------------------------------------------------

    def suggester(self, *, use_dense: bool = True) -> TagSuggester:
        """A new :class:`~kvdesk.core.tags.suggest.TagSuggester` over this vault; keep it (it
        loads the vault's terms and vectors on first use)."""
        from kvdesk.core.tags.suggest import TagSuggester

        return TagSuggester(self, keys=self._keys, use_dense=use_dense)


def _parse_problems(text: str | None) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
