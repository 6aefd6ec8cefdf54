"""Pilot metrics: does search get people to the right document, and where does it fail?

Definitions (each over the sessions *started* in the window, ``--since`` included):

* A session's status is its verdict (found / notfound), else "abandoned" once it has been idle
  ``stale_minutes``, else "open". Open sessions are counted in ``sessions`` but left out of the
  rates, which are over *closed* sessions (found + notfound + abandoned).
* success rate = found / closed; abandonment rate = abandoned / closed.
* zero-result rate = zero-result searches / all searches. A search is zero-result when no hit
  it showed matched a query key beyond the dense floor: no lexical match (the query's words),
  no tag match and no confident match (dense search always returns its k nearest documents, so
  "0 hits shown" alone would make this 0 in hybrid and dense mode). Searches recorded before
  these flags existed count as zero-result only with 0 hits. Searches that matched a key but
  had no confident match are reported apart, as ``no_confident_rate`` (disjoint from it).
* MRR = mean over found sessions with a known document of 1/rank of that document in the
  session's last search at or before the find (0 when that search did not show it).
* time to find = seconds from the session's first query (its start, if it has none) to found;
  the median over found sessions.
* reformulations per session = mean of (queries - 1) over sessions with at least one query.
* top failed queries = the queries of notfound/abandoned sessions, normalised (case, spaces),
  each counted once per session, most frequent first.
* confusable failed sessions = failed (notfound/abandoned) sessions that met a confusable pair
  (two different values whose keys collide, ``kvdesk keys confusable``) in what they recorded:
  one of their searches showed both members of a pair among its hits (the user had to choose
  between look-alikes), or ranked a member of a pair first (the query best matched one of the
  two, and the one wanted may have been the other). ``None`` when pairs were not looked for.

A rate with nothing to divide by is ``None`` (JSON null), never a made-up 0.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kvdesk.core.db import Database
from kvdesk.core.errors import KvdeskError
from kvdesk.core.files import CsvRows
from kvdesk.core.pilot.log import PilotLog
from kvdesk.core.pilot.records import Clock, Outcome, PilotSession, from_iso, utc_now
from kvdesk.core.vault.vault import Vault

TOP_FAILED = 10

#: Given the values failed sessions showed, the confusable pairs (value ids) with a member
#: among them (``kb.confusable_pairs(among=...)``, turned into id pairs).
ConfusableFinder = Callable[[Collection[int]], Iterable[tuple[int, int]]]


@dataclass(frozen=True)
class FailedQuery:
    query: str  # as last typed
    count: int  # failed sessions that asked it
    sessions: tuple[int, ...]
    zero_results: int  # of those sessions, how many got a zero-result search for it
    last_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "count": self.count,
            "sessions": list(self.sessions),
            "zero_results": self.zero_results,
            "last_at": self.last_at,
        }


@dataclass(frozen=True)
class Metrics:
    sessions: int
    found: int
    notfound: int
    abandoned: int
    open: int
    searches: int
    success_rate: float | None
    abandon_rate: float | None
    zero_result_rate: float | None
    no_confident_rate: float | None
    mrr: float | None
    median_seconds_to_find: float | None
    reformulations_per_session: float | None
    top_failed: tuple[FailedQuery, ...] = ()
    confusable_failed_sessions: int | None = None  # see the module doc; None: not looked for

    def to_json(self, *, with_failed: bool = True) -> dict[str, Any]:
        """The CLI's keys first, in the documented order; extra counts after them."""
        out: dict[str, Any] = {
            "sessions": self.sessions,
            "success_rate": _round(self.success_rate),
            "abandon_rate": _round(self.abandon_rate),
            "zero_result_rate": _round(self.zero_result_rate),
            "mrr": _round(self.mrr),
            "median_seconds_to_find": _round(self.median_seconds_to_find, 3),
        }
        if with_failed:
            out["top_failed"] = [f.to_json() for f in self.top_failed]
        out.update(
            {
                "reformulations_per_session": _round(self.reformulations_per_session),
                "no_confident_rate": _round(self.no_confident_rate),
                "searches": self.searches,
                "found": self.found,
                "notfound": self.notfound,
                "abandoned": self.abandoned,
                "open": self.open,
                "confusable_failed_sessions": self.confusable_failed_sessions,
            }
        )
        return out


@dataclass(frozen=True)
class PilotReport:
    overall: Metrics
    per_week: dict[str, Metrics]  # ISO week of the session start ("2025-W03"), ascending
    per_team: dict[str, Metrics]  # team label ("" = none), ascending
    since: str | None
    computed_at: str
    per_user: dict[str, Metrics] = field(default_factory=dict)  # user label, ascending

    def to_json(self) -> dict[str, Any]:
        out = self.overall.to_json()
        out["since"] = self.since
        out["computed_at"] = self.computed_at
        out["per_week"] = {k: m.to_json(with_failed=False) for k, m in self.per_week.items()}
        out["per_team"] = {k: m.to_json(with_failed=False) for k, m in self.per_team.items()}
        out["per_user"] = {k: m.to_json(with_failed=False) for k, m in self.per_user.items()}
        return out


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


