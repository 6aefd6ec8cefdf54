"""The search box syntax: filters, phrases, exclusions, and graceful degradation; query
cleaning: undecodable argv bytes, control characters, CJK phrases, linear parsing."""

from __future__ import annotations

import datetime
import random
import time

import pytest

from kvdesk.core.search.query import (
    MAX_QUERY_CHARS,
    ParsedQuery,
    clean_query,
    has_cjk,
    parse_query,
)


def test_plain_words() -> None:
    q = parse_query("  protein  folding ")
    assert q == ParsedQuery(text="protein folding", terms=("protein", "folding"))
    assert not q.has_filters


def test_full_syntax() -> None:
    q = parse_query(
        'tag:bio::genes "gene expression" cells -mouse type:PDF after:2024-01-31 '
        'before:2024-05-01 tag:"two words" -"cell line"'
    )
    assert q.terms == ("cells",)
    assert q.phrases == ("gene expression",)
    assert q.text == "gene expression cells"
    assert q.tags == ("bio::genes", "two words")
    assert q.types == ("pdf",)
    assert q.after == datetime.date(2024, 1, 31)
    assert q.before == datetime.date(2024, 5, 1)
    assert q.excluded == ("mouse", "cell line")
    assert q.has_filters


def test_filter_keys_are_case_insensitive_and_dates_take_the_tightest() -> None:
    q = parse_query("TAG:x Before:2024-05-01 before:2023-02 after:2020 after:2021/03/04")
    assert q.tags == ("x",)
    assert q.before == datetime.date(2023, 2, 1)
    assert q.after == datetime.date(2021, 3, 4)
    assert q.text == ""


def test_quoted_single_word_and_smart_quotes() -> None:
    q = parse_query('\u201cdeep learning\u201d "solo"')
    assert q.phrases == ("deep learning",)
    assert q.terms == ("solo",)


@pytest.mark.parametrize(
    ("raw", "terms"),
    [
        ('"unbalanced', ("unbalanced",)),
        ('foo "bar baz', ("foo", "bar", "baz")),
        ("tag:", ("tag:",)),
        ("before:notadate", ("before:notadate",)),
        ("after:2024-13-45", ("after:2024-13-45",)),
        ("((", ("((",)),
        ("AND OR", ("AND", "OR")),
        ("title:", ("title:",)),
        ("http://example.com/a:b", ("http://example.com/a:b",)),
        ("-", ("-",)),
    ],
)
def test_malformed_input_degrades_to_terms(raw: str, terms: tuple[str, ...]) -> None:
    q = parse_query(raw)
    assert q.terms == terms
    assert not q.has_filters


def test_unknown_key_with_quoted_value_keeps_the_phrase() -> None:
    q = parse_query('author:"Jane Doe"')
    assert q.terms == ("author:",)
    assert q.phrases == ("Jane Doe",)


def test_empty_filter_quotes_degrade() -> None:
    q = parse_query('tag:"" tag:"open')
    assert q.tags == ()
    assert "open" in q.terms


def test_japanese_query_is_one_term_and_fullwidth_space_splits() -> None:
    q = parse_query("東京都の天気\u3000晴れ")
    assert q.terms == ("東京都の天気", "晴れ")
    assert q.text == "東京都の天気 晴れ"


def test_has_cjk() -> None:
    assert has_cjk("天気")
    assert has_cjk("カタカナ")
    assert has_cjk("한국어")
    assert has_cjk("mixed 漢字 text")
    assert not has_cjk("plain ascii, café, Ünïcode")
    assert not has_cjk("、。「」")  # CJK punctuation alone is not text


def test_never_raises_on_random_input() -> None:
    rng = random.Random(3)
    alphabet = 'ab :"-()\u201c\u201d\u3000東tagbeforeaftertype0123/'
    for _ in range(2000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        q = parse_query(raw)
        assert isinstance(q, ParsedQuery)


def test_lone_surrogates_from_argv_become_spaces() -> None:
    raw = b"vpn\xff".decode("utf-8", "surrogateescape")  # what argv gives for $'vpn\xff'
    q = parse_query(raw)
    assert q.terms == ("vpn",)
    q.text.encode("utf-8")  # valid UTF-8 now
    assert clean_query("\ud83dx") == " x"


def test_control_characters_are_stripped_but_whitespace_splits() -> None:
    q = parse_query("vp\x00n\x1b[31m\tsetup\x7f")
    assert q.terms == ("vpn[31m", "setup")


def test_quoted_cjk_run_is_a_phrase() -> None:
    q = parse_query('"新しいオフィス" 移転')
    assert q.phrases == ("新しいオフィス",)
    assert q.terms == ("移転",)
    assert q.text == "新しいオフィス 移転"
    assert parse_query('"東"').terms == ("東",)  # one character: just a word


def test_long_queries_are_capped() -> None:
    q = parse_query("word " * 10_000)
    assert len(q.text) <= MAX_QUERY_CHARS
    assert 0 < len(q.terms) <= MAX_QUERY_CHARS // 2


def test_unmatched_quotes_parse_in_linear_time() -> None:
    # 24 KB of unmatched low-9 quotes took ~9 s when each one scanned to the end.
    raw = "\u201ea " * 8000
    started = time.perf_counter()
    q = parse_query(raw)
    assert time.perf_counter() - started < 1.0
    assert q.terms and set(q.terms) == {"a"}
    # Well under the cap, the scan must still be linear, not quadratic.
    started = time.perf_counter()
    for _ in range(20):
        parse_query("\u201e" * MAX_QUERY_CHARS)
    assert time.perf_counter() - started < 1.0
