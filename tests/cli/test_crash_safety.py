"""Killing an import with SIGKILL at any moment never costs a reported document."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kvdesk.core.vault.vault import Vault

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def _corpus(root: Path, n: int) -> dict[str, bytes]:
    root.mkdir()
    files = {}
    for i in range(n):
        data = (f"Document {i}: minutes of meeting {i}. " * 40).encode()
        path = root / f"doc{i:04}.txt"
        path.write_bytes(data)
        files[str(path)] = data
    return files


def _import_cmd(vault: Path, root: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kvdesk",
        "--vault",
        str(vault),
        "import",
        "-v",
        "--no-dense",
        str(root),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 25, 120])
def test_kill_mid_import_loses_nothing_reported(tmp_path: Path, kill_after: int) -> None:
    files = _corpus(tmp_path / "docs", 800)
    vault = tmp_path / "v.kvdb"
    proc = subprocess.Popen(
        _import_cmd(vault, tmp_path / "docs"),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    reported: dict[str, str] = {}
    assert proc.stderr is not None
    for line in proc.stderr:
        verb, ident, path = line.rstrip("\n").split(" ", 2)
        if verb == "imported":
            reported[path] = ident
        if len(reported) >= kill_after:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the import finished before it could be killed"

    check = subprocess.run(
        [sys.executable, "-m", "kvdesk", "--vault", str(vault), "check", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["ok"]
    with Vault.open(vault) as v:
        for path, ident in reported.items():
            assert v.values.original_bytes(v.values.resolve(ident)) == files[path]
        stored_before = v.values.count()
    assert stored_before >= len(reported)

    rerun = subprocess.run(
        [*_import_cmd(vault, tmp_path / "docs"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert len(report["imported"]) + len(report["unchanged"]) == len(files)
    assert not report["duplicates"] and not report["failed"]
    with Vault.open(vault) as v:
        assert v.values.count() == len(files)
        assert v.check().ok
        for item in report["imported"] + report["unchanged"]:
            assert v.values.original_bytes(v.values.resolve(item["id"])) == files[item["path"]]


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 700])
def test_kill_mid_records_import(tmp_path: Path, kill_after: int) -> None:
    records = tmp_path / "records.jsonl"
    lines = [
        json.dumps({"_id": f"r{i}", "title": f"Record {i}", "text": f"body of record {i} " * 30})
        for i in range(6000)
    ]
    records.write_text("\n".join(lines) + "\n")
    vault = tmp_path / "v.kvdb"
    cmd = [sys.executable, "-m", "kvdesk", "--vault", str(vault), "import", "-v", "--no-dense"]
    proc = subprocess.Popen(
        [*cmd, "--records", str(records)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    reported: dict[str, str] = {}
    assert proc.stderr is not None
    for line in proc.stderr:
        verb, ident, where = line.rstrip("\n").split(" ", 2)
        reported[ident] = where
        if len(reported) >= kill_after:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    with Vault.open(vault) as v:
        assert v.check().ok
        for ident, where in reported.items():
            number = int(where.rsplit(":", 1)[1])
            assert v.values.original_bytes(v.values.resolve(ident)) == lines[number - 1].encode()
    rerun = subprocess.run(
        [*cmd, "--records", str(records), "--json"], capture_output=True, text=True, timeout=120
    )
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert len(report["imported"]) + len(report["unchanged"]) == len(lines)
    with Vault.open(vault) as v:
        assert v.values.count() == len(lines) and v.check().ok
