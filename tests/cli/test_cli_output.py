"""Terminal output (``kvdesk.cli.output``): control and bidi characters from file names and
documents never reach the terminal; they are shown escaped, while JSON keeps the real text."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kvdesk.cli.output import BIDI_CONTROLS, TerminalProgress, terminal_safe
from kvdesk.core.progress import Progress
from tests.cli.runner import run


def test_control_characters_in_names_are_escaped_in_text_output(tmp_path: Path) -> None:
    vault = str(tmp_path / "v.kvdb")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "fake\nskipped  evil.exe").write_bytes(b"MZ")
    (docs / "red\x1b[31m.exe").write_bytes(b"MZ")
    code, out = run("--vault", vault, "import", str(docs), "--no-dense", "-q")
    assert code == 0
    assert "\x1b" not in out
    lines = out.splitlines()
    assert len(lines) == 3  # two skipped lines and the summary: no fake third line
    assert any(line.endswith("fake\\nskipped  evil.exe: unsupported file type") for line in lines)
    assert any("red\\x1b[31m.exe" in line for line in lines)
    code, out = run("--vault", vault, "import", str(docs), "--no-dense", "--json")
    names = {Path(i["path"]).name for i in json.loads(out)["skipped"]}
    assert names == {"fake\nskipped  evil.exe", "red\x1b[31m.exe"}  # JSON keeps the real names


def test_terminal_safe() -> None:
    assert terminal_safe("plain name.txt") == "plain name.txt"
    assert terminal_safe("a\nb\tc\rd\x1b\x7f") == "a\\nb\\tc\\rd\\x1b\\x7f"
    assert terminal_safe("caf\udce9.txt") == "caf\\xe9.txt"
    assert terminal_safe("evil\u202etxt.exe") == "evil\\u202etxt.exe"
    assert terminal_safe("line one\nline two\x1b", keep="\n") == "line one\nline two\\x1b"
    assert terminal_safe("日本語 ファイル.txt") == "日本語 ファイル.txt"


@pytest.mark.parametrize("tty", [False, True])
def test_progress_shows_escaped_names(tty: bool) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    stream = Stream()
    sink = TerminalProgress(stream)
    sink(Progress("import", 1, 1, "/docs/new\nline\x1b[2J.txt"))
    sink.close()
    text = stream.getvalue()
    assert "\x1b[2J" not in text and "new\\nline\\x1b[2J.txt" in text


# -- control and bidi characters from documents never reach the terminal -----------------------

_NASTY = "\x1b]8;;http://x\x07link\x1b]8;;\x07 \x1b[31mred\r\u202eevil"


def _unsafe(text: str) -> list[str]:
    return sorted(
        {
            ch
            for ch in text
            if ch not in "\n\t"
            and (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in BIDI_CONTROLS)
        }
    )


@pytest.fixture
def nasty_vault(tmp_path: Path) -> str:
    vault = str(tmp_path / "v.kvdb")
    docs = tmp_path / "docs"
    docs.mkdir()
    name = f"zebra{_NASTY.replace('/', '')}.txt"  # a file name holds anything but / and NUL
    (docs / name).write_text(f"zebra crossing {_NASTY} body", encoding="utf-8")
    records = tmp_path / "records.jsonl"
    record = {
        "_id": f"r{_NASTY}",
        "title": f"zebra {_NASTY}",
        "text": f"zebra {_NASTY} text",
        "tags": [f"zebra{_NASTY}"],
    }
    records.write_text(json.dumps(record) + "\n", encoding="utf-8")
    assert run("--vault", vault, "import", "--records", str(records), "--no-dense", "-q")[0] == 0
    return vault


def test_no_control_or_bidi_character_reaches_the_terminal(
    nasty_vault: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vault = nasty_vault
    capsys.readouterr()
    code, out = run("--vault", vault, "import", "-v", "--no-dense", str(tmp_path / "docs"))
    err = capsys.readouterr().err
    assert code == 0 and "zebra" in err  # -v named the file, escaped
    assert _unsafe(out) == [] and _unsafe(err) == []
    outputs = []
    for argv in (
        ["search", "zebra", "--mode", "lexical"],
        ["search", "zebra", "--mode", "lexical", "--explain"],
        ["list"],
        ["tags", "list"],
        ["show", "DOC-1"],
        ["show", "DOC-2"],
    ):
        code, out = run("--vault", vault, *argv)
        assert code == 0, argv
        outputs.append(out)
        assert _unsafe(out) == [] and _unsafe(capsys.readouterr().err) == [], argv
    assert "\\x1b[31mred" in outputs[0] and "\\u202eevil" in outputs[0]  # visible, escaped
    code, out = run("--vault", vault, "search", "zebra", "--mode", "lexical", "--json")
    titles = [hit["title"] for hit in json.loads(out)["hits"]]
    assert f"zebra {_NASTY}" in titles  # JSON keeps the text as it is


def test_tag_suggestions_escape_titles_and_evidence(
    nasty_vault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run("--vault", nasty_vault, "tags", "suggest", "--untagged", "--no-dense", "-q")
    assert code == 0
    assert _unsafe(out) == [] and _unsafe(capsys.readouterr().err) == []
