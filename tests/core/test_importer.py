"""Import of real files and folders, incremental re-import, versions, and hostile input."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from kvdesk.core.errors import KvdeskError, VaultBusyError
from kvdesk.core.extract import Limits
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.progress import CancelToken, Progress
from kvdesk.core.schema import SCHEMA_VERSION
from kvdesk.core.vault.importer import Importer, import_paths, import_records
from kvdesk.core.vault.vault import Vault

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def vault(vault_path: Path) -> Vault:
    v = Vault.open(vault_path)
    yield v  # type: ignore[misc]
    v.close()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def _make_folder(root: Path) -> dict[str, bytes]:
    files = {
        "notes.txt": b"Quarterly budget review for the Osaka office.\n",
        "readme.md": b"# Travel policy\n\nBook trains two weeks ahead.\n",
        "page.html": b"<html><head><title>Intranet</title><script>alert('x')</script></head>"
        b"<body><p>Holiday calendar 2026</p></body></html>",
        "table.csv": b"name,amount\nstapler,3\n",
        "data.json": b'{"invoice": "INV-7", "total": 12}',
        "sub/deeper/photo.png": _png(),
        "sub/legacy.txt": "営業報告書 東京支社".encode("cp932"),
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_folder_import_stores_every_format_verbatim(vault: Vault, tmp_path: Path) -> None:
    root = tmp_path / "docs"
    files = _make_folder(root)
    seen: list[Progress] = []
    report = import_paths(vault, [root], progress=seen.append)
    assert sorted(Path(i["path"]).relative_to(root).as_posix() for i in report.imported) == sorted(
        files
    )
    assert not report.failed and not report.skipped
    assert seen[-1].done == seen[-1].total == len(files)
    for item in report.imported:
        rel = Path(item["path"]).relative_to(root).as_posix()
        value_id = vault.values.resolve(item["id"])
        assert vault.values.original_bytes(value_id) == files[rel]
    legacy = next(i for i in report.imported if i["path"].endswith("legacy.txt"))
    assert "東京支社" in vault.values.text(vault.values.resolve(legacy["id"]))
    html = next(i for i in report.imported if i["path"].endswith("page.html"))
    record = vault.values.get(html["id"])
    assert record.title == "Intranet" and record.media_type == "text/html"
    assert "alert" not in vault.values.text(record.id)
    photo = next(i for i in report.imported if i["path"].endswith("photo.png"))
    assert vault.values.get(photo["id"]).media_type == "image/png"


def test_reimport_is_incremental_and_versions_changes(vault: Vault, tmp_path: Path) -> None:
    root = tmp_path / "docs"
    files = _make_folder(root)
    first = import_paths(vault, [root])
    notes = root / "notes.txt"
    stat = notes.stat()
    # Same size and mtime: recognised as unchanged without reading (content swap goes unseen).
    notes.write_bytes(files["notes.txt"].upper())
    os.utime(notes, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = import_paths(vault, [root])
    assert len(second.unchanged) == len(files) and not second.imported
    # A real change (new mtime) becomes a new version of the same value.
    notes.write_bytes(b"Budget review moved to May.\n")
    os.utime(notes, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    third = import_paths(vault, [root])
    assert [u["path"] for u in third.updated] == [str(notes)]
    ident = third.updated[0]["id"]
    assert ident == next(i["id"] for i in first.imported if i["path"] == str(notes))
    value_id = vault.values.resolve(ident)
    assert vault.values.original_bytes(value_id) == b"Budget review moved to May.\n"
    assert vault.values.original_bytes(value_id, 1) == files["notes.txt"]
    assert vault.values.count() == len(files)


def test_same_bytes_are_stored_once(vault: Vault, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"identical content")
    (tmp_path / "b.txt").write_bytes(b"identical content")
    report = import_paths(vault, [tmp_path / "a.txt", tmp_path / "b.txt"])
    assert len(report.imported) == 1
    assert report.duplicates == [{"path": str(tmp_path / "b.txt"), "id": report.imported[0]["id"]}]
    assert vault.conn.execute("SELECT count(*) FROM blob").fetchone()[0] == 1
    again = import_paths(vault, [tmp_path / "a.txt", tmp_path / "b.txt"])
    assert len(again.unchanged) == 2


def test_vanished_source_is_kept_and_marked(vault: Vault, tmp_path: Path) -> None:
    root = tmp_path / "docs"
    _make_folder(root)
    report = import_paths(vault, [root])
    gone = root / "readme.md"
    ident = next(i["id"] for i in report.imported if i["path"] == str(gone))
    gone.unlink()
    import_paths(vault, [root])
    record = vault.values.get(ident)
    assert record.source_missing
    assert vault.values.original_bytes(record.id).startswith(b"# Travel policy")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX special files")
def test_hostile_inputs_are_listed_with_reasons(vault: Vault, tmp_path: Path) -> None:
    root = tmp_path / "hostile"
    root.mkdir()
    (root / "good.txt").write_bytes(b"a good file")
    os.mkfifo(root / "pipe.txt")
    (root / "loop.txt").symlink_to(root / "loop.txt")
    (root / "dangling.txt").symlink_to(root / "nowhere.txt")
    (root / "binary.txt").write_bytes(os.urandom(4096))
    (root / "nul.txt").write_bytes(b"text with \x00 a NUL byte")
    (root / "latin.txt").write_bytes("Caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1"))
    (root / "new\nline.txt").write_bytes(b"a name with a newline")
    (root / "-rf.txt").write_bytes(b"a name with a leading dash")
    bad_name = os.fsencode(root) + b"/bad-\xff\xfe.txt"
    with open(bad_name, "wb") as handle:
        handle.write(b"a name that is not UTF-8")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog")
    (root / "fake.docx").write_bytes(b"PK\x03\x04 not really a zip")
    (root / "big.txt").write_bytes(b"x" * 5000)
    (root / "program.exe").write_bytes(b"MZ")
    os.symlink("/dev/null", root / "device.txt")
    (root / "linkdir").symlink_to(root)

    report = Importer(vault, limits=Limits(max_file_bytes=4096)).import_paths([root])
    outcome = {Path(i["path"]).name: i.get("reason") or i.get("error") for i in report.skipped}
    outcome |= {Path(i["path"]).name: i["error"] for i in report.failed}
    imported = {Path(i["path"]).name for i in report.imported}

    assert {"good.txt", "nul.txt", "latin.txt", "new\nline.txt", "-rf.txt"} <= imported
    assert os.fsdecode(b"bad-\xff\xfe.txt") in imported
    assert "named pipe" in outcome["pipe.txt"]
    assert "loop" in outcome["loop.txt"]
    assert "dangling" in outcome["dangling.txt"]
    assert "character device" in outcome["device.txt"]
    assert "too large" in outcome["big.txt"]
    assert "unsupported" in outcome["program.exe"]
    assert "not followed" in outcome["linkdir"]
    for name in ("binary.txt", "broken.pdf", "fake.docx"):
        assert outcome[name], name
    nul = next(i for i in report.imported if i["path"].endswith("nul.txt"))
    assert "\x00" not in vault.values.text(vault.values.resolve(nul["id"]))
    latin = next(i for i in report.imported if i["path"].endswith("latin.txt"))
    assert "Café crème" in vault.values.text(vault.values.resolve(latin["id"]))
    assert vault.check().ok
    # Nothing already stored is lost by a second pass over the same hostile folder.
    before = vault.check().values_digest
    Importer(vault, limits=Limits(max_file_bytes=4096)).import_paths([root])
    assert vault.check().values_digest == before


def test_cancel_stops_between_documents(vault: Vault, tmp_path: Path) -> None:
    for n in range(20):
        (tmp_path / f"f{n:02}.txt").write_text(f"document number {n}")
    token = CancelToken()

    def progress(p: Progress) -> None:
        if p.done == 5:
            token.cancel()

    report = Importer(vault, progress=progress, cancel=token).import_paths([tmp_path])
    assert report.cancelled
    assert len(report.imported) == 5 == vault.values.count()


def test_records_import_keeps_external_ids_and_tags(vault: Vault, tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    rows = [
        {"_id": "r1", "title": "Alpha", "text": "first text", "tags": ["finance", "q1"]},
        {"_id": "r2", "title": "", "text": "second", "section": "misc"},
    ]
    lines = [json.dumps(r) for r in rows] + ["{not json", '{"title": "no id"}', "[1, 2]"]
    records.write_text("\n".join(lines) + "\n")
    report = import_records(vault, records)
    assert [i["external_id"] for i in report.imported] == ["r1", "r2"]
    assert len(report.failed) == 3
    assert all("line" in f["error"] for f in report.failed)
    r1 = vault.values.get("r1")
    assert r1.title == "Alpha" and r1.tags == ("finance", "q1")
    assert (
        vault.values.get("r2").title == "r2"
        and vault.values.get("r2").metadata["section"] == "misc"
    )
    assert vault.values.original_bytes(r1.id) == lines[0].encode()
    # Unchanged lines are recognised; a changed line becomes a new version.
    rows[0]["text"] = "first text, revised"
    records.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    again = import_records(vault, records)
    assert [u["external_id"] for u in again.updated] == ["r1"]
    assert [u["external_id"] for u in again.unchanged] == ["r2"]
    assert vault.values.text(r1.id) == "first text, revised"
    assert vault.values.text(r1.id, 1) == "first text"


# Regression tests from the import audit: paths, missing sources, content checks, records.


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
    assert vault.values.count() == 1


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
    assert vault.values.get(ident).source_missing
    memo.write_bytes(b"keep me")
    os.utime(memo, ns=(stamp, stamp))  # the same file back: the size/mtime fast path
    assert import_paths(vault, [docs]).unchanged == [{"path": str(memo), "id": ident}]
    assert not vault.values.get(ident).source_missing
    memo.unlink()
    import_paths(vault, [docs])
    memo.write_bytes(b"keep me")  # same bytes, new mtime: the sha path
    assert import_paths(vault, [docs]).unchanged == [{"path": str(memo), "id": ident}]
    assert not vault.values.get(ident).source_missing


def test_single_file_that_disappears_is_marked(vault: Vault, tmp_path: Path) -> None:
    memo = tmp_path / "memo.txt"
    memo.write_text("a file given by name")
    ident = import_paths(vault, [memo]).imported[0]["id"]
    memo.unlink()
    report = import_paths(vault, [memo])
    assert report.skipped == [{"path": str(memo), "reason": "no such file or folder"}]
    assert vault.values.get(ident).source_missing


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
    assert vault.values.get(ids["a.txt"]).source_missing
    assert vault.values.get(ids["b.txt"]).source_missing
    assert not vault.values.get(ids["docs-other.txt"]).source_missing  # not under docs/


# -- 4. a second writer waits on the vault lock, then gets the vault's words ----------------


_HOLDER = """
import sys, time
from kvdesk.core.knowledge_base import KnowledgeBase
kb = KnowledgeBase.open(sys.argv[1])
kb._keys.open_writer()
with kb._vault.writing():
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
        "kb._keys.open_writer()\n"  # holds the key index writer but not the vault lock
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
                assert kb.values.count() == 0
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
    value = vault.values.resolve("1")
    assert vault.values.original_bytes(value) == b'{"_id": 1, "text": "one"}'


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
    record = vault.values.get("d1")
    assert record.version == 1 and vault.values.text(record.id) == "first"


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
        assert kb.values.count() == 1
        direct = kb.import_paths([vault_file])  # skipped by the folder import just before
        assert direct.skipped == [
            {
                "path": str(vault_file),
                "reason": "part of this vault (not imported); unchanged since last import",
            }
        ]


