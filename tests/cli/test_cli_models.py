"""``kvdesk models add|list`` and ``rekey --model multilingual-e5-small`` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvdesk.core.keys.models import MULTILINGUAL_E5_SMALL, models_home
from tests.cli.runner import run
from tests.e5_model import convert_once, install_into_home

E5 = MULTILINGUAL_E5_SMALL.name


@pytest.fixture(scope="session")
def e5_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_once(tmp_path_factory.getbasetemp())[0]


def test_models_add_converts_once_then_keeps_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run("models", "add", E5, "--json")
    assert code == 0
    added = json.loads(out)
    assert added["added"] is True and added["name"] == E5
    assert added["path"] == str(models_home() / E5)
    assert set(added) >= {"seconds", "model_bytes", "model_sha256", "tokenizer_sha256", "source"}
    code, out = run("models", "add", E5)
    assert code == 0 and "already converted" in out
    code, out = run("models", "add", E5, "--json")
    assert json.loads(out)["added"] is False
    assert json.loads(out)["model_sha256"] == added["model_sha256"]


def test_models_list_says_what_is_installed(e5_folder: Path) -> None:
    code, out = run("models", "list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)["models"]}
    assert rows["all-MiniLM-L6-v2"]["installed"] and rows["all-MiniLM-L6-v2"]["default"]
    assert rows[E5]["installed"] is False and rows[E5]["how"] == f"kvdesk models add {E5}"
    install_into_home(e5_folder)
    code, out = run("models")
    assert code == 0 and f"{E5}" in out and "not installed" not in out


def test_models_add_refuses_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("models", "add", "no-such-model")[0] == 1
    assert "Unknown model 'no-such-model'" in capsys.readouterr().err
    assert run("models", "add", E5, "--from", str(tmp_path / "gone.whl"))[0] == 1
    assert "missing" in capsys.readouterr().err
    assert run("models", "add")[0] == 2  # NAME is required
    assert not models_home().exists() or not list(models_home().iterdir())


def test_rekey_by_name_then_japanese_search(
    e5_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vault = str(tmp_path / "v.kvdb")
    records = tmp_path / "ja.jsonl"
    records.write_text(
        json.dumps({"_id": "a", "title": "経費精算", "text": "交通費は翌月五日までに申請する。"})
        + "\n"
        + json.dumps({"_id": "b", "title": "Coffee", "text": "Pour slowly for three minutes."})
        + "\n",
        encoding="utf-8",
    )
    assert run("--vault", vault, "import", "--records", str(records), "--no-dense", "-q")[0] == 0
    assert run("--vault", vault, "rekey", "--model", E5, "-q")[0] == 1  # not converted yet
    assert f"kvdesk models add {E5}" in capsys.readouterr().err
    install_into_home(e5_folder)
    code, out = run("--vault", vault, "rekey", "--model", E5, "--json", "-q")
    assert code == 0
    rekeyed = json.loads(out)
    assert rekeyed["model"] == E5 and rekeyed["active"] and rekeyed["keyed_values"] == 2
    code, out = run(
        "--vault", vault, "search", "出張の費用はいつまでに出す?", "--mode", "dense", "--json"
    )
    assert code == 0 and json.loads(out)["hits"][0]["external_id"] == "a"
    code, out = run("--vault", vault, "keys", "list", "--json")
    assert json.loads(out)["key_sets"][0]["source"] == E5  # recorded by name: KVDESK_HOME moves
