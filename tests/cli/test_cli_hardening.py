"""Command-line regressions from the import audit: sizes, missing vaults, export errors, names."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.cli.args import parse_size, positive_int
from kvdesk.cli.common import VaultUse, vault_use
from kvdesk.cli.main import build_parser
from kvdesk.cli.output import BIDI_CONTROLS, TerminalProgress, terminal_safe
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


# -- a missing vault: only commands that write values create one ---------------------------------


def _leaf_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable command of the real parser (``keys activate``, ``tags list`` ...); a group
    whose subcommand may be left out (``keys``, ``tags``) is one too."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if path and not any(group.required for group in groups):
        yield path, parser
    for group in groups:
        for name, sub in group.choices.items():
            yield from _leaf_commands(sub, (*path, name))


def _sample_argv(path: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    """``path`` with a placeholder for each positional and required option (first choice)."""
    argv = list(path)
    for action in parser._actions:
        if action.option_strings and not action.required:
            continue
        if action.nargs in ("*", "?", 0) or isinstance(action, argparse._SubParsersAction):
            continue
        if action.choices:
            value = str(next(iter(action.choices)))
        elif action.type in (int, positive_int):
            value = "1"
        else:
            value = "placeholder"
        argv += [action.option_strings[0], value] if action.option_strings else [value]
    return argv + _EXTRA.get(path, [])


# Commands that check their own options before they open the vault need those options.
_EXTRA: dict[tuple[str, ...], list[str]] = {
    ("golden", "add"): ["--query", "printer", "--doc", "DOC-1"],
    ("tags", "set"): ["--description", "money"],
    ("tags", "suggest"): ["--untagged"],
}
_COMMANDS = sorted(_leaf_commands(build_parser()))
_CREATES = {("import",), ("eval",), ("tags", "eval")}  # they write values: a new vault is right
_OWN = {("doctor",), ("gui",)}  # doctor reports "vault_exists", the app creates its vault


def test_every_command_is_registered_with_what_it_does_to_its_vault() -> None:
    uses = {
        path: vault_use(build_parser().parse_args(["--vault", "v.kvdb", *_sample_argv(path, p)]))
        for path, p in _COMMANDS
    }
    assert {path for path, use in uses.items() if use is VaultUse.CREATES} == _CREATES
    assert {path for path, use in uses.items() if use is VaultUse.OWN} == _OWN
    assert len(uses) > 20  # the walk found the subcommands (keys list, tags list, pilot report ...)


@pytest.mark.parametrize(
    "path",
    [path for path, _p in _COMMANDS if path not in _CREATES | _OWN],
    ids=" ".join,
)
def test_read_and_curation_commands_never_create_a_vault(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    path: tuple[str, ...],
) -> None:
    parser = dict(_COMMANDS)[path]
    cwd = tmp_path / "cwd"  # where a relative OUTFILE or FILE would land
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    typo = tmp_path / "mistyped" / "typo.kvdb"
    assert run("--vault", str(typo), *_sample_argv(path, parser))[0] == 1
    err = capsys.readouterr().err
    if path == ("tags",):  # asks which tags command before it opens anything
        assert "kvdesk: error: say what to do: kvdesk tags" in err
    else:
        assert f"kvdesk: error: no vault at {typo}" in err
    assert not typo.parent.exists()  # no vault, no .keys folder, no lock file
    assert list(cwd.iterdir()) == []


def test_a_creating_command_still_creates_its_vault(tmp_path: Path) -> None:
    vault = tmp_path / "new" / "v.kvdb"
    vault.parent.mkdir()
    (tmp_path / "memo.txt").write_text("first document")
    assert run("--vault", str(vault), "import", str(tmp_path / "memo.txt"), "--no-dense")[0] == 0
    assert vault.exists()


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


def _exported_vault(tmp_path: Path) -> str:
    vault = str(tmp_path / "v.kvdb")
    (tmp_path / "memo.txt").write_text("exported bytes")
    run("--vault", vault, "import", str(tmp_path / "memo.txt"), "--no-dense")
    return vault


def test_export_refuses_fifos_devices_folders_and_links(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Output is data, never a door: no device turned into a file, no FIFO hang, no link."""
    import os

    vault = _exported_vault(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.txt"
    link.symlink_to(victim)
    for target, why in (
        (fifo, "not a regular file"),
        (tmp_path, "not a regular file"),
        (Path("/dev/null"), "not a regular file"),
        (link, "symbolic link"),
    ):
        capsys.readouterr()
        code, _out = run("--vault", vault, "export", "DOC-1", str(target))
        err = capsys.readouterr().err
        assert code == 1 and why in err, (target, err)
    assert victim.read_text() == "keep me" and fifo.exists() and link.is_symlink()
    assert Path("/dev/null").is_char_device()


def test_export_writes_privately_through_an_unpredictable_temporary_file(tmp_path: Path) -> None:
    import os
    import stat

    vault = _exported_vault(tmp_path)
    target = tmp_path / "out.txt"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    # A link planted at the name the old export wrote through is never followed.
    (tmp_path / "out.txt.kvdesk-partial").symlink_to(victim)
    code, _out = run("--vault", vault, "export", "DOC-1", str(target))
    assert code == 0 and target.read_bytes() == b"exported bytes"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert victim.read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.txt.")]
    # An existing file keeps its mode when it is replaced.
    os.chmod(target, 0o644)
    assert run("--vault", vault, "export", "DOC-1", str(target))[0] == 0
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
