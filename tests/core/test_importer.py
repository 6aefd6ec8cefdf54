"""Import of real files and folders, incremental re-import, versions, and hostile input."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from kvdesk.core.extract import Limits
from kvdesk.core.progress import CancelToken, Progress
from kvdesk.core.vault.importer import Importer, import_paths, import_records
from kvdesk.core.vault.vault import Vault


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
        value_id = vault.resolve(item["id"])
        assert vault.original_bytes(value_id) == files[rel]
    legacy = next(i for i in report.imported if i["path"].endswith("legacy.txt"))
    assert "東京支社" in vault.text(vault.resolve(legacy["id"]))
    html = next(i for i in report.imported if i["path"].endswith("page.html"))
    record = vault.get(html["id"])
    assert record.title == "Intranet" and record.media_type == "text/html"
    assert "alert" not in vault.text(record.id)
    photo = next(i for i in report.imported if i["path"].endswith("photo.png"))
    assert vault.get(photo["id"]).media_type == "image/png"


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
    value_id = vault.resolve(ident)
    assert vault.original_bytes(value_id) == b"Budget review moved to May.\n"
    assert vault.original_bytes(value_id, 1) == files["notes.txt"]
    assert vault.count() == len(files)


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
    record = vault.get(ident)
    assert record.source_missing
    assert vault.original_bytes(record.id).startswith(b"# Travel policy")


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
    assert "\x00" not in vault.text(vault.resolve(nul["id"]))
    latin = next(i for i in report.imported if i["path"].endswith("latin.txt"))
    assert "Café crème" in vault.text(vault.resolve(latin["id"]))
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
    assert len(report.imported) == 5 == vault.count()


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
    r1 = vault.get("r1")
    assert r1.title == "Alpha" and r1.tags == ("finance", "q1")
    assert vault.get("r2").title == "r2" and vault.get("r2").metadata["section"] == "misc"
    assert vault.original_bytes(r1.id) == lines[0].encode()
    # Unchanged lines are recognised; a changed line becomes a new version.
    rows[0]["text"] = "first text, revised"
    records.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    again = import_records(vault, records)
    assert [u["external_id"] for u in again.updated] == ["r1"]
    assert [u["external_id"] for u in again.unchanged] == ["r2"]
    assert vault.text(r1.id) == "first text, revised"
    assert vault.text(r1.id, 1) == "first text"
