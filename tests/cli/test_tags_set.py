"""``kvdesk tags set`` (description, colour), ``-k`` validation and rule problems in the list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvdesk.core.errors import KvdeskError
from kvdesk.core.knowledge_base import KnowledgeBase
from tests.cli.runner import run
from tests.core.test_tagging import make_corpus


@pytest.fixture
def vault(tmp_path: Path) -> str:
    path = str(tmp_path / "v.kvdb")
    corpus = make_corpus(tmp_path / "c.jsonl")
    assert run("--vault", path, "import", "--records", str(corpus), "--no-dense", "-q")[0] == 0
    return path


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


def test_core_set_tag_info_clears_and_creates(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        info = kb.tags.set_info("hr::leave", description="Holidays", color="#00ff00")
        assert (info.name, info.description, info.color) == ("hr::leave", "Holidays", "#00ff00")
        kb.tags.set_info("HR::Leave", color="")
        (only,) = kb.tags.infos()
        assert (only.description, only.color) == ("Holidays", "")
        with pytest.raises(KvdeskError, match="RRGGBB"):
            kb.tags.set_info("hr::leave", color="#zzz")


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
