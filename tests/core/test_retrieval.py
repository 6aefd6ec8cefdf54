"""Keys and hybrid retrieval end to end: a real vault, real tantivy, the real default model;
exclusions vs tag keys, readiness in every mode, ids, CJK phrases and confidence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kvdesk.core.keys.manager import KeyManager
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.paths import keys_dir_for
from tests.tiny_model import write_model_folder

SAMPLES = Path(__file__).resolve().parents[2] / "kvdesk" / "resources" / "samples"
DOCS = {
    "printer.txt": "The printer on the third floor jams when printing double-sided reports.",
    "travel.md": "# Travel policy\n\nEmployees book train tickets two weeks before a trip.",
    "budget.txt": "Quarterly budget: marketing spend rose while travel costs fell sharply.",
    "holiday.txt": "The office is closed between Christmas and New Year; plan leave early.",
    "security.md": "# Password rules\n\nUse a password manager and never reuse passwords.",
    "tokyo.txt": "東京支社の会議は毎週月曜日に開催されます。議事録は共有フォルダにあります。",
    "coffee.txt": "Coffee machine maintenance is scheduled every Friday afternoon.",
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    root = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    base = KnowledgeBase.open(tmp_path_factory.mktemp("vault") / "v.kvdb")
    report = base.import_paths([root])
    assert len(report.imported) == len(DOCS)
    base.build_dense_keys()
    yield base  # type: ignore[misc]
    base.close()


def _ident(kb: KnowledgeBase, name: str) -> str:
    for record in kb.values.list_values():
        if record.source_path and record.source_path.endswith(name):
            return record.identifier
    raise AssertionError(name)


@pytest.mark.model
def test_hybrid_contributions_add_up_to_the_score(kb: KnowledgeBase) -> None:
    result = kb.search("printer jams double-sided", k=5)
    assert result.mode == "hybrid" and result.ready["dense"]
    assert result.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    top = result.hits[0]
    assert top.identifier == _ident(kb, "printer.txt")
    assert result.confident
    for hit in result.hits:
        parts = hit.explanation.contributions()
        assert sum(parts.values()) == pytest.approx(hit.score, abs=1e-9)
        lex = hit.explanation.lexical
        assert lex is not None
        if lex.terms:
            assert sum(t.score for t in lex.terms) == pytest.approx(lex.score, rel=1e-5)
    dense = top.explanation.dense
    assert dense is not None and dense.cosine > 0.3 and dense.passage_rank == 1
    assert "printer" in dense.passage_text
    assert "<b>" in top.snippet_html
    assert sum(h.weight for h in result.hits) <= 1.0 + 1e-9
    assert result.hits[0].weight >= result.hits[-1].weight


@pytest.mark.model
def test_dense_finds_meaning_without_shared_words(kb: KnowledgeBase) -> None:
    result = kb.search("rail journey booking rules", k=3, mode="dense")
    assert result.hits[0].identifier == _ident(kb, "travel.md")
    assert result.hits[0].explanation.lexical is None


def test_lexical_mode_is_raw_bm25(kb: KnowledgeBase) -> None:
    result = kb.search("coffee", mode="lexical")
    hit = result.hits[0]
    assert hit.identifier == _ident(kb, "coffee.txt")
    assert hit.explanation.lexical is not None
    assert hit.score == pytest.approx(hit.explanation.lexical.bm25, rel=1e-6)
    assert result.ready["lexical"]


def test_japanese_query_uses_bigrams(kb: KnowledgeBase) -> None:
    result = kb.search("議事録", mode="lexical")
    assert [h.identifier for h in result.hits] == [_ident(kb, "tokyo.txt")]


def test_gibberish_is_not_confident(kb: KnowledgeBase) -> None:
    result = kb.search("zqxwv plorkt", k=5)
    assert not result.confident


@pytest.mark.parametrize(
    "query", ['"unbalanced', "tag:", "before:notadate", "((", "AND OR", "-", ""]
)
def test_malformed_queries_never_raise(kb: KnowledgeBase, query: str) -> None:
    result = kb.search(query, k=3)
    assert isinstance(result.hits, tuple)


def test_tags_are_keys(kb: KnowledgeBase) -> None:
    ident = _ident(kb, "holiday.txt")
    kb.set_tag(ident, "hr::leave")
    result = kb.search("leave", k=5)
    hit = next(h for h in result.hits if h.identifier == ident)
    assert hit.explanation.tags is not None and hit.explanation.tags.tags == ("hr::leave",)
    assert hit.explanation.tags.score > 0
    filtered = kb.search("tag:hr office", k=5)
    assert [h.identifier for h in filtered.hits] == [ident]
    kb.remove_tag(ident, "hr::leave")
    assert kb.search("tag:hr office", k=5).hits == ()


def test_search_works_before_dense_keys_exist(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("minutes of the budget meeting")
    with KnowledgeBase.open(tmp_path / "v.kvdb") as fresh:
        fresh.import_paths([tmp_path / "a.txt"])
        result = fresh.search("budget")
        assert result.ready == {"lexical": True, "dense": False, "tags": True}
        assert result.hits[0].title == "a"


def test_lost_lexical_index_is_rebuilt_from_the_vault(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("archive boxes move to the basement")
    vault = tmp_path / "v.kvdb"
    with KnowledgeBase.open(vault) as first:
        first.import_paths([tmp_path / "a.txt"])
    shutil.rmtree(keys_dir_for(vault))
    with KnowledgeBase.open(vault) as second:
        assert second.search("basement", mode="lexical").hits[0].title == "a"


def test_rekey_switches_key_sets_and_leaves_values_untouched(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    model_dir = write_model_folder(tmp_path / "tiny")
    digest = kb.check().values_digest
    old = kb._keys.active_key_set()
    new = kb.rekey(model_dir)
    assert new.id != (old.id if old else None) and new.state == "active"
    assert kb._keys.active_key_set() == new
    assert kb.dense_status().ready
    assert kb.check().values_digest == digest
    assert kb.search("budget", k=3).hits
    states = {k.id: k.state for k in kb._keys.key_sets()}
    assert old is not None and states[old.id] == "retired"
    # switch back so the module's other tests keep the real model
    kb.rekey("default")


def test_dense_build_resumes_after_interruption(tmp_path: Path) -> None:
    from kvdesk.core.errors import Cancelled
    from kvdesk.core.progress import CancelToken, Progress

    for i in range(6):
        (tmp_path / f"d{i}.txt").write_text(f"note number {i} about filing cabinets")
    model_dir = write_model_folder(tmp_path / "tiny")
    with KnowledgeBase.open(tmp_path / "v.kvdb", model=model_dir) as base:
        base.import_paths([tmp_path], limits=None)
        token = CancelToken()

        def stop_after_first(p: Progress) -> None:
            if p.done >= 2:
                token.cancel()

        with pytest.raises(Cancelled):
            base._keys.build_dense(progress=stop_after_first, cancel=token, batch_values=2)
        status = base.dense_status()
        assert 0 < status.keyed_values < status.total_values
        assert base.build_dense_keys() == status.total_values - status.keyed_values
        assert base.dense_status().ready
    assert isinstance(KeyManager, type)


# -- a tiny model: exclusions, readiness, ids, CJK phrases, confidence --------------------------


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


def test_function_words_earn_no_bm25_credit(kb: KnowledgeBase) -> None:
    """Office users type questions: "how", "do", "I" must not score (issue: "how" outweighed
    "days"); a query of nothing but function words still searches them."""
    result = kb.search("how do I book a train ticket for a trip", mode="lexical")
    assert result.hits and result.hits[0].title.lower().startswith("travel")
    terms = {t.term.lower() for t in result.hits[0].explanation.lexical.terms}
    assert terms and not terms & {"how", "do", "i", "a", "for"}
    only = kb.search("where is the", mode="lexical")
    assert all(
        {t.term.lower() for t in h.explanation.lexical.terms} <= {"where", "is", "the"}
        for h in only.hits
    )
    assert not only.confident


def test_weights_mean_one_thing_whatever_k_and_agree_with_the_banner(kb: KnowledgeBase) -> None:
    """A hit's weight does not change with -k; "no confident match" never sits above a bar
    saying more than half; a nonsense query with one matching word is not confident."""
    five = kb.search("password manager rules", k=5)
    ten = kb.search("password manager rules", k=10)
    assert five.hits[0].identifier == ten.hits[0].identifier
    assert five.hits[0].weight == pytest.approx(ten.hits[0].weight)
    assert ten.confident and ten.hits[0].weight >= 0.5
    nonsense = kb.search("purple elephant lasagna coffee recipe", k=10)
    assert not nonsense.confident
    assert all(h.weight <= 0.5 for h in nonsense.hits)
    assert sum(h.weight for h in ten.hits) <= 1.0 + 1e-9


def test_a_hit_with_no_contribution_from_any_key_is_not_a_hit(kb: KnowledgeBase) -> None:
    result = kb.search("printer type:text", k=10)
    assert result.hits and all(h.score > 0 for h in result.hits)


def test_a_value_whose_only_text_is_its_name_does_not_compete_on_meaning(tmp_path: Path) -> None:
    """PNG icons titled "network" must not outrank a chapter about network setup by meaning."""
    import io

    from PIL import Image

    root = tmp_path / "docs"
    root.mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(buf, format="PNG")
    (root / "network.png").write_bytes(buf.getvalue())
    (root / "chapter5.md").write_text(
        "# Chapter 5. Network setup\n\nConfigure the interfaces, DNS and the default gateway.",
        encoding="utf-8",
    )
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_paths([root])
        kb.build_dense_keys()
        dense = kb.search("network", mode="dense")
        assert [h.title for h in dense.hits] == ["Chapter 5. Network setup"]
        assert "network" in {h.title for h in kb.search("network", mode="lexical").hits}
