"""The evidence index (``kvdesk.core.tags.index``): tokens are topic words, never English
function words; dense similarity counts only above its language's usual level; evidence terms
are discriminative."""

from __future__ import annotations

import numpy as np
import pytest

from kvdesk.core.keys.vectors import VectorMatrix
from kvdesk.core.tags.index import _STOP, EvidenceIndex, tokens
from tests.tag_corpus import FILLER


def test_function_words_are_not_tokens() -> None:
    assert tokens(f"The invoice {FILLER} and the ledger") == {"invoice", "ledger"}
    for word in "of in to the and but however therefore should would their whom".split():
        assert word in _STOP


def _unit(*parts: tuple[int, float], dim: int = 64) -> np.ndarray:
    """A unit vector with weight sqrt(w) on axis i for each (i, w) (weights sum to 1)."""
    v = np.zeros(dim, dtype=np.float32)
    for axis, weight in parts:
        v[axis] = np.sqrt(weight)
    return v


def test_similarity_counts_only_above_what_is_usual_for_the_language() -> None:
    """Japanese documents that are all 0.8 alike (as under an English-only model) give no
    similarity evidence, while an English document at a lower 0.77 to a tag's documents, in a
    vault where English documents are usually ~0.1 alike, does."""
    matrix = VectorMatrix(64)
    index = EvidenceIndex(matrix)
    axis = iter(range(8, 64))
    ja_text = "バックアップの取り方と復元の手順について説明します。"

    def add(vid: int, text: str, vec: np.ndarray, tag: str | None) -> None:
        matrix.upsert_value(vid, vec[None, :])
        index.add_document(vid, f"DOC-{vid}", text[:10], text)
        if tag:
            index.apply(vid, index.tag(tag), "accepted")

    # Japanese: every pair at cosine 0.8 (a shared axis 0, one own axis each)
    for vid, tag in enumerate(["backup"] * 3 + ["gui"] * 3 + [None] * 4, start=1):
        add(vid, ja_text, _unit((0, 0.8), (next(axis), 0.2)), tag)
    ja_query = 20
    add(ja_query, ja_text, _unit((0, 0.8), (next(axis), 0.2)), None)
    # English: usually 0.1 alike (axis 1); the network documents also share axis 2
    en = "network setup and configuration of interfaces"
    for vid in range(30, 33):
        add(vid, en, _unit((1, 0.1), (2, 0.6), (next(axis), 0.3)), "network")
    for vid in range(33, 42):
        add(vid, en, _unit((1, 0.1), (next(axis), 0.9)), "printing" if vid < 36 else None)
    en_query = 50
    add(en_query, en, _unit((2, 1.0)), None)

    assert index.language[ja_query] == "cjk" and index.language[en_query] == "other"
    ja_base, en_base = index.baseline("cjk"), index.baseline("other")
    assert ja_base.mean == pytest.approx(0.8, abs=1e-4)
    assert en_base.mean < 0.3

    ja = index.candidates(ja_query, leave_out=False)
    assert {index.tag_names[t] for t in ja} >= {"backup", "gui"}
    for t, c in ja.items():
        assert c.raw_max == pytest.approx(0.8, abs=1e-4), (index.tag_names[t], c)
        assert c.knn == 0 and c.knn_max == 0 and c.proto == 0  # ... but no evidence
        assert not c.neighbours
    en_c = index.candidates(en_query, leave_out=False)
    network = en_c[index.tag("network")]
    assert network.raw_max == pytest.approx(np.sqrt(0.6), abs=1e-4)  # 0.77 < 0.8
    assert network.knn > 0.9 and network.knn_max > 0.5 and network.proto > 0.3
    assert index.tag("printing") not in en_c or en_c[index.tag("printing")].knn <= 0


def test_evidence_terms_are_discriminative_not_chance() -> None:
    """A word two of a tag's three documents share by chance ("ere") is no evidence term; one
    in all of its documents and rare elsewhere is."""
    index = EvidenceIndex()
    docs = [
        ("backup archive ere rsync", "backup"),
        ("backup archive ere tar", "backup"),
        ("backup archive recovery", "backup"),
        ("window desktop archive theme", "gui"),
        ("window desktop archive ere", "gui"),
        ("window desktop archive", "gui"),
    ] + [(f"misc{i} notes", None) for i in range(6)]
    for vid, (text, tag) in enumerate(docs, start=1):
        index.add_document(vid, f"DOC-{vid}", "", text)
        if tag:
            index.apply(vid, index.tag(tag), "accepted")
    index.add_document(99, "DOC-99", "", "backup archive ere recovery rsync")
    cands = index.candidates(99, leave_out=False)
    shown = {w for _s, w in cands[index.tag("backup")].terms}
    assert shown == {"backup"}  # archive is in the gui documents too; ere, rsync by chance