def test_hostile_records_fail_one_by_one_and_the_rest_arrive(vault: Vault, tmp_path: Path) -> None:
    """A lone surrogate, NaN/Infinity or an identifier-shaped _id is one failure with a reason;
    the records around it are imported on the first run (the batch is not rolled back)."""
    lines = [
        json.dumps({"_id": "r1", "title": "First", "text": "kept"}),
        '{"_id": "r2", "title": "Bad \\ud800 title", "text": "x"}',
        '{"_id": "r3", "title": "Not a number", "text": "x", "score": NaN}',
        '{"_id": "r4", "title": "Inf", "text": "x", "extra": {"deep": [Infinity]}}',
        '{"_id": "r5", "title": "ok", "text": "x", "tags": ["a\\udc80"]}',
        json.dumps({"_id": "DOC-5", "title": "Shadow", "text": "would be ambiguous"}),
        json.dumps({"_id": "r7", "title": "Last", "text": "kept too"}),
    ]
    records = tmp_path / "r.jsonl"
    records.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_records(vault, records)
    assert [e["external_id"] for e in report.imported] == ["r1", "r7"]
    reasons = {e["path"].rsplit(":", 1)[1]: e["error"] for e in report.failed}
    assert set(reasons) == {"2", "3", "4", "5", "6"}
    assert "surrogate" in reasons["2"] and "title" in reasons["2"]
    assert "NaN" in reasons["3"] and "Infinity" in reasons["4"]
    assert "surrogate" in reasons["5"]
    assert "kvdesk identifier" in reasons["6"]
    # A rerun stops at nothing and adds nothing twice.
    again = import_records(vault, records)
    assert again.imported == [] and len(again.unchanged) == 2 and len(again.failed) == 5
    assert vault.values.count() == 2 and vault.check().ok


