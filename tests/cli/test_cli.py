"""The command line against a real vault: exact JSON shapes, exit codes, byte-exact export; the
import size limit, and export errors and targets that are not plain files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.runner import run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "memo.txt").write_text("Memo about the new printer in room 4.")
    (root / "plan.md").write_text("# Plan\n\nMove the archive to the basement.")
    (root / "tool.exe").write_bytes(b"MZ\x00\x00")
    return root


def test_import_json_report_and_list(tmp_path: Path, docs: Path) -> None:
    vault = str(tmp_path / "v.kvdb")
    code, out = run("--vault", vault, "import", str(docs), "--json")
    assert code == 0
    report = json.loads(out)
    assert set(report) == {"imported", "updated", "unchanged", "duplicates", "skipped", "failed"}
    assert sorted(Path(i["path"]).name for i in report["imported"]) == ["memo.txt", "plan.md"]
    assert all(set(i) == {"path", "id"} for i in report["imported"])
    assert report["skipped"] == [
        {"path": str(docs / "tool.exe"), "reason": "unsupported file type"}
    ]
    code, out = run("--vault", vault, "list", "--json")
    assert code == 0 and {r["title"] for r in json.loads(out)} == {"memo", "Plan"}
    code, out = run("--vault", vault, "import", str(docs), "--json")
    assert len(json.loads(out)["unchanged"]) == 2


def test_show_export_and_check(tmp_path: Path, docs: Path) -> None:
    vault = str(tmp_path / "v.kvdb")
    _, out = run("--vault", vault, "import", str(docs / "memo.txt"), "--json")
    ident = json.loads(out)["imported"][0]["id"]
    code, out = run("--vault", vault, "show", ident, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["id"] == ident and "printer" in shown["text_excerpt"]
    assert shown["versions"][0]["sha256"] == shown["sha256"]
    target = tmp_path / "out.bin"
    assert run("--vault", vault, "export", ident, str(target))[0] == 0
    assert target.read_bytes() == (docs / "memo.txt").read_bytes()
    code, out = run("--vault", vault, "check", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["values"] == 1 and report["problems"] == []
    assert len(report["values_digest"]) == 64


def test_check_fails_with_exit_1_on_corruption(tmp_path: Path, docs: Path) -> None:
    import sqlite3

    vault = tmp_path / "v.kvdb"
    run("--vault", str(vault), "import", str(docs))
    conn = sqlite3.connect(vault)
    conn.execute("UPDATE blob SET data = x'00'")
    conn.commit()
    conn.close()
    code, out = run("--vault", str(vault), "check", "--json")
    assert code == 1 and json.loads(out)["ok"] is False


def test_errors_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vault = str(tmp_path / "v.kvdb")
    (tmp_path / "memo.txt").write_text("one document")
    assert run("--vault", vault, "import", str(tmp_path / "memo.txt"), "--no-dense")[0] == 0
    capsys.readouterr()
    assert run("--vault", vault, "show", "DOC-404")[0] == 1
    assert "no document" in capsys.readouterr().err
    assert run("--vault", vault, "frobnicate")[0] == 2
    assert run("--vault", vault, "import")[0] == 2
    assert run("--vault", str(tmp_path), "list")[0] == 1  # a folder is not a vault


def test_non_utf8_paths_use_surrogate_escapes(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    root.mkdir()
    with open(os.fsencode(root) + b"/caf\xe9.txt", "wb") as handle:
        handle.write(b"latin-1 named file")
    code, out = run("--vault", str(tmp_path / "v.kvdb"), "import", str(root), "--json")
    assert code == 0
    assert "\\udce9" in out
    assert json.loads(out)["imported"][0]["path"].endswith("caf\udce9.txt")


def test_default_vault_lives_under_kvdesk_home(docs: Path) -> None:
    code, _ = run("import", str(docs))
    assert code == 0
    assert (Path(os.environ["KVDESK_HOME"]) / "vault.kvdb").exists()


def test_doctor_reports_provider() -> None:
    code, out = run("doctor", "--json")
    data = json.loads(out)
    assert code == 0 and data["kvdesk"] and data["vault"].endswith("vault.kvdb")
    assert "execution_provider" in data


def test_eval_reports_metrics_and_writes_a_trec_run(tmp_path: Path) -> None:
    from tests.core.test_golden_store import write_beir

    beir = write_beir(tmp_path / "beir")
    trec = tmp_path / "run.trec"
    vault = str(tmp_path / "eval.kvdb")
    argv = ["--vault", vault, "eval", str(beir), "--mode", "lexical", "--json", "-q"]
    code, out = run(*argv, "--run", str(trec))
    report = json.loads(out)
    assert code == 0
    assert set(report) == {
        "collection", "split", "queries", "modes", "index_seconds", "query_ms_p50",
        "query_ms_p95",
    }  # fmt: skip
    scores = report["modes"]["lexical"]
    assert set(scores) == {"ndcg@10", "recall@100", "mrr@10"}
    assert 0 < scores["ndcg@10"] <= 1 and report["queries"] > 0
    lines = trec.read_text().splitlines()
    qid, q0, docid, rank, score, tag = lines[0].split()
    assert q0 == "Q0" and rank == "1" and tag == "lexical" and float(score) > 0
    code, again = run(*argv)  # the vault is reused: nothing is imported twice
    assert json.loads(again)["modes"] == report["modes"]


# -- the import size limit and export errors ---------------------------------------------------


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


def test_an_empty_file_is_never_turned_into_a_vault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "typo.kvdb"
    empty.touch()
    (tmp_path / "memo.txt").write_text("memo")
    for argv in (["search", "memo"], ["import", str(tmp_path / "memo.txt"), "--no-dense"]):
        code, _ = run("--vault", str(empty), *argv)
        assert code == 1 and "empty file, not a kvdesk vault" in capsys.readouterr().err
    assert empty.stat().st_size == 0


def test_search_pilot_says_when_nothing_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vault = str(tmp_path / "v.kvdb")
    (tmp_path / "memo.txt").write_text("quarterly memo")
    run("--vault", vault, "import", str(tmp_path / "memo.txt"), "--no-dense")
    capsys.readouterr()
    code, out = run("--vault", vault, "search", "memo", "--pilot", "--json")
    data = json.loads(out)
    assert code == 0 and data["pilot_session"] is None and "pilot on" in data["pilot_note"]
    assert "kvdesk pilot on" in capsys.readouterr().err


def test_damaged_documents_are_shown_with_a_mark_and_never_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bit-flip campaign findings: unreadable metadata, a garbled date, invalid UTF-8 text."""
    import sqlite3

    vault = tmp_path / "v.kvdb"
    (tmp_path / "r.jsonl").write_text(
        '{"_id": "a", "title": "Alpha memo", "text": "alpha budget"}\n'
        '{"_id": "b", "title": "Beta memo", "text": "beta budget"}\n',
        encoding="utf-8",
    )
    assert run("--vault", str(vault), "import", "--records", str(tmp_path / "r.jsonl"))[0] == 0
    conn = sqlite3.connect(vault)
    with conn:
        conn.execute("PRAGMA ignore_check_constraints = 1")
        conn.execute("UPDATE version SET metadata = '{\"a' WHERE value_id = 1")
        conn.execute("UPDATE value SET updated_at = '2026-12-03T02:28:43n082+00:00'")
        conn.execute(
            "UPDATE version SET text = CAST(? AS TEXT) WHERE value_id = 2", (b"\xc3 beta budget",)
        )
    conn.close()
    import shutil

    shutil.rmtree(tmp_path / "v.kvdb.keys", ignore_errors=True)
    code, out = run("--vault", str(vault), "show", "DOC-1")
    assert code == 0 and "DAMAGED" in out
    code, out = run("--vault", str(vault), "search", "budget", "--mode", "lexical", "--json")
    assert code == 0 and len(json.loads(out)["hits"]) == 2
    code, out = run("--vault", str(vault), "check", "--json")
    problems = json.loads(out)["problems"]
    assert code == 1 and any(p.startswith("DOC-1") for p in problems)
    assert any(p.startswith("DOC-2") for p in problems)
    assert "Traceback" not in capsys.readouterr().err


