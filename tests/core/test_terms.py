"""Matched words grouped as a person reads them (Japanese bigrams under their dictionary word)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.search.terms import group_terms


def test_japanese_explanations_show_words_not_fragments(tmp_path: Path) -> None:
    (tmp_path / "net.txt").write_text(
        "ネットワーク設定\n\nネットワークの設定は管理画面から変更できます。", encoding="utf-8"
    )
    (tmp_path / "other.txt").write_text("会議室の予約は総務まで。", encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_paths([tmp_path / "net.txt", tmp_path / "other.txt"])
        hit = kb.search("ネットワーク設定", mode="lexical").hits[0]
    terms = hit.explanation.lexical.terms
    groups = group_terms(terms)
    assert len(terms) > 8 and len(groups) <= 4, [g.word for g in groups]
    words = [g.word for g in groups]
    assert "ネットワーク" in words and "設定" in words
    for g in groups:
        assert set(g.where) <= {"title", "text"}  # no internal field names
    assert sum(g.score for g in groups) == pytest.approx(sum(t.score for t in terms))


def test_an_english_word_in_title_and_text_is_one_row(tmp_path: Path) -> None:
    (tmp_path / "t.md").write_text("# Travel policy\n\nTravel is booked early.", encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_paths([tmp_path / "t.md"])
        hit = kb.search("travel", mode="lexical").hits[0]
    groups = group_terms(hit.explanation.lexical.terms)
    assert [(g.word, g.where) for g in groups] == [("travel", ("title", "text"))]
