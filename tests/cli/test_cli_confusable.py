"""``kvdesk keys confusable`` and the pilot report's count of failed sessions that met
confusable documents, through the real command line and a real vault (real default model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.pilot.log import record_cli_search
from tests.cli.runner import run
from tests.core.test_confusable import _records


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("cli-confusable")
    path = str(folder / "v.kvdb")
    records = _records(folder / "docs.jsonl")
    assert run("--vault", path, "import", "--records", str(records), "-q")[0] == 0
    assert run("--vault", path, "keys", "build", "-q")[0] == 0
    return path


def test_json_lists_the_planted_pairs(vault: str) -> None:
    code, out = run("--vault", vault, "keys", "confusable", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["checked"] == 10 and report["thresholds"] == {"dense": 0.8, "lexical": 0.8}
    titles = sorted(p["a"]["title"] for p in report["pairs"])
    assert titles == [
        "Interview invitation", "Library maintenance contract", "Summer party catering invoice",
    ]  # fmt: skip
    for pair in report["pairs"]:
        assert pair["a"]["title"] == pair["b"]["title"] and pair["a"]["id"] != pair["b"]["id"]
        assert pair["dense_similarity"] >= 0.8 and pair["lexical_similarity"] >= 0.8
        assert pair["tells_apart"]["a"] and pair["tells_apart"]["b"]
        tag = pair["suggested_tag"]
        assert tag["for"] in ("a", "b") and tag["id"] == pair[tag["for"]]["id"] and tag["tag"]
    contract = next(p for p in report["pairs"] if p["a"]["title"].startswith("Library"))
    assert contract["tells_apart"]["a"][0] == "2023-05-02"
    assert contract["suggested_tag"]["tag"] == "2024"


def test_text_output_and_thresholds(vault: str) -> None:
    code, out = run("--vault", vault, "keys", "confusable")
    assert code == 0
    assert out.startswith("3 confusable pairs among 10 values")
    assert "only in DOC-" in out and "suggested tag for DOC-" in out
    code, out = run("--vault", vault, "keys", "confusable", "--min-dense", "1", "--json")
    assert code == 0 and json.loads(out)["pairs"] == []


def test_bad_use_and_missing_vault(vault: str, tmp_path: Path) -> None:
    assert run("--vault", vault, "keys", "confusable", "--min-dense", "0")[0] == 2
    assert run("--vault", vault, "keys", "confusable", "--min-lexical", "x")[0] == 2
    missing = tmp_path / "none.kvdb"
    assert run("--vault", str(missing), "keys", "confusable")[0] == 1
    assert not missing.exists()


def test_pilot_report_counts_failed_sessions_with_look_alikes(vault: str, tmp_path: Path) -> None:
    assert run("--vault", vault, "pilot", "on", "--user", "ann")[0] == 0
    with KnowledgeBase.open(vault, create=False) as kb:
        # Both invoices come up for this query: the user cannot tell which one is wanted.
        looked = record_cli_search(kb, kb.search("summer party catering invoice", mode="lexical"))
        other = record_cli_search(kb, kb.search("lentil soup", mode="lexical"))
    assert run("--vault", vault, "pilot", "mark", str(looked), "notfound")[0] == 0
    assert run("--vault", vault, "pilot", "mark", str(other), "notfound")[0] == 0
    code, out = run("--vault", vault, "pilot", "report", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["confusable_failed_sessions"] == 1
    assert list(report)[:7] == [
        "sessions", "success_rate", "abandon_rate", "zero_result_rate", "mrr",
        "median_seconds_to_find", "top_failed",
    ]  # fmt: skip
    code, out = run("--vault", vault, "pilot", "report")
    assert code == 0 and "failed sessions that met confusable documents: 1" in out
