"""The lexical index's per-search shortcuts change no answer (see LexicalIndex._current).

One searcher per commit generation, queries built once, the ranking of a search reused by its
explanation pass, and clauses of words no document holds left out: each must give exactly
what a fresh search on a fresh reader gives.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from kvdesk.core.keys.lexical import LexicalDoc, LexicalHit, LexicalIndex
from kvdesk.core.search.query import parse_query


def _doc(vid: int, title: str, text: str) -> LexicalDoc:
    return LexicalDoc(
        value_id=vid,
        version=1,
        identifier=f"kv-{vid:04d}",
        external_id=None,
        title=title,
        text=text,
        tags=(),
        media_type="text/plain",
        path="",
        updated=datetime.datetime(2026, 1, vid, tzinfo=datetime.UTC),
    )


def _search(ix: LexicalIndex, raw: str, **kw: object) -> list[LexicalHit]:
    return ix.search(parse_query(raw), **kw)  # type: ignore[arg-type]


def _index(tmp_path: Path) -> LexicalIndex:
    writer = LexicalIndex.open(tmp_path, writable=True)
    writer.add(
        [
            _doc(1, "Pears", "Pears and apples from the canteen."),
            _doc(2, "Budget", "The travel budget; apples are not in it."),
            _doc(3, "Orchard", "An orchard of pears, plums and apples in spring."),
        ]
    )
    writer.commit()
    return writer


def test_a_reader_that_searched_before_a_commit_sees_it_after(tmp_path: Path) -> None:
    writer = _index(tmp_path)
    reader = LexicalIndex.open(tmp_path, writable=False)
    before = _search(reader, "plums")
    assert [h.value_id for h in before] == [3]
    writer.add([_doc(4, "Plums", "Plums, plums and more plums.")])
    writer.commit()
    after = _search(reader, "plums")  # the same query: its cached ranking is not served
    assert [h.value_id for h in after] == [4, 3]
    assert after == _search(LexicalIndex.open(tmp_path, writable=False), "plums")
    writer.delete([4])
    writer.commit()
    assert [h.value_id for h in _search(reader, "plums")] == [3]
    writer.close()


def test_the_explanation_pass_matches_a_full_search(tmp_path: Path) -> None:
    writer = _index(tmp_path)
    reader = LexicalIndex.open(tmp_path, writable=False)
    for raw in ("apples pears", '"pears and apples"', "apples -budget", "spring pears"):
        ranked = _search(reader, raw, details=False)
        shown = {ranked[0].value_id}
        detailed = _search(reader, raw, detail_ids=shown)
        full = _search(LexicalIndex.open(tmp_path, writable=False), raw)
        assert (
            [h.value_id for h in detailed]
            == [h.value_id for h in full]
            == [h.value_id for h in ranked]
        )
        assert detailed[0] == full[0]  # explained and highlighted alike
        assert all(h.terms == () and h.snippet_html == "" for h in detailed[1:])
    writer.close()


def test_words_no_document_holds_change_no_score(tmp_path: Path) -> None:
    """Their clauses are left out of the query tantivy runs: the result must not show it."""
    writer = _index(tmp_path)
    plain = _search(writer, "apples pears")
    padded = _search(writer, "apples zyzzyva pears qwxq")
    assert [(h.value_id, h.score, h.terms) for h in padded] == [
        (h.value_id, h.score, h.terms) for h in plain
    ]
    assert _search(writer, "zyzzyva qwxq") == []
    assert [h.value_id for h in _search(writer, 'zyzzyva "pears and apples"')] == [1]
    writer.close()
