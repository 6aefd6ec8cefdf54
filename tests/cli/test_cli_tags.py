"""The ``kvdesk tags`` commands, run through the real command-line entry point: suggest, accept,
reject, list, rule, eval, ``set`` (description, colour), ``-k`` validation and rule problems in
the list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from tests.cli.runner import run
from tests.tag_corpus import make_corpus


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
        assert set(top) == {"tag", "confidence", "evidence", "reason"}
        assert top["reason"].startswith("learnt from 11 examples")
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


def test_set_description_and_colour_shown_in_list(vault: str) -> None:
    code, out = run(
        "--vault", vault, "tags", "set", "finance", "--description", "Money matters",
        "--color", "#1A2b3C", "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert (data["name"], data["description"], data["color"]) == (
        "finance", "Money matters", "#1a2b3c"
    )  # fmt: skip
    code, out = run("--vault", vault, "tags", "list", "--json")
    tags = {t["name"]: t for t in json.loads(out)}
    assert tags["finance"]["description"] == "Money matters"
    assert tags["finance"]["color"] == "#1a2b3c"
    assert tags["finance"]["accepted"] == 11  # counts untouched
    code, out = run("--vault", vault, "tags", "list")
    line = next(x for x in out.splitlines() if x.startswith("finance"))
    assert "#1a2b3c" in line and "Money matters" in line
    # only the colour: the description stays
    assert run("--vault", vault, "tags", "set", "finance", "--color", "#ffffff")[0] == 0
    _code, out = run("--vault", vault, "tags", "list", "--json")
    tags = {t["name"]: t for t in json.loads(out)}
    assert (tags["finance"]["description"], tags["finance"]["color"]) == (
        "Money matters", "#ffffff"
    )  # fmt: skip


@pytest.mark.parametrize("color", ["red", "#12345", "#1234567", "#gggggg", "123456"])
def test_bad_colour_is_refused(vault: str, color: str) -> None:
    assert run("--vault", vault, "tags", "set", "finance", "--color", color)[0] == 1
    _code, out = run("--vault", vault, "tags", "list", "--json")
    assert {t["name"]: t for t in json.loads(out)}["finance"]["color"] == ""


def test_set_needs_something_to_set(vault: str) -> None:
    assert run("--vault", vault, "tags", "set", "finance")[0] == 1


@pytest.mark.parametrize("k", ["0", "-1", "x"])
def test_suggest_k_must_be_at_least_one(vault: str, k: str) -> None:
    code, _out = run("--vault", vault, "tags", "suggest", "--untagged", "-k", k, "--no-dense")
    assert code == 2


def test_list_shows_rule_problems(vault: str) -> None:
    assert (
        run("--vault", vault, "tags", "rule", "numbers", "--kind", "regex", r"(\d|\d\d)+$")[0] == 0
    )
    with KnowledgeBase.open(vault) as kb:
        kb.import_records(_digits(Path(vault).parent))
    code, out = run("--vault", vault, "tags", "suggest", "digits", "--json", "--no-dense")
    assert code == 0
    assert "numbers" not in [s["tag"] for s in json.loads(out)["suggestions"]]
    _code, out = run("--vault", vault, "tags", "list")
    assert "! problem: regex /(\\d|\\d\\d)+$/: timed out on document" in out
    _code, out = run("--vault", vault, "tags", "list", "--json")
    (problem,) = {t["name"]: t for t in json.loads(out)}["numbers"]["problems"]
    assert problem["problem"].startswith("timed out")


def _digits(folder: Path) -> Path:
    path = folder / "digits.jsonl"
    path.write_text(json.dumps({"_id": "digits", "title": "n", "text": "1" * 80 + "x"}) + "\n")
    return path
