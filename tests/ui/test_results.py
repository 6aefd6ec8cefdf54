"""The result cards and explanation columns: nothing clipped, weights always readable."""

from __future__ import annotations

from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QStyleOptionViewItem

from kvdesk.ui.main_window import MainWindow
from kvdesk.ui.results import (
    HitDelegate,
    _line_count,
    snippet_document,
    text_line_height,
    weight_text,
)

from .test_main_window import search

LONG = " ".join(["The <b>supplier</b> confirmed the LED panels ship next week"] * 12)


def test_snippet_is_cut_to_whole_lines_with_an_ellipsis(qapp) -> None:  # type: ignore[no-untyped-def]
    font = QFont(qapp.font())
    doc = snippet_document(LONG, font, 300, 3)
    assert _line_count(doc) == 3
    assert doc.toPlainText().endswith("…")
    assert doc.size().height() <= text_line_height(font) * 3 + 2
    ja = snippet_document("東京の<b>会議</b>は" * 40, font, 300, 3)
    assert _line_count(ja) == 3 and ja.size().height() <= text_line_height(font) * 3 + 2
    short = snippet_document("one <b>line</b>", font, 300, 3)
    assert short.toPlainText() == "one line"


def test_card_height_follows_the_font(qapp) -> None:  # type: ignore[no-untyped-def]
    delegate = HitDelegate()
    option = QStyleOptionViewItem()
    heights = []
    for size in (9, 14):
        font = QFont(qapp.font())
        font.setPointSizeF(size)
        option.font = font
        h = delegate.sizeHint(option, None).height()  # type: ignore[arg-type]
        snippet = text_line_height(font) * HitDelegate.SNIPPET_LINES
        assert h >= snippet + QFontMetrics(font).height() + 2 * HitDelegate.PAD
        heights.append(h)
    assert heights[1] > heights[0]


def test_weight_text_never_reads_zero_for_a_weight() -> None:
    assert weight_text(0.93) == "93%"
    assert weight_text(0.042) == "4.2%"
    assert weight_text(0.0004) == "<0.1%"
    assert weight_text(0.0) == "0%"


def test_compare_headings_wrap_instead_of_clipping(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    search(qtbot, window, "LED supplier delay")
    window.resize(1100, 760)
    window.select_rows([0, 1])
    qtbot.wait(50)
    for view in window.explain.visible_views():
        for label in (view.terms_heading, view.passage_heading, *view.legend.values()):
            if not label.isVisibleTo(view) or not label.text():
                continue
            assert label.wordWrap()
            needed = label.heightForWidth(label.width())
            assert label.height() >= needed - 1, label.text()
        table = view.terms
        if table.rowCount():
            header = table.horizontalHeader()
            for col in range(table.columnCount()):
                if table.isColumnHidden(col):
                    continue
                assert header.sectionSize(col) >= header.sectionSizeHint(col) - 2 or col == 0


def test_a_short_document_says_where_it_is_quoted(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from kvdesk.core.knowledge_base import KnowledgeBase
    from kvdesk.ui.explain import HitExplanationView

    passage = (
        "In 1941 the Yomiuri newspaper formed a southern comfort troupe at the navy's request,"
        " and the singer joined it to entertain soldiers stationed abroad."
    )
    records = tmp_path / "r.jsonl"
    records.write_text(
        "\n".join(
            json.dumps(r)
            for r in (
                {"_id": "p", "title": "Fujiyama", "text": passage},
                {"_id": "a", "title": "", "text": "southern comfort troupe"},
            )
        ),
        encoding="utf-8",
    )
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_records(records)
        hit = next(
            h
            for h in kb.search("entertained soldiers", mode="lexical").hits
            if h.external_id == "a"
        )
    view = HitExplanationView()
    qtbot.addWidget(view)
    view.show_hit(hit, 2, 1.0)
    assert "quoted in Fujiyama" in view.legend["lexical"].text()
    assert view.terms.item(0, 1).text() == "where quoted"
