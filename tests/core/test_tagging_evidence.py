"""Evidence terms are topic words, never English function words; ``k`` must be at least 1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.core.errors import KvdeskError
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.tags.index import _STOP, tokens

FILLER = "of in to on at by it is as be was were from with into onto upon about"


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    rows = []
    for i in range(8):
        tag = ["finance"] if i < 7 else []
        rows.append(
            {"_id": f"f{i}", "title": f"f{i}", "text": f"invoice ledger {FILLER}", "tags": tag}
        )
    for i in range(8):
        rows.append({"_id": f"c{i}", "title": f"c{i}", "text": "oven flour", "tags": ["cooking"]})
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    base.import_records(corpus)
    yield base
    base.close()


def test_function_words_are_not_tokens() -> None:
    assert tokens(f"The invoice {FILLER} and the ledger") == {"invoice", "ledger"}
    for word in "of in to the and but however therefore should would their whom".split():
        assert word in _STOP


def test_evidence_terms_are_meaningful(kb: KnowledgeBase) -> None:
    suggester = kb.tags.suggester(use_dense=False)
    (top, *_rest) = suggester.suggest(kb.values.resolve("f7"), k=3)
    assert top.tag == "finance"
    (terms,) = [e for e in top.evidence if e.startswith("terms: ")]
    words = terms.removeprefix("terms: ").split(", ")
    assert set(words) <= {"invoice", "ledger"}, words


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_is_an_error(kb: KnowledgeBase, k: int) -> None:
    with pytest.raises(KvdeskError, match="at least one"):
        kb.tags.suggester(use_dense=False).suggest(kb.values.resolve("f7"), k=k)