def test_a_json_file_with_a_lone_surrogate_is_stored_with_a_replacement(
    vault: Vault, tmp_path: Path
) -> None:
    (tmp_path / "odd.json").write_text('{"note": "half \\ud800 a character"}', encoding="utf-8")
    (tmp_path / "fine.txt").write_text("after it", encoding="utf-8")
    report = import_paths(vault, [tmp_path])
    assert len(report.imported) == 2 and report.failed == []
    odd = next(r for r in vault.values.list_values() if r.title.startswith("odd"))
    assert "half \ufffd a character" in vault.values.text(odd.id)
    assert vault.check().ok


# -- 11. common text formats, and skips remembered between imports (issue 12 #6) ---------------


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, mtime=0)


def _doc_folder(root: Path) -> None:
    """Like /usr/share/doc: README-style names, .rst, gzip-compressed manuals, and noise."""
    files = {
        "README": b"Backups run nightly at 02:00.\n",
        "copyright": b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/\n",
        "README.Debian": b"The Debian package keeps seven archives.\n",
        "guide.rst": b"Restoring files\n===============\n\nUse the restore command.\n",
        "changelog.gz": _gzip(b"backupd (2.1) unstable; urgency=low\n\n  * Rotation fixed.\n"),
        "NEWS.md.gz": _gzip(b"# News\n\nVersion 2.1 rotates archives.\n"),
        "backupd.8.gz": _gzip(b".TH BACKUPD 8\n.SH NAME\nbackupd \\- nightly backups\n"),
        "backupd": b"\x7fELF\x02\x01\x01\x00" + bytes(200),  # a program: no extension
        "data.gz": _gzip(bytes(range(256)) * 8),  # compressed binary
        "source.tar.gz": _gzip(b"x"),
        "tool.exe": b"MZ",
    }
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)


