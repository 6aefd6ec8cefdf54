"""Command-line regressions from the import audit: sizes, missing vaults, export errors, names."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kvdesk.cli.main import TerminalProgress, parse_size, terminal_safe
from kvdesk.core.progress import Progress
from tests.cli.runner import run

ROOT = Path(__file__).resolve().parents[2]


def test_max_file_size_is_configurable_and_reported(tmp_path: Path) -> None:
    vault = str(tmp_path / "v.kvdb")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "small.txt").write_text("small")
    (docs / "big.txt").write_bytes(b"x" * 3000)
    code, out = run(
        "--vault", vault, "import", str(docs), "--max-file-size", "2K", "--no-dense", "--json"
    )
    report = json.loads(out)
    assert code == 0
    assert set(report) == {"imported", "updated", "unchanged", "duplicates", "skipped", "failed"}
    assert [Path(i["path"]).name for i in report["imported"]] == ["small.txt"]
    assert report["skipped"] == [
        {"path": str(docs / "big.txt"), "reason": "file too large (2.9 KiB > limit 2.0 KiB)"}
    ]
    code, out = run("--vault", vault, "import", str(docs), "--max-file-size", "1M", "--json")
    assert [Path(i["path"]).name for i in json.loads(out)["imported"]] == ["big.txt"]


def test_parse_size() -> None:
    assert parse_size("200M") == 200 * 2**20
    assert parse_size("1G") == 2**30
    assert parse_size("1.5GiB") == 3 * 2**29
    assert parse_size("4096") == 4096
    assert parse_size("64kb") == 64 * 1024


@pytest.mark.parametrize("bad", ["lots", "0", "-5M", "1X"])
def test_bad_max_file_size_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    assert run("--vault", str(tmp_path / "v.kvdb"), "import", "x", f"--max-file-size={bad}")[0] == 2
    assert "invalid size" in capsys.readouterr().err
    assert not (tmp_path / "v.kvdb").exists()


@pytest.mark.parametrize(
    "argv", [["check"], ["list"], ["show", "DOC-1"], ["export", "DOC-1", "out.bin"]]
)
def test_read_only_commands_do_not_create_a_vault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    typo = tmp_path / "mistyped" / "vualt.kvdb"
    assert run("--vault", str(typo), *argv)[0] == 1
    assert f"no vault at {typo}" in capsys.readouterr().err
    assert not typo.exists() and not typo.parent.exists()


def test_export_to_a_missing_folder_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vault = str(tmp_path / "v.kvdb")
    (tmp_path / "memo.txt").write_text("exported nowhere")
    _, out = run("--vault", vault, "import", str(tmp_path / "memo.txt"), "--no-dense", "--json")
    ident = json.loads(out)["imported"][0]["id"]
    capsys.readouterr()
    target = tmp_path / "nonexistent" / "dir" / "out"
    assert run("--vault", vault, "export", ident, str(target))[0] == 1
    err = capsys.readouterr().err
    assert f"kvdesk: error: cannot write {target}: No such file or directory" in err
    assert "Traceback" not in err


def test_export_error_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    vault = str(tmp_path / "v.kvdb")
    (tmp_path / "memo.txt").write_text("exported nowhere")
    run("--vault", vault, "import", str(tmp_path / "memo.txt"), "--no-dense")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kvdesk.cli",
            "--vault",
            vault,
            "export",
            "DOC-1",
            "/nonexistent/d/o",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "cannot write /nonexistent/d/o" in out.stderr


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
