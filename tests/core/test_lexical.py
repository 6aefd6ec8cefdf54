"""The lexical key space on a real tantivy index: upserts, filters, CJK, explanations."""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.core.errors import VaultBusyError, VaultFormatError
from kvdesk.core.keys.lexical import LexicalDoc, LexicalHit, LexicalIndex, media_types_for
from kvdesk.core.search.query import parse_query

UTC = datetime.UTC


def _doc(
    vid: int,
    title: str,
    text: str,
    *,
    version: int = 1,
    tags: tuple[str, ...] = (),
    media_type: str = "text/plain",
    updated: datetime.datetime | None = None,
    external_id: str | None = None,
    path: str = "",
) -> LexicalDoc:
    return LexicalDoc(
        value_id=vid,
        version=version,
        identifier=f"kv-{vid:04d}",
        external_id=external_id,
        title=title,
        text=text,
        tags=tags,
        media_type=media_type,
        path=path,
        updated=updated or datetime.datetime(2024, 1, vid % 28 + 1, 12, tzinfo=UTC),
    )


CORPUS = [
    _doc(
        1,
        "Protein folding",
        "Chaperones help proteins fold. The quick brown fox studies folding kinetics.",
        tags=("Biology::Proteins", "reviewed"),
        media_type="application/pdf",
        updated=datetime.datetime(2023, 3, 1, tzinfo=UTC),
        external_id="PMID-1234",
    ),
    _doc(
        2,
        "Fox behaviour",
        "A brown quick fox jumps. Foxes are omnivores <script>alert(1)</script> & more.",
        tags=("Biology::Animals",),
        media_type="text/html",
        updated=datetime.datetime(2024, 6, 15, tzinfo=UTC),
    ),
    _doc(
        3,
        "Holiday photo",
        "A picture of the beach at sunset.",
        tags=("travel",),
        media_type="image/jpeg",
        updated=datetime.datetime(2024, 8, 2, tzinfo=UTC),
        path="/home/ann/Pictures/beach.jpg",
    ),
    _doc(
        4,
        "天気予報",
        "東京都の天気は晴れです。京都は雨。",
        tags=("日本::天気",),
        updated=datetime.datetime(2024, 5, 1, tzinfo=UTC),
    ),
    _doc(
        5,
        "Cooking notes",
        "Slow cooking of beans; no foxes were harmed.",
        media_type="text/markdown",
        updated=datetime.datetime(2022, 1, 1, tzinfo=UTC),
    ),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LexicalIndex]:
    ix = LexicalIndex.open(tmp_path_factory.mktemp("lex"), writable=True)
    ix.add(CORPUS)
    ix.commit()
    yield ix
    ix.close()


def ids(hits: list[LexicalHit]) -> list[int]:
    return [h.value_id for h in hits]


def search(ix: LexicalIndex, raw: str) -> list[LexicalHit]:
    return ix.search(parse_query(raw))


def assert_parts_add_up(hits: list[LexicalHit]) -> None:
    for h in hits:
        if h.score:
            assert h.terms
        assert math.isclose(sum(t.score for t in h.terms), h.score, abs_tol=1e-4)


def test_words_rank_and_explain(index: LexicalIndex) -> None:
    hits = search(index, "fox folding")
    assert set(ids(hits)) == {1, 2, 5}
    assert ids(hits)[0] == 1  # the only one with both words
    assert_parts_add_up(hits)
    top = hits[0]
    fields = {(t.field, t.term) for t in top.terms}
    assert ("title", "folding") in fields and ("body", "folding") in fields
    assert ("body", "fox") in fields
    assert all(t.score > 0 for t in top.terms)
    # Stemming: "foxes" in doc 5 matches "fox".
    assert any(t.term == "fox" for t in hits[ids(hits).index(5)].terms)


def test_parts_add_up_with_many_terms_phrases_and_filters(index: LexicalIndex) -> None:
    hits = search(index, 'brown fox quick "quick brown" jumps tag:biology after:2020-01-01 -beans')
    assert set(ids(hits)) == {1}  # doc 2 has "brown quick", not the phrase
    assert_parts_add_up(hits)
    assert any(t.term == '"quick brown"' and t.field == "body" for t in hits[0].terms)


def test_phrase_requires_order(index: LexicalIndex) -> None:
    assert ids(search(index, '"brown quick"')) == [2]
    assert ids(search(index, '"quick brown"')) == [1]
    assert_parts_add_up(search(index, '"brown quick" omnivores'))