def test_text_formats_without_a_telling_extension_are_imported(
    vault: Vault, tmp_path: Path
) -> None:
    root = tmp_path / "doc"
    _doc_folder(root)
    report = import_paths(vault, [root])
    imported = {Path(i["path"]).name: i["id"] for i in report.imported}
    assert set(imported) == {
        "README",
        "copyright",
        "README.Debian",
        "guide.rst",
        "changelog.gz",
        "NEWS.md.gz",
        "backupd.8.gz",
    }
    kinds = {
        name: (vault.values.get(ident).media_type, vault.values.get(ident).title)
        for name, ident in imported.items()
    }
    assert kinds["guide.rst"] == ("text/x-rst", "Restoring files")
    assert kinds["NEWS.md.gz"] == ("text/markdown", "News")
    assert kinds["backupd.8.gz"] == ("text/troff", "backupd - nightly backups")
    assert kinds["changelog.gz"] == ("text/plain", "changelog")
    assert kinds["README.Debian"] == ("text/plain", "README.Debian")
    man = vault.values.resolve(imported["backupd.8.gz"])
    assert vault.values.original_bytes(man) == (root / "backupd.8.gz").read_bytes()  # verbatim
    assert vault.values.get(man).metadata["compression"] == "gzip"
    skipped = {Path(i["path"]).name: i["reason"] for i in report.skipped}
    assert skipped == {
        "backupd": "not a text file: the content is an executable program (ELF)"
        " (no extension, so the content decides)",
        "data.gz": "gzip-compressed file: not a text file: the content is binary data"
        " (no extension, so the content decides)",
        "source.tar.gz": "unsupported file type",
        "tool.exe": "unsupported file type",
    }
    assert report.failed == []


