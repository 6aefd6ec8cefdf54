"""The tag evaluation protocol (``kvdesk.core.tags.evaluate``): the split, the scores, and a
run that never leaks held-out tags."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.tags.evaluate import evaluate, score_ranking, split_corpus
from tests.tag_corpus import make_corpus


def test_split_and_scores_follow_the_protocol() -> None:
    rows = [{"_id": str(i)} for i in range(10)]
    curated, held = split_corpus(rows, seed=7)
    shuffled = list(rows)
    random.Random(7).shuffle(shuffled)
    assert curated == shuffled[:8] and held == shuffled[8:]
    p3, r5, f1 = score_ranking(
        [["a", "b", "c", "d"], ["x"]], [{"a", "d"}, {"y"}], [{"a", "b"}, set()]
    )
    assert p3 == pytest.approx((1 / 3 + 0) / 2)
    assert r5 == pytest.approx((1.0 + 0) / 2)
    assert f1 == pytest.approx(2 * 1 / (2 + 3))


def test_evaluate_runs_the_protocol_without_leaking_held_out_tags(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "c.jsonl", per_topic=25, untagged=0)
    with KnowledgeBase.open(tmp_path / "v.kvdb") as base:
        report = evaluate(base, corpus, seed=7, dense=False)
        _curated, held = split_corpus([json.loads(x) for x in corpus.read_text().splitlines()])
        assert report.held_out == len(held) == 20
        for row in held:  # held-out documents lost their tags in the vault
            assert base.values.get(str(row["_id"])).tags == ()
        assert report.p_at_3 > 0.3  # one true tag per doc: 1/3 is the ceiling
        assert report.r_at_5 > 0.9
        assert report.f1 > 0.8
        assert report.suggest_ms_p50 < 50
        again = evaluate(base, corpus, seed=8, dense=False)  # a reused vault is re-split
        assert again.held_out == 20