def test_excluded_words(index: LexicalIndex) -> None:
    assert set(ids(search(index, "fox -jumps"))) == {1, 5}
    assert set(ids(search(index, 'fox -"quick brown"'))) == {2, 5}
    assert ids(search(index, "-fox")) == [3, 4]  # no words: all others, newest first


def test_tag_filters_follow_hierarchy_and_ignore_case(index: LexicalIndex) -> None:
    assert set(ids(search(index, "fox tag:biology"))) == {1, 2}
    assert ids(search(index, "fox tag:Biology::Animals")) == [2]
    assert ids(search(index, "fox tag:biology tag:reviewed")) == [1]
    assert ids(search(index, 'tag:"日本::天気"')) == [4]
    assert ids(search(index, "tag:bio")) == []  # a prefix of a name is not a parent


def test_tags_are_searchable_as_words(index: LexicalIndex) -> None:
    hits = search(index, "animals")
    assert ids(hits) == [2]
    assert hits[0].terms[0].field == "tags"


def test_type_filters(index: LexicalIndex) -> None:
    assert ids(search(index, "fox type:pdf")) == [1]
    assert ids(search(index, "type:image")) == [3]
    assert set(ids(search(index, "type:html type:md"))) == {2, 5}
    assert ids(search(index, "type:application/pdf")) == [1]
    assert ids(search(index, "type:nosuchthing")) == []
    assert media_types_for("png") == ("image/png",)


def test_date_filters_and_filter_only_order(index: LexicalIndex) -> None:
    hits = search(index, "after:2024-01-01")
    assert ids(hits) == [3, 2, 4]  # newest first
    assert all(h.score == 0 and h.terms == () for h in hits)
    assert ids(search(index, "before:2024-05-01")) == [1, 5]  # exclusive
    assert ids(search(index, "after:2024-05-01 before:2024-06-16")) == [2, 4]  # inclusive
    assert ids(search(index, "after:2024-06-01 before:2024-01-01")) == []
    assert ids(search(index, "after:0001-01-01 before:9999-12-31 fox")) != []  # clamped
    hits = search(index, "fox before:2023-12-31")
    assert set(ids(hits)) == {1, 5}
    assert_parts_add_up(hits)  # the filter adds nothing to the scores


def test_empty_query_lists_everything_newest_first(index: LexicalIndex) -> None:
    assert ids(search(index, "")) == [3, 2, 4, 1, 5]
    assert ids(index.search(parse_query(""), limit=2)) == [3, 2]


@pytest.mark.parametrize(
    "raw", ['"unbalanced', "tag:", "before:notadate", "((", "AND OR", "title:", "-", '""', "*?~^"]
)
def test_malformed_queries_never_raise(index: LexicalIndex, raw: str) -> None:
    hits = search(index, raw)
    assert_parts_add_up(hits)


def test_malformed_queries_still_find_their_words(index: LexicalIndex) -> None:
    assert ids(search(index, '"sunset')) == [3]
    assert search(index, "((") == []


def test_japanese_bigrams(index: LexicalIndex) -> None:
    for q in ("天気", "東京", "東京都の天気", "晴れ"):
        hits = search(index, q)
        assert ids(hits) == [4], q
        assert_parts_add_up(hits)
    hits = search(index, "東京")
    assert any(t.field == "body_cjk" and t.term == "東京" for t in hits[0].terms)
    assert "<b>東京</b>" in hits[0].snippet_html
    assert ids(search(index, "京")) == [4]  # one character: unigram keys
    assert ids(search(index, "大阪")) == []
    assert ids(search(index, '"東京都"')) == [4]
    assert ids(search(index, "天気 -晴れ")) == []


def test_identifier_and_external_id(index: LexicalIndex) -> None:
    assert ids(search(index, "kv-0003")) == [3]
    hits = search(index, "PMID-1234")
    assert ids(hits)[0] == 1
    assert ("ext_id", "PMID-1234") in {(t.field, t.term) for t in hits[0].terms}
    assert_parts_add_up(hits)


def test_path_words(index: LexicalIndex) -> None:
    assert ids(search(index, "Pictures")) == [3]


