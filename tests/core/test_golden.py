"""Golden sets: BEIR import verified against the vault, cases from the pilot log, and two dense
key sets evaluated side by side without switching the active one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.core.errors import KvdeskError, NotFoundError
from kvdesk.core.golden.evaluation import ndcg_at
from kvdesk.core.golden.sets import GoldenStore, evaluate
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.pilot.log import PilotLog
from tests.tiny_model import write_model_folder

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
    store = GoldenStore(kb.vault)
    report = store.import_beir("tiny", beir)
    assert report.queries == 5 and report.judgements == 5
    assert report.unknown_docs == 2 and report.unknown_examples == ("ghost-1", "ghost-2")
    assert report.skipped_queries == 1  # q6 judged only a document the vault lacks
    stored = {q.key: q for q in store.queries("tiny")}
    assert set(stored) == {"q1", "q2", "q3", "q4", "q5"}
    assert stored["q5"].judgements == {kb.vault.resolve("d5"): 1}
    assert stored["q1"].text == "paper stuck in the copier"
    (listed,) = store.list_sets()
    assert (listed.name, listed.queries, listed.judgements) == ("tiny", 5, 5)
    assert listed.source == "beir:tinybeir/test"
    with pytest.raises(KvdeskError, match="exists"):
        store.import_beir("tiny", beir)


def test_beir_import_into_a_vault_without_the_corpus_fails(tmp_path: Path, beir: Path) -> None:
    with KnowledgeBase.open(tmp_path / "empty.kvdb") as empty:
        with pytest.raises(KvdeskError, match="import its corpus first"):
            GoldenStore(empty.vault).import_beir("tiny", beir)
        assert GoldenStore(empty.vault).list_sets() == []  # rolled back, no empty set left


def test_cases_by_hand_and_from_the_pilot_log(kb: KnowledgeBase) -> None:
    store = GoldenStore(kb.vault)
    log = PilotLog(kb.vault)
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
    store.add_case("fails", "copier paper STUCK", kb.vault.get("d4").identifier)
    (query,) = store.queries("fails")
    assert query.judgements == {kb.vault.resolve("d1"): 1, kb.vault.resolve("d4"): 1}
    with pytest.raises(NotFoundError):
        store.add_case("fails", "x", "no-such-doc")
    with pytest.raises(NotFoundError):
        store.queries("nope")
    store.delete_set("fails")
    assert store.list_sets() == []


@pytest.mark.model
def test_two_dense_key_sets_side_by_side(kb: KnowledgeBase, beir: Path, tmp_path: Path) -> None:
    kb.build_dense_keys()
    default_set = kb.keys.active_key_set()
    assert default_set is not None
    tiny_set = kb.rekey(write_model_folder(tmp_path / "tiny"))  # the tiny set is now active
    GoldenStore(kb.vault).import_beir("tiny", beir)

    evaluation = evaluate(kb.vault, kb.keys, "tiny", mode="dense")
    active, other = evaluation.results
    assert (active.key_set.id, other.key_set.id) == (tiny_set.id, default_set.id)
    assert active.active and not other.active and other.key_set.state == "retired"
    assert other.keyed_values == other.total_values == 5
    # The real model answers these paraphrases; the random tiny one cannot do as well.
    assert other.mrr10 == 1.0 and other.ndcg10 == 1.0 and other.recall100 == 1.0
    assert active.ndcg10 < other.ndcg10
    (cmp,) = evaluation.comparisons
    assert (cmp.baseline, cmp.candidate) == (tiny_set.id, default_set.id)
    assert cmp.wins == sum(1 for v in active.per_query.values() if v < 1.0) >= 1
    assert cmp.losses == 0 and cmp.wins + cmp.ties == 5
    # Evaluating never switches keys.
    assert kb.keys.active_key_set() == tiny_set

    # Per-query nDCG equals the evaluation module's on a run made by hand with that key set.
    from kvdesk.core.search.retrieval import Retriever

    pinned = Retriever(kb.vault, kb.keys, dense_key_set=tiny_set)
    ranked = [f"#{v}" for v, _s in pinned.rank_ids("paper stuck in the copier", mode="dense")]
    expected = ndcg_at(ranked, {f"#{kb.vault.resolve('d1')}": 1})
    assert active.per_query["q1"] == pytest.approx(expected)

    data = evaluation.to_json()
    assert [k["id"] for k in data["key_sets"]] == [tiny_set.id, default_set.id]
    assert set(data["key_sets"][0]) >= {"ndcg@10", "recall@100", "mrr@10", "active", "model"}
    assert len(data["per_query"]) == 5

    # Explicit order: the default set as baseline; lexical mode ignores dense keys: all ties.
    flipped = evaluate(kb.vault, kb.keys, "tiny", [default_set.id, tiny_set.id], mode="lexical")
    assert flipped.results[0].key_set.id == default_set.id
    (same,) = flipped.comparisons
    assert (same.wins, same.losses, same.ties) == (0, 0, 5)
    with pytest.raises(NotFoundError):
        evaluate(kb.vault, kb.keys, "tiny", [999])