def test_reimport_text_report_does_not_list_unchanged_skips_again(
    tmp_path: Path, docs: Path
) -> None:
    vault = str(tmp_path / "v.kvdb")
    (docs / "copyright").write_text("Copyright 2026 the printer people.\n")
    (docs / "blob").write_bytes(b"\x00\x01\x02\x03" * 64)
    code, out = run("--vault", vault, "import", str(docs), "--no-dense", "-q")
    assert code == 0
    assert out.splitlines() == [
        f"skipped  {docs / 'blob'}: not a text file: the content is binary data"
        " (no extension, so the content decides)",
        f"skipped  {docs / 'tool.exe'}: unsupported file type",
        "3 imported, 0 updated, 0 unchanged, 0 duplicates, 2 skipped, 0 failed",
    ]
    code, out = run("--vault", vault, "import", str(docs), "--no-dense", "-q")
    assert code == 0
    assert out.splitlines() == [
        "0 imported, 0 updated, 3 unchanged, 0 duplicates,"
        " 2 skipped (unchanged since last import), 0 failed"
    ]
    code, out = run("--vault", vault, "import", str(docs), "--no-dense", "-v")
    assert f"skipped  {docs / 'tool.exe'}: unsupported file type; unchanged since last import" in (
        out.splitlines()
    )
    code, out = run("--vault", vault, "import", str(docs), "--no-dense", "--json")
    report = json.loads(out)
    assert set(report) == {"imported", "updated", "unchanged", "duplicates", "skipped", "failed"}
    assert {Path(i["path"]).name: i["reason"] for i in report["skipped"]} == {
        "blob": "not a text file: the content is binary data (no extension, so the content"
        " decides); unchanged since last import",
        "tool.exe": "unsupported file type; unchanged since last import",
    }
    assert all(set(i) == {"path", "reason"} for i in report["skipped"])


