"""Undo in the review queue: a document-tag goes back exactly to what it was, 'suggested'
included (``kb.remove_tag`` would lose it), and the suggester follows at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.core.errors import KvdeskError
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.tags.store import TagRow, TagState
from kvdesk.core.tags.suggest import Suggestion
from tests.core.test_tagging import make_corpus


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    base.import_records(make_corpus(tmp_path / "corpus.jsonl"))
    yield base
    base.close()


def test_undo_accept_of_a_suggestion_restores_suggested_exactly(kb: KnowledgeBase) -> None:
    suggester = kb.tags.suggester(use_dense=False)
    vid = kb.values.resolve("finance-11")
    suggester.record_suggestions(vid, [Suggestion("finance", 0.8, ())], actor="kvdesk")
    before = kb.tags.row(vid, "finance")
    assert before is not None and before.state == "suggested" and before.actor == "kvdesk"
    suggester.accept(vid, "finance", actor="ann")
    assert kb.tags.of(vid) == ("finance",)
    suggester.restore(vid, "finance", before)
    assert kb.tags.row(vid, "finance") == before
    assert kb.tags.of(vid) == ()
    assert kb.tags.of(vid, "suggested") == ("finance",)
    # the suggester forgot the accept at once: finance is proposed again
    assert "finance" in [s.tag for s in suggester.suggest(vid, k=3)]


@pytest.mark.parametrize("previous", ["accepted", "rejected", "suggested", "none", None])
def test_restore_by_state_name(kb: KnowledgeBase, previous: str | None) -> None:
    vid = kb.values.resolve("cooking-11")
    kb.set_tag(vid, "food::cooking", "rejected", "bob")
    kb.tags.restore(vid, "food::cooking", previous)
    got = kb.tags.row(vid, "food::cooking")
    if previous in (None, "none"):
        assert got is None
    else:
        assert got is not None and got.state == previous


def test_restore_of_accepted_updates_tag_keys(kb: KnowledgeBase) -> None:
    vid = kb.values.resolve("cooking-11")
    snapshot = TagRow(TagState.ACCEPTED, "ann", "2025-01-02T03:04:05.000+00:00")
    kb.tags.restore(vid, "special::pick", snapshot)
    ids = [h.value_id for h in kb.search("special::pick", mode="lexical").hits]
    assert ids[:1] == [vid]
    kb.tags.restore(vid, "special::pick", None)
    assert vid not in [h.value_id for h in kb.search("special::pick", mode="lexical").hits]


def test_restore_refuses_unknown_state(kb: KnowledgeBase) -> None:
    with pytest.raises(KvdeskError, match="tag state"):
        kb.tags.restore(kb.values.resolve("cooking-11"), "x", "maybe")
