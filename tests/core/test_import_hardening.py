"""Regression tests from the import audit: paths, missing sources, content checks, records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kvdesk.core import extract as extract_module
from kvdesk.core.errors import ExtractionError, KvdeskError, VaultBusyError
from kvdesk.core.extract import Extractor, Limits, extract, mismatch_reason
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.vault.importer import Importer, import_paths, import_records
from kvdesk.core.vault.vault import Vault

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def vault(vault_path: Path) -> Vault:
    v = Vault.open(vault_path)
    yield v  # type: ignore[misc]
    v.close()


# -- 1. Markdown titles in linear time, in-process deadline ----------------------------------


def test_markdown_title_with_long_blank_run_is_fast() -> None:
    data = b"# a" + b" " * 40_000 + b"b\n\nbody"
    started = time.monotonic()
    result = extract(data, "long.md")
    assert time.monotonic() - started < 2.0  # the old regex took ~27 s here
    assert result.title == "a b"


@pytest.mark.parametrize(
    ("source", "title"),
    [
        ("# Travel policy ##\n", "Travel policy"),
        ("   #\tTabbed  title #  \n", "Tabbed title"),
        ("# C#\n", "C#"),
        ("#\n# \n# Second\n", "Second"),
        ("#NoSpace\n", "x"),
    ],
)
def test_markdown_title_rules_still_hold(source: str, title: str) -> None:
    assert extract(source.encode(), "x.md").title == title


def test_in_process_extraction_respects_the_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    real = extract_module._decode_text

    def slow(data: bytes, declared: str | None = None) -> tuple[str, str]:
        time.sleep(0.3)
        return real(data, declared)

    monkeypatch.setattr(extract_module, "_decode_text", slow)
    limits = Limits(max_seconds=0.1)
    for name in ("slow.txt", "slow.md", "slow.json", "slow.csv"):
        with pytest.raises(ExtractionError, match=r"took longer than 0\.1 s"):
            extract(b'{"a": 1}', name, limits)
    with Extractor(limits) as extractor, pytest.raises(ExtractionError, match="took longer"):
        extractor.extract(b"plain words", "slow.txt")


# -- 2. paths are absolute and normalised ----------------------------------------------------


def test_relative_and_absolute_spellings_are_one_source(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    memo = docs / "memo.txt"
    memo.write_text("first words")
    monkeypatch.chdir(tmp_path)
    first = import_paths(vault, ["docs"])
    assert [i["path"] for i in first.imported] == [str(memo)]
    for spelling in (str(docs), "./docs/", "docs/../docs"):
        again = import_paths(vault, [spelling])
        assert again.duplicates == [] and again.imported == []
        assert [i["path"] for i in again.unchanged] == [str(memo)]
    memo.write_text("second, longer words")
    changed = import_paths(vault, ["./docs//memo.txt"])
    assert changed.imported == [] and changed.duplicates == []
    assert changed.updated == [{"path": str(memo), "id": first.imported[0]["id"], "version": 2}]
    assert vault.count() == 1


def test_symlinked_folder_path_is_kept_not_resolved(vault: Vault, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.txt").write_text("via a link")
    link = tmp_path / "link"
    link.symlink_to(real)
    report = import_paths(vault, [link])
    assert [i["path"] for i in report.imported] == [str(link / "a.txt")]


# -- 3 and 5. source missing: set, cleared, for files and vanished roots ------------------------


def test_restored_file_clears_source_missing(vault: Vault, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    memo = docs / "memo.txt"
    memo.write_bytes(b"keep me")
    stamp = memo.stat().st_mtime_ns
    ident = import_paths(vault, [docs]).imported[0]["id"]
    memo.unlink()
    import_paths(vault, [docs])
    assert vault.get(ident).source_missing
    memo.write_bytes(b"keep me")
    os.utime(memo, ns=(stamp, stamp))  # the same file back: the size/mtime fast path
    assert import_paths(vault, [docs]).unchanged == [{"path": str(memo), "id": ident}]
    assert not vault.get(ident).source_missing
    memo.unlink()
    import_paths(vault, [docs])
    memo.write_bytes(b"keep me")  # same bytes, new mtime: the sha path
    assert import_paths(vault, [docs]).unchanged == [{"path": str(memo), "id": ident}]
    assert not vault.get(ident).source_missing


def test_single_file_that_disappears_is_marked(vault: Vault, tmp_path: Path) -> None:
    memo = tmp_path / "memo.txt"
    memo.write_text("a file given by name")
    ident = import_paths(vault, [memo]).imported[0]["id"]
    memo.unlink()
    report = import_paths(vault, [memo])
    assert report.skipped == [{"path": str(memo), "reason": "no such file or folder"}]
    assert vault.get(ident).source_missing


def test_deleted_root_folder_marks_everything_under_it(vault: Vault, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.txt").write_text("alpha")
    (docs / "sub" / "b.txt").write_text("beta")
    (tmp_path / "docs-other.txt").write_text("a sibling whose name shares the prefix")
    first = import_paths(vault, [docs, tmp_path / "docs-other.txt"])
    ids = {Path(i["path"]).name: i["id"] for i in first.imported}
    (docs / "sub" / "b.txt").unlink()
    (docs / "a.txt").unlink()
    (docs / "sub").rmdir()
    docs.rmdir()
    (tmp_path / "docs-other.txt").unlink()
    report = import_paths(vault, [docs])
    assert report.skipped == [{"path": str(docs), "reason": "no such file or folder"}]
    assert vault.get(ids["a.txt"]).source_missing
    assert vault.get(ids["b.txt"]).source_missing
    assert not vault.get(ids["docs-other.txt"]).source_missing  # not under docs/


# -- 4. a second writer waits on the vault lock, then gets the vault's words ----------------


_HOLDER = """
import sys, time
from kvdesk.core.knowledge_base import KnowledgeBase
kb = KnowledgeBase.open(sys.argv[1])
kb.keys.open_writer()
with kb.vault.writing():
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]))
kb.close()
"""


def _hold_writer(vault_path: Path, seconds: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(vault_path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.communicate(timeout=30)
        pytest.fail(f"the writer process did not start: {line!r}")
    return proc


def test_second_import_waits_for_the_first_writer(vault_path: Path, tmp_path: Path) -> None:
    KnowledgeBase.open(vault_path).close()
    (tmp_path / "memo.txt").write_text("imported after the other writer finished")
    with _hold_writer(vault_path, 1.0) as holder:
        with KnowledgeBase.open(vault_path) as kb:
            report = kb.import_paths([tmp_path / "memo.txt"])
        assert len(report.imported) == 1
        holder.communicate(timeout=30)
        assert holder.returncode == 0


def test_busy_key_index_is_reported_as_vault_busy(vault_path: Path, tmp_path: Path) -> None:
    (tmp_path / "memo.txt").write_text("never imported")
    code = (
        "import sys, time\n"
        "from kvdesk.core.knowledge_base import KnowledgeBase\n"
        "kb = KnowledgeBase.open(sys.argv[1])\n"
        "kb.keys.open_writer()\n"  # holds the key index writer but not the vault lock
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "kb.close()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-c", code, str(vault_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as holder:
        assert holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "ready"
            with KnowledgeBase.open(vault_path) as kb:
                with pytest.raises(VaultBusyError, match="^vault is busy"):
                    kb.import_paths([tmp_path / "memo.txt"])
                assert kb.vault.count() == 0
        finally:
            holder.communicate("\n", timeout=30)
        assert holder.returncode == 0


def test_import_hands_the_key_index_writer_back(vault_path: Path, tmp_path: Path) -> None:
    """After an import (say, while dense keys build) another process can import at once."""
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "b.txt").write_text("second")
    with KnowledgeBase.open(vault_path) as first:
        first.import_paths([tmp_path / "a.txt"])
        with KnowledgeBase.open(vault_path) as second:
            assert len(second.import_paths([tmp_path / "b.txt"]).imported) == 1
        assert first.search("first", mode="lexical").hits


# -- 6. content that does not match a supported extension -----------------------------------


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("secret.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "encrypted or legacy"),
        ("page.pdf", b"<!DOCTYPE html><html><body>saved page</body></html>", "content is HTML"),
        ("empty.pdf", b"", "empty file"),
        ("empty.docx", b"", "empty file"),
        ("photo.pdf", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "content is a PNG image"),
    ],
)
def test_mismatched_content_gets_a_clear_reason(
    vault: Vault, tmp_path: Path, name: str, data: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    report = import_paths(vault, [path])
    assert report.skipped == [] and report.imported == []
    assert len(report.failed) == 1 and reason in report.failed[0]["error"]
    assert "unsupported file type" not in report.failed[0]["error"]


def test_mismatch_reason_words() -> None:
    assert mismatch_reason("a.pdf", b"<html>") == (
        "the content is HTML, not a PDF (the extension .pdf does not match)"
    )
    assert mismatch_reason("a.exe", b"MZ") == "unsupported file type (.exe)"


# -- 7 and 11. records files ---------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX named pipes")
def test_records_from_a_named_pipe_are_refused_not_awaited(vault: Vault, tmp_path: Path) -> None:
    fifo = tmp_path / "records.jsonl"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(KvdeskError, match=r"not a regular file \(named pipe\)"):
        import_records(vault, fifo)
    assert time.monotonic() - started < 5


def test_records_lines_and_file_are_bounded(vault: Vault, tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    big = json.dumps({"_id": "big", "text": "x" * 5000})
    lines = [json.dumps({"_id": "a", "text": "small"}), big, json.dumps({"_id": "b"})]
    path.write_text("\n".join(lines) + "\n")
    report = import_records(vault, path, limits=Limits(max_file_bytes=1000))
    assert [i["external_id"] for i in report.imported] == ["a", "b"]
    assert report.failed == [{"path": f"{path}:2", "error": "line 2 is too long (over 1000 bytes)"}]
    with pytest.raises(KvdeskError, match="records file .* is too large"):
        import_records(vault, path, limits=Limits(max_records_file_bytes=100))


def test_records_stream_crlf_and_no_final_newline(vault: Vault, tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_bytes(b'{"_id": 1, "text": "one"}\r\n\r\n{"_id": "2", "text": "two"}')
    seen: list[int | None] = []
    report = Importer(vault, progress=lambda p: seen.append(p.total)).import_records(path)
    assert [i["external_id"] for i in report.imported] == ["1", "2"]
    assert seen[0] == 3
    value = vault.resolve("1")
    assert vault.original_bytes(value) == b'{"_id": 1, "text": "one"}'


def test_repeated_id_in_one_file_fails_the_later_line(vault: Vault, tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(
        json.dumps({"_id": "d1", "text": "first"})
        + "\n"
        + json.dumps({"_id": "d1", "text": "second"})
        + "\n"
    )
    first = import_records(vault, path)
    assert [i["external_id"] for i in first.imported] == ["d1"]
    assert len(first.failed) == 1 and "duplicate _id 'd1' in file" in first.failed[0]["error"]
    for _ in range(2):
        again = import_records(vault, path)
        assert again.updated == [] and len(again.unchanged) == 1
    record = vault.get("d1")
    assert record.version == 1 and vault.text(record.id) == "first"


@pytest.mark.parametrize("bad", [True, False, 1.5, ["x"], {"a": 1}])
def test_non_string_non_integer_id_is_refused(vault: Vault, tmp_path: Path, bad: object) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps({"_id": bad, "text": "t"}) + "\n")
    report = import_records(vault, path)
    assert report.imported == []
    assert "_id must be a string or an integer" in report.failed[0]["error"]


# -- 10. the vault's own files -----------------------------------------------------------------


def test_folder_holding_the_vault_skips_its_files(tmp_path: Path) -> None:
    (tmp_path / "memo.txt").write_text("the only document here")
    vault_file = tmp_path / "v.kvdb"
    with KnowledgeBase.open(vault_file) as kb:
        kb.import_paths([tmp_path / "memo.txt"])  # creates the .keys folder and sidecars
        (tmp_path / "v.kvdb-journal").write_bytes(b"")
        report = kb.import_paths([tmp_path])
        own = {Path(i["path"]).name for i in report.skipped}
        assert {"v.kvdb", "v.kvdb-wal", "v.kvdb.lock", "v.kvdb.keys"} <= own
        for item in report.skipped:
            assert item["reason"] == "part of this vault (not imported)"
        assert report.imported == [] and report.failed == [] and report.duplicates == []
        assert [Path(i["path"]).name for i in report.unchanged] == ["memo.txt"]
        assert kb.vault.count() == 1
        direct = kb.import_paths([vault_file])
        assert direct.skipped == [
            {"path": str(vault_file), "reason": "part of this vault (not imported)"}
        ]