OPEN = "open"  # a status, not an outcome: no verdict yet and not idle long enough


def session_status(session: PilotSession, now: dt.datetime, stale_minutes: int) -> str:
    """An :class:`Outcome` (found | notfound | abandoned) or ``OPEN`` (see the module doc)."""
    if session.outcome is not None:
        return session.outcome
    idle = now - from_iso(session.last_activity)
    return Outcome.ABANDONED if idle >= dt.timedelta(minutes=stale_minutes) else OPEN


def reciprocal_rank(session: PilotSession) -> float | None:
    """1/rank of the found document in the last search before the find; None if unknowable."""
    if (
        session.outcome != Outcome.FOUND
        or session.found_value_id is None
        or session.found_at is None
    ):
        return None
    found_at = from_iso(session.found_at)
    before = [q for q in session.queries if from_iso(q.at) <= found_at]
    if not before:
        return 0.0
    last = max(before, key=lambda q: (from_iso(q.at), q.seq))
    for hit in last.hits:
        if hit.value_id == session.found_value_id:
            return 1.0 / hit.rank
    return 0.0


def seconds_to_find(session: PilotSession) -> float | None:
    if session.outcome != Outcome.FOUND or session.found_at is None:
        return None
    start = min((from_iso(q.at) for q in session.queries), default=from_iso(session.started_at))
    return max(0.0, (from_iso(session.found_at) - start).total_seconds())


def met_confusable(session: PilotSession, partners: Mapping[int, Collection[int]]) -> bool:
    """Whether a search of ``session`` showed both members of a confusable pair, or ranked a
    member of one first (``partners``: value id -> the values it is confusable with)."""
    for q in session.queries:
        if not q.hits:
            continue
        shown = {h.value_id for h in q.hits}
        if min(q.hits, key=lambda h: h.rank).value_id in partners:
            return True
        if any(p in shown for v in shown for p in partners.get(v, ())):
            return True
    return False


def normalise_query(text: str) -> str:
    return " ".join(text.casefold().split())


def compute_metrics(
    sessions: list[PilotSession],
    *,
    now: dt.datetime,
    stale_minutes: int,
    top: int = TOP_FAILED,
    confusable: Mapping[int, Collection[int]] | None = None,
) -> Metrics:
    """``confusable``: value id -> the values it is confusable with (None: not looked for)."""
    status = {s.id: session_status(s, now, stale_minutes) for s in sessions}
    counts = {k: sum(1 for v in status.values() if v == k) for k in (*Outcome, OPEN)}
    closed = counts[Outcome.FOUND] + counts[Outcome.NOTFOUND] + counts[Outcome.ABANDONED]
    queries = [q for s in sessions for q in s.queries]
    rrs = [rr for s in sessions if (rr := reciprocal_rank(s)) is not None]
    times = [t for s in sessions if (t := seconds_to_find(s)) is not None]
    reforms = [len(s.queries) - 1 for s in sessions if s.queries]

    failed: dict[str, dict[str, Any]] = {}
    for s in sessions:
        if status[s.id] not in (Outcome.NOTFOUND, Outcome.ABANDONED):
            continue
        seen: set[str] = set()
        for q in s.queries:
            key = normalise_query(q.query)
            if not key or key in seen:
                continue
            seen.add(key)
            entry = failed.setdefault(
                key, {"query": q.query, "sessions": [], "zero": 0, "last": q.at}
            )
            entry["sessions"].append(s.id)
            entry["zero"] += int(q.zero_result)
            if from_iso(q.at) >= from_iso(entry["last"]):
                entry["last"], entry["query"] = q.at, q.query
    ordered = sorted(
        failed.values(), key=lambda e: (-len(e["sessions"]), -from_iso(e["last"]).timestamp())
    )
    top_failed = tuple(
        FailedQuery(e["query"], len(e["sessions"]), tuple(e["sessions"]), e["zero"], e["last"])
        for e in ordered[:top]
    )
    return Metrics(
        sessions=len(sessions),
        found=counts[Outcome.FOUND],
        notfound=counts[Outcome.NOTFOUND],
        abandoned=counts[Outcome.ABANDONED],
        open=counts[OPEN],
        searches=len(queries),
        success_rate=_ratio(counts[Outcome.FOUND], closed),
        abandon_rate=_ratio(counts[Outcome.ABANDONED], closed),
        zero_result_rate=_ratio(sum(1 for q in queries if q.zero_result), len(queries)),
        no_confident_rate=_ratio(
            sum(1 for q in queries if q.matched and not q.confident), len(queries)
        ),
        mrr=statistics.fmean(rrs) if rrs else None,
        median_seconds_to_find=statistics.median(times) if times else None,
        reformulations_per_session=statistics.fmean(reforms) if reforms else None,
        top_failed=top_failed,
        confusable_failed_sessions=None
        if confusable is None
        else sum(
            1
            for s in sessions
            if status[s.id] in (Outcome.NOTFOUND, Outcome.ABANDONED)
            and met_confusable(s, confusable)
        ),
    )


