"""Zero-result searches in hybrid/dense mode: dense keys always return the k nearest documents,
so a search counts as zero-result when no shown hit matched a query key beyond that floor
(no lexical match, no tag match, no confident match)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.pilot.log import PilotLog, search_matches
from kvdesk.core.pilot.metrics import compute_metrics
from kvdesk.core.search.retrieval import (
    DenseExplanation,
    Explanation,
    Hit,
    LexicalExplanation,
    SearchResult,
    TagExplanation,
)


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    records = tmp_path / "docs.jsonl"
    texts = ["printer on floor three", "travel policy", "vpn setup guide", "budget 2024"]
    records.write_text(
        "".join(json.dumps({"_id": f"d{i}", "title": f"Doc {i}", "text": t}) + "\n"
                for i, t in enumerate(texts)),
        encoding="utf-8",
    )  # fmt: skip
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    base.import_records(records)
    yield base
    base.close()


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
