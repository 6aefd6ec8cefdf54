"""The pilot log and its metrics, against values computed by hand from scripted sessions.

Zero-result searches in hybrid/dense mode: dense keys always return the k nearest documents,
so a search counts as zero-result when no shown hit matched a query key beyond that floor
(no lexical match, no tag match, no confident match)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.core.errors import KvdeskError, NotFoundError
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.pilot.log import PilotDisabled, PilotLog, record_cli_search, search_matches
from kvdesk.core.pilot.metrics import (
    compute_metrics,
    parse_since,
    pilot_report,
    write_report_csv,
)
from kvdesk.core.search.retrieval import (
    DenseExplanation,
    Explanation,
    Hit,
    LexicalExplanation,
    SearchResult,
    TagExplanation,
)


class Clock:
    """An injected clock: each step of a scripted session happens at an exact moment."""

    def __init__(self) -> None:
        self.now = dt.datetime(2025, 1, 6, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def at(self, stamp: str) -> None:
        self.now = dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC)


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    records = tmp_path / "docs.jsonl"
    records.write_text(
        "\n".join(
            json.dumps({"_id": f"d{i}", "title": f"Doc {i}", "text": text})
            for i, text in enumerate(
                ["printer on floor three", "travel policy", "vpn setup guide", "budget 2024"],
                start=1,
            )
        ),
        encoding="utf-8",
    )
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    base.import_records(records)
    yield base
    base.close()


def result(
    kb: KnowledgeBase, query: str, docs: list[str], confident: bool = True, matched: bool = True
) -> SearchResult:
    """Scripted hits; ``matched``: they matched the query's words (lexical keys), else they are
    only the dense floor (the nearest documents, whatever the query)."""
    explanation = (
        Explanation(lexical=LexicalExplanation(0.5, 2.0, ())) if matched else Explanation()
    )
    hits = tuple(
        Hit(
            value_id=kb.values.resolve(d),
            identifier=kb.values.get(d).identifier,
            external_id=d,
            title=d,
            media_type="text/plain",
            score=1.0 / rank,
            weight=0.1,
            snippet_html="",
            explanation=explanation,
        )
        for rank, d in enumerate(docs, start=1)
    )
    return SearchResult(query, "hybrid", "none", confident, {}, hits, 1.0)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def script(kb: KnowledgeBase, clock: Clock) -> PilotLog:
    """Nine sessions over two ISO weeks (2025-W02, 2025-W03), two teams."""
    log = PilotLog(kb._vault, clock=clock)
    log.configure(enabled=True, user="ann", team="A")
    vid = kb.values.resolve

    def session(start: str, team: str | None = None) -> int:
        clock.at(start)
        return log.start_session(team=team)

    def search(sid: int, at: str, query: str, docs: list[str], confident: bool = True) -> None:
        clock.at(at)
        log.record_search(sid, query, result(kb, query, docs, confident))

    def mark(sid: int, at: str, outcome: str, doc: str | None = None) -> None:
        clock.at(at)
        log.mark(sid, outcome, None if doc is None else vid(doc))

    # S1 (A): reformulated once, opened d1 at rank 2, found d1 -> RR 1/2, 60 s.
    s1 = session("2025-01-06T09:00:00")
    search(s1, "2025-01-06T09:00:00", "printer jam", ["d2", "d1", "d3"])
    search(s1, "2025-01-06T09:00:20", "printer jams floor 3", ["d3", "d1"])
    clock.at("2025-01-06T09:00:30")
    log.record_open(s1, vid("d1"), rank=2, seconds=12.0)
    mark(s1, "2025-01-06T09:01:00", "found", "d1")
    # S2 (A): found d2 at rank 1 -> RR 1, 30 s.
    s2 = session("2025-01-06T10:00:00")
    search(s2, "2025-01-06T10:00:00", "travel policy", ["d2"])
    mark(s2, "2025-01-06T10:00:30", "found", "d2")
    # S3 (B): a zero-result search, then a not-confident one, then "not found".
    log.configure(user="bob", team="B")
    s3 = session("2025-01-06T11:00:00")
    search(s3, "2025-01-06T11:00:00", "budget 2019", [], confident=False)
    search(s3, "2025-01-06T11:00:10", "budget", ["d4", "d1"], confident=False)
    mark(s3, "2025-01-06T11:01:00", "notfound")
    # S4 (B): never marked -> abandoned once idle 30 minutes.
    s4 = session("2025-01-06T12:00:00")
    search(s4, "2025-01-06T12:00:00", "Budget ", ["d4"], confident=False)
    # S5 (A): found d4, shown at rank 3 -> RR 1/3, 120 s.
    s5 = session("2025-01-13T09:00:00", team="A")
    search(s5, "2025-01-13T09:00:00", "coffee", ["d1", "d3", "d4"])
    mark(s5, "2025-01-13T09:02:00", "found", "d4")
    # S6 (B): zero results, not found.
    s6 = session("2025-01-13T10:00:00")
    search(s6, "2025-01-13T10:00:00", "holiday", [], confident=False)
    mark(s6, "2025-01-13T10:00:40", "notfound")
    # S7 (A): found d3, which the search did not show -> RR 0, 60 s.
    s7 = session("2025-01-13T10:30:00", team="A")
    search(s7, "2025-01-13T10:30:00", "vpn setup", ["d2"])
    mark(s7, "2025-01-13T10:31:00", "found", "d3")
    # S8 (B): still open at report time (5 minutes idle).
    s8 = session("2025-01-13T10:35:00")
    search(s8, "2025-01-13T10:35:00", "open question", ["d1"])
    # S9 (A): found, no document named and none opened -> counts as found, not in MRR; 60 s.
    s9 = session("2025-01-13T10:36:00", team="A")
    search(s9, "2025-01-13T10:36:00", "x", ["d1"])
    mark(s9, "2025-01-13T10:37:00", "found")
    assert [s1, s9] == [1, 9]
    clock.at("2025-01-13T10:40:00")
    return log


def test_pilot_is_off_by_default_and_records_nothing(kb: KnowledgeBase) -> None:
    log = PilotLog(kb._vault)
    assert not log.enabled
    with pytest.raises(PilotDisabled):
        log.start_session()
    assert record_cli_search(kb, kb.search("printer", mode="lexical")) is None
    assert log.sessions() == []


def test_cli_search_records_a_session_with_ranked_hits(kb: KnowledgeBase) -> None:
    PilotLog(kb._vault).configure(enabled=True, user="ann", team="ops")
    found = kb.search("printer", mode="lexical")
    sid = record_cli_search(kb, found)
    assert sid is not None
    session = PilotLog(kb._vault).session(sid)
    assert (session.user, session.team, session.outcome) == ("ann", "ops", None)
    (query,) = session.queries
    assert query.query == "printer" and query.seq == 1 and query.mode == "lexical"
    assert query.hit_count == len(found.hits) >= 1
    assert [h.value_id for h in query.hits] == [h.value_id for h in found.hits]
    assert [h.rank for h in query.hits] == list(range(1, len(found.hits) + 1))


def test_metrics_match_hand_computed_values(kb: KnowledgeBase) -> None:
    clock = Clock()
    script(kb, clock)
    report = pilot_report(kb._vault, clock=clock).to_json()
    assert list(report)[:7] == [
        "sessions", "success_rate", "abandon_rate", "zero_result_rate", "mrr",
        "median_seconds_to_find", "top_failed",
    ]  # fmt: skip
    assert report["sessions"] == 9
    assert (report["found"], report["notfound"], report["abandoned"], report["open"]) == (
        5, 2, 1, 1,
    )  # fmt: skip
    assert report["success_rate"] == 0.625  # 5 found / 8 closed
    assert report["abandon_rate"] == 0.125  # 1 / 8
    assert report["searches"] == 11
    assert report["zero_result_rate"] == round(2 / 11, 4)
    assert report["no_confident_rate"] == round(2 / 11, 4)
    assert report["mrr"] == round((1 / 2 + 1 + 1 / 3 + 0) / 4, 4)
    assert report["median_seconds_to_find"] == 60.0  # 30, 60, 60, 60, 120
    assert report["reformulations_per_session"] == round(2 / 9, 4)
    failed = report["top_failed"]
    assert [(f["query"], f["count"], f["sessions"], f["zero_results"]) for f in failed] == [
        ("Budget ", 2, [3, 4], 0),
        ("holiday", 1, [6], 1),
        ("budget 2019", 1, [3], 1),
    ]

    w2, w3 = report["per_week"]["2025-W02"], report["per_week"]["2025-W03"]
    assert list(report["per_week"]) == ["2025-W02", "2025-W03"]
    assert (w2["sessions"], w2["success_rate"], w2["abandon_rate"]) == (4, 0.5, 0.25)
    assert w2["zero_result_rate"] == round(1 / 6, 4) and w2["mrr"] == 0.75
    assert w2["median_seconds_to_find"] == 45.0 and w2["reformulations_per_session"] == 0.5
    assert (w3["sessions"], w3["success_rate"], w3["abandon_rate"], w3["open"]) == (5, 0.75, 0, 1)
    assert w3["zero_result_rate"] == 0.2 and w3["mrr"] == round(1 / 6, 4)
    assert w3["median_seconds_to_find"] == 60.0

    a, b = report["per_team"]["A"], report["per_team"]["B"]
    assert (a["sessions"], a["success_rate"], a["zero_result_rate"]) == (5, 1.0, 0.0)
    assert (b["sessions"], b["success_rate"], b["abandon_rate"]) == (4, 0.0, round(1 / 3, 4))
    assert b["zero_result_rate"] == 0.4 and b["mrr"] is None
    assert b["median_seconds_to_find"] is None and b["reformulations_per_session"] == 0.25


def test_a_team_scopes_overall_and_weeks_but_every_team_is_compared(kb: KnowledgeBase) -> None:
    clock = Clock()
    script(kb, clock)
    everyone = pilot_report(kb.pilot, clock=clock)
    b = pilot_report(kb.pilot, team="B", clock=clock)
    assert b.overall == everyone.per_team["B"]  # B's sessions only, failed queries included
    assert b.per_team == everyone.per_team  # the comparison covers every team
    assert (b.per_week["2025-W02"].sessions, b.per_week["2025-W03"].sessions) == (2, 2)
    recent_a = pilot_report(kb.pilot, team="A", since=parse_since("2025-01-13"), clock=clock)
    assert recent_a.overall.sessions == 3 and list(recent_a.per_week) == ["2025-W03"]
    assert pilot_report(kb.pilot, team="nobody", clock=clock).overall.sessions == 0
    assert kb.pilot.teams() == ("A", "B")


def test_since_and_staleness_follow_the_clock(kb: KnowledgeBase) -> None:
    clock = Clock()
    log = script(kb, clock)
    recent = pilot_report(kb._vault, since=parse_since("2025-01-13"), clock=clock).to_json()
    assert recent["sessions"] == 5 and list(recent["per_week"]) == ["2025-W03"]
    # 30 minutes after S8's last search it is abandoned too.
    clock.at("2025-01-13T11:05:00")
    later = compute_metrics(log.sessions(), now=clock(), stale_minutes=30)
    assert (later.open, later.abandoned) == (0, 2)
    assert later.abandon_rate == 2 / 9
    # Writing it down gives the same numbers, with ended_at = the last activity.
    assert log.abandon_stale() == 2
    s8 = log.session(8)
    assert s8.outcome == "abandoned" and s8.ended_at == "2025-01-13T10:35:00.000+00:00"
    assert compute_metrics(log.sessions(), now=clock(), stale_minutes=30) == later
    with pytest.raises(KvdeskError):
        parse_since("last tuesday")


def test_mark_rules(kb: KnowledgeBase) -> None:
    clock = Clock()
    log = PilotLog(kb._vault, clock=clock)
    log.configure(enabled=True)
    sid = log.start_session()
    log.record_search(sid, "vpn", result(kb, "vpn", ["d3", "d1"]))
    log.record_open(sid, kb.values.resolve("d1"), rank=2, seconds=3.5)
    with pytest.raises(KvdeskError):
        log.mark(sid, "abandoned")
    with pytest.raises(NotFoundError):
        log.mark(sid, "found", 9999)
    with pytest.raises(NotFoundError):
        log.mark(77, "notfound")
    marked = log.mark(sid, "found")  # no document named: the last one opened
    assert marked.found_value_id == kb.values.resolve("d1")
    assert marked.opens[0].seconds == 3.5 and marked.opens[0].rank == 2


def test_export_and_clear(kb: KnowledgeBase, tmp_path: Path) -> None:
    clock = Clock()
    log = script(kb, clock)
    assert log.export(tmp_path / "log.json") == 9
    data = json.loads((tmp_path / "log.json").read_text(encoding="utf-8"))
    first = data["sessions"][0]
    assert first["outcome"] == "found" and first["found_doc"] == kb.values.get("d1").identifier
    assert [q["query"] for q in first["queries"]] == ["printer jam", "printer jams floor 3"]
    assert first["opens"][0]["seconds"] == 12.0
    assert data["settings"]["enabled"] is True

    log.export(tmp_path / "log.csv")
    rows = read_csv(tmp_path / "log.csv")
    assert len(rows) == 12  # one per query (11) and one per document opened (1)
    queries = [r for r in rows if r["kind"] == "query"]
    assert len(queries) == 11
    assert queries[0]["query"] == "printer jam" and queries[0]["team"] == "A"
    assert [r["zero_result"] for r in queries].count("1") == 2  # budget 2019, holiday
    (opened,) = [r for r in rows if r["kind"] == "open"]
    assert opened["session"] == "1" and opened["opened_doc"] == kb.values.get("d1").identifier
    assert (opened["open_rank"], opened["seconds"]) == ("2", "12.0")
    assert opened["opened_at"] == "2025-01-06T09:00:30.000+00:00" and opened["query"] == ""

    report = pilot_report(kb._vault, clock=clock)
    write_report_csv(report, tmp_path / "report.csv")
    table = read_csv(tmp_path / "report.csv")
    assert [(r["scope"], r["bucket"]) for r in table] == [
        ("overall", ""), ("week", "2025-W02"), ("week", "2025-W03"), ("team", "A"), ("team", "B"),
        ("user", "ann"), ("user", "bob"),
    ]  # fmt: skip
    # Every session is someone's: the users' sessions add up to all of them.
    assert int(table[5]["sessions"]) + int(table[6]["sessions"]) == int(table[0]["sessions"])
    assert table[0]["success_rate"] == "0.625" and table[4]["mrr"] == ""

    assert log.clear() == 9
    assert log.sessions() == []
    assert kb._vault.conn.execute("SELECT count(*) FROM pilot_hit").fetchone()[0] == 0
    assert log.enabled  # settings survive a clear
    assert kb.values.count() == 4  # values untouched


def test_csv_export_neutralises_formulas(tmp_path: Path) -> None:
    """OWASP CSV injection: a query typed as a formula is written as text, numbers stay numbers."""
    from kvdesk.core.files import csv_cell

    assert csv_cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert [csv_cell(v) for v in ("+1", "-word", "@sum", "\tx", "plain", 3, -2.5)] == [
        "'+1", "'-word", "'@sum", "'\tx", "plain", 3, -2.5,
    ]  # fmt: skip
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.pilot.configure(enabled=True)
        session = kb.pilot.start_session()
        kb.pilot.record_search(session, '=HYPERLINK("http://evil","click")', kb.search("x"))
        out = tmp_path / "log.csv"
        kb.pilot.export(out)
    rows = list(csv.reader(out.read_text(encoding="utf-8").splitlines()))
    queries = [r[rows[0].index("query")] for r in rows[1:] if r[0] == "query"]
    assert queries == ['\'=HYPERLINK("http://evil","click")']


# -- zero-result searches: the dense floor alone is no match -----------------------------------


def _ids(kb: KnowledgeBase) -> list[int]:
    return [int(r[0]) for r in kb._vault.conn.execute("SELECT id FROM value ORDER BY id")]


DENSE = Explanation(dense=DenseExplanation(0, 0.2, 0.2, 0, 1, 0, 10, "text"))
LEXICAL = Explanation(lexical=LexicalExplanation(0.4, 3.1, ()), dense=DENSE.dense)
TAGGED = Explanation(tags=TagExplanation(0.3, ("finance",)), dense=DENSE.dense)


def _result(kb: KnowledgeBase, explanations: list[Explanation], confident: bool) -> SearchResult:
    hits = tuple(
        Hit(vid, kb.values.get(vid).identifier, None, "t", "text/plain", 0.2, 0.25, "", exp)
        for vid, exp in zip(_ids(kb)[: len(explanations)], explanations, strict=False)
    )
    return SearchResult("q", "hybrid", "cpu", confident, {}, hits, 1.0)


def test_dense_floor_only_is_zero_result(kb: KnowledgeBase) -> None:
    log = PilotLog(kb._vault)
    log.configure(enabled=True)
    sid = log.start_session()
    # 1: only dense neighbours, not confident          -> zero-result
    log.record_search(sid, "qqq zzz", _result(kb, [DENSE, DENSE, DENSE], False))
    # 2: a lexical match among the hits, not confident   -> matched, no confident match
    log.record_search(sid, "printer", _result(kb, [DENSE, LEXICAL], False))
    # 3: a tag match                                      -> matched, no confident match
    log.record_search(sid, "finance", _result(kb, [TAGGED, DENSE], False))
    # 4: dense only but confident (a good cosine)         -> matched, confident
    log.record_search(sid, "near paraphrase", _result(kb, [DENSE], True))
    # 5: nothing shown at all                             -> zero-result
    log.record_search(sid, "nothing", _result(kb, [], False))
    session = log.session(sid)
    assert [q.zero_result for q in session.queries] == [True, False, False, False, True]
    assert [q.lexical_match for q in session.queries] == [False, True, False, False, False]
    assert [q.tag_match for q in session.queries] == [False, False, True, False, False]
    m = compute_metrics([session], now=dt.datetime.now(dt.UTC), stale_minutes=30)
    assert m.searches == 5
    assert m.zero_result_rate == 2 / 5  # searches 1 and 5
    assert m.no_confident_rate == 2 / 5  # searches 2 and 3 (disjoint from zero-result)
    exported = session.to_json()["queries"]
    assert [q["zero_result"] for q in exported] == [True, False, False, False, True]
    assert [q["confident"] for q in exported] == [False, False, False, True, False]


def test_flags_and_rows_recorded_before_them(kb: KnowledgeBase) -> None:
    assert search_matches(_result(kb, [DENSE], False)) == (False, False)
    assert search_matches(_result(kb, [LEXICAL, TAGGED], True)) == (True, True)
    log = PilotLog(kb._vault)
    log.configure(enabled=True)
    sid = log.start_session()
    qid = log.record_search(sid, "old", _result(kb, [DENSE, DENSE], False))
    qid2 = log.record_search(sid, "old empty", _result(kb, [], False))
    with kb._vault.transaction() as tx:  # what an older kvdesk wrote: no match columns
        tx.execute(
            "UPDATE pilot_query SET lexical_match = NULL, tag_match = NULL WHERE id IN (?, ?)",
            (qid, qid2),
        )
    old, old_empty = log.session(sid).queries
    assert old.lexical_match is None and not old.zero_result  # 2 hits shown: not zero-result
    assert old_empty.zero_result