def test_import_of_only_missing_paths_fails_and_creates_no_vault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vault = tmp_path / "v.kvdb"
    missing = tmp_path / "no-such-docs"
    code, out = run("--vault", str(vault), "import", str(missing), "--no-dense")
    assert code == 1
    assert out.splitlines() == [
        f"skipped  {missing}: no such file or folder",
        "0 imported, 0 updated, 0 unchanged, 0 duplicates, 1 skipped, 0 failed",
    ]
    err = capsys.readouterr().err
    assert f"kvdesk: error: nothing to import: no such file or folder: {missing}" in err
    assert not vault.exists() and list(tmp_path.iterdir()) == []
    code, out = run("--vault", str(vault), "import", str(missing), "typo.txt", "--json")
    assert code == 1
    assert [i["path"] for i in json.loads(out)["skipped"]] == [
        str(missing),
        str(Path.cwd() / "typo.txt"),
    ]
    assert "no such files or folders" in capsys.readouterr().err
    assert not vault.exists()


def test_import_with_some_missing_paths_goes_on_and_lists_them(
    tmp_path: Path, docs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vault = str(tmp_path / "v.kvdb")
    missing = tmp_path / "typo.txt"
    code, out = run("--vault", vault, "import", str(missing), str(docs / "memo.txt"), "-q")
    assert code == 0
    assert out.splitlines() == [
        f"skipped  {missing}: no such file or folder",
        "1 imported, 0 updated, 0 unchanged, 0 duplicates, 1 skipped, 0 failed",
    ]
    # A folder imported before and deleted since: the vault is told (its documents are marked
    # source missing), and the command still fails, since nothing given exists.
    code, _ = run("--vault", vault, "import", str(docs), "--no-dense", "-q")
    for path in sorted(docs.iterdir()):
        path.unlink()
    docs.rmdir()
    capsys.readouterr()
    code, out = run("--vault", vault, "import", str(docs), "--no-dense", "-q")
    assert code == 1 and "nothing to import" in capsys.readouterr().err
    code, out = run("--vault", vault, "list", "--json")
    assert {r["title"]: r["source_missing"] for r in json.loads(out)} == {
        "memo": True,
        "Plan": True,
    }
