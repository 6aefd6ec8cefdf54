"""``kb.tags``: every change says which values it changed and hands them to ``on_change`` (the
knowledge base re-keys them): one path from a tag change to its keys. Tag counts by state, and
``restore`` (the review queue's undo) puts a document-tag back exactly as it was."""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from kvdesk.core.errors import KvdeskError, NotFoundError
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.tags.manager import TagManager
from kvdesk.core.tags.rules import RuleKind
from kvdesk.core.tags.store import TagRow, TagState
from tests.tag_corpus import make_corpus

TAGS_PACKAGE = Path(__file__).resolve().parents[2] / "kvdesk" / "core" / "tags"


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    base.import_records(make_corpus(tmp_path / "corpus.jsonl", per_topic=3))
    yield base
    base.close()


@pytest.fixture
def recorded(kb: KnowledgeBase) -> tuple[TagManager, list[set[int]]]:
    """A manager over the same vault whose ``on_change`` only records what it is given."""
    calls: list[set[int]] = []

    def on_change(value_ids: Collection[int]) -> None:
        calls.append(set(value_ids))

    manager = TagManager(kb._vault, kb._vault.values, kb.settings, on_change=on_change)
    return manager, calls


def test_changes_return_and_report_the_values_they_changed(
    kb: KnowledgeBase, recorded: tuple[TagManager, list[set[int]]]
) -> None:
    tags, calls = recorded
    vid = kb.values.resolve("finance-2")
    assert tags.accept(vid, "audit", "ann") == {vid}
    assert tags.suggest(vid, "ledger") == {vid}
    assert tags.reject(vid, "budget") == {vid}
    assert tags.remove(vid, "ledger") == {vid}
    assert calls == [{vid}] * 4
    assert tags.of(vid) == ("audit",) and tags.of(vid, "rejected") == ("budget",)
    # a stored suggestion changes no accepted tag, so no keys: on_change is not called
    assert tags.record_suggestions(vid, ["ledger", "audit"], "kvdesk") == {vid}
    assert tags.record_suggestions(vid, ["ledger"], "kvdesk") == set()
    assert len(calls) == 4
    row = tags.row(vid, "audit")
    assert row is not None and row.state is TagState.ACCEPTED and row.actor == "ann"
    assert tags.restore(vid, "audit", None) == {vid} and tags.row(vid, "audit") is None
    assert tags.replace_accepted({vid: {"x", "y"}}, actor="eval") == {vid}
    assert tags.of(vid) == ("x", "y") and tags.of(vid, "suggested") == ()
    assert calls[-2:] == [{vid}, {vid}]


def test_tag_changes_through_the_facade_update_keys(kb: KnowledgeBase) -> None:
    vid = kb.values.resolve("cooking-2")
    assert kb.tags.accept(vid, "zebrafish") == {vid}
    assert [h.value_id for h in kb.search("zebrafish", mode="lexical").hits][:1] == [vid]
    kb.remove_tag(vid, "zebrafish")
    assert vid not in [h.value_id for h in kb.search("zebrafish", mode="lexical").hits]
    kb.set_tag(vid, "zebrafish", "accepted")
    assert "zebrafish" in kb.all_tags() and kb.tags.names() == kb.all_tags()


def test_bad_states_and_missing_documents_are_clear_errors(kb: KnowledgeBase) -> None:
    vid = kb.values.resolve("cooking-2")
    with pytest.raises(KvdeskError, match="tag state is one of accepted, suggested, rejected"):
        kb.set_tag(vid, "x", "maybe")
    with pytest.raises(KvdeskError, match="or none"):
        kb.tags.restore(vid, "x", "maybe")
    with pytest.raises(NotFoundError):
        kb.tags.restore(10_000, "x", "accepted")
    with pytest.raises(KvdeskError, match="usable tag name"):
        kb.tags.accept(vid, " :: ")


def test_rules_and_descriptions(kb: KnowledgeBase) -> None:
    rule = kb.tags.add_rule("billing", "phrase", "invoice payment")
    assert rule.kind is RuleKind.PHRASE and rule.tag == "billing"
    (stored,) = kb.tags.rules()
    assert stored.rule_id is not None and stored.describe() == rule.describe()
    info = kb.tags.set_info("Billing", description="  money   in ", color="#ABCDEF")
    assert (info.name, info.description, info.color) == ("billing", "money in", "#abcdef")
    assert info.rules == (rule.describe(),)
    assert kb.tags.remove_rule(stored.rule_id) is True
    assert kb.tags.rules() == [] and kb.tags.remove_rule(stored.rule_id) is False
    assert kb.tags.info("nothing") is None


def test_the_tags_feature_never_imports_the_knowledge_base() -> None:
    offenders = []
    for path in sorted(TAGS_PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.startswith("kvdesk.core.knowledge_base") for n in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_list_tags_counts_states(corpus_kb: KnowledgeBase) -> None:
    suggester = corpus_kb.tags.suggester(use_dense=False)
    vid = corpus_kb.values.resolve("python-11")
    suggester.record_suggestions(vid, suggester.suggest(vid, k=2))
    suggester.reject(vid, "finance")
    info = {t.name: t for t in corpus_kb.tags.infos()}
    assert info["devel::python"].accepted == 11
    assert info["devel::python"].suggested == 1
    assert info["finance"].rejected == 1


@pytest.mark.parametrize("previous", ["accepted", "rejected", "suggested", "none", None])
def test_restore_by_state_name(corpus_kb: KnowledgeBase, previous: str | None) -> None:
    vid = corpus_kb.values.resolve("cooking-11")
    corpus_kb.set_tag(vid, "food::cooking", "rejected", "bob")
    corpus_kb.tags.restore(vid, "food::cooking", previous)
    got = corpus_kb.tags.row(vid, "food::cooking")
    if previous in (None, "none"):
        assert got is None
    else:
        assert got is not None and got.state == previous


def test_restore_of_accepted_updates_tag_keys(corpus_kb: KnowledgeBase) -> None:
    vid = corpus_kb.values.resolve("cooking-11")
    snapshot = TagRow(TagState.ACCEPTED, "ann", "2025-01-02T03:04:05.000+00:00")
    corpus_kb.tags.restore(vid, "special::pick", snapshot)
    ids = [h.value_id for h in corpus_kb.search("special::pick", mode="lexical").hits]
    assert ids[:1] == [vid]
    corpus_kb.tags.restore(vid, "special::pick", None)
    assert vid not in [h.value_id for h in corpus_kb.search("special::pick", mode="lexical").hits]


def test_restore_refuses_unknown_state(corpus_kb: KnowledgeBase) -> None:
    with pytest.raises(KvdeskError, match="tag state"):
        corpus_kb.tags.restore(corpus_kb.values.resolve("cooking-11"), "x", "maybe")


def test_core_set_tag_info_clears_and_creates(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        info = kb.tags.set_info("hr::leave", description="Holidays", color="#00ff00")
        assert (info.name, info.description, info.color) == ("hr::leave", "Holidays", "#00ff00")
        kb.tags.set_info("HR::Leave", color="")
        (only,) = kb.tags.infos()
        assert (only.description, only.color) == ("Holidays", "")
        with pytest.raises(KvdeskError, match="RRGGBB"):
            kb.tags.set_info("hr::leave", color="#zzz")
