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

import csv
import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvdesk.core.errors import KvdeskError, NotFoundError
from kvdesk.core.search.retrieval import SearchResult
from kvdesk.core.vault.vault import Vault

Clock = Callable[[], dt.datetime]

OUTCOMES = ("found", "notfound", "abandoned")
DEFAULT_STALE_MINUTES = 30
_ENABLED, _USER, _TEAM, _STALE = "pilot.enabled", "pilot.user", "pilot.team", "pilot.stale_minutes"


class PilotDisabled(KvdeskError):
    """The pilot log is off for this vault (``kvdesk pilot on`` turns it on)."""


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


# -- settings --------------------------------------------------------------------------------


def get_setting(vault: Vault, key: str, default: str = "") -> str:
    row = vault.conn.execute("SELECT value FROM setting WHERE key = ?", (key,)).fetchone()
    return default if row is None else str(row[0])


def set_setting(vault: Vault, key: str, value: str) -> None:
    with vault.transaction() as tx:
        tx.execute(
            "INSERT INTO setting(key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


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


# -- records ---------------------------------------------------------------------------------


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
        """Some shown hit matched a query key beyond the dense floor (see the module doc)."""
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
    outcome: str | None  # None: no verdict yet (open, or stale = abandoned in metrics)
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
            "outcome": self.outcome,
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


# -- the log ---------------------------------------------------------------------------------


class PilotLog:
    """Reads and writes the pilot tables of one vault. Writes belong on the writer thread."""

    def __init__(self, vault: Vault, *, clock: Clock | None = None) -> None:
        self.vault = vault
        self.clock: Clock = clock or utc_now

    def _now(self) -> str:
        return to_iso(self.clock())

    # settings

    def settings(self) -> PilotSettings:
        stale = get_setting(self.vault, _STALE, str(DEFAULT_STALE_MINUTES))
        return PilotSettings(
            enabled=get_setting(self.vault, _ENABLED, "0") == "1",
            user=get_setting(self.vault, _USER),
            team=get_setting(self.vault, _TEAM),
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
        with self.vault.transaction():
            if enabled is not None:
                set_setting(self.vault, _ENABLED, "1" if enabled else "0")
            if user is not None:
                set_setting(self.vault, _USER, user.strip())
            if team is not None:
                set_setting(self.vault, _TEAM, team.strip())
            if stale_minutes is not None:
                set_setting(self.vault, _STALE, str(stale_minutes))
        return self.settings()

    # sessions

    def start_session(self, *, user: str | None = None, team: str | None = None) -> int:
        """A new session labelled with the configured user and team (or those given)."""
        current = self.settings()
        if not current.enabled:
            raise PilotDisabled("the pilot log is off for this vault; `kvdesk pilot on` starts it")
        with self.vault.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO pilot_session(user, team, started_at) VALUES (?, ?, ?)",
                (
                    current.user if user is None else user,
                    current.team if team is None else team,
                    self._now(),
                ),
            )
            return int(cur.lastrowid or 0)

    def _require(self, session_id: int) -> None:
        row = self.vault.conn.execute(
            "SELECT 1 FROM pilot_session WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no pilot session {session_id}")

    def record_search(self, session_id: int, query: str, result: SearchResult) -> int:
        """One query of the session and the hits it showed, ranked from 1. Returns its id."""
        self._require(session_id)
        key_set = self.vault.conn.execute(
            "SELECT id FROM key_set WHERE space = 'dense' AND state = 'active'"
        ).fetchone()
        with self.vault.transaction() as tx:
            seq = tx.execute(
                "SELECT coalesce(max(seq), 0) + 1 FROM pilot_query WHERE session_id = ?",
                (session_id,),
            ).fetchone()[0]
            cur = tx.execute(
                "INSERT INTO pilot_query(session_id, seq, query, mode, at, hit_count, confident,"
                " lexical_match, tag_match, key_set_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    int(seq),
                    query,
                    result.mode,
                    self._now(),
                    len(result.hits),
                    int(result.confident),
                    *(int(flag) for flag in search_matches(result)),
                    None if key_set is None else int(key_set[0]),
                ),
            )
            query_id = int(cur.lastrowid or 0)
            tx.executemany(
                "INSERT INTO pilot_hit(query_id, rank, value_id, score) VALUES (?, ?, ?, ?)",
                [
                    (query_id, rank, hit.value_id, float(hit.score))
                    for rank, hit in enumerate(result.hits, start=1)
                ],
            )
        return query_id

    def record_open(
        self,
        session_id: int,
        value_id: int,
        rank: int | None = None,
        seconds: float | None = None,
    ) -> int:
        """A document opened from the results (``rank`` as shown; ``seconds`` it stayed open)."""
        self._require(session_id)
        with self.vault.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO pilot_open(session_id, value_id, rank, opened_at, seconds)"
                " VALUES (?, ?, ?, ?, ?)",
                (session_id, value_id, rank, self._now(), seconds),
            )
            return int(cur.lastrowid or 0)

    def mark(self, session_id: int, outcome: str, value_id: int | None = None) -> PilotSession:
        """The user's verdict. "found" without a document takes the last one opened, if any."""
        if outcome not in ("found", "notfound"):
            raise KvdeskError(f"a session is marked found or notfound, not {outcome!r}")
        self._require(session_id)
        if value_id is not None:
            self.vault.get(value_id)  # NotFoundError for a document that is not in the vault
        if outcome == "found" and value_id is None:
            row = self.vault.conn.execute(
                "SELECT value_id FROM pilot_open WHERE session_id = ? ORDER BY opened_at DESC,"
                " id DESC LIMIT 1",
                (session_id,),
            ).fetchone()
            value_id = None if row is None else int(row[0])
        now = self._now()
        with self.vault.transaction() as tx:
            tx.execute(
                "UPDATE pilot_session SET outcome = ?, ended_at = ?, found_value_id = ?,"
                " found_at = ? WHERE id = ?",
                (
                    outcome,
                    now,
                    value_id if outcome == "found" else None,
                    now if outcome == "found" else None,
                    session_id,
                ),
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
        with self.vault.transaction() as tx:
            for s in stale:
                tx.execute(
                    "UPDATE pilot_session SET outcome = 'abandoned', ended_at = ? WHERE id = ?",
                    (s.last_activity, s.id),
                )
        return len(stale)

    def clear(self) -> int:
        """Delete the whole log (settings stay). Returns the number of sessions removed."""
        with self.vault.transaction() as tx:
            count = int(tx.execute("SELECT count(*) FROM pilot_session").fetchone()[0])
            tx.execute("DELETE FROM pilot_hit")
            tx.execute("DELETE FROM pilot_query")
            tx.execute("DELETE FROM pilot_open")
            tx.execute("DELETE FROM pilot_session")
        return count

    # reading

    def session(self, session_id: int) -> PilotSession:
        found = self.sessions(ids=[session_id])
        if not found:
            raise NotFoundError(f"no pilot session {session_id}")
        return found[0]

    def sessions(
        self, *, since: dt.datetime | None = None, ids: list[int] | None = None
    ) -> list[PilotSession]:
        """Sessions (with queries, hits and opens) started at or after ``since``, oldest first."""
        conn = self.vault.conn
        sql = (
            "SELECT id, user, team, started_at, ended_at, outcome, found_value_id, found_at"
            " FROM pilot_session"
        )
        params: list[Any] = []
        if ids is not None:
            sql += f" WHERE id IN ({','.join('?' * len(ids))})"
            params += ids
        rows = conn.execute(sql + " ORDER BY id", params).fetchall()
        if since is not None:
            rows = [r for r in rows if from_iso(r[3]) >= _aware(since)]
        wanted = {int(r[0]) for r in rows}
        hits: dict[int, list[PilotHit]] = {}
        for qid, rank, value_id, score in conn.execute(
            "SELECT query_id, rank, value_id, score FROM pilot_hit ORDER BY query_id, rank"
        ):
            hits.setdefault(int(qid), []).append(PilotHit(int(rank), int(value_id), float(score)))
        queries: dict[int, list[PilotQuery]] = {}
        for r in conn.execute(
            "SELECT id, session_id, seq, query, mode, at, hit_count, confident, key_set_id,"
            " lexical_match, tag_match FROM pilot_query ORDER BY session_id, seq"
        ):
            if int(r[1]) in wanted:
                queries.setdefault(int(r[1]), []).append(
                    PilotQuery(
                        id=int(r[0]),
                        seq=int(r[2]),
                        query=str(r[3]),
                        mode=str(r[4]),
                        at=str(r[5]),
                        hit_count=int(r[6]),
                        confident=bool(r[7]),
                        key_set_id=None if r[8] is None else int(r[8]),
                        hits=tuple(hits.get(int(r[0]), ())),
                        lexical_match=None if r[9] is None else bool(r[9]),
                        tag_match=None if r[10] is None else bool(r[10]),
                    )
                )
        opens: dict[int, list[PilotOpen]] = {}
        for r in conn.execute(
            "SELECT session_id, value_id, rank, opened_at, seconds FROM pilot_open ORDER BY id"
        ):
            if int(r[0]) in wanted:
                opens.setdefault(int(r[0]), []).append(
                    PilotOpen(int(r[1]), None if r[2] is None else int(r[2]), str(r[3]), r[4])
                )
        return [
            PilotSession(
                id=int(r[0]),
                user=str(r[1]),
                team=str(r[2]),
                started_at=str(r[3]),
                ended_at=r[4],
                outcome=r[5],
                found_value_id=None if r[6] is None else int(r[6]),
                found_at=r[7],
                queries=tuple(queries.get(int(r[0]), ())),
                opens=tuple(opens.get(int(r[0]), ())),
            )
            for r in rows
        ]

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
        identifiers = dict(self.vault.conn.execute("SELECT id, identifier FROM value"))
        tmp = target.with_name(target.name + ".kvdesk-partial")
        if target.suffix.lower() == ".json":
            data = {
                "exported_at": self._now(),
                "settings": self.settings().to_json(),
                "sessions": [_with_identifiers(s.to_json(), identifiers) for s in sessions],
            }
            tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        else:
            with tmp.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
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
        os.replace(tmp, target)
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


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def record_cli_search(kb: Any, result: SearchResult) -> int | None:
    """``kvdesk search --pilot``: the search becomes a new session; None while the pilot is off."""
    log = PilotLog(kb.vault)
    if not log.enabled:
        return None
    session_id = log.start_session()
    log.record_search(session_id, result.query, result)
    return session_id
