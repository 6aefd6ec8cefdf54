"""The golden-set evaluation protocol: two dense key sets side by side without switching the
active one, and for BEIR sets a retrieved document whose id equals the query id is dropped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.core.errors import NotFoundError
from kvdesk.core.golden.evaluation import ndcg_at
from kvdesk.core.golden.protocol import evaluate
from kvdesk.core.knowledge_base import KnowledgeBase
from tests.core.test_golden_store import write_beir
from tests.tiny_model import write_model_folder

SELF_HIT_CORPUS = {
    "d1": "The printer on the third floor jams when printing double-sided reports.",
    "q1": "printer jams printer jams",  # a corpus document that is also the query (same id)
    "d3": "Coffee machine maintenance is scheduled every Friday afternoon.",
}


def write_self_hit_beir(folder: Path) -> Path:
    folder.mkdir()
    (folder / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": k, "title": "", "text": v}) + "\n"
            for k, v in SELF_HIT_CORPUS.items()
        ),
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
def self_hit_kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    base.import_records(write_self_hit_beir(tmp_path / "beir") / "corpus.jsonl")
    yield base
    base.close()


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tinybeir")


@pytest.fixture
def kb(tmp_path: Path, beir: Path) -> Iterator[KnowledgeBase]:
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    base.import_records(beir / "corpus.jsonl")
    yield base
    base.close()


def test_beir_self_hit_is_dropped(self_hit_kb: KnowledgeBase, tmp_path: Path) -> None:
    kb = self_hit_kb
    kb.rekey(write_model_folder(tmp_path / "tiny"))  # a dense key set (lexical mode ignores it)
    store = kb.golden
    store.import_beir("selfhit", tmp_path / "beir")
    # Without the rule the query's own document ranks first and d1 second: MRR 0.5.
    result = evaluate(kb.golden, kb._vault, kb._keys, "selfhit", mode="lexical")
    (scores,) = result.results
    assert scores.mrr10 == 1.0 and scores.ndcg10 == 1.0
    # A hand-made set is keyed by text: nothing is dropped there.
    store.add_case("manual", "printer jams", "d1")
    (manual,) = evaluate(kb.golden, kb._vault, kb._keys, "manual", mode="lexical").results
    assert manual.mrr10 == 0.5


@pytest.mark.model
def test_two_dense_key_sets_side_by_side(kb: KnowledgeBase, beir: Path, tmp_path: Path) -> None:
    kb.build_dense_keys()
    default_set = kb._keys.active_key_set()
    assert default_set is not None
    tiny_set = kb.rekey(write_model_folder(tmp_path / "tiny"))  # the tiny set is now active
    kb.golden.import_beir("tiny", beir)

    evaluation = evaluate(kb.golden, kb._vault, kb._keys, "tiny", mode="dense")
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
    assert kb._keys.active_key_set() == tiny_set

    # Per-query nDCG equals the evaluation module's on a run made by hand with that key set.
    from kvdesk.core.search.retrieval import Retriever

    pinned = Retriever(kb._vault, kb._keys, dense_key_set=tiny_set)
    ranked = [f"#{v}" for v, _s in pinned.rank_ids("paper stuck in the copier", mode="dense")]
    expected = ndcg_at(ranked, {f"#{kb.values.resolve('d1')}": 1})
    assert active.per_query["q1"] == pytest.approx(expected)

    data = evaluation.to_json()
    assert [k["id"] for k in data["key_sets"]] == [tiny_set.id, default_set.id]
    assert set(data["key_sets"][0]) >= {"ndcg@10", "recall@100", "mrr@10", "active", "model"}
    assert len(data["per_query"]) == 5

    # Explicit order: the default set as baseline; lexical mode ignores dense keys: all ties.
    flipped = evaluate(
        kb.golden, kb._vault, kb._keys, "tiny", [default_set.id, tiny_set.id], mode="lexical"
    )
    assert flipped.results[0].key_set.id == default_set.id
    (same,) = flipped.comparisons
    assert (same.wins, same.losses, same.ties) == (0, 0, 5)
    with pytest.raises(NotFoundError):
        evaluate(kb.golden, kb._vault, kb._keys, "tiny", [999])