def test_snippets_highlight_and_escape(index: LexicalIndex) -> None:
    hit = search(index, "omnivores")[0]
    assert "<b>omnivores</b>" in hit.snippet_html.lower()
    assert "<script>" not in hit.snippet_html
    assert "&lt;script&gt;" in hit.snippet_html
    # Matched only in the title: the snippet comes from the title.
    hit = search(index, "holiday")[0]
    assert "<b>Holiday</b>" in hit.snippet_html
    # Matched only by tag: plain (escaped) start of the body.
    hit = search(index, "animals")[0]
    assert hit.snippet_html.startswith("A brown quick fox")
    assert "<b>" not in hit.snippet_html


def test_upsert_delete_versions_and_reopen(tmp_path: Path) -> None:
    ix = LexicalIndex.open(tmp_path, writable=True)
    assert ix.doc_count() == 0 and ix.indexed_versions() == {}
    ix.add([_doc(1, "old title", "alpha"), _doc(2, "two", "beta"), _doc(3, "three", "天気")])
    ix.commit()
    ix.add([_doc(1, "new title", "gamma", version=2)])
    ix.delete([2])
    ix.commit()
    assert ix.doc_count() == 2
    assert ix.indexed_versions() == {1: 2, 3: 1}
    assert search(ix, "alpha") == [] and ids(search(ix, "gamma")) == [1]
    assert search(ix, "beta") == []
    # Uncommitted work is dropped on close.
    ix.add([_doc(9, "nine", "uncommitted")])
    ix.close()

    again = LexicalIndex.open(tmp_path, writable=True)
    assert not again.rebuilt
    assert again.indexed_versions() == {1: 2, 3: 1}
    assert ids(search(again, "天気")) == [3]  # custom tokenizers registered again
    again.add([_doc(4, "four", "東京都")])
    again.commit()
    assert ids(search(again, "東京")) == [4]
    again.close()


def test_one_writer_and_readers_see_commits(tmp_path: Path) -> None:
    writer = LexicalIndex.open(tmp_path, writable=True)
    with pytest.raises(VaultBusyError, match="in use by another kvdesk process"):
        LexicalIndex.open(tmp_path, writable=True)
    reader = LexicalIndex.open(tmp_path, writable=False)
    writer.add([_doc(1, "hello", "world")])
    writer.commit()
    assert ids(search(reader, "world")) == [1]
    writer.close()
    LexicalIndex.open(tmp_path, writable=True).close()  # the lock was released


def test_read_only_open_of_missing_index(tmp_path: Path) -> None:
    with pytest.raises(VaultFormatError):
        LexicalIndex.open(tmp_path / "none", writable=False)


def test_schema_version_change_starts_empty(tmp_path: Path) -> None:
    ix = LexicalIndex.open(tmp_path, writable=True)
    ix.add([_doc(1, "hello", "world")])
    ix.commit()
    ix.close()

    class Newer(LexicalIndex):
        SCHEMA_VERSION = LexicalIndex.SCHEMA_VERSION + 1

    newer = Newer.open(tmp_path, writable=True)
    assert newer.rebuilt
    assert newer.doc_count() == 0 and newer.indexed_versions() == {}
    assert [p.name for p in tmp_path.iterdir()] == [f"schema-v{Newer.SCHEMA_VERSION}"]
    newer.close()


def test_writer_lock_holds_across_processes(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    holder = LexicalIndex.open(tmp_path, writable=True)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from kvdesk.core.errors import VaultBusyError\n"
        "from kvdesk.core.keys.lexical import LexicalIndex\n"
        "try:\n"
        "    LexicalIndex.open(Path(sys.argv[1]), writable=True)\n"
        "except VaultBusyError as exc:\n"
        "    print('busy:', exc)\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "busy: the key index is in use by another kvdesk process"
    holder.close()


def test_japanese_dictionary_words_separate_kyoto_from_tokyo(tmp_path: Path) -> None:
    """Bigrams alone let 京都 match 東京都; dictionary words rank the real Kyoto first."""
    from kvdesk.core.keys.japanese import japanese_words

    assert japanese_words("東京都の天気は晴れでした") == ["東京", "都", "天気", "晴れ"]
    with LexicalIndex.open(tmp_path / "ix", writable=True) as ix:
        ix.add([
            _doc(1, "天気", "東京都の天気は晴れでした。"),
            _doc(2, "旅行", "京都の寺を訪ねました。"),
        ])  # fmt: skip
        ix.commit()
        hits = search(ix, "京都")
        assert ids(hits)[0] == 2
        assert any(t.field == "ja_words" and t.term == "京都" for t in hits[0].terms)
        assert not any(t.field == "ja_words" for t in hits[1].terms)
        assert_parts_add_up(hits)
