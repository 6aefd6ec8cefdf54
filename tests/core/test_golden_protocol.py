"""Golden sets follow the shared eval protocol: a pilot case takes the session's last query,
and for BEIR sets a retrieved document whose id equals the query id is dropped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.core.errors import NotFoundError
from kvdesk.core.golden.sets import GoldenStore, evaluate
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.pilot.log import PilotLog
from tests.tiny_model import write_model_folder

CORPUS = {
    "d1": "The printer on the third floor jams when printing double-sided reports.",
    "q1": "printer jams printer jams",  # a corpus document that is also the query (same id)
    "d3": "Coffee machine maintenance is scheduled every Friday afternoon.",
}


def write_beir(folder: Path) -> Path:
    folder.mkdir()
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in CORPUS.items()),
        encoding="utf-8",
    )
    (folder / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "printer jams"}) + "\n", encoding="utf-8"
    )
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\n", encoding="utf-8"
    )
    return folder


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    base.import_records(write_beir(tmp_path / "beir") / "corpus.jsonl")
    yield base
    base.close()


def test_beir_self_hit_is_dropped(kb: KnowledgeBase, tmp_path: Path) -> None:
    kb.rekey(write_model_folder(tmp_path / "tiny"))  # a dense key set (lexical mode ignores it)
    store = GoldenStore(kb.vault)
    store.import_beir("selfhit", tmp_path / "beir")
    # Without the rule the query's own document ranks first and d1 second: MRR 0.5.
    result = evaluate(kb.vault, kb.keys, "selfhit", mode="lexical")
    (scores,) = result.results
    assert scores.mrr10 == 1.0 and scores.ndcg10 == 1.0
    # A hand-made set is keyed by text: nothing is dropped there.
    store.add_case("manual", "printer jams", "d1")
    (manual,) = evaluate(kb.vault, kb.keys, "manual", mode="lexical").results
    assert manual.mrr10 == 0.5


def test_pilot_case_takes_the_last_query(kb: KnowledgeBase) -> None:
    log = PilotLog(kb.vault)
    log.configure(enabled=True)
    sid = log.start_session()
    log.record_search(sid, "copier", kb.search("copier", mode="lexical"))
    log.record_search(sid, "printer jams floor", kb.search("printer jams floor", mode="lexical"))
    log.mark(sid, "notfound")
    store = GoldenStore(kb.vault)
    store.add_pilot_case("fails", sid, "d1")
    assert [q.text for q in store.queries("fails")] == ["printer jams floor"]
    store.add_pilot_case("fails", sid, "d3", query="coffee")  # an explicit query wins
    assert [q.text for q in store.queries("fails")] == ["printer jams floor", "coffee"]
    with pytest.raises(NotFoundError, match="no pilot session"):
        store.add_pilot_case("fails", 99, "d1")
    empty = log.start_session()
    with pytest.raises(NotFoundError, match="has no query"):
        store.add_pilot_case("fails", empty, "d1")
