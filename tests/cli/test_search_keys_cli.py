"""`search` options (-k, --session, readiness line, bad bytes), `rekey --no-activate`, `keys`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from tests.cli.runner import run
from tests.tiny_model import write_model_folder


@pytest.fixture
def vault(tmp_path: Path) -> str:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "memo.txt").write_text("Memo about the new printer in room 4.", encoding="utf-8")
    (docs / "plan.md").write_text("# Plan\n\nMove the archive to the basement.", encoding="utf-8")
    path = str(tmp_path / "v.kvdb")
    assert run("--vault", path, "import", str(docs), "--no-dense", "-q")[0] == 0
    return path


def test_k_must_be_positive(vault: str) -> None:
    for bad in ("0", "-3", "x"):
        assert run("--vault", vault, "search", "printer", "-k", bad)[0] == 2
    assert run("--vault", vault, "search", "printer", "-k", "1", "--mode", "lexical")[0] == 0


def test_text_output_says_which_keys_are_ready(vault: str) -> None:
    code, out = run("--vault", vault, "search", "printer", "--mode", "lexical")
    assert code == 0
    assert "keys ready: lexical, tags (not yet: dense)" in out


def test_undecodable_argv_bytes_do_not_crash(vault: str) -> None:
    raw = b"printer\xff".decode("utf-8", "surrogateescape")
    code, out = run("--vault", vault, "search", raw, "--mode", "lexical", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["query"] == "printer " and data["hits"]


def test_pilot_session_reformulation(vault: str) -> None:
    assert run("--vault", vault, "pilot", "on", "--user", "ann")[0] == 0
    code, out = run("--vault", vault, "search", "printr", "--mode", "lexical", "--pilot", "--json")
    session = json.loads(out)["pilot_session"]
    assert isinstance(session, int)
    code, out = run(
        "--vault", vault, "search", "printer", "--mode", "lexical",
        "--pilot", "--session", str(session), "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["pilot_session"] == session
    with KnowledgeBase.open(vault) as kb:
        queries = [q.query for q in kb.pilot.session(session).queries]
        assert queries == ["printr", "printer"]
        assert len(kb.pilot.sessions()) == 1
    assert run("--vault", vault, "search", "x", "--pilot", "--session", "999")[0] == 1


def test_rekey_no_activate_keys_list_activate_drop(vault: str, tmp_path: Path) -> None:
    a = write_model_folder(tmp_path / "a")
    b = write_model_folder(tmp_path / "b", seed=7)
    code, out = run("--vault", vault, "rekey", "--model", str(a), "--json", "-q")
    first = json.loads(out)
    assert code == 0 and first["active"]
    code, out = run("--vault", vault, "rekey", "--model", str(b), "--no-activate", "--json", "-q")
    second = json.loads(out)
    assert code == 0 and not second["active"]
    assert second["active_key_set"] == first["key_set"]

    code, out = run("--vault", vault, "keys", "list", "--json")
    rows = {r["id"]: r for r in json.loads(out)["key_sets"]}
    assert code == 0 and set(rows) == {first["key_set"], second["key_set"]}
    assert rows[first["key_set"]]["state"] == "active"
    assert rows[second["key_set"]]["state"] == "building"
    assert all(r["complete"] and r["passages"] >= 2 and r["dim"] == 32 for r in rows.values())
    code, out = run("--vault", vault, "keys")
    assert code == 0 and "active" in out

    code, out = run("--vault", vault, "keys", "activate", str(second["key_set"]), "--json")
    assert code == 0 and json.loads(out)["state"] == "active"
    code, out = run("--vault", vault, "keys", "activate", str(first["key_set"]))
    assert code == 0 and "now active" in out
    assert run("--vault", vault, "keys", "drop", str(first["key_set"]))[0] == 1  # active
    code, out = run("--vault", vault, "keys", "drop", str(second["key_set"]), "--json")
    assert code == 0 and json.loads(out)["passages"] >= 2
    code, out = run("--vault", vault, "keys", "list", "--json")
    assert [r["id"] for r in json.loads(out)["key_sets"]] == [first["key_set"]]
    assert run("--vault", vault, "keys", "activate", "999")[0] == 1


def test_search_answers_with_the_keys_that_are_ready_and_keys_build_completes_them(
    tmp_path: Path,
) -> None:
    """A search never builds keys first (20 minutes on 20,000 records): it says what is not
    ready; `kvdesk keys build` completes them."""
    vault = str(tmp_path / "v.kvdb")
    (tmp_path / "a.txt").write_text("The printer on floor three jams on double-sided jobs.")
    (tmp_path / "b.txt").write_text("Travel expenses are refunded within thirty days.")
    assert run("--vault", vault, "import", str(tmp_path), "--no-dense")[0] == 0
    code, out = run("--vault", vault, "search", "printer jams")
    assert code == 0 and "not yet: dense" in out and "printer" in out.lower()
    with KnowledgeBase.open(vault, create=False) as kb:
        assert kb.dense_status().keyed_values == 0
    code, out = run("--vault", vault, "keys", "build", "-q")
    assert code == 0 and "2/2 values keyed" in out
    code, out = run("--vault", vault, "search", "printer jams")
    assert code == 0 and "not yet" not in out


def test_a_leading_minus_word_is_an_exclusion_not_an_option(tmp_path: Path) -> None:
    """`kvdesk search budget -draft` (documented syntax) must not be read as an option."""
    vault = str(tmp_path / "v.kvdb")
    (tmp_path / "final.txt").write_text("Budget final figures for the quarter.")
    (tmp_path / "draft.txt").write_text("Budget draft figures, not approved.")
    assert run("--vault", vault, "import", str(tmp_path), "--no-dense")[0] == 0
    for argv in (["budget", "-draft"], ["-draft", "budget"], ["budget", "-k", "3", "-draft"]):
        code, out = run("--vault", vault, "search", *argv, "--mode", "lexical", "--json")
        titles = [h["title"] for h in json.loads(out)["hits"]]
        assert code == 0 and titles == ["final"], (argv, titles)
    code, out = run("--vault", vault, "search", "--budget--", "--mode", "lexical", "--json")
    assert code == 0 and json.loads(out)["query"] == "--budget--"
