"""``kvdesk learn`` and ``kvdesk keys audit`` through the real command line: exact JSON keys,
--no-activate, the gap in ``keys list``, the leak audit and its visibility switch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from tests.cli.runner import run
from tests.core.test_learned import CASES, DOCS


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    path = tmp_path / "v.kvdb"
    with KnowledgeBase.open(path) as kb:
        kb.import_paths([root])
        kb.build_dense_keys()
        names = {r.source_path.rsplit("/", 1)[-1]: r.identifier for r in kb.values.list_values()}
        for query, doc in CASES:
            kb.golden.add_case("office", query, names[doc])
        kb.pilot.configure(enabled=True, user="anna")
        session = kb.pilot.start_session()
        query = "invoice from anna@example.com"
        kb.pilot.record_search(session, query, kb.search(query))
        kb.pilot.mark(session, "found", kb.values.get(names["budget.txt"]).id)
    return path


@pytest.mark.model
def test_learn_json_keys_are_exact_and_no_activate_keeps_search_as_it_was(vault: Path) -> None:
    code, out = run("--vault", str(vault), "learn", "--golden", "office", "--no-activate", "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"key_set", "pairs", "learn", "held_out", "gap"}
    assert set(data["learn"]) == set(data["held_out"]) == {"ndcg@10"}
    assert data["pairs"] == len(CASES)
    gap = data["learn"]["ndcg@10"] - data["held_out"]["ndcg@10"]
    assert data["gap"] == pytest.approx(gap, abs=2e-4)
    code, out = run("--vault", str(vault), "keys", "list", "--json")
    listed = json.loads(out)
    (learned,) = listed["learned_key_sets"]
    assert learned["id"] == data["key_set"] and learned["state"] == "building"
    assert learned["gap"] == pytest.approx(data["gap"], abs=1e-4)
    assert learned["held_out_novel"]["queries"] <= learned["held_out"]["queries"]
    code, out = run("--vault", str(vault), "keys", "list")
    assert code == 0 and "learned from 10 pairs" in out and "gap" in out
    # The candidate is compared with no learned keys, then switched on.
    code, out = run(
        "--vault", str(vault), "golden", "eval", "office", "--key-set", str(data["key_set"]),
        "--json",
    )  # fmt: skip
    assert code == 0
    ids = [k["id"] for k in json.loads(out)["key_sets"]]
    assert ids[1] == data["key_set"]
    code, out = run("--vault", str(vault), "keys", "activate", str(data["key_set"]))
    assert code == 0 and "now active" in out
    code, out = run("--vault", str(vault), "search", "hotel cap abroad", "--explain")
    assert code == 0 and "learned from 3 searches that found this" in out


@pytest.mark.model
def test_learn_from_pilot_and_audit(vault: Path) -> None:
    code, out = run("--vault", str(vault), "learn", "--from-pilot", "--golden", "office")
    assert code == 0 and "held-out" in out and "gap" in out
    code, out = run("--vault", str(vault), "keys", "audit", "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"key_set", "show_others", "flagged"}
    assert data["show_others"] is True  # a vault of one's own: shown unless forbidden
    (flagged,) = data["flagged"]
    assert flagged["query"] == "invoice from anna@example.com"
    assert flagged["user"] == "anna"
    assert set(flagged["reasons"]) == {"e-mail", "single user"}
    code, out = run("--vault", str(vault), "keys", "audit", "--show-others", "no", "--json")
    assert json.loads(out)["show_others"] is False
    code, out = run("--vault", str(vault), "keys", "audit")
    assert code == 0 and "hidden" in out and "anna@example.com" in out
    # Turning learning off: drop the learned key set (values and other keys stay).
    (learned,) = json.loads(run("--vault", str(vault), "keys", "list", "--json")[1])[
        "learned_key_sets"
    ]
    code, out = run("--vault", str(vault), "keys", "drop", str(learned["id"]))
    assert code == 0 and "learned keys" in out
    code, out = run("--vault", str(vault), "keys", "list", "--json")
    assert "learned_key_sets" not in json.loads(out)
    code, out = run("--vault", str(vault), "search", "hotel cap abroad", "--explain")
    assert code == 0 and "learned from" not in out


def test_learn_needs_a_source_and_pairs(tmp_path: Path) -> None:
    code, _out = run("--vault", str(tmp_path / "v.kvdb"), "learn")
    assert code == 2
    with KnowledgeBase.open(tmp_path / "v.kvdb"):
        pass
    code, _out = run("--vault", str(tmp_path / "v.kvdb"), "learn", "--from-pilot")
    assert code == 1
    code, _out = run("--vault", str(tmp_path / "missing.kvdb"), "learn", "--from-pilot")
    assert code == 1 and not (tmp_path / "missing.kvdb").exists()
