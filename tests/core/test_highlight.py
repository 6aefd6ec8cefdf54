"""Highlight spans: the index's own analyzer decides which words of a text a query marks."""

from __future__ import annotations

from kvdesk.core.search.highlight import term_spans


def test_term_spans_match_by_stem() -> None:
    text = "Our travel policy: policies apply when travelling. Polícy, CAFÉ 東京"
    words = [text[a:b] for a, b in term_spans(text, ["policies", "travelling"])]
    assert words == ["travel", "policy", "policies", "travelling", "Polícy"]
    assert [text[a:b] for a, b in term_spans(text, ["cafe", "東京"])] == ["CAFÉ", "東京"]
    assert term_spans(text, ['"travel policy"'])[0] == (4, 17)


def test_function_words_do_not_light_up_unless_they_are_all_there_is() -> None:
    text = "How do I put a package on hold? Use apt-mark hold on the package."
    marked = {
        text[a:b].lower() for a, b in term_spans(text, "how do i put a package on hold".split())
    }
    assert marked == {"put", "package", "hold"}
    assert {text[a:b].lower() for a, b in term_spans(text, ["on", "the"])} == {"on", "the"}