def test_a_reimport_says_which_skips_are_unchanged_since_last_import(
    vault: Vault, tmp_path: Path
) -> None:
    root = tmp_path / "doc"
    _doc_folder(root)
    (root / "big.txt").write_bytes(b"x" * 5000)
    limits = Limits(max_file_bytes=4096)
    first = Importer(vault, limits=limits).import_paths([root])
    assert len(first.skipped) == 5 and first.skipped_again == []
    assert first.skipped_new() == first.skipped

    again = Importer(vault, limits=limits).import_paths([root])
    assert len(again.unchanged) == 7
    assert again.skipped_again == again.skipped and again.skipped_new() == []
    assert all(i["reason"].endswith("; unchanged since last import") for i in again.skipped)
    assert "5 skipped (unchanged since last import)" in again.summary()

    (root / "tool.exe").write_bytes(b"MZ changed")  # a new stamp: listed again
    os.mkfifo(root / "pipe.txt")  # a new skip
    third = Importer(vault, limits=limits).import_paths([root])
    fresh = {Path(i["path"]).name: i["reason"] for i in third.skipped_new()}
    assert fresh == {
        "tool.exe": "unsupported file type",
        "pipe.txt": "not a regular file (named pipe)",
    }
    assert "6 skipped (4 unchanged since last import)" in third.summary()

    # Imported once the limit allows it, the file is forgotten as a skip: skipped again later
    # (a lower limit) it is news, not "unchanged".
    assert [Path(i["path"]).name for i in import_paths(vault, [root]).imported] == ["big.txt"]
    (root / "big.txt").unlink()
    import_paths(vault, [root])  # gone: nothing to remember
    (root / "big.txt").write_bytes(b"x" * 5000)
    later = Importer(vault, limits=limits).import_paths([root])
    assert {Path(i["path"]).name for i in later.skipped_new()} == {"big.txt"}


def test_a_missing_path_is_never_unchanged_since_last_import(vault: Vault, tmp_path: Path) -> None:
    gone = tmp_path / "gone.txt"
    for _ in range(2):
        report = import_paths(vault, [gone])
        assert report.skipped == [{"path": str(gone), "reason": "no such file or folder"}]
        assert report.skipped_again == []


def test_a_schema_6_vault_gains_the_skip_memory(vault_path: Path, tmp_path: Path) -> None:
    """A vault from before the skipped_source table opens, migrates, and remembers skips."""
    Vault.open(vault_path).close()
    import sqlite3

    conn = sqlite3.connect(vault_path)
    conn.execute("DROP TABLE skipped_source")
    if "digest" in {row[1] for row in conn.execute("PRAGMA table_info(value)")}:
        conn.execute("ALTER TABLE value DROP COLUMN digest")  # the other schema-7 steps
        conn.execute("ALTER TABLE tag DROP COLUMN digest")
        conn.execute("ALTER TABLE value_tag DROP COLUMN digest")
    conn.execute("PRAGMA user_version = 6")
    conn.commit()
    conn.close()
    (tmp_path / "tool.exe").write_bytes(b"MZ")
    with Vault.open(vault_path) as vault:
        assert vault.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        import_paths(vault, [tmp_path / "tool.exe"])
        assert len(import_paths(vault, [tmp_path / "tool.exe"]).skipped_again) == 1
