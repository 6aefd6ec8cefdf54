"""The pilot log: search sessions recorded in the vault, so a pilot can prove search works.

Opt-in per vault (off by default, a row in ``setting``); nothing leaves the machine. A session
is one information need: its queries (the first and its reformulations), the hits shown with
their ranks, the documents opened and for how long, and the user's verdict ("found" with the
document, or "notfound"). A session with no verdict and no activity for ``stale_minutes`` counts
as abandoned when metrics are computed (and :meth:`PilotLog.abandon_stale` can write that down).

Each query also records what the search saw beyond the hits themselves: whether it was
confident, whether any shown hit matched the query's words (lexical keys) and whether any matched
a tag. In hybrid and dense mode the dense keys always return the k nearest documents, so "hits
were shown" says nothing; a search is *zero-result* when no shown hit matched a query key beyond
that dense floor: no lexical match, no tag match and no confident match. Rows recorded before
the vault kept the match columns (NULL) fall back to "0 hits shown".

Timestamps are UTC ISO strings; every write takes its time from an injectable clock, so tests
script sessions with exact times.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kvdesk.core.db import Database
from kvdesk.core.errors import KvdeskError, NotFoundError
from kvdesk.core.files import CsvRows, write_file_safely
from kvdesk.core.pilot.records import (
    Clock,
    Outcome,
    PilotHit,
    PilotOpen,
    PilotQuery,
    PilotSession,
    PilotSettings,
    from_iso,
    to_iso,
    utc_now,
)
from kvdesk.core.pilot.store import PilotStore
from kvdesk.core.search.retrieval import SearchResult
from kvdesk.core.settings import SettingStore
from kvdesk.core.vault.vault import Vault

__all__ = [
    "DEFAULT_STALE_MINUTES",
    "OUTCOMES",
    "Clock",
    "KeySetProvider",
    "Outcome",
    "PilotDisabled",
    "PilotHit",
    "PilotLog",
    "PilotOpen",
    "PilotQuery",
    "PilotSession",
    "PilotSettings",
    "from_iso",
    "record_cli_search",
    "search_matches",
    "to_iso",
    "utc_now",
]

KeySetProvider = Callable[[], int | None]  # the active dense key set's id, if any

OUTCOMES = tuple(str(o) for o in Outcome)
DEFAULT_STALE_MINUTES = 30
_ENABLED, _USER, _TEAM, _STALE = "pilot.enabled", "pilot.user", "pilot.team", "pilot.stale_minutes"
# The settings a team shares (a curator sets them for every desk); user and team are a desk's.
TEAM_SETTINGS = (_ENABLED, _STALE)


class PilotDisabled(KvdeskError):
    """The pilot log is off for this vault (``kvdesk pilot on`` turns it on)."""


# -- the log ---------------------------------------------------------------------------------


class PilotLog:
    """The pilot log of one vault: its rules, over :class:`PilotStore` (the SQL) and the
    vault's settings. Writes belong on the writer thread.

    ``key_set`` names the active dense key set a search ran against (recorded with each query;
    without it the column stays NULL). ``kb.pilot`` is the log of an open knowledge base.
    """

    def __init__(
        self,
        vault: Vault | Database,
        *,
        clock: Clock | None = None,
        key_set: KeySetProvider | None = None,
    ) -> None:
        # A vault (a desk's own log), or a team server's database (read for team reports).
        self.db = vault
        self.clock: Clock = clock or utc_now
        self.store = PilotStore(vault)
        self.setting_store = SettingStore(vault)
        self._key_set = key_set

    def with_clock(self, clock: Clock) -> PilotLog:
        """The same log, writing the times ``clock`` gives (a view's opening time, tests)."""
        return PilotLog(self.db, clock=clock, key_set=self._key_set)

    @property
    def vault(self) -> Vault:
        """The vault this log belongs to (not a team server's: that one is read, not kept)."""
        if not isinstance(self.db, Vault):
            raise TypeError("a team server's pilot log has no vault")
        return self.db

    def _now(self) -> str:
        return to_iso(self.clock())

    # settings

    def settings(self) -> PilotSettings:
        get = self.setting_store.get
        stale = get(_STALE, str(DEFAULT_STALE_MINUTES))
        return PilotSettings(
            enabled=get(_ENABLED, "0") == "1",
            user=get(_USER),
            team=get(_TEAM),
            stale_minutes=int(stale) if stale.isdigit() else DEFAULT_STALE_MINUTES,
        )

    @property
    def enabled(self) -> bool:
        return self.settings().enabled

    def configure(
        self,
        *,
        enabled: bool | None = None,
        user: str | None = None,
        team: str | None = None,
        stale_minutes: int | None = None,
    ) -> PilotSettings:
        """Change only what is given; returns the settings now in force."""
        if stale_minutes is not None and stale_minutes < 1:
            raise KvdeskError("stale_minutes must be at least 1")
        put = self.setting_store.set
        with self.db.transaction():
            if enabled is not None:
                put(_ENABLED, "1" if enabled else "0")
            if user is not None:
                put(_USER, user.strip())
            if team is not None:
                put(_TEAM, team.strip())
            if stale_minutes is not None:
                put(_STALE, str(stale_minutes))
        return self.settings()

    # sessions

    def start_session(self, *, user: str | None = None, team: str | None = None) -> int:
        """A new session labelled with the configured user and team (or those given)."""
        current = self.settings()
        if not current.enabled:
            raise PilotDisabled("the pilot log is off for this vault; `kvdesk pilot on` starts it")
        return self.store.add_session(
            current.user if user is None else user,
            current.team if team is None else team,
            self._now(),
        )

    def _require(self, session_id: int) -> None:
        if not self.store.exists(session_id):
            raise NotFoundError(f"no pilot session {session_id}")

    def record_search(self, session_id: int, query: str, result: SearchResult) -> int:
        """One query of the session and the hits it showed, ranked from 1. Returns its id."""
        self._require(session_id)
        key_set_id = None if self._key_set is None else self._key_set()
        lexical, tag = search_matches(result)
        return self.store.add_query(
            session_id,
            query=query,
            mode=result.mode,
            at=self._now(),
            confident=result.confident,
            lexical_match=lexical,
            tag_match=tag,
            key_set_id=key_set_id,
            hits=[(hit.value_id, float(hit.score)) for hit in result.hits],
        )

    def record_open(
        self,
        session_id: int,
        value_id: int,
        rank: int | None = None,
        seconds: float | None = None,
    ) -> int:
        """A document opened from the results (``rank`` as shown; ``seconds`` it stayed open)."""
        self._require(session_id)
        return self.store.add_open(session_id, value_id, rank, self._now(), seconds)

    def mark(self, session_id: int, outcome: str, value_id: int | None = None) -> PilotSession:
        """The user's verdict. "found" without a document takes the last one opened, if any."""
        if outcome not in (Outcome.FOUND, Outcome.NOTFOUND):
            raise KvdeskError(f"a session is marked found or notfound, not {outcome!r}")
        verdict = Outcome(outcome)
        self._require(session_id)
        if value_id is not None:
            self.vault.values.get(value_id)  # NotFoundError for a document that is not in the vault
        if verdict is Outcome.FOUND and value_id is None:
            value_id = self.store.last_opened(session_id)
        now = self._now()
        found = verdict is Outcome.FOUND
        self.store.set_verdict(
            session_id, verdict, now, value_id if found else None, now if found else None
        )
        return self.session(session_id)

    def abandon_stale(self) -> int:
        """Write "abandoned" on sessions with no verdict and no activity for stale_minutes."""
        now = self.clock()
        limit = dt.timedelta(minutes=self.settings().stale_minutes)
        stale = [
            s
            for s in self.sessions()
            if s.outcome is None and now - from_iso(s.last_activity) >= limit
        ]
        self.store.set_abandoned((s.id, s.last_activity) for s in stale)
        return len(stale)

    def clear(self) -> int:
        """Delete the whole log (settings stay). Returns the number of sessions removed."""
        return self.store.clear()

    # reading

    def count(self) -> int:
        """How many sessions the log holds."""
        return self.store.count()

    def teams(self) -> tuple[str, ...]:
        """Every team label in the log ("" = none), ascending."""
        return self.store.teams()

    def last_query(self, session_id: int) -> str:
        """The session's last query (its final reformulation): what a golden case asks."""
        self._require(session_id)
        query = self.store.last_query(session_id)
        if query is None:
            raise NotFoundError(f"pilot session {session_id} has no query")
        return query

    def session(self, session_id: int) -> PilotSession:
        found = self.sessions(ids=[session_id])
        if not found:
            raise NotFoundError(f"no pilot session {session_id}")
        return found[0]

    def sessions(
        self, *, since: dt.datetime | None = None, ids: list[int] | None = None
    ) -> list[PilotSession]:
        """Sessions (with queries, hits and opens) started at or after ``since``, oldest first."""
        return self.store.sessions(since=since, ids=ids)

    # export

    def export(self, path: str | os.PathLike[str]) -> int:
        """Write the log: ``.json`` nested sessions, anything else CSV.

        The CSV has one row per query (``kind`` "query") and one per document opened (``kind``
        "open": the document, its rank, when and for how long it was open); a session with
        neither gets one ``kind`` "session" row. Session columns repeat on every row.

        Returns the number of sessions written. The file is replaced atomically.
        """
        target = Path(path)
        sessions = self.sessions()
        identifiers = self.vault.values.identifiers()
        if target.suffix.lower() == ".json":
            data = {
                "exported_at": self._now(),
                "settings": self.settings().to_json(),
                "sessions": [_with_identifiers(s.to_json(), identifiers) for s in sessions],
            }
            text = json.dumps(data, indent=2, ensure_ascii=False)
            write_file_safely(target, text.encode("utf-8"))
        else:
            writer = CsvRows()
            writer.writerow(
                [
                    "kind", "session", "user", "team", "started_at", "outcome", "found_doc",
                    "found_at", "seq", "query", "mode", "at", "hit_count", "confident",
                    "zero_result", "key_set_id", "top_docs", "opened_doc", "open_rank",
                    "opened_at", "seconds",
                ]
            )  # fmt: skip
            no_query, no_open = [""] * 9, [""] * 4
            for s in sessions:
                found = identifiers.get(s.found_value_id, "") if s.found_value_id else ""
                head = [s.id, s.user, s.team, s.started_at, s.outcome or "", found,
                        s.found_at or ""]  # fmt: skip
                if not s.queries and not s.opens:
                    writer.writerow(["session", *head, *no_query, *no_open])
                for q in s.queries:
                    top = " ".join(str(identifiers.get(h.value_id, h.value_id)) for h in q.hits)
                    writer.writerow(
                        ["query", *head, q.seq, q.query, q.mode, q.at, q.hit_count,
                         int(q.confident), int(q.zero_result),
                         q.key_set_id if q.key_set_id is not None else "", top, *no_open]
                    )  # fmt: skip
                for o in s.opens:
                    writer.writerow(
                        ["open", *head, *no_query, identifiers.get(o.value_id, o.value_id),
                         "" if o.rank is None else o.rank, o.opened_at,
                         "" if o.seconds is None else o.seconds]
                    )  # fmt: skip
            writer.save(target)
        return len(sessions)


def search_matches(result: SearchResult) -> tuple[bool, bool]:
    """Whether any shown hit matched the query's words (lexical keys), and whether any a tag."""
    lexical = tag = False
    for hit in result.hits:
        lex, tags = hit.explanation.lexical, hit.explanation.tags
        lexical = lexical or (lex is not None and (lex.score > 0 or lex.bm25 > 0))
        tag = tag or (tags is not None and bool(tags.tags or tags.score > 0))
    return lexical, tag


def _with_identifiers(data: dict[str, Any], identifiers: dict[int, str]) -> dict[str, Any]:
    """Add the user-facing document identifiers next to internal value ids."""
    if data["found_value_id"] is not None:
        data["found_doc"] = identifiers.get(data["found_value_id"])
    for q in data["queries"]:
        for h in q["hits"]:
            h["doc"] = identifiers.get(h["value_id"])
    for o in data["opens"]:
        o["doc"] = identifiers.get(o["value_id"])
    return data


def record_cli_search(kb: Any, result: SearchResult) -> int | None:
    """``kvdesk search --pilot``: the search becomes a new session; None while the pilot is off."""
    log: PilotLog = kb.pilot
    if not log.enabled:
        return None
    session_id = log.start_session()
    log.record_search(session_id, result.query, result)
    return session_id
