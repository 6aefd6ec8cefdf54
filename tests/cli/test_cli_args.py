"""Argument types (``kvdesk.cli.args``): sizes such as ``--max-file-size 200M``."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvdesk.cli.args import parse_size
from tests.cli.runner import run


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
