"""Retrieval regressions: exclusions vs tag keys, readiness in every mode, ids, CJK, confidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from tests.tiny_model import write_model_folder

SAMPLES = Path(__file__).resolve().parents[2] / "kvdesk" / "resources" / "samples"


@pytest.fixture(scope="module")
def tiny_kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    root = tmp_path_factory.mktemp("fixdocs")
    model = write_model_folder(root / "model")
    docs = root / "docs"
    docs.mkdir()
    (docs / "plain.txt").write_text("printer notes for the second floor", encoding="utf-8")
    (docs / "jam.txt").write_text("printer jam on the third floor", encoding="utf-8")
    (docs / "phrase.txt").write_text("来月から新しいオフィスで働きます。", encoding="utf-8")
    (docs / "apart.txt").write_text("新しい机を買いました。オフィスは狭いです。", encoding="utf-8")
    records = root / "records.jsonl"
    records.write_text(
        json.dumps({"_id": "INV-42", "title": "quarterly figures", "text": "numbers"}) + "\n",
        encoding="utf-8",
    )
    kb = KnowledgeBase.open(root / "v.kvdb", model=model)
    kb.import_paths([docs])
    kb.import_records(records)
    kb.build_dense_keys()
    for record in kb.values.list_values():
        if record.source_path and record.source_path.endswith(("plain.txt", "jam.txt")):
            kb.set_tag(record.identifier, "printer")
    yield kb  # type: ignore[misc]
    kb.close()


def _names(result: object) -> set[str]:
    return {(h.source_path or h.external_id or "").rsplit("/", 1)[-1] for h in result.hits}  # type: ignore[attr-defined]


def test_exclusions_hold_for_tag_matched_values(tiny_kb: KnowledgeBase) -> None:
    both = tiny_kb.search("printer", k=10)
    assert {"plain.txt", "jam.txt"} <= _names(both)
    result = tiny_kb.search("printer -jam", k=10)
    assert "plain.txt" in _names(result)
    assert "jam.txt" not in _names(result)
    result = tiny_kb.search('printer -"third floor"', k=10)
    assert "jam.txt" not in _names(result) and "plain.txt" in _names(result)


def test_allowed_values_drop_exactly_the_excluded(tiny_kb: KnowledgeBase) -> None:
    from kvdesk.core.search.query import parse_query

    allowed = tiny_kb._retriever._allowed(parse_query("printer -jam"))
    assert allowed is not None and len(allowed) == tiny_kb.values.count() - 1
    # A phrase exclusion drops the phrase, not every value holding one of its words.
    allowed = tiny_kb._retriever._allowed(parse_query('printer -"third floor"'))
    assert allowed is not None and len(allowed) == tiny_kb.values.count() - 1


def test_lexical_mode_reports_real_readiness_and_provider(tiny_kb: KnowledgeBase) -> None:
    result = tiny_kb.search("printer", mode="lexical")
    assert result.ready == {"lexical": True, "dense": True, "tags": True}
    assert result.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")


def test_ids_are_case_insensitive(tiny_kb: KnowledgeBase) -> None:
    for query in ("inv-42", "INV-42", "Inv-42"):
        result = tiny_kb.search(query, mode="lexical")
        assert result.hits and result.hits[0].external_id == "INV-42", query
    ident = tiny_kb.search("printer", mode="lexical").hits[0].identifier
    assert tiny_kb.search(ident.lower(), mode="lexical").hits[0].identifier == ident


def test_quoted_cjk_phrase_is_enforced(tiny_kb: KnowledgeBase) -> None:
    words = _names(tiny_kb.search("新しいオフィス", mode="lexical"))
    assert {"phrase.txt", "apart.txt"} <= words
    phrase = _names(tiny_kb.search('"新しいオフィス"', mode="lexical"))
    assert phrase == {"phrase.txt"}


def test_stopword_only_query_is_not_confident(tiny_kb: KnowledgeBase) -> None:
    for mode in ("lexical", "hybrid"):
        assert not tiny_kb.search("the AND OR (", mode=mode).confident
    assert tiny_kb.search("printer jam", mode="lexical").confident


def test_invalid_utf8_query_does_not_crash(tiny_kb: KnowledgeBase) -> None:
    raw = b"printer\xff".decode("utf-8", "surrogateescape")
    result = tiny_kb.search(raw, k=3)
    assert result.hits
    json.dumps(result.to_json(), ensure_ascii=False).encode("utf-8")


@pytest.fixture(scope="module")
def samples_kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    kb = KnowledgeBase.open(tmp_path_factory.mktemp("samples") / "v.kvdb")
    kb.import_paths([SAMPLES])
    yield kb  # type: ignore[misc]
    kb.close()


def test_japanese_query_is_confident_lexically(samples_kb: KnowledgeBase) -> None:
    result = samples_kb.search("大阪オフィス 移転", mode="lexical")
    assert result.hits[0].source_path.endswith("office-move-memo-ja.txt")  # type: ignore[union-attr]
    assert result.confident
    assert not samples_kb.search("xyzzy qwerty", mode="lexical").confident


@pytest.mark.model
def test_japanese_query_is_confident_hybrid(samples_kb: KnowledgeBase) -> None:
    samples_kb.build_dense_keys()
    result = samples_kb.search("大阪オフィス 移転")
    assert result.hits[0].source_path.endswith("office-move-memo-ja.txt")  # type: ignore[union-attr]
    assert result.confident
    assert not samples_kb.search("xyzzy qwerty").confident
    assert not samples_kb.search("AND OR (").confident
