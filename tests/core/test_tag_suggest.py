"""Tag suggestions (``kvdesk.core.tags.suggest``): evidence, calibration, immediate learning
from accepts/rejects, rule evidence, undo; evidence terms are topic words, never English
function words; ``k`` must be at least 1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.core.errors import KvdeskError
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.tags.store import TagState
from kvdesk.core.tags.suggest import Suggestion
from tests.tag_corpus import FILLER, TOPICS, make_corpus


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    base.import_records(make_corpus(tmp_path / "corpus.jsonl"))
    yield base
    base.close()


@pytest.fixture
def filler_kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    rows = []
    for i in range(8):
        tag = ["finance"] if i < 7 else []
        rows.append(
            {"_id": f"f{i}", "title": f"f{i}", "text": f"invoice ledger {FILLER}", "tags": tag}
        )
    for i in range(8):
        rows.append({"_id": f"c{i}", "title": f"c{i}", "text": "oven flour", "tags": ["cooking"]})
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    base = KnowledgeBase.open(tmp_path / "v.kvdb")
    base.import_records(corpus)
    yield base
    base.close()


def _vid(kb: KnowledgeBase, external_id: str) -> int:
    return kb.values.resolve(external_id)


def test_suggests_the_topic_tag_with_terms_and_neighbour_evidence(kb: KnowledgeBase) -> None:
    suggester = kb.tags.suggester(use_dense=False)
    assert sorted(kb.values.get(v).external_id or "" for v in suggester.untagged()) == [
        "astronomy-11",
        "cooking-11",
        "finance-11",
        "python-11",
    ]
    for ext, topic in (("cooking-11", "food::cooking"), ("finance-11", "finance")):
        suggestions = suggester.suggest(_vid(kb, ext), k=3)
        assert suggestions, ext
        top = suggestions[0]
        assert isinstance(top, Suggestion)
        assert top.tag == topic
        assert 0.0 <= top.confidence <= 1.0
        assert top.confidence > max((s.confidence for s in suggestions[1:]), default=0.0)
        assert any(e.startswith("terms: ") for e in top.evidence)
        similar = [e for e in top.evidence if e.startswith("similar to DOC-")]
        assert similar and "“" in similar[0]
        words = set(TOPICS[topic]) | {topic.split("::")[-1]}
        terms = next(e for e in top.evidence if e.startswith("terms: "))[len("terms: ") :]
        assert set(terms.split(", ")) <= words


def test_already_accepted_tags_are_not_suggested(kb: KnowledgeBase) -> None:
    suggester = kb.tags.suggester(use_dense=False)
    tagged = _vid(kb, "cooking-0")
    assert "food::cooking" not in [s.tag for s in suggester.suggest(tagged, k=10)]


def test_rejected_tag_is_never_proposed_again(kb: KnowledgeBase) -> None:
    suggester = kb.tags.suggester(use_dense=False)
    vid = _vid(kb, "cooking-11")
    assert suggester.suggest(vid, k=1)[0].tag == "food::cooking"
    suggester.reject(vid, "food::cooking", actor="alice")
    assert "food::cooking" not in [s.tag for s in suggester.suggest(vid, k=10)]
    assert kb.tags.of(vid, "rejected") == ("food::cooking",)
    fresh = kb.tags.suggester(use_dense=False)  # also after a restart
    assert "food::cooking" not in [s.tag for s in fresh.suggest(vid, k=10)]
    # a reject votes against the tag for similar documents too
    row = kb.tags.row(vid, "food::cooking")
    assert row is not None and row.state is TagState.REJECTED and row.actor == "alice"


def test_accept_takes_effect_at_once_without_retraining(kb: KnowledgeBase) -> None:
    suggester = kb.tags.suggester(use_dense=False)
    cal_before = suggester.calibration
    a, b = _vid(kb, "astronomy-11"), _vid(kb, "astronomy-10")
    assert "project::hubble" not in [s.tag for s in suggester.suggest(a, k=10)]
    suggester.accept(b, "project::hubble", actor="bob")
    after = [s.tag for s in suggester.suggest(a, k=10)]
    assert "project::hubble" in after
    assert suggester.calibration is cal_before  # no refit happened
    # accepted tags are keys: searching the tag name finds the document and explains it
    result = kb.search("hubble", k=5, mode="lexical")
    assert result.hits and result.hits[0].value_id == b
    # un-accepting by rejecting removes its evidence again
    suggester.reject(b, "project::hubble")
    assert "project::hubble" not in [s.tag for s in suggester.suggest(a, k=10)]


def test_calibration_is_fitted_on_curated_documents_and_stored(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "v.kvdb") as base:
        base.import_records(make_corpus(tmp_path / "c.jsonl", per_topic=30, untagged=2))
        suggester = base.tags.suggester(use_dense=False)
        cal = suggester.fit()
        assert cal.fitted
        assert 0.05 <= cal.threshold <= 0.95
        assert cal.curated == 4 * 28
        # the stored calibration is reused by a new suggester
        again = base.tags.suggester(use_dense=False)
        assert again.calibration == cal
        sugg = again.suggest(base.values.resolve("finance-29"), k=4)
        assert sugg[0].tag == "finance" and sugg[0].confidence >= cal.threshold
        assert all(s.confidence < cal.threshold for s in sugg[1:])


def test_rules_match_and_give_evidence(kb: KnowledgeBase) -> None:
    suggester = kb.tags.suggester(use_dense=False)
    ids = [_vid(kb, f"finance-{i}") for i in range(12)]
    hit = next(v for v in ids if "invoice" in kb.values.text(v))
    miss = next(v for v in ids if "invoice" not in kb.values.text(v))
    rule = suggester.add_rule("billing", "regex", r"\binvoice\b")
    assert rule.describe() == "rule: regex /\\binvoice\\b/"
    top = {s.tag: s for s in suggester.suggest(hit, k=10)}
    assert top["billing"].confidence == pytest.approx(0.6)  # the prior: no history yet
    assert top["billing"].evidence[0] == rule.describe()
    assert "no accepted or rejected matches yet" in top["billing"].reason
    assert "billing" not in [s.tag for s in suggester.suggest(miss, k=10)]
    assert [t.rules for t in kb.tags.infos() if t.name == "billing"] == [(rule.describe(),)]


def test_rule_confidence_follows_its_history(kb: KnowledgeBase) -> None:
    suggester = kb.tags.suggester(use_dense=False)
    matching = [
        v
        for v in (_vid(kb, f"{t}-{i}") for t in ("finance", "cooking") for i in range(12))
        if "invoice" in kb.values.text(v) or "oven" in kb.values.text(v)
    ]
    assert len(matching) >= 9
    suggester.add_rule("billing", "any", "invoice oven")
    probe, accepted, rejected = matching[0], matching[1:4], matching[4:9]

    def billing() -> Suggestion:
        return next(s for s in suggester.suggest(probe, k=10) if s.tag == "billing")

    assert billing().confidence == pytest.approx(0.6)
    for v in accepted:
        suggester.accept(v, "billing")
    good = billing()  # the rule's 3 of 3 (with the prior) outweighs 3 examples' evidence
    assert good.confidence == pytest.approx((3 + 1.5) / (3 + 2.5))
    assert "3 of the rule's 3 decided matches were accepted" in good.reason
    for v in rejected:
        suggester.reject(v, "billing")
    bad = billing()  # now at most what the tag's own (3-example) evidence says
    assert bad.confidence < good.confidence - 0.2
    assert "3 of the rule's 8 decided matches were accepted" in bad.reason
    # a new process reads the same history from the vault
    fresh = kb.tags.suggester(use_dense=False)
    again = next(s for s in fresh.suggest(probe, k=10) if s.tag == "billing")
    assert again.confidence == pytest.approx(bad.confidence)


def test_few_examples_mean_low_confidence_and_say_so(tmp_path: Path) -> None:
    """A tag learnt from 3 documents is never confidently proposed, and the reason says why;
    the same kind of document is proposed confidently once the tag has many examples."""
    tops = {}
    for per_topic in (4, 40):
        with KnowledgeBase.open(tmp_path / f"v{per_topic}.kvdb") as base:
            corpus = make_corpus(tmp_path / f"c{per_topic}.jsonl", per_topic=per_topic)
            base.import_records(corpus)
            suggester = base.tags.suggester(use_dense=False)
            for name in ("finance", "cooking", "python", "astronomy"):
                vid = base.values.resolve(f"{name}-{per_topic - 1}")
                top = suggester.suggest(vid, k=3)[0]
                assert top.tag.split("::")[-1] == name
                tops[per_topic, name] = top
    for name in ("finance", "cooking", "python", "astronomy"):
        few, many = tops[4, name], tops[40, name]
        assert few.confidence < 0.45, few
        assert few.reason.startswith("only 3 examples of this tag"), few.reason
        assert many.confidence > few.confidence + 0.2
        assert many.reason.startswith("learnt from 39 examples")
        assert few.to_json()["reason"] == few.reason


def test_evidence_terms_are_meaningful(filler_kb: KnowledgeBase) -> None:
    suggester = filler_kb.tags.suggester(use_dense=False)
    (top, *_rest) = suggester.suggest(filler_kb.values.resolve("f7"), k=3)
    assert top.tag == "finance"
    (terms,) = [e for e in top.evidence if e.startswith("terms: ")]
    words = terms.removeprefix("terms: ").split(", ")
    assert set(words) <= {"invoice", "ledger"}, words


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_is_an_error(filler_kb: KnowledgeBase, k: int) -> None:
    with pytest.raises(KvdeskError, match="at least one"):
        filler_kb.tags.suggester(use_dense=False).suggest(filler_kb.values.resolve("f7"), k=k)


def test_undo_accept_of_a_suggestion_restores_suggested_exactly(kb: KnowledgeBase) -> None:
    suggester = kb.tags.suggester(use_dense=False)
    vid = kb.values.resolve("finance-11")
    suggester.record_suggestions(vid, [Suggestion("finance", 0.8, ())], actor="kvdesk")
    before = kb.tags.row(vid, "finance")
    assert before is not None and before.state == "suggested" and before.actor == "kvdesk"
    suggester.accept(vid, "finance", actor="ann")
    assert kb.tags.of(vid) == ("finance",)
    suggester.restore(vid, "finance", before)
    assert kb.tags.row(vid, "finance") == before
    assert kb.tags.of(vid) == ()
    assert kb.tags.of(vid, "suggested") == ("finance",)
    # the suggester forgot the accept at once: finance is proposed again
    assert "finance" in [s.tag for s in suggester.suggest(vid, k=3)]


@pytest.mark.slow
def test_dense_neighbours_with_the_real_model(tmp_path: Path) -> None:
    rows = []
    texts = {
        "pets": [
            "My dog loves long walks in the park.",
            "The cat sleeps on the warm sofa.",
            "Feed the puppy twice a day.",
            "Our kitten chased a ball of yarn.",
            "Dogs and cats need a vet check every year.",
            "The hamster runs in its wheel.",
            "Take the dog out before breakfast.",
        ],
        "weather": [
            "Heavy rain is expected tomorrow afternoon.",
            "A storm brings strong winds.",
            "Sunny skies and warm temperatures all week.",
            "Snow fell overnight in the hills.",
            "Thunder and lightning over the city tonight.",
            "Fog will clear by noon.",
            "Cold wind and drizzle this morning.",
        ],
    }
    for tag, docs in texts.items():
        for i, text in enumerate(docs):
            rows.append(
                {
                    "_id": f"{tag}-{i}",
                    "title": text[:20],
                    "text": text,
                    "tags": [tag] if i < len(docs) - 1 else [],
                }
            )
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "v.kvdb") as base:
        base.import_records(corpus)
        base.build_dense_keys()
        suggester = base.tags.suggester()
        for tag in texts:
            vid = base.values.resolve(f"{tag}-6")
            top = suggester.suggest(vid, k=2)[0]
            assert top.tag == tag
            assert any("close to the tag's documents" in e for e in top.evidence)
            assert any(e.startswith("similar to DOC-") for e in top.evidence)
