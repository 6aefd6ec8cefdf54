"""Core test fixtures shared by the per-module tag tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from tests.tag_corpus import make_corpus


@pytest.fixture
def corpus_kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    """A vault holding the full tag corpus: 12 documents a topic, the last one untagged."""
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    base.import_records(make_corpus(tmp_path / "corpus.jsonl"))
    yield base
    base.close()
