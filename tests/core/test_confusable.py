"""Confusable documents: planted look-alikes (a changed date, amount or name) are found, told
apart and given a tag; unrelated documents are not paired; values are never touched.

The vault holds real documents keyed with the real default model (dense) and real tantivy
analyzers (lexical profiles); the screen itself is also checked against brute force.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kvdesk.core.errors import KvdeskError
from kvdesk.core.keys.confusable import (
    HASH_MARGIN,
    ConfusablePair,
    ConfusableReport,
    SuggestedTag,
    close_neighbours,
    hashed_profiles,
    lexical_profile,
    phrase_like,
    profile_similarity,
    tag_shape,
)
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.paths import keys_dir_for
from kvdesk.core.pilot.log import PilotLog
from kvdesk.core.pilot.metrics import confusable_failed_sessions, met_confusable, pilot_report
from kvdesk.core.pilot.records import Outcome, PilotHit, PilotQuery, PilotSession
from kvdesk.core.search.retrieval import Explanation, Hit, SearchResult

CONTRACT = (
    "Service agreement between Northwind Logistics and the city library. The contractor"
    " maintains the book sorting machines, replaces worn conveyor belts and answers"
    " breakdown calls within four hours on working days. The agreement was signed on"
    " {date} and runs for twelve months; either party may end it with three months notice."
)
INVOICE = (
    "Invoice from Bergmann Catering for the staff summer party: buffet for eighty guests,"
    " vegetarian dishes, drinks and two waiters for the evening. Total amount due {amount}"
    " EUR, payable within thirty days to the account named on the order confirmation."
)
LETTER = (
    "Dear {name}, thank you for your application for the position of laboratory technician."
    " We were impressed by your experience with chromatography and would like to invite you"
    " to an interview at our research site next month. Please bring your certificates."
)
OTHERS = {
    "recipe": (
        "Slow cooked lentil soup: soften onions and carrots in olive oil, add red lentils,"
        " cumin and vegetable stock, simmer for forty minutes and finish with lemon juice."
    ),
    "vpn": (
        "To reach the office network from home, install the VPN client, import the profile"
        " from the intranet and sign in with your smart card; ask the helpdesk if it fails."
    ),
    "holiday": (
        "Holiday policy: every employee has thirty days of paid leave a year. Requests go"
        " through the HR portal at least two weeks ahead; unused days expire in March."
    ),
    "printer": (
        "The colour printer on the third floor jams when glossy paper is loaded in tray two."
        " Use tray one for photo paper and clear jams by opening the rear flap gently."
    ),
}
PLANTED = {("contract-a", "contract-b"), ("invoice-a", "invoice-b"), ("letter-a", "letter-b")}


def _records(path: Path) -> Path:
    docs = [
        ("contract-a", "Library maintenance contract", CONTRACT.format(date="2023-05-02")),
        ("contract-b", "Library maintenance contract", CONTRACT.format(date="2024-05-02")),
        ("invoice-a", "Summer party catering invoice", INVOICE.format(amount="2,832.93")),
        ("invoice-b", "Summer party catering invoice", INVOICE.format(amount="3,120.50")),
        ("letter-a", "Interview invitation", LETTER.format(name="Maria Keller")),
        ("letter-b", "Interview invitation", LETTER.format(name="Jonas Weber")),
        *((key, key.title(), text) for key, text in OTHERS.items()),
    ]
    path.write_text(
        "\n".join(json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in docs),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documents imported and dense-keyed once with the real default model."""
    folder = tmp_path_factory.mktemp("confusable")
    path = folder / "v.kvdb"
    with KnowledgeBase.open(path) as kb:
        kb.import_records(_records(folder / "docs.jsonl"))
        kb.build_dense_keys()
        assert kb.dense_status().ready
    return path


@pytest.fixture
def kb(template: Path, tmp_path: Path) -> Iterator[KnowledgeBase]:
    path = tmp_path / "v.kvdb"
    shutil.copy2(template, path)
    shutil.copytree(keys_dir_for(template), keys_dir_for(path))
    base = KnowledgeBase.open(path, create=False)
    yield base
    base.close()


def _ext(kb: KnowledgeBase) -> dict[int, str]:
    return kb.values.external_ids()


def _pairs(kb: KnowledgeBase, report: ConfusableReport) -> set[tuple[str, str]]:
    ext = _ext(kb)
    return {(ext[p.a.value_id], ext[p.b.value_id]) for p in report.pairs}


def _pair(kb: KnowledgeBase, report: ConfusableReport, a: str) -> ConfusablePair:
    ext = _ext(kb)
    return next(p for p in report.pairs if ext[p.a.value_id] == a)


