"""The ``kvdesk tags`` commands, run through the real command-line entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.runner import run
from tests.core.test_tagging import make_corpus


@pytest.fixture
def vault(tmp_path: Path) -> str:
    path = str(tmp_path / "v.kvdb")
    corpus = make_corpus(tmp_path / "c.jsonl")
    assert run("--vault", path, "import", "--records", str(corpus), "--no-dense", "-q")[0] == 0
    return path


def test_suggest_untagged_json_lines(vault: str) -> None:
    code, out = run(
        "--vault", vault, "tags", "suggest", "--untagged", "-k", "3", "--json", "--no-dense"
    )
    assert code == 0
    lines = [json.loads(x) for x in out.splitlines()]
    assert {x["external_id"] for x in lines} == {
        "cooking-11",
        "finance-11",
        "astronomy-11",
        "python-11",
    }
    for line in lines:
        assert set(line) == {"id", "external_id", "suggestions"}
        assert line["id"].startswith("DOC-")
        assert 1 <= len(line["suggestions"]) <= 3
        top = line["suggestions"][0]
        assert set(top) == {"tag", "confidence", "evidence"}
        assert top["tag"].split("::")[-1] == line["external_id"].split("-")[0]
        assert any(e.startswith("terms: ") for e in top["evidence"])


def test_accept_reject_and_list(vault: str) -> None:
    assert run("--vault", vault, "tags", "accept", "cooking-11", "food::cooking")[0] == 0
    assert run("--vault", vault, "tags", "reject", "finance-11", "finance")[0] == 0
    code, out = run("--vault", vault, "tags", "list", "--json")
    assert code == 0
    tags = {t["name"]: t for t in json.loads(out)}
    assert tags["food::cooking"]["accepted"] == 12
    assert tags["finance"]["rejected"] == 1
    assert set(tags["finance"]) >= {
        "name",
        "description",
        "color",
        "accepted",
        "suggested",
        "rejected",
    }
    code, out = run(
        "--vault", vault, "tags", "suggest", "finance-11", "--json", "--no-dense", "-k", "10"
    )
    assert "finance" not in [s["tag"] for s in json.loads(out)["suggestions"]]
    code, out = run("--vault", vault, "tags", "list")
    assert "finance" in out and "rejected 1" in out


def test_rule_command_and_bad_regex(vault: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run("--vault", vault, "tags", "rule", "billing", "--kind", "regex", "invoice")
    assert code == 0 and "rule: regex /invoice/" in out
    code, _out = run("--vault", vault, "tags", "rule", "billing", "--kind", "regex", "(oops")
    assert code == 1
    assert "bad regular expression" in capsys.readouterr().err


def test_unknown_document_is_an_error(vault: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--vault", vault, "tags", "accept", "nope", "x")[0] == 1
    assert "no document" in capsys.readouterr().err


def test_eval_prints_protocol_figures(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "e.jsonl", per_topic=20, untagged=0)
    code, out = run(
        "--vault",
        str(tmp_path / "e.kvdb"),
        "tags",
        "eval",
        str(corpus),
        "--seed",
        "7",
        "--json",
        "--no-dense",
        "-q",
    )
    assert code == 0
    data = json.loads(out)
    assert {"held_out", "p@3", "r@5", "f1", "suggest_ms_p50"} <= set(data)
    assert data["held_out"] == 16
    assert data["r@5"] > 0.9
