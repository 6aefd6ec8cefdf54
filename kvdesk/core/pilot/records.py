"""What the pilot log holds, as Python values: sessions, their queries, hits and opens.

Timestamps are UTC ISO strings (:func:`to_iso`); a :data:`Clock` is any callable returning the
current moment, injected wherever something is written so tests script sessions exactly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Clock = Callable[[], dt.datetime]


class Outcome(StrEnum):
    """How a pilot session ended (stored in ``pilot_session.outcome``; NULL: no verdict yet)."""

    FOUND = "found"
    NOTFOUND = "notfound"
    ABANDONED = "abandoned"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def to_iso(moment: dt.datetime) -> str:
    """Stored form: UTC, milliseconds, like the vault's own ``now_iso``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def from_iso(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class PilotSettings:
    enabled: bool
    user: str
    team: str
    stale_minutes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "user": self.user,
            "team": self.team,
            "stale_minutes": self.stale_minutes,
        }


@dataclass(frozen=True)
class PilotHit:
    rank: int  # 1-based, as shown
    value_id: int
    score: float


@dataclass(frozen=True)
class PilotQuery:
    id: int
    seq: int  # 1 = the first query of the session, 2.. = reformulations
    query: str
    mode: str
    at: str
    hit_count: int
    confident: bool
    key_set_id: int | None
    hits: tuple[PilotHit, ...] = ()
    lexical_match: bool | None = None  # a shown hit matched the query's words (None: unknown)
    tag_match: bool | None = None  # a shown hit matched a tag named in the query (None: unknown)

    @property
    def matched(self) -> bool:
        """Some shown hit matched a query key beyond the dense floor (see the log's doc)."""
        if self.lexical_match is None or self.tag_match is None:
            return self.hit_count > 0  # recorded before the flags existed
        return self.hit_count > 0 and (self.lexical_match or self.tag_match or self.confident)

    @property
    def zero_result(self) -> bool:
        return not self.matched


@dataclass(frozen=True)
class PilotOpen:
    value_id: int
    rank: int | None
    opened_at: str
    seconds: float | None


@dataclass(frozen=True)
class PilotSession:
    id: int
    user: str
    team: str
    started_at: str
    ended_at: str | None
    outcome: Outcome | None  # None: no verdict yet (open, or stale = abandoned in metrics)
    found_value_id: int | None
    found_at: str | None
    queries: tuple[PilotQuery, ...] = ()
    opens: tuple[PilotOpen, ...] = ()

    @property
    def last_activity(self) -> str:
        """The latest moment anything happened in the session (staleness counts from here)."""
        stamps = [
            self.started_at,
            *(q.at for q in self.queries),
            *(o.opened_at for o in self.opens),
        ]
        return max(stamps, key=from_iso)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "team": self.team,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": None if self.outcome is None else str(self.outcome),
            "found_value_id": self.found_value_id,
            "found_at": self.found_at,
            "queries": [
                {
                    "seq": q.seq,
                    "query": q.query,
                    "mode": q.mode,
                    "at": q.at,
                    "hit_count": q.hit_count,
                    "confident": q.confident,
                    "lexical_match": q.lexical_match,
                    "tag_match": q.tag_match,
                    "zero_result": q.zero_result,
                    "key_set_id": q.key_set_id,
                    "hits": [
                        {"rank": h.rank, "value_id": h.value_id, "score": h.score} for h in q.hits
                    ],
                }
                for q in self.queries
            ],
            "opens": [
                {
                    "value_id": o.value_id,
                    "rank": o.rank,
                    "opened_at": o.opened_at,
                    "seconds": o.seconds,
                }
                for o in self.opens
            ],
        }
