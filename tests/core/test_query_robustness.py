"""Query cleaning: undecodable argv bytes, control characters, CJK phrases, linear parsing."""

from __future__ import annotations

import time

from kvdesk.core.search.query import MAX_QUERY_CHARS, clean_query, parse_query


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