def _tag(kb: KnowledgeBase, report: ConfusableReport, a: str) -> SuggestedTag:
    tag = _pair(kb, report, a).suggested_tag
    assert tag is not None
    return tag


# -- finding pairs ------------------------------------------------------------------------------


def test_planted_look_alikes_are_found_and_nothing_else(kb: KnowledgeBase) -> None:
    report = kb.confusable_pairs()
    assert _pairs(kb, report) == PLANTED
    assert report.checked == 10 and report.dense_keyed == 10 and not report.notes
    for pair in report.pairs:
        assert pair.dense_similarity is not None and pair.dense_similarity >= 0.80
        assert pair.lexical_similarity >= 0.80
        assert pair.a.value_id < pair.b.value_id  # a: the older value
    data = report.to_json()
    assert set(data) >= {"pairs", "checked"} and data["checked"] == 10
    first = data["pairs"][0]
    assert set(first) == {
        "a", "b", "dense_similarity", "lexical_similarity", "tells_apart", "suggested_tag",
        "tagged_apart",
    }  # fmt: skip
    assert set(first["a"]) == {"id", "title"} and first["a"]["id"].startswith("DOC-")
    assert set(first["tells_apart"]) == {"a", "b"}


def test_what_tells_them_apart(kb: KnowledgeBase) -> None:
    report = kb.confusable_pairs()
    contract = _pair(kb, report, "contract-a")
    assert contract.tells_a[0].text == "2023-05-02" and contract.tells_a[0].kind == "date"
    assert contract.tells_b[0].text == "2024-05-02"
    invoice = _pair(kb, report, "invoice-a")
    assert [(t.text, t.kind) for t in invoice.tells_a] == [("2,832.93", "number")]
    assert [(t.text, t.kind) for t in invoice.tells_b] == [("3,120.50", "number")]
    letter = _pair(kb, report, "letter-a")
    assert {(t.text, t.kind) for t in letter.tells_a} == {("Maria", "name"), ("Keller", "name")}
    assert {(t.text, t.kind) for t in letter.tells_b} == {("Jonas", "name"), ("Weber", "name")}


def test_suggested_tags_follow_the_vault_and_skip_tags_already_held(kb: KnowledgeBase) -> None:
    report = kb.confusable_pairs()
    ids = {v: k for k, v in _ext(kb).items()}
    contract = _tag(kb, report, "contract-a")
    # The years differ: the newer copy gets its year.
    assert (contract.member, contract.tag, contract.value_id) == ("b", "2024", ids["contract-b"])
    letter_tag = _tag(kb, report, "letter-a")
    assert letter_tag.tag in ("Jonas", "Weber") and letter_tag.member == "b"
    assert _tag(kb, report, "invoice-a").tag == "3,120.50"  # the amount is all that differs

    # Tags of the vault's own shape: years under "year::", words in lower case.
    kb.set_tag(ids["recipe"], "year::2019")
    kb.set_tag(ids["vpn"], "it::network")
    kb.set_tag(ids["holiday"], "hr")
    kb.set_tag(ids["letter-a"], "jonas")  # held by the other: the next mark is offered
    kb.set_tag(ids["letter-b"], "jonas")
    again = kb.confusable_pairs()
    assert _tag(kb, again, "contract-a").tag == "year::2024"
    assert _pair(kb, again, "letter-a").tagged_apart == ()
    assert _tag(kb, again, "letter-a").tag == "weber"


def test_applying_the_tag_keeps_the_pair_listed_and_values_intact(kb: KnowledgeBase) -> None:
    before = kb.check()
    report = kb.confusable_pairs()
    tag = _tag(kb, report, "contract-a")
    kb.set_tag(tag.value_id, tag.tag)
    assert tag.tag in kb.tags.of(tag.value_id)
    # Still listed (their keys still collide), now told apart by the tag, nothing more to do.
    told = _pair(kb, kb.confusable_pairs(), "contract-a")
    assert told.tagged_apart == ("2024",) and told.suggested_tag is None
    hits = kb.search("library maintenance contract 2024", mode="lexical").hits
    assert hits[0].value_id == tag.value_id  # the tag is a key: the two are told apart
    after = kb.check()
    assert after.ok and after.values_digest == before.values_digest


def test_among_restricts_to_pairs_with_a_member_there(kb: KnowledgeBase) -> None:
    ids = {v: k for k, v in _ext(kb).items()}
    report = kb.confusable_pairs(among=[ids["invoice-b"], ids["recipe"]])
    assert _pairs(kb, report) == {("invoice-a", "invoice-b")}
    assert report.checked == 2