def _partners(
    window: list[PilotSession], confusable: ConfusableFinder, now: dt.datetime, stale: int
) -> dict[int, set[int]]:
    """Value id -> the values it is confusable with, asked for what failed sessions showed."""
    failed = (Outcome.NOTFOUND, Outcome.ABANDONED)
    shown = {
        h.value_id
        for s in window
        if session_status(s, now, stale) in failed
        for q in s.queries
        for h in q.hits
    }
    partners: dict[int, set[int]] = {}
    for a, b in confusable(shown) if shown else ():
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    return partners


def confusable_failed_sessions(
    source: PilotLog | Vault | Database,
    confusable: ConfusableFinder,
    *,
    since: dt.datetime | None = None,
    team: str | None = None,
    clock: Clock | None = None,
) -> int:
    """The overall ``confusable_failed_sessions`` of :func:`pilot_report` with ``confusable``,
    on its own (the dashboard shows it beside a report computed without it)."""
    log = source if isinstance(source, PilotLog) else PilotLog(source)
    now = (clock or utc_now)()
    stale = log.settings().stale_minutes
    window = log.sessions(since=since)
    partners = _partners(window, confusable, now, stale)
    failed = (Outcome.NOTFOUND, Outcome.ABANDONED)
    return sum(
        1
        for s in window
        if (team is None or s.team == team)
        and session_status(s, now, stale) in failed
        and met_confusable(s, partners)
    )


def iso_week(stamp: str) -> str:
    year, week, _day = from_iso(stamp).isocalendar()
    return f"{year}-W{week:02d}"


def parse_since(text: str) -> dt.datetime:
    """``--since``: a date (UTC midnight) or a full ISO timestamp."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise KvdeskError(f"--since wants a date like 2025-01-31, not {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def pilot_report(
    source: PilotLog | Vault | Database,
    *,
    since: dt.datetime | None = None,
    team: str | None = None,
    clock: Clock | None = None,
    top: int = TOP_FAILED,
    confusable: ConfusableFinder | None = None,
) -> PilotReport:
    """Overall, per ISO week and per team metrics of the sessions started since ``since``.

    ``source`` is the pilot log (``kb.pilot``) or its vault. With ``team`` (a team label, ""
    for none), ``overall`` and ``per_week`` cover that team's sessions only; ``per_team``
    always compares every team over the same window. With ``confusable``, each scope also
    counts its failed sessions that met a confusable pair (asked once, for the values the
    window's failed sessions showed).
    """
    log = source if isinstance(source, PilotLog) else PilotLog(source)
    now = (clock or utc_now)()
    stale = log.settings().stale_minutes
    window = log.sessions(since=since)
    teams: dict[str, list[PilotSession]] = {}
    for s in window:
        teams.setdefault(s.team, []).append(s)
    scoped = window if team is None else teams.get(team, [])
    weeks: dict[str, list[PilotSession]] = {}
    users: dict[str, list[PilotSession]] = {}
    for s in scoped:
        weeks.setdefault(iso_week(s.started_at), []).append(s)
        users.setdefault(s.user, []).append(s)

    partners = None if confusable is None else _partners(window, confusable, now, stale)

    def metrics(group: list[PilotSession]) -> Metrics:
        return compute_metrics(group, now=now, stale_minutes=stale, top=top, confusable=partners)

    return PilotReport(
        overall=metrics(scoped),
        per_week={k: metrics(weeks[k]) for k in sorted(weeks)},
        per_team={k: metrics(teams[k]) for k in sorted(teams)},
        since=None if since is None else since.isoformat(),
        computed_at=now.isoformat(timespec="seconds"),
        per_user={k: metrics(users[k]) for k in sorted(users)},
    )


REPORT_COLUMNS = (
    "sessions", "success_rate", "abandon_rate", "zero_result_rate", "mrr",
    "median_seconds_to_find", "reformulations_per_session", "no_confident_rate", "searches",
    "found", "notfound", "abandoned", "open",
)  # fmt: skip


def write_report_csv(report: PilotReport, path: str | os.PathLike[str]) -> None:
    """One row per scope: overall, then each week, then each team (empty cell = no data)."""
    rows: list[tuple[str, str, Metrics]] = [("overall", "", report.overall)]
    rows += [("week", k, m) for k, m in report.per_week.items()]
    rows += [("team", k, m) for k, m in report.per_team.items()]
    rows += [("user", k, m) for k, m in report.per_user.items()]
    writer = CsvRows()
    writer.writerow(["scope", "bucket", *REPORT_COLUMNS])
    for scope, bucket, m in rows:
        data = m.to_json(with_failed=False)
        writer.writerow(
            [scope, bucket, *("" if data[c] is None else data[c] for c in REPORT_COLUMNS)]
        )
    writer.save(path)
