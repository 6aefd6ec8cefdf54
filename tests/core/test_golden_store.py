"""The golden-set store: BEIR import verified against the vault, cases by hand and from the
pilot log (a pilot case takes the session's last query)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.core.errors import KvdeskError, NotFoundError
from kvdesk.core.knowledge_base import KnowledgeBase

CORPUS = {
    "d1": "The printer on the third floor jams when printing double-sided reports.",
    "d2": "Employees book train tickets two weeks before a business trip.",
    "d3": "Use a password manager and never reuse passwords.",
    "d4": "Coffee machine maintenance is scheduled every Friday afternoon.",
    "d5": "The office is closed between Christmas and New Year.",
}
QUERIES = {
    "q1": ("paper stuck in the copier", {"d1": 1}),
    "q2": ("rail travel booking rules", {"d2": 1}),
    "q3": ("how to keep login credentials safe", {"d3": 1}),
    "q4": ("when is the espresso maker serviced", {"d4": 1}),
    "q5": ("holiday closure dates", {"d5": 1, "ghost-1": 1}),
    "q6": ("a question about a missing document", {"ghost-2": 1}),
}


def write_beir(folder: Path) -> Path:
    folder.mkdir()
    (folder / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "title": "", "text": v}) for k, v in CORPUS.items()),
        encoding="utf-8",
    )
    (folder / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "text": t}) for k, (t, _j) in QUERIES.items()),
        encoding="utf-8",
    )
    (folder / "qrels").mkdir()
    lines = ["query-id\tcorpus-id\tscore"] + [
        f"{q}\t{d}\t{r}" for q, (_t, judged) in QUERIES.items() for d, r in judged.items()
    ]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tinybeir")


@pytest.fixture
def kb(tmp_path: Path, beir: Path) -> Iterator[KnowledgeBase]:
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    base.import_records(beir / "corpus.jsonl")
    yield base
    base.close()


def test_beir_import_stores_only_judgements_the_vault_can_answer(
    kb: KnowledgeBase, beir: Path
) -> None:
    store = kb.golden
    report = store.import_beir("tiny", beir)
    assert report.queries == 5 and report.judgements == 5
    assert report.unknown_docs == 2 and report.unknown_examples == ("ghost-1", "ghost-2")
    assert report.skipped_queries == 1  # q6 judged only a document the vault lacks
    stored = {q.key: q for q in store.queries("tiny")}
    assert set(stored) == {"q1", "q2", "q3", "q4", "q5"}
    assert stored["q5"].judgements == {kb.values.resolve("d5"): 1}
    assert stored["q1"].text == "paper stuck in the copier"
    (listed,) = store.list_sets()
    assert (listed.name, listed.queries, listed.judgements) == ("tiny", 5, 5)
    assert listed.source == "beir:tinybeir/test"
    with pytest.raises(KvdeskError, match="exists"):
        store.import_beir("tiny", beir)


def test_beir_import_into_a_vault_without_the_corpus_fails(tmp_path: Path, beir: Path) -> None:
    with KnowledgeBase.open(tmp_path / "empty.kvdb") as empty:
        with pytest.raises(KvdeskError, match="import its corpus first"):
            empty.golden.import_beir("tiny", beir)
        assert empty.golden.list_sets() == []  # rolled back, no empty set left


def test_cases_by_hand_and_from_the_pilot_log(kb: KnowledgeBase) -> None:
    store = kb.golden
    log = kb.pilot
    log.configure(enabled=True)
    sid = log.start_session()
    log.record_search(sid, "printer", kb.search("printer", mode="lexical"))
    log.record_search(sid, "Copier  Paper stuck", kb.search("copier paper", mode="lexical"))
    log.mark(sid, "notfound")
    case = store.add_pilot_case("fails", sid, "d1")  # the session's last query
    assert (case.queries, case.judgements, case.source) == (1, 1, "pilot")
    (query,) = store.queries("fails")
    assert query.text == "Copier  Paper stuck" and query.key == "copier paper stuck"
    # The same query again (other spelling) adds a second relevant document to the same case.
    store.add_case("fails", "copier paper STUCK", kb.values.get("d4").identifier)
    (query,) = store.queries("fails")
    assert query.judgements == {kb.values.resolve("d1"): 1, kb.values.resolve("d4"): 1}
    with pytest.raises(NotFoundError):
        store.add_case("fails", "x", "no-such-doc")
    with pytest.raises(NotFoundError):
        store.queries("nope")
    store.delete_set("fails")
    assert store.list_sets() == []


def test_pilot_case_takes_the_last_query(kb: KnowledgeBase) -> None:
    log = kb.pilot
    log.configure(enabled=True)
    sid = log.start_session()
    log.record_search(sid, "copier", kb.search("copier", mode="lexical"))
    log.record_search(sid, "printer jams floor", kb.search("printer jams floor", mode="lexical"))
    log.mark(sid, "notfound")
    store = kb.golden
    store.add_pilot_case("fails", sid, "d1")
    assert [q.text for q in store.queries("fails")] == ["printer jams floor"]
    store.add_pilot_case("fails", sid, "d3", query="coffee")  # an explicit query wins
    assert [q.text for q in store.queries("fails")] == ["printer jams floor", "coffee"]
    with pytest.raises(NotFoundError, match="no pilot session"):
        store.add_pilot_case("fails", 99, "d1")
    empty = log.start_session()
    with pytest.raises(NotFoundError, match="has no query"):
        store.add_pilot_case("fails", empty, "d1")