def test_thresholds_decide_and_bad_ones_are_refused(kb: KnowledgeBase) -> None:
    assert kb.confusable_pairs(min_dense=1.0).pairs == ()
    loose = kb.confusable_pairs(min_dense=0.1, min_lexical=0.05)
    assert _pairs(kb, loose) > PLANTED  # unrelated documents only at loose thresholds
    for bad in ({"min_dense": 0.0}, {"min_lexical": 1.5}):
        with pytest.raises(KvdeskError, match="thresholds"):
            kb.confusable_pairs(**bad)  # type: ignore[arg-type]


def test_without_dense_keys_words_alone_find_them(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_records(_records(tmp_path / "docs.jsonl"))
        report = kb.confusable_pairs()
        assert _pairs(kb, report) == PLANTED
        assert all(p.dense_similarity is None for p in report.pairs)
        assert report.dense_keyed == 0 and "no current meaning keys" in report.notes[0]
        assert kb.key_sets.list() == []  # reading created no key set


def test_an_edited_value_is_compared_by_its_current_words(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    # invoice-b becomes a different document: its old dense keys must not pair it any more.
    records = tmp_path / "edit.jsonl"
    text = OTHERS["recipe"].replace("lentil", "pea")
    records.write_text(json.dumps({"_id": "invoice-b", "title": "Soup", "text": text}))
    kb.import_records(records)
    report = kb.confusable_pairs()
    assert ("invoice-a", "invoice-b") not in _pairs(kb, report)
    assert report.dense_keyed == 9


# -- the pieces ---------------------------------------------------------------------------------


def test_close_neighbours_equals_brute_force() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(300, 24)).astype(np.float32)
    vectors[150] = vectors[3] + 0.05 * rng.normal(size=24)  # two planted twins
    vectors[200] = vectors[3] + 0.05 * rng.normal(size=24)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1)
    floor = 0.45
    expected = {(i, j) for i, j in zip(*np.nonzero(sims >= floor), strict=True) if i < j}
    found = close_neighbours(vectors, np.arange(300), floor, neighbours=300)
    assert set(found) == expected and {(3, 150), (3, 200), (150, 200)} <= expected
    for (i, j), score in found.items():
        assert score == pytest.approx(sims[i, j], abs=1e-5)
    capped = close_neighbours(vectors, np.array([3]), floor, neighbours=1)
    assert list(capped) == [(3, int(np.argmax(sims[3])))]


def test_hashed_profiles_approximate_the_exact_similarity() -> None:
    texts = [CONTRACT.format(date="2023-05-02"), CONTRACT.format(date="2024-05-02"), LETTER]
    texts += list(OTHERS.values())
    profiles = [lexical_profile("", t) for t in texts]
    hashed = hashed_profiles(profiles)
    for i in range(len(texts)):
        for j in range(len(texts)):
            exact = profile_similarity(profiles[i], profiles[j])
            assert float(hashed[i] @ hashed[j]) == pytest.approx(exact, abs=HASH_MARGIN)
    assert profile_similarity(profiles[0], profiles[1]) > 0.9
    assert profile_similarity(profiles[0], profiles[2]) < 0.2


def test_profiles_leave_out_function_words_and_key_japanese() -> None:
    profile = lexical_profile("The invoices", "and the invoice was paid")
    assert profile == {"invoic": 2, "paid": 1}
    japanese = lexical_profile("", "東京都の請求書")
    assert japanese["東京"] == 1 and japanese["請求"] == 1


def test_tag_shapes_and_phrasing() -> None:
    assert [tag_shape(t) for t in ("2024", "2024-05-02", "3,120.50", "INV-2024-7", "weber")] == [
        "year", "date", "number", "code", "word",
    ]  # fmt: skip
    assert phrase_like("2024", ["year::2019", "client::acme", "year::2020"]) == "year::2024"
    assert phrase_like("INV-7", ["invoice::INV-2", "misc"]) == "invoice::INV-7"
    assert phrase_like("Weber", ["client::acme", "client::northwind"]) == "weber"
    assert phrase_like("Weber", ["Finance", "HR"]) == "Weber"
    assert phrase_like("Weber", []) == "Weber"


# -- the pilot report ---------------------------------------------------------------------------


