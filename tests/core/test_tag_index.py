"""The evidence index (``kvdesk.core.tags.index``): tokens are topic words, never English
function words."""

from __future__ import annotations

from kvdesk.core.tags.index import _STOP, tokens
from tests.tag_corpus import FILLER


def test_function_words_are_not_tokens() -> None:
    assert tokens(f"The invoice {FILLER} and the ledger") == {"invoice", "ledger"}
    for word in "of in to the and but however therefore should would their whom".split():
        assert word in _STOP
