"""A full disk: one clear message, what was committed is kept, search keeps answering.

Uses a small real tmpfs (the suite runs as root in CI, as here); no simulated errors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"this test mounts a 1.5 MB tmpfs (needs root): {done.stderr}"
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _kvdesk(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvdesk.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ORT_DISABLE_TELEMETRY": "1"},
    )


def test_import_on_a_full_disk_says_so_once_and_keeps_what_was_committed(
    small_disk: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(400):
        words = " ".join(f"word{i}x{j}" for j in range(300))
        (docs / f"doc{i:03}.txt").write_text(f"Report {i}: {words}", encoding="utf-8")
    vault = str(small_disk / "v.kvdb")
    first = _kvdesk("--vault", vault, "import", str(docs), "--no-dense", "-q")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "disk full" in first.stderr and first.stderr.count("disk full") == 1
    assert "Traceback" not in first.stderr
    check = _kvdesk("--vault", vault, "check", "--json")
    assert check.returncode == 0 and '"ok": true' in check.stdout, check.stdout + check.stderr
    listed = _kvdesk("--vault", vault, "list", "--json")
    assert listed.returncode == 0 and "doc000" in listed.stdout  # committed documents stay
    found = _kvdesk("--vault", vault, "search", "word0x7", "--mode", "lexical")
    assert found.returncode == 0 and "Traceback" not in found.stderr, found.stderr