def _session(sid: int, outcome: str | None, shown: list[list[int]]) -> PilotSession:
    queries = tuple(
        PilotQuery(
            id=n, seq=n, query=f"q{n}", mode="hybrid", at="2025-01-06T09:00:00+00:00",
            hit_count=len(ids), confident=True, key_set_id=None,
            hits=tuple(PilotHit(rank, v, 1.0 / rank) for rank, v in enumerate(ids, start=1)),
        )
        for n, ids in enumerate(shown, start=1)
    )  # fmt: skip
    start = "2025-01-06T09:00:00+00:00"
    verdict = None if outcome is None else Outcome(outcome)
    return PilotSession(sid, "ann", "", start, None, verdict, None, None, queries)


def test_a_session_met_a_pair_when_it_showed_both_or_ranked_one_first() -> None:
    partners = {1: {2}, 2: {1}}
    assert met_confusable(_session(1, "notfound", [[5, 1, 7, 2]]), partners)  # both shown
    assert met_confusable(_session(2, "notfound", [[5, 6], [2, 9]]), partners)  # one ranked first
    assert not met_confusable(_session(3, "notfound", [[5, 1, 9]]), partners)  # one, not first
    assert not met_confusable(_session(4, "notfound", [[]]), partners)


def _result(kb: KnowledgeBase, ids: list[int]) -> SearchResult:
    hits = tuple(
        Hit(
            value_id=v,
            identifier=kb.values.get(v).identifier,
            external_id=None,
            title="",
            media_type="text/plain",
            score=1.0 / rank,
            weight=0.1,
            snippet_html="",
            explanation=Explanation(),
        )
        for rank, v in enumerate(ids, start=1)
    )
    return SearchResult("q", "hybrid", "none", True, {}, hits, 1.0)


def test_pilot_report_counts_failed_sessions_that_met_a_pair(kb: KnowledgeBase) -> None:
    ids = {v: k for k, v in _ext(kb).items()}
    log = PilotLog(kb._vault)
    log.configure(enabled=True, user="ann")

    def session(shown: list[str], outcome: str) -> None:
        sid = log.start_session()
        log.record_search(sid, "q", _result(kb, [ids[d] for d in shown]))
        log.mark(sid, outcome, ids[shown[0]] if outcome == "found" else None)

    session(["recipe", "invoice-a", "invoice-b"], "notfound")  # both members shown
    session(["letter-b", "vpn"], "notfound")  # a member ranked first
    session(["vpn", "letter-a"], "notfound")  # a member, not first: does not count
    session(["contract-a", "contract-b"], "found")  # met a pair, but found: not a failure

    def finder(shown: object) -> list[tuple[int, int]]:
        return [p.value_ids for p in kb.confusable_pairs(among=shown).pairs]  # type: ignore[arg-type]

    report = pilot_report(log, confusable=finder)
    assert report.overall.confusable_failed_sessions == 2
    data = report.to_json()
    assert data["confusable_failed_sessions"] == 2
    assert list(data)[:7] == [
        "sessions", "success_rate", "abandon_rate", "zero_result_rate", "mrr",
        "median_seconds_to_find", "top_failed",
    ]  # fmt: skip
    assert pilot_report(log).to_json()["confusable_failed_sessions"] is None
    assert confusable_failed_sessions(log, finder) == 2  # the dashboard's tile, on its own
    assert confusable_failed_sessions(log, finder, team="nobody") == 0


def test_japanese_look_alikes_are_told_apart_by_date_and_name(tmp_path: Path) -> None:
    text = (
        "東京本社の会議室予約について。2024年4月10日に田中さんが第三会議室を予約しました。"
        "参加者は十名で、プロジェクターとホワイトボードを使います。昼食は各自で用意してください。"
    )
    edited = text.replace("2024年4月10日", "2024年4月12日").replace("田中", "佐藤")
    other = "大阪支店の出張旅費の精算方法について。領収書を添付して経理部に提出してください。"
    docs = [("a", text), ("b", edited), ("c", other)]
    records = tmp_path / "ja.jsonl"
    records.write_text(
        "\n".join(json.dumps({"_id": i, "title": "会議室予約", "text": t}) for i, t in docs),
        encoding="utf-8",
    )
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_records(records)
        report = kb.confusable_pairs()  # words only: no meaning keys built
        assert _pairs(kb, report) == {("a", "b")}
        pair = report.pairs[0]
        assert [(t.text, t.kind) for t in pair.tells_a] == [
            ("2024年4月10日", "date"),
            ("田中", "term"),
        ]  # noqa: E501
        assert [(t.text, t.kind) for t in pair.tells_b] == [
            ("2024年4月12日", "date"),
            ("佐藤", "term"),
        ]  # noqa: E501
        assert pair.suggested_tag is not None and pair.suggested_tag.tag == "2024年4月12日"
