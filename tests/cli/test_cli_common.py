"""What each command does to its vault (``kvdesk.cli.common``): only commands that write values
create a missing vault; a mistyped path for any other command is an error that creates nothing."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.cli.args import positive_int
from kvdesk.cli.common import VaultUse, vault_use
from kvdesk.cli.main import build_parser
from tests.cli.runner import run


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
    ("learn",): ["--from-pilot"],
}
_COMMANDS = sorted(_leaf_commands(build_parser()))
# They write values: a new vault is right (a desk joining a team starts from a new vault).
_CREATES = {("import",), ("eval",), ("tags", "eval"), ("team", "join")}
# doctor reports "vault_exists", the app creates its vault, team create needs none.
_OWN = {
    ("doctor",),
    ("gui",),
    ("team", "create"),
    ("models",),
    ("models", "list"),
    ("models", "add"),
}


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
