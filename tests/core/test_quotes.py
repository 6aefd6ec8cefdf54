"""Context keys of short values: the words around where other values quote them (quotes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvdesk.core.keys.quotes import (
    MAX_HOSTS,
    SHORT_CHARS,
    WINDOW_CHARS,
    WORD_SLACK,
    QuoteHost,
    context_for,
    quotable,
)
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.search.terms import group_terms

PASSAGE = (
    "In 1941 the war reached the Pacific. The Yomiuri newspaper formed a southern comfort troupe"
    " at the navy's request, and the singer joined it to entertain soldiers stationed abroad."
)
OTHER = "Quarterly budget figures for the facilities department, with heating and cleaning costs."


def _records(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text(
        "\n".join(json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in rows),
        encoding="utf-8",
    )
    return path


def _ids(kb: KnowledgeBase, query: str) -> list[str | None]:
    return [h.external_id for h in kb.search(query, mode="lexical", k=10).hits]


QUERY = "which group did the singer join to entertain soldiers"


# -- the pure part ------------------------------------------------------------------------------


def test_only_short_texts_with_letters_or_digits_are_quotable() -> None:
    assert quotable("  southern\n comfort  troupe ") == "southern comfort troupe"
    assert quotable("x") is None
    assert quotable("— … —") is None
    assert quotable("a" * (SHORT_CHARS + 1)) is None
    assert quotable("南方慰問団") == "南方慰問団"


def test_context_is_the_text_around_the_quote_same_title_first() -> None:
    far = QuoteHost(1, "Other article", "Tickets for the southern comfort troupe sold out fast.")
    near = QuoteHost(2, "Fujiyama", PASSAGE)
    ctx = context_for("southern comfort troupe", "Fujiyama", [far, near], exclude=9)
    assert ctx.hosts == (2, 1)  # the same title first, then the order given
    first = ctx.text.splitlines()[0]
    assert "southern comfort troupe" not in ctx.text  # its own words are already its keys
    assert "Yomiuri newspaper formed a" in first and "singer joined" in first
    assert len(first) <= 2 * (WINDOW_CHARS + WORD_SLACK) + 3
    assert ctx.fingerprint != 0


def test_windows_end_on_whole_words() -> None:
    ctx = context_for("southern comfort troupe", "", [QuoteHost(1, "", PASSAGE)])
    words = set(PASSAGE.replace(".", " ").replace(",", " ").split())
    pieces = ctx.text.replace("…", " ").replace(".", " ").replace(",", " ").split()
    assert pieces and set(pieces) <= words, set(pieces) - words  # no "sold" for "soldiers"


def test_no_quote_no_context_and_never_from_itself() -> None:
    assert context_for("marching band", "", [QuoteHost(1, "", PASSAGE)]).hosts == ()
    same = QuoteHost(5, "", "southern comfort troupe")
    assert context_for("southern comfort troupe", "", [same], exclude=None).hosts == ()
    assert (
        context_for("southern comfort troupe", "", [QuoteHost(5, "", PASSAGE)], exclude=5).text
        == ""
    )
    many = [QuoteHost(i, "", PASSAGE) for i in range(10)]
    assert len(context_for("comfort troupe", "", many).hosts) == MAX_HOSTS


def test_a_quote_broken_over_lines_counts() -> None:
    host = QuoteHost(
        1, "", "The Yomiuri newspaper formed a southern\ncomfort   troupe for soldiers."
    )
    assert context_for("southern comfort troupe", "", [host]).hosts == (1,)


# -- in a vault ---------------------------------------------------------------------------------


def test_a_short_value_is_found_by_the_words_around_its_quote(tmp_path: Path) -> None:
    rows = [
        ("p", "Fujiyama", PASSAGE),
        ("a", "Fujiyama", "southern comfort troupe"),
        ("o", "Budget", OTHER),
    ]
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_records(_records(tmp_path / "r.jsonl", rows))
        found = _ids(kb, QUERY)
        assert found[:2] == ["p", "a"] or found[:2] == ["a", "p"]
        assert "a" in _ids(kb, "which group entertained soldiers")  # the window's last word
        hit = next(h for h in kb.search(QUERY, mode="lexical").hits if h.external_id == "a")
        fields = {t.field for t in hit.explanation.lexical.terms}
        assert fields == {"context"}  # found only through where it is quoted
        assert {w for g in group_terms(hit.explanation.lexical.terms) for w in g.where} == {
            "where quoted"
        }
        # The value itself is untouched.
        assert kb.values.text(hit.value_id) == "southern comfort troupe"


def test_context_follows_the_vault_in_either_order_and_after_edits(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_records(_records(tmp_path / "1.jsonl", [("a", "", "southern comfort troupe")]))
        assert "a" not in _ids(kb, QUERY)
        # The quoting value arrives later, in another import.
        kb.import_records(_records(tmp_path / "2.jsonl", [("p", "", PASSAGE), ("o", "", OTHER)]))
        assert "a" in _ids(kb, QUERY)
    # Another process: the host is edited and no longer quotes it.
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        assert "a" in _ids(kb, QUERY)
        edited = PASSAGE.replace("southern comfort troupe", "travelling band")
        kb.import_records(_records(tmp_path / "3.jsonl", [("p", "", edited)]))
        assert _ids(kb, QUERY) == ["p"]
        # The short value is edited to something the passage quotes again.
        kb.import_records(_records(tmp_path / "4.jsonl", [("a", "", "travelling band")]))
        assert "a" in _ids(kb, QUERY)


def test_context_keys_are_rebuilt_with_the_index(tmp_path: Path) -> None:
    rows = [("p", "", PASSAGE), ("a", "", "southern comfort troupe")]
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_records(_records(tmp_path / "r.jsonl", rows))
    lexical = tmp_path / "v.kvdb.keys" / "lexical"
    assert lexical.is_dir()
    for schema in lexical.glob("schema-v*"):
        for part in schema.iterdir():
            part.unlink()  # the index is lost: rebuilt from the vault on open
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        assert "a" in _ids(kb, QUERY)


@pytest.mark.parametrize(
    ("passage", "short", "query"),
    [
        (
            "1941年に太平洋戦争が開戦した。読売新聞社が海軍の要請を受けて南方慰問団を結成すると、"
            "藤山はこれに参加した。",
            "南方慰問団",
            "藤山が太平洋戦争の戦地に足を運んだのは何の一員として参加したからですか",
        ),
        (
            "1972年以後、周辺の町村が合併した。1976年1月1日に大規模郡都市に昇格した。",
            "1976年1月1日",
            "ヴェルトハイム市の大規模郡都市への昇格が発効されたのはいつでしたか",
        ),
    ],
)
def test_japanese_short_values_get_context(
    tmp_path: Path, passage: str, short: str, query: str
) -> None:
    rows = [("p", "記事", passage), ("a", "記事", short), ("o", "予算", "会議室の予約は総務まで。")]
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_records(_records(tmp_path / "r.jsonl", rows))
        found = _ids(kb, query)
        assert "a" in found[:2], found
        hit = next(h for h in kb.search(query, mode="lexical").hits if h.external_id == "a")
        assert any(t.field == "context_cjk" for t in hit.explanation.lexical.terms)


def test_the_explanation_names_where_a_short_value_is_quoted(tmp_path: Path) -> None:
    rows = [("p", "Fujiyama", PASSAGE), ("a", "", "southern comfort troupe"), ("o", "", OTHER)]
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_records(_records(tmp_path / "r.jsonl", rows))
        hits = {h.external_id: h for h in kb.search(QUERY, mode="lexical").hits}
        passage = hits["p"]
        quoted = hits["a"].explanation.lexical
        assert quoted is not None
        assert [(q.identifier, q.title) for q in quoted.quoted_in] == [
            (passage.identifier, "Fujiyama")
        ]
        data = hits["a"].explanation.to_json(details=True)["lexical"]
        assert data["quoted_in"] == [{"identifier": passage.identifier, "title": "Fujiyama"}]
        # A hit found by its own words says nothing of quotes.
        assert passage.explanation.lexical is not None
        assert passage.explanation.lexical.quoted_in == ()
        assert "quoted_in" not in passage.explanation.to_json(details=True)["lexical"]
